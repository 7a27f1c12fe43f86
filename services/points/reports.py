"""The points report's read: one query summing the ledger's entries of a period by category, rider or
day (services/points/domain/reports.py says what each column is and which entry kinds it sums)."""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg

from services.points.domain.reports import KINDS, NO_CATEGORY, By, Period, PointsRow

# The key of each report; the day is the Asia/Shanghai calendar day of the entry's recorded time.
KEYS: Mapping[By, str] = {
    By.CATEGORY: f"coalesce(t.category, '{NO_CATEGORY}')",
    By.RIDER: "t.rider_id",
    By.DAY: "to_char(t.recorded_at AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM-DD')",
}

# $1, $2: the period; $3: the key after which the page starts ('' for the first); $4: the page's size;
# $5 to $8: the kinds of each column (KINDS). A redeem entry leaves the rider's available balance as it
# is (the points left it when held): what it consumed is its posting to the partner.
REPORT = """
SELECT key,
       coalesce(sum(t.available_delta) FILTER (WHERE t.kind = ANY($5::text[])), 0)::bigint AS awarded,
       coalesce(sum(t.available_delta) FILTER (WHERE t.kind = ANY($6::text[])), 0)::bigint AS adjusted,
       coalesce(sum((SELECT p.amount FROM ledger_posting p WHERE p.tx_id = t.tx_id AND p.amount > 0))
                FILTER (WHERE t.kind = ANY($7::text[])), 0)::bigint AS redeemed,
       coalesce(-sum(t.available_delta) FILTER (WHERE t.kind = ANY($8::text[])), 0)::bigint AS lapsed,
       count(*) FILTER (WHERE t.kind = 'award' AND t.event_id IS NOT NULL) AS events
  FROM ledger_transaction t, LATERAL (SELECT {key} AS key) k
 WHERE t.recorded_at >= $1 AND t.recorded_at < $2 AND t.kind = ANY($5::text[] || $6::text[] || $7::text[] || $8::text[])
   AND key > $3::text
 GROUP BY key
 ORDER BY key
 LIMIT $4::int
"""


class ReportQueries:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def points(self, period: Period, by: By, after: str | None, limit: int | None) -> list[PointsRow]:
        """The rows of the report, by key, from the one after ``after``; all of them when ``limit`` is None."""
        rows = await self._conn.fetch(
            REPORT.format(key=KEYS[by]),
            period.start,
            period.end,
            after or "",
            limit,
            list(KINDS["awarded"]),
            list(KINDS["adjusted"]),
            list(KINDS["redeemed"]),
            list(KINDS["lapsed"]),
        )
        return [PointsRow(**dict(r)) for r in rows]
