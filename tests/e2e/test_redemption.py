"""Redemption end to end: earn, reserve, confirm at the counter; cancel; expiry; who may do what;
the catalogue, the partner's list and the settlement."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from httpx import Response

from libs.platform.auth import Role
from libs.platform.localstack import LocalStack
from services.redemption.domain.holds import month_of
from tests.conftest import SPARE_PORTS
from tests.e2e.conftest import Api, eventually

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


# --- helpers of the tests below ---------------------------------------------------------------------

SHORT_TTL_PORT = SPARE_PORTS[2]


async def reserve(api: Api, rider: str, reward_id: str, key: str | None = None, url: str | None = None) -> Response:
    return await api.http.post(
        f"{url or api.redemption_url}/v1/redemptions",
        json={"reward_id": reward_id},
        headers={**api.token(Role.RIDER, rider), "idempotency-key": key or f"k-{uuid.uuid4().hex}"},
    )


async def new_hold(api: Api, rider: str, reward_id: str) -> dict[str, Any]:
    r = await reserve(api, rider, reward_id)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def confirm_code(api: Api, partner_id: str, code: str) -> Response:
    return await api.http.post(
        f"{api.redemption_url}/v1/partner/confirmations",
        json={"code": code},
        headers=api.token(Role.PARTNER, partner_id),
    )


async def available_and_held(api: Api, rider: str) -> tuple[int, int]:
    b = await api.balance(rider)
    return b["available"], b["held"]


async def add_reward(api: Api, partner_id: str, cost: int) -> str:
    reward_id = f"rw-{uuid.uuid4().hex[:8]}"
    r = await api.http.post(
        f"{api.redemption_url}/v1/rewards",
        headers=api.token(Role.OPERATOR, "ops-test"),
        json={"reward_id": reward_id, "partner_id": partner_id, "title": "体检 check-up", "cost": cost, "active": True},
    )
    assert r.status_code == 201, r.text
    return reward_id


async def ready(api: Api, url: str) -> bool:
    try:
        return (await api.http.get(url)).status_code == 200
    except httpx.TransportError:
        return False


@contextlib.asynccontextmanager
async def short_ttl_redemption(stack: LocalStack, api: Api, instance: str, ttl_s: int) -> AsyncIterator[str]:
    """A second redemption instance whose holds expire after ``ttl_s``, swept every 0.5 s: its URL."""
    url = f"http://{api.settings.host}:{SHORT_TTL_PORT}"
    env = {
        "WARMBEE_REDEMPTION_PORT": str(SHORT_TTL_PORT),
        "WARMBEE_REDEMPTION_HOLD_TTL_S": str(ttl_s),
        "WARMBEE_REDEMPTION_EXPIRY_SWEEP_S": "0.5",
    }
    stack.start_service("redemption", env, instance=instance)
    try:
        await eventually(lambda: ready(api, f"{url}/readyz"), 60, f"the {ttl_s} s TTL redemption instance ready")
        yield url
    finally:
        await asyncio.to_thread(stack.stop, instance)


def this_month() -> str:
    return month_of(datetime.now(UTC))


# --- cancel and expiry -----------------------------------------------------------------------------


async def test_a_cancelled_hold_gives_the_points_back_and_the_history_says_why(api: Api, rider: str) -> None:
    _, reward_id = await catalogue_entry(api, cost=30)
    await grant(api, rider, 50)
    redemption = await new_hold(api, rider, reward_id)

    cancelled = await api.http.post(
        f"{api.redemption_url}/v1/redemptions/{redemption['redemption_id']}/cancel",
        headers=api.token(Role.RIDER, rider),
    )

    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert await available_and_held(api, rider) == (50, 0)
    release, hold = (await api.entries(rider))[:2]
    assert (hold["kind"], hold["amount"]) == ("hold", -30)
    assert (release["kind"], release["amount"]) == ("release", 30)
    assert hold["reason"] == "30 points held for 午餐套餐 at 老王面馆"
    assert release["reason"] == "redemption of 午餐套餐 cancelled: 30 points returned"


async def test_a_hold_not_confirmed_in_its_2_s_ttl_expires_and_the_points_come_back(
    stack: LocalStack, api: Api, rider: str
) -> None:
    _, reward_id = await catalogue_entry(api, cost=30)
    await grant(api, rider, 50)
    async with short_ttl_redemption(stack, api, "redemption-short-ttl", ttl_s=2) as short_ttl_url:
        reserved = await reserve(api, rider, reward_id, url=short_ttl_url)
        assert reserved.status_code == 201, reserved.text
        redemption_id = reserved.json()["redemption_id"]
        assert await available_and_held(api, rider) == (20, 30)

        async def expired() -> dict[str, Any] | None:
            r = await api.http.get(
                f"{api.redemption_url}/v1/redemptions/{redemption_id}", headers=api.token(Role.RIDER, rider)
            )
            return dict(r.json()) if r.json()["status"] == "expired" else None

        redemption = await eventually(expired, 10, f"redemption {redemption_id} expired")

    assert redemption["code"] is None
    assert await available_and_held(api, rider) == (50, 0)
    newest = (await api.entries(rider))[0]
    assert (newest["kind"], newest["amount"]) == ("expire", 30)


# --- the counter -----------------------------------------------------------------------------------


async def test_a_code_confirmed_at_another_partner_is_404_and_debits_nothing(api: Api, rider: str) -> None:
    _, reward_id = await catalogue_entry(api, cost=30)
    stranger, _ = await catalogue_entry(api, cost=10)
    await grant(api, rider, 50)
    redemption = await new_hold(api, rider, reward_id)

    r = await confirm_code(api, stranger, redemption["code"])

    assert r.status_code == 404, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith("/code-unknown")
    b = await api.balance(rider)
    assert (b["available"], b["held"], b["redeemed_total"]) == (20, 30, 0)


async def test_a_code_confirmed_twice_is_409_already_confirmed_and_paid_once(api: Api, rider: str) -> None:
    partner_id, reward_id = await catalogue_entry(api, cost=30)
    await grant(api, rider, 50)
    redemption = await new_hold(api, rider, reward_id)
    first = await confirm_code(api, partner_id, redemption["code"])

    again = await confirm_code(api, partner_id, redemption["code"])

    assert first.status_code == 200, first.text
    assert again.status_code == 409, again.text
    assert again.json()["type"].endswith("/already-confirmed")
    b = await api.balance(rider)
    assert (b["available"], b["held"], b["redeemed_total"]) == (20, 0, 30)


async def test_a_partner_may_type_the_code_with_dashes_in_lower_case(api: Api, rider: str) -> None:
    partner_id, reward_id = await catalogue_entry(api, cost=30)
    await grant(api, rider, 50)
    code = (await new_hold(api, rider, reward_id))["code"]

    r = await confirm_code(api, partner_id, f"{code[:4].lower()}-{code[4:].lower()}")

    assert r.status_code == 200, r.text
    assert r.json()["status"] == "confirmed"


# --- idempotency and who may do what ---------------------------------------------------------------


async def test_the_same_idempotency_key_twice_returns_the_same_redemption_and_holds_once(api: Api, rider: str) -> None:
    _, reward_id = await catalogue_entry(api, cost=30)
    await grant(api, rider, 100)

    first = await reserve(api, rider, reward_id, key="same-key")
    again = await reserve(api, rider, reward_id, key="same-key")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["redemption_id"] == first.json()["redemption_id"]
    assert await available_and_held(api, rider) == (70, 30)


async def test_a_reserve_without_an_idempotency_key_is_422_problem_json(api: Api, rider: str) -> None:
    _, reward_id = await catalogue_entry(api, cost=30)
    await grant(api, rider, 100)

    r = await api.http.post(
        f"{api.redemption_url}/v1/redemptions", json={"reward_id": reward_id}, headers=api.token(Role.RIDER, rider)
    )

    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["type"].endswith("/idempotency-key-required")
    assert problem["detail"].startswith("Idempotency-Key:")
    assert await available_and_held(api, rider) == (100, 0)


async def test_a_rider_cannot_see_another_riders_redemption(api: Api, rider: str) -> None:
    _, reward_id = await catalogue_entry(api, cost=30)
    await grant(api, rider, 50)
    redemption = await new_hold(api, rider, reward_id)

    r = await api.http.get(
        f"{api.redemption_url}/v1/redemptions/{redemption['redemption_id']}",
        headers=api.token(Role.RIDER, f"rider-other-{uuid.uuid4().hex[:8]}"),
    )

    assert r.status_code == 404, r.text
    assert r.json()["type"].endswith("/redemption-unknown")


async def test_a_partner_token_cannot_reserve(api: Api) -> None:
    partner_id, reward_id = await catalogue_entry(api, cost=30)

    r = await api.http.post(
        f"{api.redemption_url}/v1/redemptions",
        json={"reward_id": reward_id},
        headers={**api.token(Role.PARTNER, partner_id), "idempotency-key": "k1"},
    )

    assert r.status_code == 403, r.text
    assert r.json()["type"].endswith("/forbidden")


# --- catalogue, partner lists and settlement -------------------------------------------------------


async def test_the_catalogue_shows_the_stock_left_this_month(api: Api, rider: str) -> None:
    _, limited = await catalogue_entry(api, cost=30, stock_per_month=5)
    _, unlimited = await catalogue_entry(api, cost=30)
    await grant(api, rider, 50)
    await new_hold(api, rider, limited)

    r = await api.http.get(f"{api.redemption_url}/v1/rewards", headers=api.token(Role.RIDER, rider))

    assert r.status_code == 200, r.text
    items = {i["reward_id"]: i for i in r.json()["items"]}
    assert (items[limited]["stock_per_month"], items[limited]["stock_left"]) == (5, 4)
    assert (items[unlimited]["stock_per_month"], items[unlimited]["stock_left"]) == (None, None)
    assert items[limited]["partner_name"] == "老王面馆"


async def test_the_partner_settlement_of_this_month_is_the_sum_of_the_confirmed_costs(api: Api, rider: str) -> None:
    partner_id, lunch = await catalogue_entry(api, cost=30)
    checkup = await add_reward(api, partner_id, cost=45)
    await grant(api, rider, 200)
    confirmed = [await new_hold(api, rider, lunch), await new_hold(api, rider, checkup)]
    for redemption in confirmed:
        assert (await confirm_code(api, partner_id, redemption["code"])).status_code == 200
    await new_hold(api, rider, lunch)  # held, not confirmed: not settled

    r = await api.http.get(
        f"{api.redemption_url}/v1/partner/settlement",
        params={"month": this_month()},
        headers=api.token(Role.PARTNER, partner_id),
    )

    assert r.status_code == 200, r.text
    settlement = r.json()
    assert (settlement["partner_id"], settlement["month"]) == (partner_id, this_month())
    assert (settlement["redemptions"], settlement["points_total"]) == (2, 30 + 45)
    assert {i["redemption_id"] for i in settlement["items"]} == {c["redemption_id"] for c in confirmed}


async def test_the_partner_lists_its_confirmed_redemptions(api: Api, rider: str) -> None:
    partner_id, reward_id = await catalogue_entry(api, cost=30)
    await grant(api, rider, 100)
    confirmed = await new_hold(api, rider, reward_id)
    await confirm_code(api, partner_id, confirmed["code"])
    still_held = await new_hold(api, rider, reward_id)

    r = await api.http.get(
        f"{api.redemption_url}/v1/partner/redemptions",
        params={"status": "confirmed"},
        headers=api.token(Role.PARTNER, partner_id),
    )

    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [(i["redemption_id"], i["status"]) for i in items] == [(confirmed["redemption_id"], "confirmed")]
    assert still_held["redemption_id"] not in {i["redemption_id"] for i in items}
    assert items[0]["code"] is None


async def test_an_operators_settlement_names_the_partner(api: Api, rider: str) -> None:
    partner_id, reward_id = await catalogue_entry(api, cost=30)
    await grant(api, rider, 50)
    await confirm_code(api, partner_id, (await new_hold(api, rider, reward_id))["code"])
    url = f"{api.redemption_url}/v1/partner/settlement"
    operator = api.token(Role.OPERATOR, "ops-test")

    without = await api.http.get(url, params={"month": this_month()}, headers=operator)
    named = await api.http.get(url, params={"month": this_month(), "partner_id": partner_id}, headers=operator)

    assert without.status_code == 422, without.text
    assert without.headers["content-type"] == "application/problem+json"
    assert without.json()["type"].endswith("/partner-required")
    assert named.status_code == 200, named.text
    assert (named.json()["partner_id"], named.json()["points_total"]) == (partner_id, 30)
