"""The points report's read: one query summing the ledger's entries of a period by category, rider or
day (services/points/domain/reports.py says what each column is and which entry kinds it sums)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import asyncpg

from services.points.domain.reports import KINDS, NO_CATEGORY, By, Period, PointsRow


@dataclass(frozen=True, slots=True)
class Key:
    raw: str  # what the entries are grouped and paged by, cheap to compute per entry
    shown: str  # what the report calls the group (computed once a group)
    after: str  # the cursor ($3, text) as a value of ``raw``
    first: str  # a cursor before every key


# The day is the Asia/Shanghai calendar day of the entry's recorded time: 24-hour bins from a Shanghai
# midnight (the zone has kept UTC+8 without summer time since 1991), several times cheaper per entry than
# converting each time to the zone; the bin's start is written as its Shanghai date once per day.
KEYS: Mapping[By, Key] = {
    By.CATEGORY: Key(f"coalesce(t.category, '{NO_CATEGORY}')", "k.raw", "$3::text", ""),
    By.RIDER: Key("t.rider_id", "k.raw", "$3::text", ""),
    By.DAY: Key(
        "date_bin('1 day', t.recorded_at, timestamptz '2000-01-01 00:00:00+08')",
        "to_char(k.raw AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM-DD')",
        "($3::text || ' 00:00:00+08')::timestamptz",
        "2000-01-01",
    ),
}

# $1, $2: the period; $3: the key after which the page starts; $4: the page's size (NULL: every row);
# $5 to $8: the kinds of each column (KINDS). A redeem entry leaves the rider's available balance as it
# is (the points left it when held): what it consumed is its posting to the partner. By rider, the
# cursor condition lets PostgreSQL walk the rider index and stop after a page of riders.
REPORT = """
SELECT {shown} AS key,
       coalesce(sum(t.available_delta) FILTER (WHERE t.kind = ANY($5::text[])), 0)::bigint AS awarded,
       coalesce(sum(t.available_delta) FILTER (WHERE t.kind = ANY($6::text[])), 0)::bigint AS adjusted,
       coalesce(sum((SELECT p.amount FROM ledger_posting p WHERE p.tx_id = t.tx_id AND p.amount > 0))
                FILTER (WHERE t.kind = ANY($7::text[])), 0)::bigint AS redeemed,
       coalesce(-sum(t.available_delta) FILTER (WHERE t.kind = ANY($8::text[])), 0)::bigint AS lapsed,
       count(*) FILTER (WHERE t.kind = 'award' AND t.event_id IS NOT NULL) AS events
  FROM ledger_transaction t, LATERAL (SELECT {raw} AS raw) k
 WHERE t.recorded_at >= $1 AND t.recorded_at < $2
   AND t.kind = ANY($5::text[] || $6::text[] || $7::text[] || $8::text[])
   AND k.raw > {after}
 GROUP BY k.raw
 ORDER BY k.raw
 LIMIT $4::int
"""


class ReportQueries:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def points(self, period: Period, by: By, after: str | None, limit: int | None) -> list[PointsRow]:
        """The rows of the report, by key, from the one after ``after``; all of them when ``limit`` is None."""
        key = KEYS[by]
        async with self._conn.transaction():
            # The redeemed column's sub-select makes the planner's cost estimate large enough to compile the
            # query (JIT), which costs seconds on every run and saves nothing on a month's entries; and a
            # plan for this cursor, not a generic one (asyncpg prepares the statement once), keeps by
            # rider on the rider index.
            await self._conn.execute("SET LOCAL jit = off; SET LOCAL plan_cache_mode = force_custom_plan")
            rows = await self._conn.fetch(
                REPORT.format(raw=key.raw, shown=key.shown, after=key.after),
                period.start,
                period.end,
                after or key.first,
                limit,
                list(KINDS["awarded"]),
                list(KINDS["adjusted"]),
                list(KINDS["redeemed"]),
                list(KINDS["lapsed"]),
            )
        return [PointsRow(**dict(r)) for r in rows]
