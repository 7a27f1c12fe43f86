"""The notifications service's webhook API, in process against the real test database: who may subscribe
to what, the secret shown once and kept sealed, server-side request forgery refused outside local runs,
deliveries listed and retried by hand."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from libs.platform.auth import Role, Tokens, mint_token
from libs.platform.db import Database
from libs.platform.settings import Settings
from services.notifications.bootstrap import build_app
from services.notifications.sealing import Sealer

Client = Callable[..., Any]


@pytest.fixture
async def local(db: Database, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(settings.model_copy(update={"env": "local"})) as client:
        yield client


@pytest.fixture
async def guarded(db: Database, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The service as it runs outside env=local: https only, and no private addresses."""
    guarded = {"env": "test", "webhook_allowed_networks": [], "webhook_require_https": True}
    service = _client(settings.model_copy(update=guarded))
    # These tests are about the URL policy of env=test; their callers keep the local HS256 tokens, which
    # env=test itself refuses (tests/e2e/test_identity.py has its tokens from an OpenID provider).
    service.app.state.tokens = Tokens(settings)
    async with service as client:
        yield client


class _client:
    def __init__(self, settings: Settings) -> None:
        self.app = build_app(settings)
        self.settings = settings

    async def __aenter__(self) -> httpx.AsyncClient:
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()
        self._http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://notifications")
        return self._http

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()
        await self._lifespan.__aexit__(None, None, None)


def auth(settings: Settings, role: Role, sub: str) -> dict[str, str]:
    return {"authorization": f"Bearer {mint_token(settings, role, sub)}"}


async def subscribe(
    client: httpx.AsyncClient, settings: Settings, role: Role, sub: str, kinds: list[str], url: str = ""
) -> httpx.Response:
    return await client.post(
        "/v1/webhooks",
        json={"url": url or "http://127.0.0.1:9/hook", "kinds": kinds, "description": "till"},
        headers=auth(settings, role, sub),
    )


async def test_an_operator_subscribes_to_anything_and_gets_the_secret_once(
    local: httpx.AsyncClient, settings: Settings, db: Database
) -> None:
    made = await subscribe(local, settings, Role.OPERATOR, "ops-1", ["points.awarded", "redemption.confirmed"])
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["webhook_id"].startswith("wh_")
    assert body["secret"].startswith("whsec_")
    Webhook(body["secret"])  # a secret the standardwebhooks library takes
    listed = await local.get("/v1/webhooks", headers=auth(settings, Role.OPERATOR, "ops-2"))
    assert body["webhook_id"] in [w["webhook_id"] for w in listed.json()["items"]]
    assert all("secret" not in w for w in listed.json()["items"])
    async with db.read() as conn:
        sealed = await conn.fetchval(
            "SELECT secret_sealed FROM webhook_subscription WHERE webhook_id = $1", body["webhook_id"]
        )
    assert body["secret"].encode() not in bytes(sealed)
    assert Sealer(settings.notify_secret_key).unseal(bytes(sealed)) == body["secret"]


async def test_a_partner_subscribes_to_redemptions_only_and_a_rider_not_at_all(
    local: httpx.AsyncClient, settings: Settings
) -> None:
    partner = f"partner-{uuid.uuid4().hex[:6]}"
    ok = await subscribe(local, settings, Role.PARTNER, partner, ["redemption.confirmed", "redemption.confirmed"])
    assert ok.status_code == 201, ok.text
    assert ok.json()["kinds"] == ["redemption.confirmed"]
    awards = await subscribe(local, settings, Role.PARTNER, partner, ["points.awarded"])
    assert awards.status_code == 403
    assert awards.json()["type"].endswith("/kind-not-allowed")
    assert "points.awarded" in awards.json()["detail"]
    rider = await subscribe(local, settings, Role.RIDER, "rider-1", ["points.awarded"])
    assert rider.status_code == 403
    source = await subscribe(local, settings, Role.SOURCE, "grid-office", ["points.awarded", "event.dead_lettered"])
    assert source.status_code == 201
    mine = await local.get("/v1/webhooks", headers=auth(settings, Role.PARTNER, partner))
    assert [w["webhook_id"] for w in mine.json()["items"]] == [ok.json()["webhook_id"]]


