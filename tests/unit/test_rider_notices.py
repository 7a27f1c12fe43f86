"""Rider notices, pure: which events make which notice, the awards summed per rider, the sentences in
Chinese and English, the gateway's JSON; and the local gateway's checks of what it is sent."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from libs.ledger.lot_store import Warning
from libs.platform.auth import Role
from libs.platform.errors import DomainError
from libs.platform.settings import LOCAL_NOTIFY_GATEWAY_SECRET, Settings
from services.gateway import build_gateway
from services.notifications.domain.kinds import KINDS, MAY_SUBSCRIBE, LedgerEvent, ledger_event, may_hear
from services.notifications.domain.notices import (
    NOTICE_KINDS,
    Award,
    Hold,
    awards_notice,
    hear,
    redemption_notice,
    warn_at,
    worth_warning,
)
from services.notifications.domain.subscriptions import allowed_kinds
from services.points.domain.lapsing import warning_event

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
CATEGORIES = ["volunteer_service", "safe_riding", "civic_practice", "honors"]


def entry(kind: str, amount: int, at: datetime = NOW, category: str | None = "volunteer_service") -> LedgerEvent:
    event = ledger_event(
        {
            "id": f"entry-{kind}-{amount}-{at.timestamp()}",
            "type": f"points.{kind}.recorded",
            "subject": "rider-1",
            "time": at.isoformat(),
            "data": {"kind": kind, "amount": amount, "category": category},
        }
    )
    assert event is not None
    return event


def redemption(status: str, at: datetime = NOW, expires_at: datetime = NOW + DAY) -> LedgerEvent:
    event = ledger_event(
        {
            "id": f"redemption-r1-{status}",
            "type": f"redemption.{status}",
            "subject": "rider-1",
            "time": at.isoformat(),
            "data": {"redemption_id": "r1", "partner_id": "p1", "cost": 30, "expires_at": expires_at.isoformat()},
        }
    )
    assert event is not None
    return event


HOLD = Hold("r1", "rider-1", 30, datetime(2026, 12, 2, 12, 10, tzinfo=UTC), "午餐套餐", "老王面馆")


# --- which events make which notice ---------------------------------------------------------------


def test_an_award_of_points_is_heard_and_one_of_none_is_not() -> None:
    heard = hear([entry("award", 30), entry("award", 0), entry("adjustment", 5)], NOW, DAY)
    assert [(a.rider_id, a.category, a.points) for a in heard.awards] == [("rider-1", "volunteer_service", 30)]


def test_an_event_older_than_the_stale_limit_makes_no_notice() -> None:
    heard = hear([entry("award", 30, at=NOW - 2 * DAY), redemption("confirmed", at=NOW - 2 * DAY)], NOW, DAY)
    assert heard.awards == []
    assert heard.told == []
    assert heard.ended == ["r1"]  # its hold is still no longer open: no warning for it


def test_a_hold_is_timed_and_its_end_told_or_not() -> None:
    assert hear([redemption("held")], NOW, DAY).holds == [("r1", "rider-1", NOW + DAY)]
    assert hear([redemption("held", expires_at=NOW - timedelta(seconds=1))], NOW, DAY).holds == []
    for status, told in (("confirmed", True), ("expired", True), ("cancelled", False)):
        heard = hear([redemption(status)], NOW, DAY)
        assert heard.ended == ["r1"]
        assert heard.told == ([("r1", f"redemption.{status}", NOW)] if told else [])


def test_an_event_without_a_readable_time_counts_as_heard_now() -> None:
    event = LedgerEvent("e-1", "points.awarded", "rider-1", {"amount": 5, "category": None}, time="yesterday")
    assert [a.points for a in hear([event], NOW, DAY).awards] == [5]


def test_a_hold_shorter_than_the_warning_time_is_warned_at_once_and_never_after_it_expired() -> None:
    expires = NOW + timedelta(minutes=20)
    assert warn_at(expires, timedelta(hours=1)) == expires - timedelta(hours=1)
    assert worth_warning(expires, NOW)
    assert not worth_warning(NOW, NOW)


# --- what the rider reads -------------------------------------------------------------------------


def test_awards_are_summed_by_category_the_largest_first() -> None:
    notice = awards_notice(
        "k",
        [
            Award("e1", "rider-1", "safe_riding", 10),
            Award("e2", "rider-1", "volunteer_service", 30),
            Award("e3", "rider-1", "volunteer_service", 5),
        ],
        NOW,
    )
    assert notice.text == "您获得 45 积分：志愿服务 35、安全骑行 10。"
    assert notice.text_en == "You earned 45 points: volunteer service 35, safe riding 10."
    assert (notice.kind, notice.rider_id, notice.key) == ("points.awarded", "rider-1", "k")


def test_one_category_reads_as_one_sentence_and_one_point_as_one() -> None:
    notice = awards_notice("k", [Award("e1", "rider-1", "honors", 1)], NOW)
    assert notice.text == "您因荣誉表彰获得 1 积分。"
    assert notice.text_en == "You earned 1 point for honors."


def test_an_awards_notice_is_of_one_rider() -> None:
    with pytest.raises(ValueError, match="one rider"):
        awards_notice("k", [Award("e1", "a", None, 1), Award("e2", "b", None, 1)], NOW)
    with pytest.raises(ValueError, match="at least one"):
        awards_notice("k", [], NOW)


@given(st.lists(st.tuples(st.sampled_from(CATEGORIES), st.integers(1, 10_000)), min_size=1, max_size=30))
def test_the_sum_and_every_categorys_share_are_in_the_notice(awards: list[tuple[str, int]]) -> None:
    notice = awards_notice("k", [Award(f"e{i}", "r", c, p) for i, (c, p) in enumerate(awards)], NOW)
    assert f"{sum(p for _, p in awards)} 积分" in notice.text
    assert f"{sum(p for _, p in awards)} point" in notice.text_en
    if len({c for c, _ in awards}) > 1:
        for category in {c for c, _ in awards}:
            assert f" {sum(p for c, p in awards if c == category)}" in notice.text


def test_a_redemption_confirmed_expiring_and_expired_in_both_languages() -> None:
    texts = {
        k: redemption_notice(k, HOLD, NOW) for k in ("confirmed", "expiring", "expired") for k in [f"redemption.{k}"]
    }
    assert texts["redemption.confirmed"].text == "您在老王面馆兑换的「午餐套餐」已确认，使用 30 积分。"
    assert texts["redemption.expiring"].text == (
        "您在老王面馆兑换「午餐套餐」的兑换码将于 12月2日 20:10 过期，请在此前使用；过期后 30 积分将退回。"
    )
    assert texts["redemption.expired"].text == "您在老王面馆兑换「午餐套餐」的兑换码已过期，30 积分已退回您的账户。"
    assert texts["redemption.expiring"].text_en == (
        "Your code for “午餐套餐” at 老王面馆 expires at Dec 2, 20:10: use it before then, "
        "or the 30 points come back to you."
    )
    assert {n.key for n in texts.values()} == {
        "redemption.confirmed-r1",
        "redemption.expiring-r1",
        "redemption.expired-r1",
    }


def test_there_is_no_notice_of_a_held_code() -> None:
    with pytest.raises(ValueError, match="no redemption notice"):
        redemption_notice("redemption.held", HOLD, NOW)


def test_the_gateway_reads_exactly_the_contracts_fields() -> None:
    body = orjson.loads(redemption_notice("redemption.confirmed", HOLD, NOW).body())
    assert set(body) == {"rider_id", "kind", "text", "text_en", "at"}
    assert body["at"] == "2026-12-02T12:00:00Z"


# --- points about to lapse -----------------------------------------------------------------------


def lapsing(
    points: int, on: date = date(2027, 12, 31), at: datetime = NOW, lot_ids: tuple[int, ...] = (7,)
) -> LedgerEvent:
    """The points worker's own ``points.lapsing`` event, as it reaches the topic (JSON and back)."""
    cloud_event = orjson.loads(orjson.dumps(warning_event(Warning("rider-1", on, points, lot_ids), at)))
    event = ledger_event(cloud_event)
    assert event is not None
    return event


