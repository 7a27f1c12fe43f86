"""Replay and what-if: the live scoring rules run again over stored events, in memory.

``replay`` rebuilds every award in the order it was first scored and compares it with the live ledger
entry by entry. ``what_if`` scores the events of a period under the rules in force and under a candidate
file, both from empty counters, and reports what the candidate would change. Nothing is ever written.

Both score through the same ``plan`` and ``Tally.score`` as the live scorer (services/points/handlers.py),
which fills its tally from the database for each batch; here one tally lives in memory from the first
event to the last (each rider's counters, the hazard reports paid in full), so an event costs no
statement at all: about a tenth of what scoring into a throw-away schema cost (docs/benchmarks.md).

Neither ever makes live scoring wait: they take no locks and read the live tables from one REPEATABLE
READ snapshot, so the events, the rules and the live awards compared with are all as they were when the
run started. An award committed during the run is in neither side of the comparison, so no false
difference; and the snapshot is closed under what scoring depends on (a rider's earlier awards and a
hazard's earlier reports committed before the later one, under the live locks), so every award in it can
be rebuilt from events in it. The cost: one long transaction, whose snapshot holds back vacuum of the
live tables while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
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
from services.points.domain.scoring import Tally, award_lot, plan
from services.points.queries import AwardRow, ReplayQueries
from services.points.store import PointsStore

BATCH = 1000
Progress = Callable[[int], None]  # told how many events have been scored so far, after each batch
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)


class _Rollback(Exception):
    """Raised at the end of a snapshot run so that its transaction ends without a commit."""

    def __init__(self, result: object) -> None:
        super().__init__("snapshot run finished")
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


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a run scores: a run's tally (a counter per rider and
    period, every hazard report paid) and a what-if's two sides of awards grow to hundreds of thousands
    of objects, and each collection of the older generations walks them all again (a third of a replay's
    time when it kept its awards). Scoring makes few cycles; what it made is collected at the end."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


async def _snapshot(db: Database, work: Any) -> Any:
    """Run ``work(conn)`` in a read-only REPEATABLE READ transaction (one snapshot of the live tables),
    which is rolled back, and return its result."""
    async with db.read() as conn:
        try:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                with _collector_paused():
                    result = await work(conn)
                raise _Rollback(result)
        except _Rollback as done:
            return done.result
    raise AssertionError("a snapshot run always rolls back")


def _event(document: dict[str, Any] | None, schemas: EventSchemas) -> ActivityEvent | None:
    # Stored events were valid when accepted; validating "now" at the end of time only skips the future
    # check. One today's checks refuse (accepted before a check was added) makes no award: a difference.
    parsed = validate_event(document, schemas, FAR_FUTURE) if document is not None else None
    return parsed if isinstance(parsed, ActivityEvent) else None


def _events(documents: Sequence[dict[str, Any]], schemas: EventSchemas) -> list[ActivityEvent]:
    return [e for d in documents if (e := _event(d, schemas)) is not None]


class _Replayer:
    """Scores events one after another with one tally, as the award rows the ledger would hold."""

    def __init__(self, book: RuleBook) -> None:
        self._book = book
        self._tally = Tally(keep_changes=False)

    def award(self, event: ActivityEvent) -> AwardRow:
        p = plan(event, self._book)
        result = self._tally.score(event, p)
        lot = award_lot(p.rules, event, result.points)
        return AwardRow(
            event.rider_id,
            result.category,
            result.points,
            result.reason,
            result.rule_id,
            result.rule_version,
            lot.lapses_on if lot is not None else None,
        )


async def replay(
    db: Database, settings: Settings, schemas: EventSchemas, progress: Progress | None = None
) -> ReplayReport:
    """Each live award, in the order first scored, against the award its stored event makes now. The
    awards stream past from one cursor, each compared as it comes: a run holds a page and the tally,
    not the ledger."""

    async def work(conn: Connection) -> ReplayReport:
        replayer = _Replayer(RuleBook(await PointsStore(conn).rules_versions()))
        compared = 0
        differences: list[Difference] = []
        async for page in ReplayQueries(conn).awards_in_order(BATCH):
            for live in page:
                event = _event(live.event, schemas)
                replayed = replayer.award(event) if event is not None else None
                if replayed != live.award:
                    differences.append(Difference(live.key, live.award, replayed))
            compared += len(page)
            if progress is not None:
                progress(compared)
        return ReplayReport(compared, sorted(differences, key=lambda d: d.key))

    result: ReplayReport = await _snapshot(db, work)
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
    async def work(conn: Connection) -> WhatIfReport:
        events = _events(await ReplayQueries(conn).events_between(start, end), schemas)
        as_if_in_force = candidate.model_copy(update={"effective_from": min(start, candidate.effective_from)})
        books = (RuleBook(await PointsStore(conn).rules_versions()), RuleBook([as_if_in_force]))
        scored = 0  # over both runs: the period's events are scored twice
        sides: list[dict[tuple[str, str], AwardRow]] = []
        for book in books:
            replayer, awards = _Replayer(book), {}
            for i in range(0, len(events), BATCH):
                for event in events[i : i + BATCH]:
                    awards[event.key] = replayer.award(event)
                scored += len(events[i : i + BATCH])
                if progress is not None:
                    progress(scored)
            sides.append(awards)
        return _impact(sides[0], sides[1])

    result: WhatIfReport = await _snapshot(db, work)
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
