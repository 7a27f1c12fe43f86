"""The rider notices' writes: the awards and holds heard of, the notices made of them, and their
deliveries to the gateway. Each runs on the caller's connection and transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg

from services.notifications.domain.deliveries import Due
from services.notifications.domain.notices import Award, Hold, Notice
from services.notifications.store import Settled, settle_attempts

GATEWAY = "gateway"  # the Due.webhook_id of a notice: the sender's bound and logs name it so
_GATHERER_LOCK = "warmbee:notifications:gather-notices"  # one replica gathers at a time


class NoticeWriter:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def hear_awards(self, awards: Sequence[Award]) -> None:
        """Awards to sum into their riders' next notice; each event once (a message read again adds none)."""
        if awards:
            await self._conn.execute(
                "INSERT INTO notice_award (event_id, rider_id, category, points)"
                " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[])"
                " ON CONFLICT (event_id) DO NOTHING",
                [a.event_id for a in awards],
                [a.rider_id for a in awards],
                [a.category for a in awards],
                [a.points for a in awards],
            )

    async def arm_holds(self, holds: Sequence[tuple[str, str, datetime]], warn_before: timedelta) -> None:
        """(redemption_id, rider_id, expires_at) of new holds: each is warned of once, ``warn_before`` ahead
        of its expiry. A hold heard of again (or after it ended) stays as it is."""
        if holds:
            await self._conn.execute(
                "INSERT INTO notice_hold (redemption_id, rider_id, expires_at, warn_at)"
                " SELECT id, rider, expires, expires - $4::interval"
                "   FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS h(id, rider, expires)"
                " ON CONFLICT (redemption_id) DO NOTHING",
                [h[0] for h in holds],
                [h[1] for h in holds],
                [h[2] for h in holds],
                warn_before,
            )

    async def end_holds(self, redemption_ids: Sequence[str]) -> None:
        """Codes confirmed, cancelled or expired: no warning for them any more."""
        if redemption_ids:
            await self._conn.execute(
                "UPDATE notice_hold SET state = 'ended' WHERE redemption_id = ANY($1::text[]) AND state <> 'ended'",
                list(redemption_ids),
            )

    async def holds(self, redemption_ids: Sequence[str]) -> dict[str, Hold]:
        """The redemptions as their notices name them: the title it was reserved under, the partner's name."""
        if not redemption_ids:
            return {}
        rows = await self._conn.fetch(
            "SELECT r.redemption_id, r.rider_id, r.cost, r.expires_at, r.title,"
            "       coalesce(p.name, r.partner_id) AS partner"
            "  FROM redemption r LEFT JOIN partner p ON p.partner_id = r.partner_id"
            " WHERE r.redemption_id = ANY($1::text[])",
            list(redemption_ids),
        )
        return {
            r["redemption_id"]: Hold(
                r["redemption_id"],
                r["rider_id"],
                r["cost"],
                r["expires_at"],
                r["title"] or r["redemption_id"],
                r["partner"],
            )
            for r in rows
        }

    async def add(self, notices: Sequence[Notice]) -> dict[str, int]:
        """Notices to deliver, each key once; the notice id of each one added now, by key."""
        if not notices:
            return {}
        rows = await self._conn.fetch(
            "INSERT INTO rider_notice (notice_key, rider_id, kind, body)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])"
            " ON CONFLICT (notice_key) DO NOTHING RETURNING notice_key, notice_id",
            [n.key for n in notices],
            [n.rider_id for n in notices],
            [n.kind for n in notices],
            [n.body() for n in notices],
        )
        return {r["notice_key"]: r["notice_id"] for r in rows}

    async def gather(self) -> bool:
        """Take the gatherer's lock for this transaction; False when another replica holds it."""
        return bool(
            await self._conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtextextended($1, 42))", _GATHERER_LOCK)
        )

    async def awards_due(self, window: timedelta, riders: int) -> list[Award]:
        """Every untold award of up to ``riders`` riders whose first untold award is ``window`` old,
        those waiting longest first. Bounded work however long the backlog: the oldest untold awards
        (an index range, a few per rider) name the riders, then each rider's untold awards are read."""
        rows = await self._conn.fetch(
            "WITH oldest AS (SELECT rider_id, heard_at FROM notice_award"
            "                 WHERE notice_id IS NULL AND heard_at <= now() - $1::interval"
            "                 ORDER BY heard_at LIMIT $2 * 4),"
            " due AS (SELECT rider_id FROM oldest GROUP BY rider_id ORDER BY min(heard_at) LIMIT $2)"
            " SELECT a.event_id, a.rider_id, a.category, a.points FROM notice_award a JOIN due USING (rider_id)"
            "  WHERE a.notice_id IS NULL ORDER BY a.rider_id, a.heard_at, a.event_id",
            window,
            riders,
        )
        return [Award(r["event_id"], r["rider_id"], r["category"], r["points"]) for r in rows]

    async def told(self, awards_by_notice: dict[int, Sequence[str]]) -> None:
        """The awards each notice told of (notice id -> event ids)."""
        pairs = [(notice_id, event_id) for notice_id, ids in awards_by_notice.items() for event_id in ids]
        if pairs:
            await self._conn.execute(
                "UPDATE notice_award a SET notice_id = t.notice_id"
                "  FROM unnest($1::bigint[], $2::text[]) AS t(notice_id, event_id) WHERE a.event_id = t.event_id",
                [p[0] for p in pairs],
                [p[1] for p in pairs],
            )

    async def holds_to_warn(self, limit: int) -> list[str]:
        """Holds whose warning is due, marked warned; one the redemption service already resolved (its
        event not heard yet) is ended without a warning."""
        rows = await self._conn.fetch(
            "WITH due AS (SELECT redemption_id FROM notice_hold WHERE state = 'held' AND warn_at <= now()"
            "              ORDER BY warn_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
            " UPDATE notice_hold h SET state = CASE WHEN r.status = 'held' THEN 'warned' ELSE 'ended' END"
            "   FROM due LEFT JOIN redemption r ON r.redemption_id = due.redemption_id"
            "  WHERE h.redemption_id = due.redemption_id"
            " RETURNING h.redemption_id, h.state",
            limit,
        )
        return [r["redemption_id"] for r in rows if r["state"] == "warned"]

    async def claim_due(self, url: str, limit: int, lease_s: float) -> list[Due]:
        """Pending notices whose time has come, leased for ``lease_s`` (see DeliveryWriter.claim_due)."""
        rows = await self._conn.fetch(
            "WITH due AS (SELECT notice_id FROM rider_notice WHERE status = 'pending' AND next_attempt_at <= now()"
            "              ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
            " UPDATE rider_notice n SET next_attempt_at = now() + make_interval(secs => $2)"
            "   FROM due WHERE n.notice_id = due.notice_id"
            " RETURNING n.notice_id, n.notice_key, n.body, n.attempts, n.created_at, n.kind",
            limit,
            lease_s,
        )
        return [
            Due(r["notice_id"], GATEWAY, r["notice_key"], url, r["body"], r["attempts"], r["created_at"], r["kind"])
            for r in rows
        ]

    async def settle(self, outcomes: Sequence[Settled]) -> None:
        """Record many attempts' outcomes in one statement (``settle_attempts``)."""
        await settle_attempts(self._conn, "rider_notice", outcomes)

    async def oldest_pending_s(self) -> float:
        """The age in seconds of the oldest notice not yet delivered (0 when none)."""
        value = await self._conn.fetchval(
            "SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 FROM rider_notice"
            " WHERE status = 'pending'"
        )
        return float(value)
