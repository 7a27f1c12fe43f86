"""One message the scorer cannot score is isolated: dead-lettered alone with its reason, while the rest of
its batch is scored; transient failures are not dead-lettered but raised (the consumer rewinds). Keys of
events whose (source, id) differ never collide. A dead letter can be retried. Real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from datetime import datetime, timedelta
from typing import Any

import pytest

from libs.activity.model import ActivityEvent
from libs.activity.store import ActivityStore
from libs.i18n.reasons import Reason
from libs.ledger.keys import PROGRAMME_ISSUED, award_key, rider_available
from libs.ledger.model import EntryKind, LedgerTransaction, transfer
from libs.ledger.store import LedgerStore
from libs.platform.db import Connection, Database
from libs.platform.kafka import Message
from libs.platform.loops import write_isolating
from libs.platform.settings import Settings
from services.events.domain.intake import DeadLetterUnknown
from services.events.handlers import retry_dead_letter
from services.points.entrypoints.jobs import PendingSweep
from services.points.handlers import BatchOutcome, RulesCache, Scorer
from services.points.metrics import UNSCORED_OLDEST_AGE
from services.points.queries import PointsQueries
from tests.integration.factories import (
    SCHEMAS,
    activity_event,
    awards,
    dead_letters,
    outbox,
    record,
    volunteer_shift,
)


class DefectiveScorer(Scorer):
    """A scorer with a defect that meets one value: an event whose id starts with ``defect-`` raises as
    ``fault`` says (a Python error, a value PostgreSQL refuses, or a lost connection)."""

    def __init__(self, settings: Settings, fault: str) -> None:
        super().__init__(settings, SCHEMAS, RulesCache())
        self._fault = fault

    async def score_events(
        self,
        conn: Connection,
        candidates: Sequence[ActivityEvent],
        outcome: BatchOutcome,
        unscored: AbstractSet[tuple[str, str]] = frozenset(),
    ) -> None:
        if any(e.event_id.startswith("defect-") for e in candidates):
            if self._fault == "python":
                raise OverflowError("date value out of range")
            if self._fault == "postgres":
                await conn.execute("SELECT 1 / 0")  # division_by_zero: a data exception (class 22)
            raise ConnectionResetError("the database went away")
        await super().score_events(conn, candidates, outcome, unscored)


async def run_lane(db: Database, scorer: Scorer, messages: Sequence[Message]) -> list[BatchOutcome]:
    """What the worker's lane does: the batch in one transaction, a bad message quarantined alone."""
    outcomes: list[BatchOutcome] = []

    async def handle(batch: Sequence[Message]) -> None:
        outcomes.append(await db.run(lambda conn: scorer.score_batch(conn, batch)))

    async def quarantine(message: Message, exc: Exception) -> None:
        await db.run(lambda conn: scorer.quarantine(conn, message, exc))

    await write_isolating(messages, handle, quarantine)
    return outcomes


async def status(db: Database, source: str, event_id: str) -> tuple[str, str | None] | None:
    async with db.read() as conn:
        found = await PointsQueries(conn).event_status(source, event_id)
    return None if found is None else (found.status, found.reason.render())


@pytest.mark.parametrize(
    ("fault", "reason"),
    [("python", "OverflowError: date value out of range"), ("postgres", "DivisionByZeroError")],
)
async def test_one_event_the_scorer_cannot_score_is_dead_lettered_alone_and_the_rest_of_its_batch_is_scored(
    db: Database, settings: Settings, rider: str, fault: str, reason: str
) -> None:
    others = [f"{rider}-{n}" for n in range(6)]
    shifts = [volunteer_shift(r, 1) for r in others[:3]]
    bad = volunteer_shift(rider, 1, event_id=f"defect-{uuid.uuid4().hex}")
    shifts += [bad, *(volunteer_shift(r, 1) for r in others[3:])]

    await run_lane(db, DefectiveScorer(settings, fault), [record(s, key=s["subject"]) for s in shifts])

    for other in others:
        assert await awards(db, other) == [10]
    assert await awards(db, rider) == []
    letters = await dead_letters(db, rider)
    assert len(letters) == 1
    assert letters[0]["reason"].startswith(f"could not be scored: {reason}")
    assert letters[0]["topic"] == "activity-events"
    assert await status(db, bad["source"], bad["id"]) == ("dead_lettered", letters[0]["reason"])


async def test_a_transient_failure_is_raised_for_the_consumer_to_retry_and_nothing_is_dead_lettered(
    db: Database, settings: Settings, rider: str
) -> None:
    bad = volunteer_shift(rider, 1, event_id=f"defect-{uuid.uuid4().hex}")
    good = volunteer_shift(f"{rider}-x", 1)

    with pytest.raises(ConnectionResetError):
        await run_lane(db, DefectiveScorer(settings, "lost"), [record(good, key=rider), record(bad, key=rider)])

    assert await dead_letters(db, rider) == []
    assert await awards(db, f"{rider}-x") == []  # one transaction: nothing of the batch was written


