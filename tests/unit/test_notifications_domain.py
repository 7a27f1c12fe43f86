"""The notifications service's pure rules: the kind of a points-ledger event, who may hear of it, and
when a failed delivery is tried again."""

from __future__ import annotations

from typing import Any

import pytest

from libs.platform.auth import Role
from services.notifications.domain.kinds import KINDS, MAY_SUBSCRIBE, ledger_event, may_hear
from services.notifications.domain.retries import PAUSES_S, gives_up, next_pause_s


def cloud_event(kind: str, **data: Any) -> dict[str, Any]:
    return {"id": "entry-7", "type": f"points.{kind}.recorded", "subject": "rider-1", "data": {"kind": kind, **data}}


@pytest.mark.parametrize(
    ("entry_kind", "kind"),
    [
        ("award", "points.awarded"),
        ("adjustment", "points.adjusted"),
        ("lapse", "points.lapsed"),
        ("hold", "redemption.held"),
        ("redeem", "redemption.confirmed"),
        ("release", "redemption.cancelled"),
        ("expire", "redemption.expired"),
    ],
)
def test_every_ledger_entry_kind_has_its_webhook_kind(entry_kind: str, kind: str) -> None:
    event = ledger_event(cloud_event(entry_kind))
    assert event is not None
    assert (event.kind, event.event_id, event.rider_id) == (kind, "entry-7", "rider-1")


@pytest.mark.parametrize(
    "odd",
    [
        {},
        {"type": "points.unknown.recorded", "id": "x", "subject": "r", "data": {}},
        {"type": "points.award.recorded", "id": 7, "subject": "r", "data": {}},
        {"type": "points.award.recorded", "id": "x", "subject": "r", "data": "not an object"},
        {"type": None, "id": "x", "subject": "r", "data": {}},
    ],
)
def test_an_event_no_subscriber_can_ask_for_is_none(odd: dict[str, Any]) -> None:
    assert ledger_event(odd) is None


def test_a_partner_hears_only_of_its_own_redemptions_and_a_source_of_its_own_events() -> None:
    hold = ledger_event(cloud_event("hold", event_id="red-1", source="warmbee/redemption"))
    award = ledger_event(cloud_event("award", event_id="e-1", source="grid-office"))
    assert hold is not None
    assert award is not None
    assert hold.redemption_id == "red-1"
    assert award.redemption_id is None
    assert may_hear(Role.PARTNER, "noodles", hold, partner_id="noodles")
    assert not may_hear(Role.PARTNER, "barber", hold, partner_id="noodles")
    assert not may_hear(Role.PARTNER, "noodles", award, partner_id=None)
    assert may_hear(Role.SOURCE, "grid-office", award, None)
    assert not may_hear(Role.SOURCE, "volunteer-platform", award, None)
    assert not may_hear(Role.SOURCE, "warmbee/redemption", hold, None)  # a redemption is not a source's event
    assert may_hear(Role.OPERATOR, "ops", hold, "noodles")
    assert not may_hear(Role.RIDER, "rider-1", award, None)


def test_only_operators_partners_and_sources_subscribe() -> None:
    assert MAY_SUBSCRIBE[Role.OPERATOR] == frozenset(KINDS)
    assert all(k.startswith("redemption.") for k in MAY_SUBSCRIBE[Role.PARTNER])
    assert MAY_SUBSCRIBE[Role.SOURCE] == {"points.awarded", "event.dead_lettered"}
    assert Role.RIDER not in MAY_SUBSCRIBE


def test_the_first_retry_is_within_10_s_then_pauses_grow_for_at_least_a_day() -> None:
    assert next_pause_s(1) <= 10
    pauses = [next_pause_s(n) for n in range(1, 40)]
    assert pauses == sorted(pauses)
    assert sum(PAUSES_S) < 24 * 3600 < sum(pauses)  # the last pause repeats until the day is over
    assert next_pause_s(0) == next_pause_s(1)
    assert not gives_up(23 * 3600, 24 * 3600)
    assert gives_up(24 * 3600, 24 * 3600)