@pytest.mark.parametrize(
    "body",
    [
        {"url": "http://127.0.0.1/h", "kinds": []},
        {"url": "http://127.0.0.1/h", "kinds": ["points.everything"]},
        {"url": "", "kinds": ["points.awarded"]},
        {"url": "http://127.0.0.1/h\n", "kinds": ["points.awarded"]},
        {"url": "ftp://example.com/h", "kinds": ["points.awarded"]},
        {"url": "http://user:pw@example.com/h", "kinds": ["points.awarded"]},
        {"url": "http:///nohost", "kinds": ["points.awarded"]},
        {"url": "http://example.com:99999/h", "kinds": ["points.awarded"]},
        {"url": "http://example.com/" + "a" * 3000, "kinds": ["points.awarded"]},
    ],
)
async def test_a_bad_subscription_is_refused_with_the_field_named(
    local: httpx.AsyncClient, settings: Settings, body: dict[str, Any]
) -> None:
    r = await local.post("/v1/webhooks", json=body, headers=auth(settings, Role.OPERATOR, "ops"))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert any(field in r.json()["detail"] for field in ("url", "kinds"))


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://example.com/hook", "https://"),
        ("https://127.0.0.1/hook", "loopback"),
        ("https://[::1]/hook", "loopback"),
        ("https://10.1.2.3/hook", "private"),
        ("https://192.168.0.7/hook", "private"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://[::ffff:127.0.0.1]/hook", "loopback"),
        ("https://0.0.0.0/hook", "unspecified"),
        ("https://localhost/hook", "loopback"),  # a name, refused by what it resolves to
        ("https://no-such-host.invalid/hook", "does not resolve"),
    ],
)
async def test_outside_local_runs_a_receiver_must_be_on_the_public_internet(
    guarded: httpx.AsyncClient, settings: Settings, url: str, why: str
) -> None:
    r = await subscribe(guarded, settings, Role.OPERATOR, "ops", ["points.awarded"], url=url)
    assert r.status_code == 422, r.text
    assert why in r.json()["detail"]


async def test_deliveries_are_listed_and_retried_by_their_owner_only(
    local: httpx.AsyncClient, settings: Settings, db: Database
) -> None:
    partner = f"partner-{uuid.uuid4().hex[:6]}"
    made = (await subscribe(local, settings, Role.PARTNER, partner, ["redemption.held"])).json()
    webhook_id = made["webhook_id"]
    async with db.read() as conn:
        ids = [
            await conn.fetchval(
                "INSERT INTO webhook_delivery (webhook_id, event_id, kind, body, status)"
                " VALUES ($1, $2, 'redemption.held', '{}', $3) RETURNING delivery_id",
                webhook_id,
                f"entry-{n}",
                status,
            )
            for n, status in enumerate(["failed", "delivered", "pending"])
        ]
    mine = auth(settings, Role.PARTNER, partner)
    listed = await local.get(f"/v1/webhooks/{webhook_id}/deliveries", headers=mine)
    assert [d["delivery_id"] for d in listed.json()["items"]] == sorted(ids, reverse=True)
    failed = await local.get(f"/v1/webhooks/{webhook_id}/deliveries?status=failed", headers=mine)
    assert [d["delivery_id"] for d in failed.json()["items"]] == [ids[0]]

    retried = await local.post(f"/v1/webhooks/{webhook_id}/deliveries/{ids[0]}/retry", headers=mine)
    assert retried.status_code == 202
    assert retried.json() == {"status": "pending"}
    again = await local.post(f"/v1/webhooks/{webhook_id}/deliveries/{ids[1]}/retry", headers=mine)
    assert again.status_code == 409
    unknown = await local.post(f"/v1/webhooks/{webhook_id}/deliveries/999999999/retry", headers=mine)
    assert unknown.status_code == 404

    other = auth(settings, Role.PARTNER, "someone-else")
    assert (await local.get(f"/v1/webhooks/{webhook_id}/deliveries", headers=other)).status_code == 404
    assert (await local.delete(f"/v1/webhooks/{webhook_id}", headers=other)).status_code == 404
    assert (await local.delete(f"/v1/webhooks/{webhook_id}", headers=mine)).status_code == 204
    assert (await local.get(f"/v1/webhooks/{webhook_id}/deliveries", headers=mine)).status_code == 404
    assert (await local.get("/v1/webhooks", headers=mine)).json()["items"] == []


async def test_the_service_answers_health_and_its_document(local: httpx.AsyncClient) -> None:
    assert (await local.get("/healthz")).status_code == 200
    assert (await local.get("/readyz")).status_code == 200
    document = (await local.get("/openapi.json")).json()
    assert {"/v1/webhooks", "/v1/webhooks/{webhook_id}/deliveries"} <= set(document["paths"])