async def test_events_whose_source_and_id_differ_are_two_events_wherever_a_colon_or_slash_falls(
    db: Database, settings: Settings, rider: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    pairs = [
        (f"urn:{tag}", "b:c"),
        (f"urn:{tag}:b", "c"),
        (f"https://x.example/{tag}", "d/e"),
        (f"https://x.example/{tag}/d", "e"),
    ]
    shifts = [
        volunteer_shift(rider, 0.5, event_id=i, source=s, time=f"2024-05-0{n + 1}T09:00:00+08:00")
        for n, (s, i) in enumerate(pairs)
    ]

    outcomes = await run_lane(db, Scorer(settings, SCHEMAS, RulesCache()), [record(s, key=rider) for s in shifts])

    assert sum(len(o.scored) for o in outcomes) == 4
    assert await awards(db, rider) == [5, 5, 5, 5]
    assert award_key(f"urn:{tag}", "b:c") != award_key(f"urn:{tag}:b", "c")
    for source, event_id in pairs:
        found = await status(db, source, event_id)
        assert found is not None
        assert found[0] == "scored"


async def test_an_event_scored_under_its_old_glued_key_is_still_a_duplicate_when_it_comes_again(
    db: Database, settings: Settings, rider: str
) -> None:
    source, event_id = f"urn:old:{uuid.uuid4().hex[:8]}", "shift:1"
    shift = volunteer_shift(rider, 1, event_id=event_id, source=source)
    event = activity_event(shift)
    old_key = f"award:{source}:{event_id}"  # as keys were glued before they were encoded
    assert old_key != award_key(source, event_id)

    async def scored_the_old_way(conn: Connection) -> None:
        await ActivityStore(conn).record([event], via="kafka")
        await LedgerStore(conn).append(
            [
                LedgerTransaction(
                    idempotency_key=old_key,
                    kind=EntryKind.AWARD,
                    rider_id=rider,
                    reason=Reason.of("legacy.text", text="volunteer service: 10 points"),
                    postings=transfer(PROGRAMME_ISSUED, rider_available(rider), 10),
                    category="volunteer_service",
                    source=source,
                    event_id=event_id,
                    rule_id="warmbee-default",
                    rule_version=1,
                    occurred_at=event.time,
                )
            ]
        )

    await db.run(scored_the_old_way)

    outcomes = await run_lane(db, Scorer(settings, SCHEMAS, RulesCache()), [record(shift, key=rider)])

    assert outcomes[0].scored == []
    assert outcomes[0].duplicates == 1
    assert await awards(db, rider) == [10]


def stored_unchecked(document: dict[str, Any]) -> ActivityEvent:
    """An event as an older version stored it, before validation refused what it holds."""
    return ActivityEvent(
        source=document["source"],
        event_id=document["id"],
        type=document["type"],
        rider_id=document["subject"],
        time=datetime.fromisoformat(document["time"]),
        data=document["data"],
        document=document,
    )


async def test_the_pending_sweep_dead_letters_a_stored_event_it_cannot_score_and_scores_the_others(
    db: Database, settings: Settings, rider: str
) -> None:
    odd = volunteer_shift(f"{rider}\n", 1)  # a trailing newline, accepted before validation refused it
    good = volunteer_shift(rider, 1)
    await db.run(lambda conn: ActivityStore(conn).record([stored_unchecked(odd), activity_event(good)], via="http"))
    sweep = PendingSweep(
        db, Scorer(settings, SCHEMAS, RulesCache()), settings.model_copy(update={"pending_after_s": 0.001})
    )
    await asyncio.sleep(0.01)

    first = await sweep.sweep()
    again = await sweep.sweep()

    assert (good["source"], good["id"]) in {e.key for e, _ in first.scored}
    assert (odd["source"], odd["id"]) in {(d.source, d.event_id) for d in first.dead_letters}
    assert all((d.source, d.event_id) != (odd["source"], odd["id"]) for d in again.dead_letters)
    found = await status(db, odd["source"], odd["id"])
    assert found is not None
    assert found[0] == "dead_lettered"
    assert found[1] is not None
    assert "could not be scored: subject: holds the control character U+000A" in found[1]
    assert UNSCORED_OLDEST_AGE._value.get() < 60  # nothing of this test waits


async def test_the_pending_sweep_isolates_an_event_the_scorer_fails_on(
    db: Database, settings: Settings, rider: str
) -> None:
    bad = volunteer_shift(rider, 1, event_id=f"defect-{uuid.uuid4().hex}")
    good = volunteer_shift(f"{rider}-y", 1)
    await db.run(lambda conn: ActivityStore(conn).record([activity_event(bad), activity_event(good)], via="http"))
    sweep = PendingSweep(
        db, DefectiveScorer(settings, "python"), settings.model_copy(update={"pending_after_s": 0.001})
    )
    await asyncio.sleep(0.01)

    await sweep.sweep()

    assert await awards(db, f"{rider}-y") == [10]
    found = await status(db, bad["source"], bad["id"])
    assert found is not None
    assert found[0] == "dead_lettered"
    letters = await dead_letters(db, rider)
    assert [(d["topic"], d["partition"], d["offset"]) for d in letters] == [(None, None, None)]


async def dead_letter_id(db: Database, source: str, event_id: str) -> int:
    async with db.read() as conn:
        return int(
            await conn.fetchval(
                "SELECT max(dead_letter_id) FROM dead_letter WHERE source = $1 AND event_id = $2", source, event_id
            )
        )


async def test_a_retried_dead_letter_is_accepted_again_once_it_can_be_scored_and_never_scored_twice(
    db: Database, settings: Settings, rider: str
) -> None:
    bad = volunteer_shift(rider, 1, event_id=f"defect-{uuid.uuid4().hex}")
    await run_lane(db, DefectiveScorer(settings, "python"), [record(bad, key=rider)])
    letter = await dead_letter_id(db, bad["source"], bad["id"])
    slack = timedelta(seconds=settings.event_future_slack_s)

    retried = await retry_dead_letter(db, letter, SCHEMAS, slack, "activity-events")
    assert retried == "pending"  # on its way to the worker again, through the outbox
    assert (await status(db, bad["source"], bad["id"])) == ("pending", "accepted, waiting to be scored")

    # The fixed worker scores it; a second retry then finds it scored and sends nothing more.
    await run_lane(db, Scorer(settings, SCHEMAS, RulesCache()), [record(bad, key=rider)])
    assert await awards(db, rider) == [10]
    again = await retry_dead_letter(db, letter, SCHEMAS, slack, "activity-events")
    assert again == "scored"
    await run_lane(db, Scorer(settings, SCHEMAS, RulesCache()), [record(bad, key=rider)])
    assert await awards(db, rider) == [10]


async def test_a_retried_dead_letter_that_still_fails_stays_one_with_the_new_reason(
    db: Database, settings: Settings, rider: str
) -> None:
    async def dead_letter_with_old_reason(conn: Connection) -> int:
        broken = record(b'{"specversion": "1.0", "id": "x"', key=rider)
        scorer = Scorer(settings, SCHEMAS, RulesCache())
        await scorer.score_batch(conn, [broken])
        return int(await conn.fetchval("SELECT max(dead_letter_id) FROM dead_letter WHERE key = $1", rider))

    letter = await db.run(dead_letter_with_old_reason)
    slack = timedelta(seconds=settings.event_future_slack_s)

    assert await retry_dead_letter(db, letter, SCHEMAS, slack, "activity-events") == "dead_lettered"
    with pytest.raises(DeadLetterUnknown):
        await retry_dead_letter(db, 2**62, SCHEMAS, slack, "activity-events")
    letters = await dead_letters(db, rider)
    assert letters[-1]["reason"].startswith("value: is not valid JSON")


async def test_a_kafka_value_over_1_mib_is_dead_lettered_and_its_batch_scored(
    db: Database, settings: Settings, rider: str
) -> None:
    huge = volunteer_shift(rider, 1) | {"note": "n" * (1024 * 1024)}
    good = volunteer_shift(f"{rider}-z", 1)

    await run_lane(db, Scorer(settings, SCHEMAS, RulesCache()), [record(huge, key=rider), record(good, key=rider)])

    assert await awards(db, f"{rider}-z") == [10]
    letters = await dead_letters(db, rider)
    assert "an event may be at most 1048576 bytes" in letters[0]["reason"]


async def test_a_retried_dead_letter_over_1_mib_stays_one_and_is_not_sent_again(
    db: Database, settings: Settings, rider: str
) -> None:
    huge = volunteer_shift(rider, 1) | {"note": "n" * (1024 * 1024)}
    await run_lane(db, Scorer(settings, SCHEMAS, RulesCache()), [record(huge, key=rider)])
    async with db.read() as conn:
        letter = int(await conn.fetchval("SELECT max(dead_letter_id) FROM dead_letter WHERE key = $1", rider))
    slack = timedelta(seconds=settings.event_future_slack_s)

    retried = await retry_dead_letter(db, letter, SCHEMAS, slack, "activity-events")

    assert retried == "dead_lettered"
    assert "an event may be at most 1048576 bytes" in (await dead_letters(db, rider))[-1]["reason"]
    assert await outbox(db, "activity-events", rider) == []
