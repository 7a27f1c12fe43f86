"""Replay and what-if: the live scoring code run again over stored events in a scratch schema.

``replay`` rebuilds every award in the order it was first scored and compares it with the live ledger
entry by entry. ``what_if`` scores the events of a period under the rules in force and under a candidate
file, both from empty counters, and reports what the candidate would change. Nothing is ever written:
the scratch schema lives inside a transaction that is rolled back.

Neither ever makes live scoring wait. The run takes none of the live scorers' locks (its writes go to
its own scratch schema, which no one else can see: ``ScratchStore``), and reads the live tables from
one REPEATABLE READ snapshot instead: the events, the rules and the live awards it compares with are
all as they were when it started. An award committed during the run is in neither side of the
comparison, so no false difference; and the snapshot is closed under what scoring depends on (a
rider's earlier awards and a hazard's earlier reports committed before the later one, under the live
locks), so every award in it can be rebuilt from events in it. The cost: one long transaction, whose
snapshot holds back vacuum of the live tables while it runs.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from libs.activity.model import ActivityEvent, EventSchemas, validate_event
from libs.platform.db import Connection, Database
from libs.platform.errors import DomainError
from libs.platform.settings import Settings
from services.points.domain.rules import RuleBook, Rules
from services.points.handlers import BatchOutcome, RulesCache, Scorer
from services.points.store import AwardRow, PointsStore, ScratchStore

BATCH = 1000
Progress = Callable[[int], None]  # told how many events have been scored so far, after each batch
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)


class _Rollback(Exception):
    """Raised at the end of a scratch run so the unit of work rolls everything back."""

    def __init__(self, result: object) -> None:
        super().__init__("scratch run finished")
        self.result = result


@dataclass(frozen=True, slots=True)
class Difference:
    key: tuple[str, str]  # the event: (source, event_id)
    live: AwardRow | None
    replayed: AwardRow | None


@dataclass(frozen=True, slots=True)
class ReplayReport:
    compared: int
    differences: list[Difference]


async def _scratch(db: Database, work: Any) -> Any:
    """Run ``work(conn)`` in a REPEATABLE READ transaction that is always rolled back (so it is not a
    unit of work: it never commits), and return its result."""
    async with db.read() as conn:
        try:
            async with conn.transaction(isolation="repeatable_read"):
                raise _Rollback(await work(conn))
        except _Rollback as done:
            return done.result
    raise AssertionError("a scratch run always rolls back")


def _events(documents: Sequence[dict[str, Any]], schemas: EventSchemas) -> list[ActivityEvent]:
    # Stored events were valid when accepted; validating "now" at the end of time only skips the future check.
    parsed = (validate_event(d, schemas, FAR_FUTURE) for d in documents)
    return [e for e in parsed if isinstance(e, ActivityEvent)]


async def replay(
    db: Database, settings: Settings, schemas: EventSchemas, progress: Progress | None = None
) -> ReplayReport:
    async def work(conn: Connection) -> ReplayReport:
        scratch = ScratchStore(conn, "warmbee_replay")
        await scratch.enter()
        book = RuleBook(await PointsStore(conn).rules_versions())
        scorer = Scorer(settings, schemas, RulesCache(fixed=book))
        last, rescored = 0, 0
        while True:
            page = await scratch.scored_events(last, BATCH)
            if not page:
                break
            last = page[-1][0]
            await scorer.score_events(conn, _events([d for _, d in page], schemas), BatchOutcome())
            rescored += len(page)
            if progress is not None:
                progress(rescored)
        live, replayed = await scratch.awards("public"), await scratch.awards(scratch.schema)
        differences = [
            Difference(key, live.get(key), replayed.get(key))
            for key in sorted(live.keys() | replayed.keys())
            if live.get(key) != replayed.get(key)
        ]
        return ReplayReport(len(live), differences)

    result: ReplayReport = await _scratch(db, work)
    return result


@dataclass
class CategoryImpact:
    events: int = 0
    current: int = 0
    candidate: int = 0


@dataclass
class WhatIfReport:
    events: int
    categories: dict[str, CategoryImpact] = field(default_factory=dict)
    riders: list[tuple[str, int, int]] = field(default_factory=list)  # rider, current, candidate
    # The awarded points that would be lots, by their last good day: under the rules in force, and under
    # the candidate's lapse policy (an empty side: those points never lapse).
    lapsing_current: dict[date, int] = field(default_factory=dict)
    lapsing_candidate: dict[date, int] = field(default_factory=dict)

    @property
    def total_current(self) -> int:
        return sum(c.current for c in self.categories.values())

    @property
    def total_candidate(self) -> int:
        return sum(c.candidate for c in self.categories.values())


def report_json(report: WhatIfReport) -> bytes:
    """A what-if's report as JSON: how a what-if run in another process hands it over."""
    return orjson.dumps(
        {
            "events": report.events,
            "categories": {name: [c.events, c.current, c.candidate] for name, c in report.categories.items()},
            "riders": report.riders,
            "lapsing_current": {d.isoformat(): n for d, n in report.lapsing_current.items()},
            "lapsing_candidate": {d.isoformat(): n for d, n in report.lapsing_candidate.items()},
        }
    )


