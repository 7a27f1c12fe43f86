"""What reconciliation checks and how it reports. Pure: the queries (services/points/queries.py)
gather, this judges."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

# The kinds of ledger entries each redemption state must have, and no others.
ENTRIES_OF_STATUS: Mapping[str, frozenset[str]] = {
    "held": frozenset({"hold"}),
    "confirmed": frozenset({"hold", "redeem"}),
    "cancelled": frozenset({"hold", "release"}),
    "expired": frozenset({"hold", "expire"}),
}


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    examined: int
    problems: Sequence[str] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class Report:
    checks: list[Check] = field(default_factory=list)
    as_of: datetime | None = None  # the snapshot's time, as the database tells it
    since: datetime | None = None  # what changed since then only; None: the whole ledger

    @property
    def mismatches(self) -> int:
        return sum(len(c.problems) for c in self.checks)

    @property
    def ok(self) -> bool:
        return self.mismatches == 0

    def lines(self, examples: int = 5) -> list[str]:
        out = []
        if self.since is not None:
            out.append(
                f"what changed since {self.since.isoformat()}: the transactions recorded since, and the whole"
                " history of the riders they touched"
            )
        for c in self.checks:
            mark = "ok  " if c.ok else "FAIL"
            out.append(f"{mark} {c.name}: {c.examined} examined, {len(c.problems)} mismatch(es)")
            out += [f"       {p}" for p in c.problems[:examples]]
            if len(c.problems) > examples:
                out.append(f"       ... and {len(c.problems) - examples} more")
        verdict = "reconciled: no mismatch" if self.ok else f"NOT reconciled: {self.mismatches} mismatch(es)"
        return [*out, verdict]


def redemption_problems(rows: Sequence[tuple[str, str, Sequence[str]]]) -> list[str]:
    """rows: (redemption_id, status, the kinds of its ledger entries, e.g. ['hold', 'redeem'])."""
    problems = []
    for redemption_id, status, steps in rows:
        expected = ENTRIES_OF_STATUS.get(status)
        found = sorted(s for s in steps if s)
        if expected is None or sorted(expected) != found:
            problems.append(f"redemption {redemption_id} is {status} but its ledger entries are {found}")
    return problems


# How far back of the last clean run a scoped one starts: longer than any transaction stays open (a
# transaction's rows carry its start time and are seen only at its commit; the pool's statements time out
# after 60 s, a scoring batch takes well under a second), so a late commit is never behind the scope.
OVERLAP = timedelta(minutes=10)


@dataclass(slots=True)
class Scope:
    """Which reconciliation the worker runs next. The whole ledger at start and every ``full_every_s``;
    between them what changed since the last clean run (less ``OVERLAP``). A run that finds a mismatch
    leaves the scope where it was, so the next run looks at it again (and it stays in the metrics until
    mended)."""

    full_every_s: float
    since: datetime | None = None
    full_at: float | None = None  # the monotonic time of the last clean run over the whole ledger

    def next(self, now: float) -> datetime | None:
        """``since`` for the next run, None for the whole ledger."""
        if self.full_at is None or now - self.full_at >= self.full_every_s:
            return None
        return self.since

    def ran(self, report: Report, now: float) -> None:
        if not report.ok or report.as_of is None:
            return
        if report.since is None:
            self.full_at = now
        self.since = report.as_of - OVERLAP
