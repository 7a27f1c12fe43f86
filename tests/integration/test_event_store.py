"""The inbox of activity events and the dead letters, on real PostgreSQL.

``(source, id)`` identifies an event forever: the same event again is a duplicate, another event under
an id already used is a conflict, and neither changes what is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from libs.activity.model import ActivityEvent
from libs.activity.store import ActivityStore, DeadLetterInput, RecordResult, Via
from libs.platform.db import Database
from tests.integration.factories import activity_event, new_id, next_offset, volunteer_shift

# --- factories -------------------------------------------------------------------------------------


def shift(
    rider: str, hours: float = 2, event_id: str | None = None, time: str = "2024-05-01T09:00:00+08:00"
) -> ActivityEvent:
    return activity_event(volunteer_shift(rider, hours, time=time, event_id=event_id or new_id("shift")))


def with_hours(event: ActivityEvent, hours: float) -> ActivityEvent:
    """The same id at the same source, saying something else."""
    document = dict(event.document) | {"data": dict(event.data) | {"hours": hours}}
    return activity_event(document)


def dead_letter(rider: str, reason: str, value: bytes = b"{}") -> DeadLetterInput:
    return DeadLetterInput(
        reason=reason,
        topic="activity-events",
        partition=3,
        offset=next_offset(),
        key=rider.encode(),
        value=value,
        source=None,
        event_id=None,
    )


async def record(db: Database, events: Sequence[ActivityEvent], via: Via = "kafka") -> RecordResult:
    return await db.run(lambda conn: ActivityStore(conn).record(events, via=via))


async def add(db: Database, letters: Sequence[DeadLetterInput]) -> list[DeadLetterInput]:
    return await db.run(lambda conn: ActivityStore(conn).add_dead_letters(letters))


async def stored(db: Database, event: ActivityEvent) -> dict[str, Any] | None:
    async with db.read() as conn:
        row = await conn.fetchrow(
            "SELECT rider_id, category, received_via, event FROM activity_event WHERE source = $1 AND event_id = $2",
            event.source,
            event.event_id,
        )
    return dict(row) if row else None


def ids(events: Sequence[ActivityEvent]) -> list[str]:
    return [e.event_id for e in events]


# --- recording events ---------------------------------------------------------------------------------


async def test_events_not_known_yet_are_recorded_as_new(db: Database, rider: str) -> None:
    first, second = shift(rider, 2), shift(rider, 3)

    result = await record(db, [first, second], via="http")

    assert (ids(result.new), result.duplicates, result.conflicts) == ([first.event_id, second.event_id], [], [])
    row = await stored(db, first)
    assert row is not None
    assert (row["rider_id"], row["category"], row["received_via"]) == (rider, "volunteer_service", "http")
    assert row["event"] == first.document


async def test_the_same_event_in_a_later_call_is_a_duplicate(db: Database, rider: str) -> None:
    event = shift(rider)
    await record(db, [event], via="http")

    result = await record(db, [event], via="kafka")

    assert (result.new, ids(result.duplicates), result.conflicts) == ([], [event.event_id], [])
    row = await stored(db, event)
    assert row is not None
    assert row["received_via"] == "http"  # the first arrival stands


async def test_the_same_moment_written_with_another_offset_is_a_duplicate(db: Database, rider: str) -> None:
    shanghai = shift(rider, time="2024-05-01T09:00:00+08:00")
    utc = activity_event(dict(shanghai.document) | {"time": "2024-05-01T01:00:00Z"})
    await record(db, [shanghai])

    result = await record(db, [utc])

    assert ids(result.duplicates) == [shanghai.event_id]


async def test_an_id_reused_for_another_event_in_a_later_call_is_a_conflict(db: Database, rider: str) -> None:
    original = shift(rider, 2)
    await record(db, [original])

    result = await record(db, [with_hours(original, 3)])

    assert (result.new, result.duplicates, ids(result.conflicts)) == ([], [], [original.event_id])
    row = await stored(db, original)
    assert row is not None
    assert row["event"]["data"]["hours"] == 2


async def test_the_same_event_twice_in_one_call_is_new_once_and_then_a_duplicate(db: Database, rider: str) -> None:
    event = shift(rider)

    result = await record(db, [event, event])

    assert (ids(result.new), ids(result.duplicates), result.conflicts) == ([event.event_id], [event.event_id], [])


async def test_an_id_reused_for_another_event_in_one_call_is_new_once_and_then_a_conflict(
    db: Database, rider: str
) -> None:
    original = shift(rider, 2)
    reused = with_hours(original, 3)

    result = await record(db, [original, reused])

    assert result.new == [original]
    assert result.conflicts == [reused]
    assert result.duplicates == []
    row = await stored(db, original)
    assert row is not None
    assert row["event"]["data"]["hours"] == 2


async def test_one_call_sorts_new_duplicate_and_conflicting_events(db: Database, rider: str) -> None:
    known, reused = shift(rider, 1), shift(rider, 2)
    await record(db, [known, reused])
    fresh = shift(rider, 3)

    result = await record(db, [known, fresh, with_hours(reused, 4)])

    assert ids(result.new) == [fresh.event_id]
    assert ids(result.duplicates) == [known.event_id]
    assert ids(result.conflicts) == [reused.event_id]


# --- dead letters ------------------------------------------------------------------------------------------


async def test_a_redelivered_message_is_kept_as_one_dead_letter(db: Database, rider: str) -> None:
    letter = dead_letter(rider, "data.hours: must be greater than 0, got -1")

    first = await add(db, [letter])
    again = await add(db, [letter])

    assert (first, again) == ([letter], [])
    async with db.read() as conn:
        kept = await conn.fetchval("SELECT count(*) FROM dead_letter WHERE key = $1", rider)
    assert kept == 1


async def test_another_message_at_a_reused_offset_is_another_dead_letter(db: Database, rider: str) -> None:
    # A broker that restarted its offsets: same topic, partition and offset, other bytes.
    letter = dead_letter(rider, "value: is not valid JSON", value=b"{")
    other = DeadLetterInput(**{**_fields(letter), "value": b"[", "reason": "event: must be a JSON object"})

    assert await add(db, [letter]) == [letter]
    assert await add(db, [other]) == [other]


async def test_dead_letters_are_listed_newest_first(db: Database, rider: str) -> None:
    for n in range(3):
        await add(db, [dead_letter(rider, f"reason {n}")])

    async with db.read() as conn:
        page = await ActivityStore(conn).dead_letters(limit=3, before_id=None)

    assert [d["reason"] for d in page] == ["reason 2", "reason 1", "reason 0"]
    assert [d["key"] for d in page] == [rider] * 3
    ids_seen = [d["dead_letter_id"] for d in page]
    assert ids_seen == sorted(ids_seen, reverse=True)
    assert set(page[0]) >= {"received_at", "topic", "partition", "offset", "source", "event_id", "payload"}


async def test_the_cursor_lists_dead_letters_older_than_the_last_one_seen(db: Database, rider: str) -> None:
    for n in range(3):
        await add(db, [dead_letter(rider, f"reason {n}")])
    async with db.read() as conn:
        store = ActivityStore(conn)
        first_page = await store.dead_letters(limit=2, before_id=None)

        second_page = await store.dead_letters(limit=2, before_id=first_page[-1]["dead_letter_id"])

    assert [d["reason"] for d in first_page] == ["reason 2", "reason 1"]
    assert second_page[0]["reason"] == "reason 0"
    assert all(d["dead_letter_id"] < first_page[-1]["dead_letter_id"] for d in second_page)


async def test_waiting_lists_only_the_dead_letters_no_operator_has_retried(db: Database, rider: str) -> None:
    for n in range(3):
        await add(db, [dead_letter(rider, f"reason {n}")])
    async with db.read() as conn:
        newest = await ActivityStore(conn).dead_letters(limit=3, before_id=None)
    await db.run(lambda conn: ActivityStore(conn).settle_dead_letter(newest[1]["dead_letter_id"], None))  # scored now
    await db.run(
        lambda conn: ActivityStore(conn).settle_dead_letter(newest[0]["dead_letter_id"], "still: no such type")
    )

    async with db.read() as conn:
        everything = await ActivityStore(conn).dead_letters(limit=3, before_id=None)
        waiting = await ActivityStore(conn).dead_letters(limit=3, before_id=None, waiting=True)

    assert [d["retried_at"] is not None for d in everything] == [False, True, False]
    assert [d["reason"] for d in waiting if d["key"] == rider] == ["still: no such type", "reason 0"]


@pytest.mark.parametrize(
    ("value", "payload", "encoding"), [(b'{"id": 1}', '{"id": 1}', "utf-8"), (b"\xff", "/w==", "base64")]
)
async def test_a_dead_letter_keeps_the_raw_value_as_text_or_base64(
    db: Database, rider: str, value: bytes, payload: str, encoding: str
) -> None:
    await add(db, [dead_letter(rider, "kept as sent", value=value)])

    async with db.read() as conn:
        [letter] = await ActivityStore(conn).dead_letters(limit=1, before_id=None)

    assert (letter["key"], letter["payload"], letter["payload_encoding"]) == (rider, payload, encoding)
    assert (letter["source"], letter["event_id"]) == (None, None)


def _fields(letter: DeadLetterInput) -> dict[str, Any]:
    return {name: getattr(letter, name) for name in DeadLetterInput.__dataclass_fields__}
