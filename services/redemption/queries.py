"""The read side of the redemption service: the catalogue with its stock left, a redemption, a rider's
and a partner's redemptions, open holds per partner kind, a month's settlement."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from libs.ledger.keys import partner_redeemed
from services.redemption.domain.holds import Redemption, Status
from services.redemption.domain.settlement import SettlementLine

REDEMPTION_COLUMNS = (
    "redemption_id, reward_id, partner_id, rider_id, title, cost, status, code, month, idempotency_key,"
    " request_hash, notice, created_at, expires_at, resolved_at, resolved_by"
)


def redemption_of(row: asyncpg.Record) -> Redemption:
    fields = dict(row)
    return Redemption(**fields | {"status": Status(fields["status"])})


class RedemptionQueries:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def catalogue(self, month: str, include_inactive: bool = False) -> list[dict[str, Any]]:
        """The active rewards (and the inactive ones, for operators) with their partner, and the stock
        left in ``month``."""
        rows = await self._conn.fetch(
            "SELECT r.reward_id, r.partner_id, p.name AS partner_name, p.kind, r.title, r.cost, r.stock_per_month,"
            "       CASE WHEN r.stock_per_month IS NULL THEN NULL"
            "            ELSE greatest(r.stock_per_month - coalesce(u.used, 0), 0) END AS stock_left,"
            "       r.per_rider_monthly_limit, r.active"
            "  FROM reward r JOIN partner p USING (partner_id)"
            "  LEFT JOIN reward_usage u ON u.reward_id = r.reward_id AND u.month = $1 AND u.rider_id = ''"
            " WHERE r.active OR $2 ORDER BY p.kind, r.cost, r.reward_id",
            month,
            include_inactive,
        )
        return [dict(r) for r in rows]

    async def partners(self) -> list[dict[str, Any]]:
        """Every partner, by kind and name, with how many rewards it has and how many are active."""
        rows = await self._conn.fetch(
            "SELECT p.partner_id, p.name, p.kind, p.created_at,"
            "       count(r.reward_id) AS rewards, count(r.reward_id) FILTER (WHERE r.active) AS active_rewards"
            "  FROM partner p LEFT JOIN reward r USING (partner_id)"
            " GROUP BY p.partner_id ORDER BY p.kind, p.name, p.partner_id"
        )
        return [dict(r) for r in rows]

    async def redemption(self, redemption_id: str) -> Redemption | None:
        row = await self._conn.fetchrow(
            f"SELECT {REDEMPTION_COLUMNS} FROM redemption WHERE redemption_id = $1", redemption_id
        )
        return redemption_of(row) if row else None

    async def of_partner(
        self,
        partner_id: str,
        status: Status | None,
        start: datetime | None,
        end: datetime | None,
        limit: int,
        before: datetime | None,
    ) -> list[Redemption]:
        rows = await self._conn.fetch(
            f"SELECT {REDEMPTION_COLUMNS} FROM redemption WHERE partner_id = $1"
            " AND ($2::text IS NULL OR status = $2) AND ($3::timestamptz IS NULL OR created_at >= $3)"
            " AND ($4::timestamptz IS NULL OR created_at < $4) AND ($5::timestamptz IS NULL OR created_at < $5)"
            " ORDER BY created_at DESC LIMIT $6",
            partner_id,
            status.value if status else None,
            start,
            end,
            before,
            limit,
        )
        return [redemption_of(r) for r in rows]

    async def of_rider(
        self, rider_id: str, status: Status | None, limit: int, before: datetime | None
    ) -> list[Redemption]:
        rows = await self._conn.fetch(
            f"SELECT {REDEMPTION_COLUMNS} FROM redemption WHERE rider_id = $1"
            " AND ($2::text IS NULL OR status = $2) AND ($3::timestamptz IS NULL OR created_at < $3)"
            " ORDER BY created_at DESC LIMIT $4",
            rider_id,
            status.value if status else None,
            before,
            limit,
        )
        return [redemption_of(r) for r in rows]

    async def open_holds_by_kind(self) -> dict[str, int]:
        rows = await self._conn.fetch(
            "SELECT p.kind, count(*) AS n FROM redemption r JOIN partner p USING (partner_id)"
            " WHERE r.status = 'held' GROUP BY p.kind"
        )
        return {r["kind"]: int(r["n"]) for r in rows}

    async def settlement(self, partner_id: str, start: datetime, end: datetime) -> list[SettlementLine]:
        """Confirmed redemptions between ``start`` and ``end``, read from the ledger's redeem entries to
        the partner."""
        rows = await self._conn.fetch(
            "SELECT t.event_id AS redemption_id, r.reward_id, r.title, p.amount AS points,"
            "       t.recorded_at AS confirmed_at"
            "  FROM ledger_transaction t"
            "  JOIN ledger_posting p ON p.tx_id = t.tx_id AND p.account = $1"
            "  JOIN redemption r ON r.redemption_id = t.event_id"
            " WHERE t.kind = 'redeem' AND t.recorded_at >= $2 AND t.recorded_at < $3"
            " ORDER BY t.tx_id",
            partner_redeemed(partner_id),
            start,
            end,
        )
        return [SettlementLine(**dict(r)) for r in rows]