def report_of_json(body: bytes) -> WhatIfReport:
    d = orjson.loads(body)
    return WhatIfReport(
        events=d["events"],
        categories={name: CategoryImpact(*c) for name, c in d["categories"].items()},
        riders=[(r, before, after) for r, before, after in d["riders"]],
        lapsing_current={date.fromisoformat(k): v for k, v in d["lapsing_current"].items()},
        lapsing_candidate={date.fromisoformat(k): v for k, v in d["lapsing_candidate"].items()},
    )


async def what_if_apart(settings: Settings, candidate: Rules, first: date, after_last: date) -> WhatIfReport:
    """``what_if`` in a process of its own (``warmbee rules what-if - --json``), so that its seconds of
    scoring do not hold the caller's event loop (the points API's balance reads); stopped after
    ``rules_what_if_timeout_s``. The candidate goes in as JSON, which the rules reader takes as YAML."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        "rules",
        "what-if",
        "-",
        "--from",
        first.isoformat(),
        "--to",
        after_last.isoformat(),
        "--json",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **settings.as_env()},
    )
    try:
        out, err = await asyncio.wait_for(
            process.communicate(candidate.model_dump_json().encode()), settings.rules_what_if_timeout_s
        )
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        raise RuntimeError(f"what-if exited {process.returncode}: {err.decode(errors='replace')[-2000:]}")
    return report_of_json(out)


def what_if_period(
    zone: ZoneInfo, first: date, after_last: date, max_days: int | None = None
) -> tuple[datetime, datetime]:
    """The instants of a what-if period given as days in the rules' zone: from the start of ``first``
    to the start of ``after_last``; at most ``max_days`` days (a what-if scores every event twice)."""
    days = (after_last - first).days
    if days <= 0:
        raise DomainError(
            f"to: {after_last.isoformat()} is not after from {first.isoformat()}; to is the day after the last",
            kind="invalid-period",
        )
    if max_days is not None and days > max_days:
        raise DomainError(
            f"to: the period is {days} days, at most {max_days} are scored at once; split it", kind="invalid-period"
        )
    start, end = (datetime(d.year, d.month, d.day, tzinfo=zone) for d in (first, after_last))
    return start, end


async def what_if(
    db: Database,
    settings: Settings,
    schemas: EventSchemas,
    candidate: Rules,
    start: datetime,
    end: datetime,
    progress: Progress | None = None,
) -> WhatIfReport:
    scored = 0  # over both runs: the period's events are scored twice

    async def score_with(
        conn: Connection, scratch: ScratchStore, book: RuleBook | None
    ) -> dict[tuple[str, str], AwardRow]:
        await scratch.enter()
        if book is None:
            book = RuleBook(await PointsStore(conn).rules_versions())
        scorer = Scorer(settings, schemas, RulesCache(fixed=book))
        events = _events(await scratch.events_between(start, end), schemas)
        nonlocal scored
        for i in range(0, len(events), BATCH):
            await scorer.score_events(conn, events[i : i + BATCH], BatchOutcome())
            scored += len(events[i : i + BATCH])
            if progress is not None:
                progress(scored)
        awards = await scratch.awards(scratch.schema)
        await scratch.leave()
        return awards

    async def work(conn: Connection) -> WhatIfReport:
        current = await score_with(conn, ScratchStore(conn, "warmbee_whatif_current"), None)
        as_if_in_force = candidate.model_copy(update={"effective_from": min(start, candidate.effective_from)})
        proposed = await score_with(conn, ScratchStore(conn, "warmbee_whatif_candidate"), RuleBook([as_if_in_force]))
        return _impact(current, proposed)

    result: WhatIfReport = await _scratch(db, work)
    return result


def _impact(current: dict[tuple[str, str], AwardRow], proposed: dict[tuple[str, str], AwardRow]) -> WhatIfReport:
    report = WhatIfReport(events=len(current.keys() | proposed.keys()))
    per_rider: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for key in current.keys() | proposed.keys():
        before, after = current.get(key), proposed.get(key)
        row = before or after
        assert row is not None
        impact = report.categories.setdefault(row.category or "unknown", CategoryImpact())
        impact.events += 1
        impact.current += before.points if before else 0
        impact.candidate += after.points if after else 0
        per_rider[row.rider_id][0] += before.points if before else 0
        per_rider[row.rider_id][1] += after.points if after else 0
        _add_lot(report.lapsing_current, before)
        _add_lot(report.lapsing_candidate, after)
    report.riders = sorted(
        ((rider, pts[0], pts[1]) for rider, pts in per_rider.items() if pts[0] != pts[1]),
        key=lambda r: (-abs(r[2] - r[1]), r[0]),
    )
    report.lapsing_current = dict(sorted(report.lapsing_current.items()))
    report.lapsing_candidate = dict(sorted(report.lapsing_candidate.items()))
    return report


def _add_lot(lapsing: dict[date, int], award: AwardRow | None) -> None:
    if award is not None and award.lapses_on is not None and award.points > 0:
        lapsing[award.lapses_on] = lapsing.get(award.lapses_on, 0) + award.points
