"""A rules version published at the shortest allowed lead reaches a worker whose rules were cached just
before the publication, before the version applies to any event it can score (real PostgreSQL).

Short settings so the test takes seconds: the worker reloads every 1 s, events may be timed 1 s ahead
of its clock, and a version is published at least 2.5 s ahead. The versions published here have the
default rules' content under a rules id of their own, so later tests score as before (and their
version numbers of warmbee-default stay as they were); an award scored late on purpose is rolled back,
so a later replay of the whole ledger finds nothing wrong.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from libs.platform.db import Connection, Database
from libs.platform.settings import Settings
from services.points.domain.rules import Rules
from services.points.handlers import BatchOutcome, RulesCache, RulesRefused, Scorer, publish_rules
from services.points.store import PointsStore
from tests.integration.factories import SCHEMAS, record, volunteer_shift


@pytest.fixture
def short(settings: Settings) -> Settings:
    # Validated, as a deployment's would be: this lead is longer than reload plus slack.
    return Settings.model_validate(
        {**settings.model_dump(), "rules_reload_s": 1.0, "event_future_slack_s": 1, "rules_min_lead_s": 2.5}
    )


RULES_ID = "warmbee-lead-test"


async def stored_rules(db: Database) -> list[Rules]:
    async with db.read() as conn:
        return await PointsStore(conn).rules_versions()


async def latest_rules(db: Database) -> Rules:
    return (await stored_rules(db))[-1]


class _Undo(Exception):
    def __init__(self, outcome: BatchOutcome) -> None:
        super().__init__("rolled back")
        self.outcome = outcome


async def score_at(db: Database, worker: Scorer, rider: str, at: datetime, keep: bool = True) -> BatchOutcome:
    """A worker's batch of one shift timed ``at``; rolled back unless ``keep``."""
    message = record(volunteer_shift(rider, 1, time=at.isoformat()), key=rider)

    async def work(conn: Connection) -> BatchOutcome:
        outcome = await worker.score_batch(conn, [message])
        if not keep:
            raise _Undo(outcome)
        return outcome

    try:
        return await db.run(work)
    except _Undo as undone:
        return undone.outcome


async def sleep_until(moment: datetime) -> None:
    await asyncio.sleep(max((moment - datetime.now(UTC)).total_seconds(), 0))


async def publish_at_the_shortest_lead(db: Database, settings: Settings) -> Rules:
    """The next version of the stored rules, effective as soon as the lead allows, and published."""
    stored = await stored_rules(db)
    version = max((r.version for r in stored if r.rules_id == RULES_ID), default=0) + 1
    lead = timedelta(seconds=settings.rules_min_lead_s)
    sooner = stored[-1].model_copy(
        update={
            "rules_id": RULES_ID,
            "version": version,
            "effective_from": datetime.now(UTC) + lead - timedelta(seconds=0.2),
        }
    )
    with pytest.raises(RulesRefused, match=r"not in the future by more than 2\.5 s"):
        await publish_rules(db, sooner, "test", lead)
    # The publication reads its clock a few milliseconds after this one: 50 ms past the shortest lead.
    candidate = sooner.model_copy(update={"effective_from": datetime.now(UTC) + lead + timedelta(seconds=0.05)})
    await publish_rules(db, candidate, "test", lead)
    return candidate


async def test_a_version_published_at_the_shortest_lead_scores_an_event_timed_just_after_it_takes_effect(
    db: Database, short: Settings, rider: str
) -> None:
    worker = Scorer(short, SCHEMAS, RulesCache(short.rules_reload_s))
    before = await latest_rules(db)
    await score_at(db, worker, rider, datetime.now(UTC))  # the worker's rules are loaded now

    candidate = await publish_at_the_shortest_lead(db, short)
    effective = candidate.effective_from
    just_before, just_after = effective - timedelta(milliseconds=1), effective + timedelta(milliseconds=1)
    # As soon as the worker accepts an event timed just after the effective moment (its time at most
    # the slack ahead), still before that moment.
    await sleep_until(just_after - timedelta(seconds=short.event_future_slack_s) + timedelta(milliseconds=20))
    outcome = await score_at(db, worker, rider, just_after)
    late = await score_at(db, worker, rider, just_before)
    scored_at = datetime.now(UTC)

    assert outcome.dead_letters == []
    assert late.dead_letters == []
    assert [(s.rule_id, s.rule_version) for _, s in outcome.scored] == [(RULES_ID, candidate.version)]
    assert [(s.rule_id, s.rule_version) for _, s in late.scored] == [(before.rules_id, before.version)]
    assert scored_at < effective  # the worker had the version before it applied


async def test_a_cache_that_reloads_less_often_than_the_lead_allows_would_apply_the_version_late(
    db: Database, short: Settings, rider: str
) -> None:
    """Why Settings refuses such a configuration: the same publication, a worker reloading every 3 s."""
    worker = Scorer(short, SCHEMAS, RulesCache(3.0))
    before = await latest_rules(db)
    await score_at(db, worker, rider, datetime.now(UTC))

    candidate = await publish_at_the_shortest_lead(db, short)
    just_after = candidate.effective_from + timedelta(milliseconds=1)
    await sleep_until(just_after - timedelta(seconds=short.event_future_slack_s) + timedelta(milliseconds=20))
    outcome = await score_at(db, worker, rider, just_after, keep=False)

    assert [(s.rule_id, s.rule_version) for _, s in outcome.scored] == [(before.rules_id, before.version)]  # late
