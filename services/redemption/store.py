"""The write side of the redemption service: the SQL its use cases run inside their unit of work
(partners, rewards, holds, stock and limit counters, wrong-code counts). Reads for the API are in
queries.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.redemption.domain.catalogue import Partner, Reward
from services.redemption.domain.holds import Redemption, Status
from services.redemption.queries import REDEMPTION_COLUMNS, redemption_of

ALL_RIDERS = ""  # the reward_usage row that counts a reward's total for a month


@dataclass(frozen=True, slots=True)
class Full:
    """Which counters had no room for one more hold: the reward's stock, the rider's monthly limit."""

    stock: bool
    rider: bool


class RedemptionStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    # --- catalogue -----------------------------------------------------------------------------

    async def partner(self, partner_id: str) -> Partner | None:
        """The partner as stored (inside the unit of work that may add it or a reward of it)."""
        row = await self._conn.fetchrow("SELECT partner_id, name, kind FROM partner WHERE partner_id = $1", partner_id)
        return Partner(**dict(row)) if row else None

    async def add_partner(self, partner: Partner) -> bool:
        status = await self._conn.execute(
            "INSERT INTO partner (partner_id, name, kind) VALUES ($1, $2, $3) ON CONFLICT (partner_id) DO NOTHING",
            partner.partner_id,
            partner.name,
            partner.kind,
        )
        return status.endswith(" 1")

    async def reward_on_offer(self, reward_id: str) -> tuple[Reward, Partner] | None:
        """A reward and its partner, the reward locked against change (FOR SHARE) until the reserve
        commits: a price change waits for the holds taken at the old price."""
        row = await self._conn.fetchrow(
            "SELECT r.reward_id, r.partner_id, r.title, r.cost, r.stock_per_month, r.per_rider_monthly_limit,"
            "       r.active, p.name AS partner_name, p.kind AS partner_kind"
            "  FROM reward r JOIN partner p USING (partner_id) WHERE r.reward_id = $1 FOR SHARE OF r",
            reward_id,
        )
        if row is None:
            return None
        fields = dict(row)
        partner = Partner(fields["partner_id"], fields.pop("partner_name"), fields.pop("partner_kind"))
        return Reward(**fields), partner

    async def reward(self, reward_id: str) -> Reward | None:
        row = await self._conn.fetchrow(
            "SELECT reward_id, partner_id, title, cost, stock_per_month, per_rider_monthly_limit, active"
            " FROM reward WHERE reward_id = $1",
            reward_id,
        )
        return Reward(**dict(row)) if row else None

    async def put_reward(self, reward: Reward) -> None:
        await self._conn.execute(
            "INSERT INTO reward (reward_id, partner_id, title, cost, stock_per_month, per_rider_monthly_limit, active)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (reward_id) DO UPDATE SET partner_id = EXCLUDED.partner_id, title = EXCLUDED.title,"
            " cost = EXCLUDED.cost, stock_per_month = EXCLUDED.stock_per_month,"
            " per_rider_monthly_limit = EXCLUDED.per_rider_monthly_limit, active = EXCLUDED.active, updated_at = now()",
            reward.reward_id,
            reward.partner_id,
            reward.title,
            reward.cost,
            reward.stock_per_month,
            reward.per_rider_monthly_limit,
            reward.active,
        )

    # --- stock and limits ----------------------------------------------------------------------

    async def take(self, reward: Reward, month: str, rider_id: str) -> Full:
        """Count one more hold of ``reward`` in ``month`` against its stock and against the rider's
        monthly limit, each where it has room; returns which had none. The caller rolls back when any
        was full. A reward with no stock limit keeps no total: that row would be shared by every
        reserve of the reward, each holding its lock to its commit, so a burst would queue on it
        (``count_stock`` makes the total when a stock is set)."""
        limits = [(rider_id, reward.per_rider_monthly_limit)]
        if reward.stock_per_month is not None:
            limits.append((ALL_RIDERS, reward.stock_per_month))
        full = await self._take(reward.reward_id, month, limits)
        return Full(stock=ALL_RIDERS in full, rider=rider_id in full)

    async def _take(self, reward_id: str, month: str, limits: Sequence[tuple[str, int | None]]) -> set[str]:
        """Count one more hold against each (counter, most) of ``limits`` that has room; returns the
        counters that had none. One statement, each counter a conditional upsert: concurrent reserves
        can never take more than ``most``."""
        rows = await self._conn.fetch(
            "INSERT INTO reward_usage AS u (reward_id, month, rider_id, used)"
            " SELECT $1, $2, c, 1 FROM unnest($3::text[], $4::int[]) AS l(c, most)"
            "  WHERE most IS NULL OR most > 0 ORDER BY c"
            " ON CONFLICT (reward_id, month, rider_id) DO UPDATE SET used = u.used + 1"
            "  WHERE u.used < coalesce((SELECT most FROM unnest($3::text[], $4::int[]) AS m(c, most)"
            "                            WHERE m.c = u.rider_id), 2147483647)"
            " RETURNING u.rider_id",
            reward_id,
            month,
            [c for c, _ in limits],
            [most for _, most in limits],
        )
        return {c for c, _ in limits} - {r["rider_id"] for r in rows}

    async def give_back(self, reward_id: str, month: str, rider_id: str) -> None:
        """A hold released: it no longer counts against the reward's stock nor the rider's limit. A
        counter already at zero did not count this hold (a total made while the hold was being
        released elsewhere, a clock a moment behind at the month's turn): it stays at zero."""
        await self._conn.execute(
            "UPDATE reward_usage SET used = used - 1"
            " WHERE reward_id = $1 AND month = $2 AND rider_id = ANY($3::text[]) AND used > 0",
            reward_id,
            month,
            [ALL_RIDERS, rider_id],
        )

    async def count_stock(self, reward: Reward, month: str) -> None:
        """Make the reward's total for ``month`` from its holds and confirmed redemptions, or drop its
        totals when it has no stock limit. Run after ``put_reward`` in the same unit of work: the
        reward's row is locked, so no reserve of it is in flight, and the holds counted are locked (FOR
        SHARE) so that a release under way finishes first and is not counted."""
        if reward.stock_per_month is None:
            await self._conn.execute(
                "DELETE FROM reward_usage WHERE reward_id = $1 AND rider_id = $2", reward.reward_id, ALL_RIDERS
            )
            return
        await self._conn.execute(
            "INSERT INTO reward_usage AS u (reward_id, month, rider_id, used)"
            " SELECT $1, $2, $3, count(*) FROM ("
            "   SELECT 1 FROM redemption WHERE reward_id = $1 AND month = $2 AND status IN ('held', 'confirmed')"
            "   FOR SHARE) AS counted"
            " ON CONFLICT (reward_id, month, rider_id) DO UPDATE SET used = EXCLUDED.used",
            reward.reward_id,
            month,
            ALL_RIDERS,
        )

    # --- redemptions ---------------------------------------------------------------------------

    async def add(self, r: Redemption) -> bool:
        """Insert a new hold; False when its code collides with a live hold (draw another)."""
        status = await self._conn.execute(
            f"INSERT INTO redemption ({REDEMPTION_COLUMNS})"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
            " ON CONFLICT (code) WHERE status = 'held' DO NOTHING",
            r.redemption_id,
            r.reward_id,
            r.partner_id,
            r.rider_id,
            r.title,
            r.cost,
            r.status.value,
            r.code,
            r.month,
            r.idempotency_key,
            r.request_hash,
            r.notice,
            r.created_at,
            r.expires_at,
            r.resolved_at,
            r.resolved_by,
        )
        return status.endswith(" 1")

    async def get(self, redemption_id: str, *, for_update: bool = False) -> Redemption | None:
        lock = " FOR UPDATE" if for_update else ""
        row = await self._conn.fetchrow(
            f"SELECT {REDEMPTION_COLUMNS} FROM redemption WHERE redemption_id = $1{lock}", redemption_id
        )
        return redemption_of(row) if row else None

    async def by_idempotency_key(self, rider_id: str, key: str) -> Redemption | None:
        row = await self._conn.fetchrow(
            f"SELECT {REDEMPTION_COLUMNS} FROM redemption WHERE rider_id = $1 AND idempotency_key = $2",
            rider_id,
            key,
        )
        return redemption_of(row) if row else None

    async def live_by_code(self, code: str) -> Redemption | None:
        row = await self._conn.fetchrow(
            f"SELECT {REDEMPTION_COLUMNS} FROM redemption WHERE code = $1 AND status = 'held' FOR UPDATE", code
        )
        return redemption_of(row) if row else None

    async def latest_by_code(self, code: str, partner_id: str) -> Redemption | None:
        """The partner's most recent redemption with this code, whatever its state (to explain a refusal)."""
        row = await self._conn.fetchrow(
            f"SELECT {REDEMPTION_COLUMNS} FROM redemption WHERE code = $1 AND partner_id = $2"
            " ORDER BY created_at DESC LIMIT 1",
            code,
            partner_id,
        )
        return redemption_of(row) if row else None

    async def resolve(self, redemption_id: str, status: Status, actor: str | None) -> Redemption | None:
        """Resolve a held redemption; the redemption as it is now, or None when it was not held."""
        row = await self._conn.fetchrow(
            "UPDATE redemption SET status = $2, resolved_at = now(), resolved_by = $3"
            f" WHERE redemption_id = $1 AND status = 'held' RETURNING {REDEMPTION_COLUMNS}",
            redemption_id,
            status.value,
            actor,
        )
        return redemption_of(row) if row else None

    async def due_to_expire(self, limit: int) -> list[Redemption]:
        """Holds past their expiry, locked; other replicas skip them."""
        rows = await self._conn.fetch(
            f"SELECT {REDEMPTION_COLUMNS} FROM redemption WHERE status = 'held' AND expires_at <= now()"
            " ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED",
            limit,
        )
        return [redemption_of(r) for r in rows]

    # --- guessing --------------------------------------------------------------------------------

    async def failures(self, partner_id: str, window_s: int) -> int:
        value = await self._conn.fetchval(
            "SELECT failures FROM partner_confirm_failure"
            " WHERE partner_id = $1 AND window_started_at > now() - make_interval(secs => $2)",
            partner_id,
            window_s,
        )
        return int(value or 0)

    async def count_failure(self, partner_id: str, window_s: int) -> int:
        value = await self._conn.fetchval(
            "INSERT INTO partner_confirm_failure AS f (partner_id, failures, window_started_at)"
            " VALUES ($1, 1, now())"
            " ON CONFLICT (partner_id) DO UPDATE SET"
            "   failures = CASE WHEN f.window_started_at > now() - make_interval(secs => $2)"
            "                   THEN f.failures + 1 ELSE 1 END,"
            "   window_started_at = CASE WHEN f.window_started_at > now() - make_interval(secs => $2)"
            "                   THEN f.window_started_at ELSE now() END"
            " RETURNING failures",
            partner_id,
            window_s,
        )
        return int(value)

    async def window_ends(self, partner_id: str, window_s: int) -> datetime | None:
        value: datetime | None = await self._conn.fetchval(
            "SELECT window_started_at + make_interval(secs => $2) FROM partner_confirm_failure WHERE partner_id = $1",
            partner_id,
            window_s,
        )
        return value
