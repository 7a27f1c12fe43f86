"""Rider notices end to end: the real stack, its faust notifications worker and the local gateway
(`warmbee gateway`, which takes a notice only when its Standard Webhooks signature checks). The e2e
stack sums a rider's awards over 10 s (WARMBEE_NOTICE_AWARD_WINDOW_S in tests/conftest.py), the 180 s
default's shape in a test's time. Points about to lapse: a lot seeded straight into the stack's
ledger, the lapse job's warning made by the test (the stack's job runs rarely), the notice at the gateway."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from libs.i18n.reasons import Reason
from libs.ledger.keys import PROGRAMME_ADJUSTMENTS, rider_available
from libs.ledger.model import EntryKind, LedgerTransaction, LotTerms, transfer
from libs.ledger.store import LedgerStore
from libs.platform.db import Database
from libs.platform.localstack import LocalStack
from services.points.domain.lapsing import today
from services.points.lapsing import warn_riders
from tests.e2e.conftest import Api, eventually, shift
from tests.e2e.test_redemption import catalogue_entry, confirm_code, grant, new_hold, reserve, short_ttl_redemption

pytestmark = pytest.mark.e2e


async def notices(api: Api, rider: str) -> list[dict[str, Any]]:
    r = await api.http.get(
        f"http://{api.settings.host}:{api.settings.notify_gateway_port}/notices", params={"rider_id": rider}
    )
    assert r.status_code == 200, r.text
    return list(r.json())


async def notice_of(api: Api, rider: str, kind: str) -> dict[str, Any]:
    async def arrived() -> dict[str, Any] | None:
        return next((n for n in await notices(api, rider) if n["kind"] == kind), None)

    return await eventually(arrived, 120, f"a {kind} notice for {rider} at the gateway")


async def test_a_riders_awards_reach_the_gateway_as_one_notice_of_their_sum(api: Api, rider: str) -> None:
    shifts = [shift(rider, 2), shift(rider, 1)]  # 2 h and 1 h of volunteering: 20 and 10 points
    r = await api.publish(shifts, batch=True)
    assert r.status_code == 202, r.text
    for event in shifts:
        await api.wait_scored("volunteer-platform", event["id"])

    notice = await notice_of(api, rider, "points.awarded")

    assert notice["text"] == "您因志愿服务获得 30 积分。"
    assert notice["text_en"] == "You earned 30 points for volunteer service."
    assert notice["id"].startswith("points.awarded-entry-")  # named by its first award's ledger event
    await asyncio.sleep(3)  # nothing more comes of these two (a second gathering would come at once)
    assert [n["kind"] for n in await notices(api, rider)] == ["points.awarded"]


async def test_a_confirmed_redemption_is_told_to_the_rider(api: Api, rider: str) -> None:
    partner_id, reward_id = await catalogue_entry(api, cost=30)
    await grant(api, rider, 50)
    redemption = await new_hold(api, rider, reward_id)
    confirmed = await confirm_code(api, partner_id, redemption["code"])
    assert confirmed.status_code == 200, confirmed.text

    notice = await notice_of(api, rider, "redemption.confirmed")

    assert notice["text"] == "您在老王面馆兑换的「午餐套餐」已确认，使用 30 积分。"
    assert notice["text_en"] == "Your redemption of “午餐套餐” at 老王面馆 is confirmed: 30 points spent."
    assert notice["id"] == f"redemption.confirmed-{redemption['redemption_id']}"


async def test_a_code_about_to_expire_is_warned_of_and_its_expiry_told(stack: LocalStack, api: Api, rider: str) -> None:
    _, reward_id = await catalogue_entry(api, cost=30)
    await grant(api, rider, 50)
    # Shorter than the hour's warning: warned at once.
    async with short_ttl_redemption(stack, api, "redemption-notices", ttl_s=10) as url:
        reserved = await reserve(api, rider, reward_id, url=url)
        assert reserved.status_code == 201, reserved.text

        expiring = await notice_of(api, rider, "redemption.expiring")
        expired = await notice_of(api, rider, "redemption.expired")

    assert expiring["text"].startswith("您在老王面馆兑换「午餐套餐」的兑换码将于 ")
    assert expiring["text"].endswith(" 过期，请在此前使用；过期后 30 积分将退回。")
    assert expiring["text_en"].startswith("Your code for “午餐套餐” at 老王面馆 expires at ")
    assert expired["text"] == "您在老王面馆兑换「午餐套餐」的兑换码已过期，30 积分已退回您的账户。"
    assert [n["kind"] for n in await notices(api, rider)] == ["redemption.expiring", "redemption.expired"]


async def test_points_about_to_lapse_are_warned_of_at_the_gateway(api: Api, rider: str) -> None:
    day = today(datetime.now(UTC))
    lapses_on = day + timedelta(days=20)
    lot = LedgerTransaction(
        idempotency_key=f"adjustment:e2e-lapsing:{rider}",
        kind=EntryKind.ADJUSTMENT,
        rider_id=rider,
        reason=Reason.of("adjustment", note="seed"),
        postings=transfer(PROGRAMME_ADJUSTMENTS, rider_available(rider), 30),
        actor="e2e",
        lot=LotTerms(awarded_on=day, lapses_on=lapses_on),
    )
    db = Database(api.settings)
    await db.open()
    try:
        appended = await db.run(lambda conn: LedgerStore(conn).append([lot]))
        assert list(appended.recorded) == [lot.idempotency_key]
        # The stack's lapse job runs rarely: its warnings now (its relay puts them on points-ledger).
        while await warn_riders(db, api.settings) > 0:
            pass
    finally:
        await db.close()

    notice = await notice_of(api, rider, "points.lapsing")

    assert notice["text"] == f"您有 30 分将于 {lapses_on.year}年{lapses_on.month}月{lapses_on.day}日 过期，请及时使用。"
    assert (
        notice["text_en"]
        == f"30 points of yours lapse after {lapses_on:%B} {lapses_on.day}, {lapses_on.year}: use them before then."
    )
    assert notice["id"].startswith("points.lapsing-lapsing-")  # the key: the points worker's event id
    assert [n["kind"] for n in await notices(api, rider)] == ["points.lapsing"]
