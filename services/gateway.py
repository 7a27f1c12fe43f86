"""The local notice gateway (`warmbee gateway`): a stand-in for the SMS/WeChat gateway a sub-district runs,
so that a newcomer (and the end-to-end tests) see the rider notices warmbee sends.

``POST /notices`` takes a notice as the real gateway would: it checks the Standard Webhooks signature
(``WARMBEE_NOTIFY_GATEWAY_SECRET``) and the timestamp's age with the ``standardwebhooks`` library, refuses
anything else with 401, counts a ``webhook-id`` it has seen once (the sender delivers at least once), and
prints the notice: ``【通知】rider-1001 points.awarded: 您获得 45 积分…``. ``GET /notices?rider_id=`` lists
the last notices it took, oldest first. It keeps them in memory only; it is not for production."""

from __future__ import annotations

import sys
from collections import OrderedDict
from typing import Any

import orjson
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

KEPT = 1000  # notices kept for GET /notices (and webhook-ids remembered), the oldest dropped first
MAX_BODY_BYTES = 64 * 1024
FIELDS = ("rider_id", "kind", "text", "text_en", "at")


def build_gateway(secret: str, echo: Any = None) -> Starlette:
    """The gateway's app; ``echo`` prints a line (default: stdout, flushed, so a log file shows it at once)."""
    webhook = Webhook(secret)
    taken: OrderedDict[str, dict[str, Any]] = OrderedDict()
    say = echo or _print

    async def take(request: Request) -> Response:
        body = await _head(request)
        if body is None:
            return _problem(413, "notice too large", f"a notice is at most {MAX_BODY_BYTES} bytes")
        try:
            notice = webhook.verify(body, dict(request.headers))
        except WebhookVerificationError as exc:
            return _problem(401, "signature refused", f"{exc}: sign with the gateway's whsec_ secret")
        if not isinstance(notice, dict) or any(not isinstance(notice.get(f), str) for f in FIELDS):
            return _problem(422, "not a notice", f"a notice is a JSON object with the strings {', '.join(FIELDS)}")
        message_id = request.headers["webhook-id"]
        if message_id not in taken:
            taken[message_id] = {"id": message_id, **{f: notice[f] for f in FIELDS}}
            while len(taken) > KEPT:
                taken.popitem(last=False)
            say(f"【通知】{notice['rider_id']} {notice['kind']}: {notice['text']}  ({notice['text_en']})")
        return Response(status_code=204)

    async def listing(request: Request) -> Response:
        rider_id = request.query_params.get("rider_id")
        return JSONResponse([n for n in taken.values() if rider_id is None or n["rider_id"] == rider_id])

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/notices", take, methods=["POST"]),
            Route("/notices", listing, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


async def _head(request: Request) -> bytes | None:
    """The body, or None once it passes MAX_BODY_BYTES (the rest is never read: a huge body costs nothing)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return None
    return bytes(body)


def _print(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _problem(status: int, title: str, detail: str) -> Response:
    body = orjson.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail})
    return Response(body, status_code=status, media_type="application/problem+json")
