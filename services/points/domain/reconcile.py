"""What reconciliation checks and how it reports. Pure: the queries (services/points/queries.py)
gather, this judges."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

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

    @property
    def mismatches(self) -> int:
        return sum(len(c.problems) for c in self.checks)

    @property
    def ok(self) -> bool:
        return self.mismatches == 0

    def lines(self, examples: int = 5) -> list[str]:
        out = []
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
