"""Domain errors and the one table that turns each kind into a problem (RFC 9457): type, status, title.

A domain module raises a ``DomainError`` with its ``kind`` and a detail that says what to fix; it knows
nothing of HTTP. ``libs/platform/http.py`` renders it through ``PROBLEMS``, the only place where a kind
gets its status, for every service. The problem ``type`` is ``https://warmbee.dev/problems/<kind>``, and
clients branch on it: a kind is never renamed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ProblemType:
    status: int
    title: str


PROBLEMS: dict[str, ProblemType] = {
    # Who is asking (every service).
    "unauthenticated": ProblemType(401, "Authentication required"),
    "invalid-token": ProblemType(401, "Invalid token"),
    "forbidden": ProblemType(403, "Not allowed"),
    # The request as sent (every service).
    "not-found": ProblemType(404, "Not Found"),
    "method-not-allowed": ProblemType(405, "Method Not Allowed"),
    "http-error": ProblemType(400, "Bad Request"),  # any other status Starlette answers; it keeps its own
    "body-too-large": ProblemType(413, "Request body too large"),
    "unsupported-media-type": ProblemType(415, "Unsupported media type"),
    "invalid-request": ProblemType(422, "The request is not valid"),
    "malformed-json": ProblemType(422, "Malformed JSON"),
    "invalid-cursor": ProblemType(422, "Invalid cursor"),
    "idempotency-key-required": ProblemType(422, "Idempotency-Key required"),
    "idempotency-key-reused": ProblemType(409, "Idempotency-Key reused"),
    # Our side (every service).
    "internal": ProblemType(500, "Internal error"),
    "database-unavailable": ProblemType(503, "Temporarily unavailable"),
    "not-ready": ProblemType(503, "Not ready"),
    # Events.
    "invalid-event": ProblemType(422, "Invalid event"),
    "invalid-batch": ProblemType(422, "Invalid batch"),
    "event-id-reused": ProblemType(409, "Event id reused"),
    "source-mismatch": ProblemType(403, "Not your source"),
    "dead-letter-unknown": ProblemType(404, "Unknown dead letter"),
    # Points.
    "event-unknown": ProblemType(404, "Unknown event"),
    "insufficient-points": ProblemType(409, "Not enough points"),
    "no-rules": ProblemType(404, "No rules in force"),
    "rules-refused": ProblemType(422, "Rules refused"),
    # Redemption.
    "partner-exists": ProblemType(409, "Partner exists"),
    "partner-unknown": ProblemType(422, "Unknown partner"),
    "partner-required": ProblemType(422, "partner_id required"),
    "reward-exists": ProblemType(409, "Reward exists"),
    "reward-unknown": ProblemType(404, "Unknown reward"),
    "reward-inactive": ProblemType(409, "Reward not available"),
    "out-of-stock": ProblemType(409, "Out of stock"),
    "monthly-limit-reached": ProblemType(409, "Monthly limit reached"),
    "redemption-unknown": ProblemType(404, "Unknown redemption"),
    "code-unknown": ProblemType(404, "Unknown code"),
    "code-expired": ProblemType(409, "Code expired"),
    "already-confirmed": ProblemType(409, "Already confirmed"),
    "already-cancelled": ProblemType(409, "Already cancelled"),
    "not-expired": ProblemType(409, "Not expired yet"),
    "too-many-wrong-codes": ProblemType(429, "Too many wrong codes"),
    # Pages.
    "invalid-code": ProblemType(422, "Invalid code"),
    "invalid-payload": ProblemType(422, "Invalid QR payload"),
}


class DomainError(Exception):
    """A request the domain refuses; nothing was changed.

    ``kind`` names its entry in ``PROBLEMS`` (a subclass may fix it as a class attribute); ``detail``
    says what to fix, naming the field; ``extra`` are members the problem carries besides (for example
    ``retry_after_s``, which also becomes the ``Retry-After`` header)."""

    kind: str = "invalid-request"

    def __init__(self, detail: str, *, kind: str | None = None, title: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        if kind is not None:
            self.kind = kind
        if self.kind not in PROBLEMS:
            raise KeyError(f"problem kind {self.kind!r} is not in libs/platform/errors.py PROBLEMS")
        self.detail = detail
        self.title = title or PROBLEMS[self.kind].title
        self.extra: dict[str, Any] = extra

    @property
    def status(self) -> int:
        return PROBLEMS[self.kind].status