def test_points_about_to_lapse_are_told_at_once_in_both_languages() -> None:
    event = lapsing(30)
    (notice,) = hear([event], NOW, DAY).notices
    assert notice.text == "您有 30 分将于 2027年12月31日 过期，请及时使用。"
    assert notice.text_en == "30 points of yours lapse after December 31, 2027: use them before then."
    assert (notice.kind, notice.rider_id, notice.at) == ("points.lapsing", "rider-1", NOW)
    assert notice.key == f"points.lapsing-{event.event_id}"
    assert event.event_id.startswith("lapsing-")


def test_one_point_about_to_lapse_reads_as_one() -> None:
    (notice,) = hear([lapsing(1, on=date(2027, 1, 5))], NOW, DAY).notices
    assert notice.text == "您有 1 分将于 2027年1月5日 过期，请及时使用。"
    assert notice.text_en == "1 point of yours lapses after January 5, 2027: use it before then."


def test_a_lapsing_warnings_key_is_the_same_for_the_same_event_and_another_for_another() -> None:
    again = [hear([lapsing(30)], NOW + timedelta(minutes=m), DAY).notices[0].key for m in (0, 5)]
    assert again[0] == again[1]  # a relay's retry, or the batch read again: the gateway takes it once
    other_day = hear([lapsing(30, on=date(2027, 12, 30))], NOW, DAY).notices[0].key
    later_lot = hear([lapsing(30, lot_ids=(8,))], NOW, DAY).notices[0].key
    assert len({again[0], other_day, later_lot}) == 3


