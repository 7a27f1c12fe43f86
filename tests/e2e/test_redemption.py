"""Redemption end to end: earn, reserve, confirm at the counter; cancel; settlement."""

from __future__ import annotations

import uuid

import pytest

from libs.platform.auth import Role
from tests.e2e.conftest import Api

pytestmark = pytest.mark.e2e


async def catalogue_entry(api: Api, cost: int = 30, **reward: object) -> tuple[str, str]:
    """A partner and a reward of its own for the test: (partner_id, reward_id)."""
    operator = api.token(Role.OPERATOR, "ops-test")
    partner_id, reward_id = f"p-{uuid.uuid4().hex[:8]}", f"rw-{uuid.uuid4().hex[:8]}"
    r = await api.http.post(
        f"{api.redemption_url}/v1/partners",
        headers=operator,
        json={"partner_id": partner_id, "name": "老王面馆", "kind": "merchant"},
    )
    assert r.status_code == 201, r.text
    r = await api.http.post(
        f"{api.redemption_url}/v1/rewards",
        headers=operator,
        json={
            "reward_id": reward_id,
            "partner_id": partner_id,
            "title": "午餐套餐",
            "cost": cost,
            "active": True,
            **reward,
        },
    )
    assert r.status_code == 201, r.text
    return partner_id, reward_id


async def grant(api: Api, rider: str, points: int) -> None:
    r = await api.http.post(
        f"{api.points_url}/v1/adjustments",
        headers={**api.token(Role.OPERATOR, "ops-test"), "idempotency-key": f"grant-{uuid.uuid4().hex}"},
        json={"rider_id": rider, "amount": points, "reason": "test grant"},
    )
    assert r.status_code == 201, r.text


async def test_a_rider_reserves_and_the_partner_confirms_at_the_counter(api: Api, rider: str) -> None:
    partner_id, reward_id = await catalogue_entry(api, cost=30)
    await grant(api, rider, 50)

    reserved = await api.http.post(
        f"{api.redemption_url}/v1/redemptions",
        json={"reward_id": reward_id},
        headers={**api.token(Role.RIDER, rider), "idempotency-key": "k1"},
    )
    held = await api.balance(rider)
    confirmed = await api.http.post(
        f"{api.redemption_url}/v1/partner/confirmations",
        json={"code": reserved.json()["code"]},
        headers=api.token(Role.PARTNER, partner_id),
    )
    after = await api.balance(rider)

    assert reserved.status_code == 201, reserved.text
    assert reserved.json()["status"] == "held"
    assert len(reserved.json()["code"]) == 8
    assert (held["available"], held["held"]) == (20, 30)
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["status"] == "confirmed"
    assert (after["available"], after["held"], after["redeemed_total"]) == (20, 0, 30)
    kinds = [(e["kind"], e["amount"]) for e in await api.entries(rider)]
    assert kinds[:2] == [("redeem", 0), ("hold", -30)]
