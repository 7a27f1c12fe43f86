"""Who may do what: every endpoint × every kind of caller, with the status each cell must answer.

Callers: no token, an expired token, a token with a wrong signature, and each role, as the owner of
the resource and as someone else. 401 for no valid token; 403 for the wrong role or the wrong rider on
a rider's own account; 404 where existence must not leak (another rider's redemption, another partner's
code, an event of another source).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jwt
import pytest

from libs.platform.auth import Role, mint_token
from tests.e2e.conftest import Api, shift
from tests.e2e.test_redemption import catalogue_entry, grant

pytestmark = pytest.mark.e2e

CALLERS = [
    "none",
    "expired",
    "bad-signature",
    "source",
    "other-source",
    "rider",
    "other-rider",
    "partner",
    "other-partner",
    "operator",
]
UNAUTHENTICATED = {"none": 401, "expired": 401, "bad-signature": 401}


@dataclass
class World:
    """One rider, one partner with a reward, one scored event: what the cells act on."""

    api: Api
    rider: str
    partner: str
    reward: str
    event_id: str

    def headers(self, caller: str) -> dict[str, str]:
        s = self.api.settings
        subs = {
            "source": (Role.SOURCE, "volunteer-platform"),
            "other-source": (Role.SOURCE, "grid-office"),
            "rider": (Role.RIDER, self.rider),
            "other-rider": (Role.RIDER, "rider-somebody-else"),
            "partner": (Role.PARTNER, self.partner),
            "other-partner": (Role.PARTNER, "partner-elsewhere"),
            "operator": (Role.OPERATOR, "ops-matrix"),
        }
        if caller == "none":
            return {}
        if caller == "expired":
            return {"authorization": f"Bearer {mint_token(s, Role.OPERATOR, 'ops-matrix', ttl_s=-60)}"}
        if caller == "bad-signature":
            forged = jwt.encode(
                {"sub": "ops-matrix", "role": "operator", "exp": 9_999_999_999},
                "not-the-secret-at-all-0123456789abcdef",
                algorithm="HS256",
            )
            return {"authorization": f"Bearer {forged}"}
        role, sub = subs[caller]
        return {"authorization": f"Bearer {mint_token(s, role, sub)}"}

    async def hold(self) -> dict[str, Any]:
        r = await self.api.http.post(
            f"{self.api.redemption_url}/v1/redemptions",
            json={"reward_id": self.reward},
            headers={**self.headers("rider"), "idempotency-key": uuid.uuid4().hex},
        )
        assert r.status_code == 201, r.text
        return dict(r.json())


Call = Callable[[World, dict[str, str]], Awaitable[int]]


def _expect(allowed: dict[str, int], otherwise: int = 403) -> dict[str, int]:
    return {c: UNAUTHENTICATED.get(c, allowed.get(c, otherwise)) for c in CALLERS}


async def publish(w: World, h: dict[str, str]) -> int:
    event = shift(w.rider, 0.5)
    r = await w.api.http.post(
        f"{w.api.events_url}/v1/events", json=event, headers={**h, "content-type": "application/cloudevents+json"}
    )
    return r.status_code


async def dead_letters(w: World, h: dict[str, str]) -> int:
    return (await w.api.http.get(f"{w.api.events_url}/v1/dead-letters", headers=h)).status_code


async def balance(w: World, h: dict[str, str]) -> int:
    return (await w.api.http.get(f"{w.api.points_url}/v1/riders/{w.rider}/balance", headers=h)).status_code


async def entries(w: World, h: dict[str, str]) -> int:
    return (await w.api.http.get(f"{w.api.points_url}/v1/riders/{w.rider}/entries", headers=h)).status_code


async def event_status(w: World, h: dict[str, str]) -> int:
    url = f"{w.api.points_url}/v1/events/volunteer-platform/{w.event_id}"
    return (await w.api.http.get(url, headers=h)).status_code


async def adjustment(w: World, h: dict[str, str]) -> int:
    r = await w.api.http.post(
        f"{w.api.points_url}/v1/adjustments",
        headers={**h, "idempotency-key": uuid.uuid4().hex},
        json={"rider_id": w.rider, "amount": 1, "reason": "matrix test"},
    )
    return r.status_code


async def rules(w: World, h: dict[str, str]) -> int:
    return (await w.api.http.get(f"{w.api.points_url}/v1/rules", headers=h)).status_code


async def rules_versions(w: World, h: dict[str, str]) -> int:
    return (await w.api.http.get(f"{w.api.points_url}/v1/rules/versions", headers=h)).status_code


# A rules file with problems: the operator's cell answers 422 and nothing is ever published.
NOT_RULES = b"rules_id: matrix\n"


async def rules_check(w: World, h: dict[str, str]) -> int:
    r = await w.api.http.post(f"{w.api.points_url}/v1/rules/check", content=NOT_RULES, headers=_yaml(h))
    return r.status_code


async def rules_what_if(w: World, h: dict[str, str]) -> int:
    url = f"{w.api.points_url}/v1/rules/what-if?from=2024-05-01&to=2024-05-02"
    return (await w.api.http.post(url, content=NOT_RULES, headers=_yaml(h))).status_code


async def rules_publish(w: World, h: dict[str, str]) -> int:
    r = await w.api.http.post(f"{w.api.points_url}/v1/rules/versions", content=NOT_RULES, headers=_yaml(h))
    return r.status_code


def _yaml(h: dict[str, str]) -> dict[str, str]:
    return {**h, "content-type": "application/yaml"}


async def add_partner(w: World, h: dict[str, str]) -> int:
    body = {"partner_id": f"p-{uuid.uuid4().hex[:8]}", "name": "矩阵", "kind": "barber"}
    return (await w.api.http.post(f"{w.api.redemption_url}/v1/partners", json=body, headers=h)).status_code


async def add_reward(w: World, h: dict[str, str]) -> int:
    body = {"reward_id": f"rw-{uuid.uuid4().hex[:8]}", "partner_id": w.partner, "title": "t", "cost": 5, "active": True}
    return (await w.api.http.post(f"{w.api.redemption_url}/v1/rewards", json=body, headers=h)).status_code


async def catalogue(w: World, h: dict[str, str]) -> int:
    return (await w.api.http.get(f"{w.api.redemption_url}/v1/rewards", headers=h)).status_code


async def reserve(w: World, h: dict[str, str]) -> int:
    r = await w.api.http.post(
        f"{w.api.redemption_url}/v1/redemptions",
        json={"reward_id": w.reward},
        headers={**h, "idempotency-key": uuid.uuid4().hex},
    )
    return r.status_code


async def get_redemption(w: World, h: dict[str, str]) -> int:
    held = await w.hold()
    return (
        await w.api.http.get(f"{w.api.redemption_url}/v1/redemptions/{held['redemption_id']}", headers=h)
    ).status_code


async def cancel(w: World, h: dict[str, str]) -> int:
    held = await w.hold()
    url = f"{w.api.redemption_url}/v1/redemptions/{held['redemption_id']}/cancel"
    return (await w.api.http.post(url, headers=h)).status_code


async def confirm(w: World, h: dict[str, str]) -> int:
    held = await w.hold()
    r = await w.api.http.post(
        f"{w.api.redemption_url}/v1/partner/confirmations", json={"code": held["code"]}, headers=h
    )
    return r.status_code


async def rider_redemptions(w: World, h: dict[str, str]) -> int:
    return (await w.api.http.get(f"{w.api.redemption_url}/v1/redemptions", headers=h)).status_code


async def redemptions_of_the_rider(w: World, h: dict[str, str]) -> int:
    """Whose redemptions, named: an operator (the console), or the rider itself."""
    url = f"{w.api.redemption_url}/v1/redemptions?rider_id={w.rider}"
    return (await w.api.http.get(url, headers=h)).status_code


async def scoring_status(w: World, h: dict[str, str]) -> int:
    return (await w.api.http.get(f"{w.api.points_url}/v1/scoring", headers=h)).status_code


async def look_up_code(w: World, h: dict[str, str]) -> int:
    held = await w.hold()
    return (await w.api.http.get(f"{w.api.redemption_url}/v1/partner/codes/{held['code']}", headers=h)).status_code


async def partner_redemptions(w: World, h: dict[str, str]) -> int:
    return (await w.api.http.get(f"{w.api.redemption_url}/v1/partner/redemptions", headers=h)).status_code


async def settlement(w: World, h: dict[str, str]) -> int:
    return (await w.api.http.get(f"{w.api.redemption_url}/v1/partner/settlement?month=2024-05", headers=h)).status_code


async def riders(w: World, h: dict[str, str]) -> int:
    return (await w.api.http.get(f"{w.api.points_url}/v1/riders?prefix=rider-", headers=h)).status_code


async def partners(w: World, h: dict[str, str]) -> int:
    return (await w.api.http.get(f"{w.api.redemption_url}/v1/partners", headers=h)).status_code


async def whole_catalogue(w: World, h: dict[str, str]) -> int:
    return (await w.api.http.get(f"{w.api.redemption_url}/v1/rewards?include_inactive=true", headers=h)).status_code


async def points_report(w: World, h: dict[str, str]) -> int:
    url = f"{w.api.points_url}/v1/reports/points?from=2026-11-01&to=2026-11-30&by=category"
    return (await w.api.http.get(url, headers=h)).status_code


async def settlements_report(w: World, h: dict[str, str]) -> int:
    return (await w.api.http.get(f"{w.api.redemption_url}/v1/reports/settlements?month=2026-11", headers=h)).status_code


async def fresh_entry(w: World) -> int:
    """A new entry of the rider (an adjustment of 1), so that each cell questions an entry of its own."""
    r = await w.api.http.post(
        f"{w.api.points_url}/v1/adjustments",
        headers={**w.headers("operator"), "idempotency-key": uuid.uuid4().hex},
        json={"rider_id": w.rider, "amount": 1, "reason": "matrix entry"},
    )
    assert r.status_code == 201, r.text
    return int(r.json()["entry_id"])


async def open_dispute(w: World, h: dict[str, str]) -> int:
    r = await w.api.http.post(
        f"{w.api.points_url}/v1/disputes",
        headers={**h, "idempotency-key": uuid.uuid4().hex},
        json={"entry_id": await fresh_entry(w), "message": "matrix dispute"},
    )
    return r.status_code


async def list_disputes(w: World, h: dict[str, str]) -> int:
    return (await w.api.http.get(f"{w.api.points_url}/v1/disputes", headers=h)).status_code


async def resolve_dispute(w: World, h: dict[str, str]) -> int:
    opened = await w.api.http.post(
        f"{w.api.points_url}/v1/disputes",
        headers={**w.headers("rider"), "idempotency-key": uuid.uuid4().hex},
        json={"entry_id": await fresh_entry(w), "message": "matrix dispute"},
    )
    assert opened.status_code == 201, opened.text
    r = await w.api.http.post(
        f"{w.api.points_url}/v1/disputes/{opened.json()['dispute_id']}/resolve",
        headers={**h, "idempotency-key": uuid.uuid4().hex},
        json={"outcome": "rejected", "reply": "matrix reply"},
    )
    return r.status_code


MATRIX: dict[str, tuple[Call, dict[str, int]]] = {
    "POST /v1/events": (publish, _expect({"source": 202})),
    "GET /v1/dead-letters": (dead_letters, _expect({"operator": 200})),
    "GET /v1/scoring": (scoring_status, _expect({"operator": 200})),
    "GET /v1/riders/{id}/balance": (balance, _expect({"rider": 200, "operator": 200})),
    "GET /v1/riders/{id}/entries": (entries, _expect({"rider": 200, "operator": 200})),
    "GET /v1/events/{source}/{id}": (event_status, _expect({"source": 200, "rider": 200, "operator": 200}, 404)),
    "POST /v1/adjustments": (adjustment, _expect({"operator": 201})),
    "GET /v1/rules": (rules, _expect(dict.fromkeys(CALLERS, 200))),
    "GET /v1/rules/versions": (rules_versions, _expect({"operator": 200})),
    "POST /v1/rules/check": (rules_check, _expect({"operator": 422})),
    "POST /v1/rules/what-if": (rules_what_if, _expect({"operator": 422})),
    "POST /v1/rules/versions": (rules_publish, _expect({"operator": 422})),
    "POST /v1/partners": (add_partner, _expect({"operator": 201})),
    "POST /v1/rewards": (add_reward, _expect({"operator": 201})),
    "GET /v1/rewards": (catalogue, _expect(dict.fromkeys(CALLERS, 200))),
    "POST /v1/redemptions": (reserve, _expect({"rider": 201, "other-rider": 409})),  # 409: no points
    "GET /v1/redemptions/{id}": (get_redemption, _expect({"rider": 200, "partner": 200, "operator": 200}, 404)),
    "POST /v1/redemptions/{id}/cancel": (cancel, _expect({"rider": 200, "other-rider": 404, "operator": 200})),
    "POST /v1/partner/confirmations": (confirm, _expect({"partner": 200, "other-partner": 404})),
    "GET /v1/redemptions": (rider_redemptions, _expect({"rider": 200, "other-rider": 200})),  # each its own
    "GET /v1/redemptions?rider_id=": (redemptions_of_the_rider, _expect({"rider": 200, "operator": 200})),
    "GET /v1/partner/codes/{code}": (look_up_code, _expect({"partner": 200, "other-partner": 404})),
    "GET /v1/partner/redemptions": (partner_redemptions, _expect({"partner": 200, "other-partner": 200})),
    "GET /v1/partner/settlement": (settlement, _expect({"partner": 200, "other-partner": 200, "operator": 422})),
    "GET /v1/riders": (riders, _expect({"operator": 200})),
    "GET /v1/partners": (partners, _expect({"operator": 200})),
    "GET /v1/rewards?include_inactive=true": (whole_catalogue, _expect({"operator": 200})),
    "GET /v1/reports/points": (points_report, _expect({"operator": 200})),
    "GET /v1/reports/settlements": (settlements_report, _expect({"operator": 200})),
    "POST /v1/disputes": (open_dispute, _expect({"rider": 201, "other-rider": 404})),  # 404: not its entry
    "GET /v1/disputes": (list_disputes, _expect({"rider": 200, "other-rider": 200, "operator": 200})),
    "POST /v1/disputes/{id}/resolve": (resolve_dispute, _expect({"operator": 200})),
}


@pytest.fixture(scope="module")
async def world(stack: Any) -> World:
    import httpx

    async with httpx.AsyncClient(timeout=15) as http:
        api = Api(stack.settings, http)
        rider = f"rider-{uuid.uuid4().hex[:10]}"
        partner, reward = await catalogue_entry(api, cost=5)
        await grant(api, rider, 1000)
        event = shift(rider, 1)
        assert (await api.publish(event)).status_code == 202
        return World(api, rider, partner, reward, str(event["id"]))


@pytest.mark.parametrize("endpoint", list(MATRIX))
async def test_each_caller_gets_the_status_its_role_allows(world: World, api: Api, endpoint: str) -> None:
    call, expected = MATRIX[endpoint]
    w = World(api, world.rider, world.partner, world.reward, world.event_id)

    answered = {caller: await call(w, w.headers(caller)) for caller in CALLERS}

    assert answered == expected