def test_a_lapsing_warning_heard_late_is_told_while_its_day_is_ahead_and_never_after() -> None:
    # The points worker warns of a lot once: a warning heard late (the notifications were down) still holds.
    assert len(hear([lapsing(30, at=NOW - 10 * DAY)], NOW, DAY).notices) == 1
    assert len(hear([lapsing(30, on=date(2026, 12, 2), at=NOW - 29 * DAY)], NOW, DAY).notices) == 1  # today
    assert hear([lapsing(30, on=date(2026, 12, 1), at=NOW - 30 * DAY)], NOW, DAY).notices == []  # gone by


@pytest.mark.parametrize(
    "data",
    [
        {"on": "2027-12-31"},
        {"on": "2027-12-31", "points": 0},
        {"on": "2027-12-31", "points": "30"},
        {"on": "2027-12-31", "points": True},
        {"on": "31.12.2027", "points": 30},
        {"on": None, "points": 30},
    ],
)
def test_a_lapsing_warning_that_does_not_read_makes_no_notice(data: dict[str, Any]) -> None:
    event = LedgerEvent("lapsing-x", "points.lapsing", "rider-1", data, NOW.isoformat())
    assert hear([event], NOW, DAY).notices == []


def test_points_lapsing_is_a_notice_kind_that_no_webhook_may_ask_for_or_hear() -> None:
    event = lapsing(30)
    assert event.kind == "points.lapsing"
    assert "points.lapsing" in NOTICE_KINDS
    assert "points.lapsing" not in KINDS  # API.md's webhook kinds; the lapse itself is points.lapsed
    assert all("points.lapsing" not in kinds for kinds in MAY_SUBSCRIBE.values())
    with pytest.raises(DomainError, match=r"not to points\.lapsing"):
        allowed_kinds(Role.OPERATOR, ["points.lapsed", "points.lapsing"])
    # Not even an operator's subscription whose row names it (written by hand, say) hears of it.
    assert not any(may_hear(role, "ops", event, None) for role in Role)


# --- settings -------------------------------------------------------------------------------------


PRODUCTION: dict[str, Any] = {
    "env": "production",
    "auth_issuer": "https://id.example",
    "auth_audience": "https://api.example",
}


def test_notices_go_to_the_local_gateway_unless_told_otherwise_and_nowhere_by_default_in_production() -> None:
    assert Settings(env="local", notify_gateway_port=8016).gateway_url == "http://127.0.0.1:8016/notices"
    assert Settings(**PRODUCTION).gateway_url is None
    assert Settings(notify_gateway_url="https://sms.example/n").gateway_url == "https://sms.example/n"


def test_production_refuses_the_public_local_gateway_secret() -> None:
    with pytest.raises(ValueError, match="WARMBEE_NOTIFY_GATEWAY_SECRET"):
        Settings(**PRODUCTION, notify_gateway_url="https://sms.example/n")


# --- the local gateway ----------------------------------------------------------------------------


def signed(body: str, message_id: str, secret: str = LOCAL_NOTIFY_GATEWAY_SECRET) -> dict[str, str]:
    at = datetime.now(UTC)
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, at, body),
    }


async def post_all(posts: list[tuple[str, dict[str, str]]]) -> tuple[list[int], list[Any], list[str]]:
    printed: list[str] = []
    app = build_gateway(LOCAL_NOTIFY_GATEWAY_SECRET, printed.append)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as http:
        statuses = [(await http.post("/notices", content=b, headers=h)).status_code for b, h in posts]
        listed = (await http.get("/notices", params={"rider_id": "rider-1"})).json()
    return statuses, listed, printed


async def test_the_gateway_prints_a_signed_notice_once_however_often_it_is_posted() -> None:
    body = redemption_notice("redemption.confirmed", HOLD, NOW).body()
    statuses, listed, printed = await post_all([(body, signed(body, "n-1")), (body, signed(body, "n-1"))])
    assert statuses == [204, 204]
    assert [n["id"] for n in listed] == ["n-1"]
    assert printed == [
        "【通知】rider-1 redemption.confirmed: 您在老王面馆兑换的「午餐套餐」已确认，使用 30 积分。"
        "  (Your redemption of “午餐套餐” at 老王面馆 is confirmed: 30 points spent.)"
    ]


async def test_the_gateway_refuses_a_wrong_signature_and_what_is_not_a_notice() -> None:
    body = redemption_notice("redemption.confirmed", HOLD, NOW).body()
    other = "whsec_" + "b3RoZXItc2VjcmV0LW9mLWFub3RoZXItZ2F0ZXdheQ=="
    statuses, listed, printed = await post_all(
        [(body, signed(body, "n-1", other)), ('{"rider_id": 1}', signed('{"rider_id": 1}', "n-2")), (body, {})]
    )
    assert statuses == [401, 422, 401]
    assert listed == []
    assert printed == []


async def test_the_gateway_refuses_a_body_over_64_kib_without_reading_it_whole() -> None:
    big = "x" * (2 * 1024 * 1024)
    statuses, listed, printed = await post_all([(big, signed(big, "n-3"))])
    assert statuses == [413]
    assert listed == []
    assert printed == []
