"""Scoring a Kafka batch on real PostgreSQL, without a broker: the records are built here.

Default rules (warmbee-default, version 1): volunteer service earns 10 points per verified hour, counted
in whole half-hours, capped at 40 points a day and 200 a month, calendar periods in Asia/Shanghai.
Every event is scored exactly once, however often it arrives and by whichever way.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from libs.activity.model import ActivityEvent, load_schemas, validate_event
from libs.ledger.store import LedgerStore
from libs.platform.db import Database
from libs.platform.settings import Settings
from services.events.handlers import Accepted, accept_events
from services.points.entrypoints.jobs import PendingSweep
from services.points.handlers import BatchOutcome, RulesCache, Scorer
from services.points.queries import PointsQueries
from tests.integration.factories import (
    SCHEMAS,
    SOURCE,
    KafkaRecord,
    activity_event,
    awards,
    civic_action,
    counters,
    dead_letters,
    entry_count,
    new_id,
    outbox,
    published,
    record,
    volunteer_shift,
)
from tests.integration.factories import available as available_points

MAY_1 = "2024-05-01T09:00:00+08:00"
DAY_MAY_1 = "volunteer_service:day:2024-05-01"
MONTH_MAY = "volunteer_service:month:2024-05"


# --- factories -------------------------------------------------------------------------------------


@pytest.fixture
def scorer(settings: Settings) -> Scorer:
    return Scorer(settings, SCHEMAS, RulesCache())


def shift(rider: str, hours: Any, time: str = MAY_1, event_id: str | None = None) -> KafkaRecord:
    """A volunteer shift on ``activity-events``, keyed by its rider."""
    return record(volunteer_shift(rider, hours, time=time, event_id=event_id), key=rider)


async def score(db: Database, scorer: Scorer, *records: KafkaRecord) -> BatchOutcome:
    """One consumer batch: one transaction."""
    return await db.run(lambda conn: scorer.score_batch(conn, list(records)))


async def ledger_messages(db: Database, rider: str) -> list[dict[str, Any]]:
    return [orjson.loads(m.value) for m in await published(db, "points-ledger", rider)]


# --- scoring ---------------------------------------------------------------------------------------


async def test_a_shift_of_2_5_hours_earns_25_points(db: Database, scorer: Scorer, rider: str) -> None:
    message = shift(rider, 2.5)

    outcome = await score(db, scorer, message)

    assert [s.points for _, s in outcome.scored] == [25]
    assert await available_points(db, rider) == 25
    async with db.read() as conn:
        [entry] = await LedgerStore(conn).entries(rider, limit=10)
    assert (entry.amount, entry.kind, entry.category) == (25, "award", "volunteer_service")
    assert (entry.rule_id, entry.rule_version) == ("warmbee-default", 1)
    assert entry.reason.render() == "2.5 verified hours = 5 whole half-hours × 5 points = 25 points"


async def test_a_redelivered_batch_changes_nothing(db: Database, scorer: Scorer, rider: str) -> None:
    batch = [shift(rider, 2.5), shift(rider, 1)]
    await score(db, scorer, *batch)
    before = (
        await available_points(db, rider),
        await entry_count(db, rider),
        await counters(db, rider),
        len(await ledger_messages(db, rider)),
    )

    # The consumer crashed after the database commit and before the offset commit: Kafka delivers again.
    outcome = await score(db, scorer, *batch)

    assert outcome.scored == []
    assert outcome.duplicates == 2
    after = (
        await available_points(db, rider),
        await entry_count(db, rider),
        await counters(db, rider),
        len(await ledger_messages(db, rider)),
    )
    assert after == before == (35, 2, {DAY_MAY_1: 35, MONTH_MAY: 35}, 2)


async def test_the_same_event_twice_in_one_batch_is_scored_once(db: Database, scorer: Scorer, rider: str) -> None:
    message = shift(rider, 2)

    outcome = await score(db, scorer, message, message)

    assert len(outcome.scored) == 1
    assert outcome.duplicates == 1
    assert await awards(db, rider) == [20]
    assert await counters(db, rider) == {DAY_MAY_1: 20, MONTH_MAY: 20}


async def test_an_event_accepted_over_http_then_delivered_over_kafka_is_scored_once(
    db: Database, scorer: Scorer, rider: str
) -> None:
    document = volunteer_shift(rider, 2)
    event = activity_event(document)
    first = await accept_events(db, [event], "activity-events")

    await score(db, scorer, record(document, key=rider))
    await score(db, scorer, record(document, key=rider))  # relayed twice: at-least-once
    again = await accept_events(db, [event], "activity-events")

    assert first == Accepted(accepted=1, duplicates=0)
    assert again == Accepted(accepted=0, duplicates=1)
    assert await awards(db, rider) == [20]
    [relayed] = await outbox(db, "activity-events", rider)
    assert orjson.loads(relayed["value"]) == document


# --- caps --------------------------------------------------------------------------------------------


async def test_a_shift_crossing_the_daily_cap_of_40_earns_what_is_left(
    db: Database, scorer: Scorer, rider: str
) -> None:
    await score(db, scorer, shift(rider, 3, time="2024-05-01T09:00:00+08:00"))

    outcome = await score(db, scorer, shift(rider, 2, time="2024-05-01T15:00:00+08:00"))

    [(_, clipped)] = outcome.scored
    assert await awards(db, rider) == [30, 10]
    assert clipped.reason.render() == "daily cap of 40 points for volunteer service reached: 10 of 20 awarded"
    assert await counters(db, rider) == {DAY_MAY_1: 40, MONTH_MAY: 40}


async def test_a_shift_at_the_daily_cap_earns_0_and_is_recorded_with_the_reason(
    db: Database, scorer: Scorer, rider: str
) -> None:
    await score(db, scorer, shift(rider, 3, time="2024-05-01T09:00:00+08:00"))  # 30
    await score(db, scorer, shift(rider, 2, time="2024-05-01T15:00:00+08:00"))  # 10: the cap of 40

    await score(db, scorer, shift(rider, 1, time="2024-05-01T18:00:00+08:00"))

    assert await awards(db, rider) == [30, 10, 0]
    async with db.read() as conn:
        newest = (await LedgerStore(conn).entries(rider, limit=1))[0]
    assert newest.reason.render() == "daily cap of 40 points for volunteer service already reached: 0 of 10 awarded"
    assert await available_points(db, rider) == 40


async def test_the_next_day_in_shanghai_earns_again(db: Database, scorer: Scorer, rider: str) -> None:
    await score(db, scorer, shift(rider, 4, time="2024-05-01T09:00:00+08:00"))

    # 16:30 UTC on 1 May is 00:30 on 2 May in Shanghai: a new day there.
    await score(db, scorer, shift(rider, 2, time="2024-05-01T16:30:00Z"))

    assert await awards(db, rider) == [40, 20]
    assert await counters(db, rider) == {
        "volunteer_service:day:2024-05-01": 40,
        "volunteer_service:day:2024-05-02": 20,
        MONTH_MAY: 60,
    }


async def test_the_monthly_cap_of_200_clips_and_then_stops_awards(db: Database, scorer: Scorer, rider: str) -> None:
    for day in range(1, 5):  # 4 days × 40 = 160
        await score(db, scorer, shift(rider, 4, time=f"2024-05-0{day}T09:00:00+08:00"))
    await score(db, scorer, shift(rider, 3, time="2024-05-05T09:00:00+08:00"))  # 190

    clipped = await score(db, scorer, shift(rider, 2, time="2024-05-06T09:00:00+08:00"))
    stopped = await score(db, scorer, shift(rider, 2, time="2024-05-07T09:00:00+08:00"))
    next_month = await score(db, scorer, shift(rider, 2, time="2024-06-01T09:00:00+08:00"))

    assert await awards(db, rider) == [40, 40, 40, 40, 30, 10, 0, 20]
    assert (
        clipped.scored[0][1].reason.render()
        == "monthly cap of 200 points for volunteer service reached: 10 of 20 awarded"
    )
    assert stopped.scored[0][1].reason.render() == (
        "monthly cap of 200 points for volunteer service already reached: 0 of 20 awarded"
    )
    assert next_month.scored[0][1].points == 20
    assert (await counters(db, rider))[MONTH_MAY] == 200


async def test_concurrent_batches_for_one_rider_and_day_award_exactly_the_daily_cap_of_40(
    db: Database, scorer: Scorer, rider: str
) -> None:
    morning, evening = shift(rider, 3), shift(rider, 3, time="2024-05-01T18:00:00+08:00")

    await asyncio.gather(score(db, scorer, morning), score(db, scorer, evening))

    assert sorted(await awards(db, rider)) == [10, 30]
    assert await available_points(db, rider) == 40
    assert await counters(db, rider) == {DAY_MAY_1: 40, MONTH_MAY: 40}


# --- dead letters ------------------------------------------------------------------------------------


def invalid_messages(rider: str) -> dict[str, KafkaRecord]:
    """Messages that fail validation, by the field their dead letter must name."""
    unknown_type = volunteer_shift(rider, 2) | {"type": "volunteer.shift.started"}
    return {
        "value: is not valid JSON": record(b'{"specversion": "1.0", ', key=rider),
        "value: is not valid UTF-8": record(b"\xff\xfe", key=rider),
        "event: must be a JSON object": record([volunteer_shift(rider, 2)], key=rider),
        "type: 'volunteer.shift.started' is not one of": record(unknown_type, key=rider),
        "data.hours: must be greater than 0, got -1": record(volunteer_shift(rider, -1), key=rider),
        "time: 9999-05-01T09:00:00+08:00 is in the future": record(
            volunteer_shift(rider, 2, time="9999-05-01T09:00:00+08:00"), key=rider
        ),
    }


async def test_invalid_messages_are_dead_lettered_and_valid_ones_in_the_batch_scored(
    db: Database, scorer: Scorer, rider: str
) -> None:
    invalid = invalid_messages(rider)
    valid = shift(rider, 2)

    outcome = await score(db, scorer, valid, *invalid.values())

    assert await awards(db, rider) == [20]
    assert len(outcome.dead_letters) == 6
    by_offset = {d["offset"]: d for d in await dead_letters(db, rider)}
    for reason, message in invalid.items():
        letter = by_offset[message.offset]
        assert letter["reason"].startswith(reason)
        assert (letter["topic"], letter["partition"], letter["key"]) == ("activity-events", 0, rider)
    not_utf8 = by_offset[invalid["value: is not valid UTF-8"].offset]
    assert (not_utf8["payload"], not_utf8["payload_encoding"], not_utf8["source"]) == ("//4=", "base64", None)
    negative_hours = invalid["data.hours: must be greater than 0, got -1"]
    negative = by_offset[negative_hours.offset]
    assert (negative["source"], negative["event_id"]) == (SOURCE, orjson.loads(negative_hours.value or b"")["id"])
    dlq = await outbox(db, "activity-events-dlq", rider)
    assert len(dlq) == 6
    assert {row["headers"]["warmbee-dead-letter-reason"] for row in dlq} == {d["reason"] for d in by_offset.values()}


async def test_a_redelivered_invalid_batch_adds_no_dead_letters(db: Database, scorer: Scorer, rider: str) -> None:
    batch = list(invalid_messages(rider).values())
    await score(db, scorer, *batch)

    await score(db, scorer, *batch)

    assert len(await dead_letters(db, rider)) == 6
    assert len(await outbox(db, "activity-events-dlq", rider)) == 6


async def test_each_dead_letter_is_told_once_on_points_ledger_for_webhooks_without_its_payload(
    db: Database, scorer: Scorer, rider: str
) -> None:
    invalid = invalid_messages(rider)
    await score(db, scorer, *invalid.values())
    await score(db, scorer, *invalid.values())  # redelivered: kept once, told once

    negative = invalid["data.hours: must be greater than 0, got -1"]
    event_id = orjson.loads(negative.value or b"")["id"]
    (told,) = await outbox(db, "points-ledger", f"{SOURCE}/{event_id}")
    event = orjson.loads(told["value"])
    assert (event["type"], event["subject"], event["source"]) == ("event.dead_lettered", event_id, "warmbee/points")
    assert event["data"]["source"] == SOURCE
    assert event["data"]["reason"].startswith("data.hours: must be greater than 0, got -1")
    assert (event["data"]["received_via"], event["data"]["offset"]) == ("kafka", negative.offset)
    assert "payload" not in event["data"]
    unreadable = await outbox(db, "points-ledger", "/")  # no source or id could be read from these
    assert (
        len(
            [
                r
                for r in unreadable
                if orjson.loads(r["value"])["data"]["offset"] in {m.offset for m in invalid.values()}
            ]
        )
        == 3
    )


async def test_an_event_id_reused_for_other_content_is_dead_lettered_and_the_first_score_stands(
    db: Database, scorer: Scorer, rider: str
) -> None:
    event_id = new_id("shift")
    await score(db, scorer, shift(rider, 2, event_id=event_id))

    await score(db, scorer, shift(rider, 3, event_id=event_id))

    assert await awards(db, rider) == [20]
    [letter] = await dead_letters(db, rider)
    assert letter["reason"].startswith("id: already used by this source for a different event")
    assert (letter["source"], letter["event_id"]) == (SOURCE, event_id)
    async with db.read() as conn:
        status = await PointsQueries(conn).event_status(SOURCE, event_id)
    assert status is not None
    assert (status.status, status.points) == ("scored", 20)


# --- categories without rules, and status ----------------------------------------------------------


async def test_a_civic_action_is_scored_by_its_own_category_rule(db: Database, scorer: Scorer, rider: str) -> None:
    document = civic_action(rider)

    outcome = await score(db, scorer, record(document, key=rider))

    assert [(e.event_id, s.points) for e, s in outcome.scored] == [(document["id"], 5)]
    async with db.read() as conn:
        status = await PointsQueries(conn).event_status("grid-office", document["id"])
    assert status is not None
    assert (status.status, status.category, status.points) == ("scored", "civic_practice", 5)


async def test_an_event_recorded_but_never_delivered_is_pending_until_the_sweep_scores_it(
    db: Database, scorer: Scorer, rider: str, settings: Settings
) -> None:
    event = validate_event(civic_action(rider), load_schemas(), datetime.now(UTC))
    assert isinstance(event, ActivityEvent)
    await accept_events(db, [event], "activity-events")
    async with db.read() as conn:
        before = await PointsQueries(conn).event_status(event.source, event.event_id)

    sweep = PendingSweep(db, scorer, settings.model_copy(update={"pending_after_s": 0.001}))
    await asyncio.sleep(0.01)
    outcome = await sweep.sweep()

    assert before is not None
    assert before.status == "pending"
    assert (event.event_id, 5) in [(e.event_id, s.points) for e, s in outcome.scored]
    async with db.read() as conn:
        after = await PointsQueries(conn).event_status(event.source, event.event_id)
    assert after is not None
    assert (after.status, after.points) == ("scored", 5)


async def test_the_status_of_a_scored_event_gives_its_points_and_rule(db: Database, scorer: Scorer, rider: str) -> None:
    event_id = new_id("shift")
    await score(db, scorer, shift(rider, 1.5, event_id=event_id))

    async with db.read() as conn:
        status = await PointsQueries(conn).event_status(SOURCE, event_id)

    assert status is not None
    assert (status.status, status.points, status.category) == ("scored", 15, "volunteer_service")
    assert (status.rule_id, status.rule_version, status.rider_id) == ("warmbee-default", 1, rider)


async def test_the_status_of_an_unknown_event_is_none(db: Database) -> None:
    async with db.read() as conn:
        assert await PointsQueries(conn).event_status(SOURCE, new_id("never-sent")) is None


# --- what the system publishes -------------------------------------------------------------------------


async def test_every_award_writes_one_points_ledger_message_with_its_amount(
    db: Database, scorer: Scorer, rider: str
) -> None:
    # 3 h, 2 h and 1 h on one day: 30, then 10 (the daily cap of 40), then 0.
    await score(db, scorer, shift(rider, 3), shift(rider, 2), shift(rider, 1))

    async with db.read() as conn:
        entries = list(reversed(await LedgerStore(conn).entries(rider, limit=10)))
    messages = await ledger_messages(db, rider)
    assert [e.amount for e in entries] == [30, 10, 0]
    assert [m["data"]["amount"] for m in messages] == [30, 10, 0]
    assert [m["data"]["entry_id"] for m in messages] == [e.entry_id for e in entries]
    assert [m["data"]["event_id"] for m in messages] == [e.event_id for e in entries]
    assert {m["type"] for m in messages} == {"points.award.recorded"}
    assert {m["subject"] for m in messages} == {rider}
