"""The notifications service's writes: subscriptions, and the deliveries of points-ledger events to them.
Each runs on the caller's connection and transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

from libs.platform.auth import Role
from services.notifications.domain.deliveries import Due


@dataclass(frozen=True, slots=True)
class Subscription:
    webhook_id: str
    owner_role: Role
    owner_id: str
    url: str
    kinds: tuple[str, ...]
    description: str
    created_at: datetime


# Told (NOTIFY, on commit) when new deliveries are recorded: an idle sender wakes at once instead of at its
# next poll. Only a wake-up: senders still poll, for retries coming due and for a notice missed.
DUE_CHANNEL = "webhook_delivery_due"

_SUBSCRIPTION = "webhook_id, owner_role, owner_id, url, kinds, description, created_at"


def subscription(r: asyncpg.Record) -> Subscription:
    return Subscription(
        r["webhook_id"],
        Role(r["owner_role"]),
        r["owner_id"],
        r["url"],
        tuple(r["kinds"]),
        r["description"],
        r["created_at"],
    )


class SubscriptionStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def create(
        self,
        webhook_id: str,
        role: Role,
        owner_id: str,
        url: str,
        kinds: Sequence[str],
        description: str,
        sealed: bytes,
    ) -> Subscription:
        row = await self._conn.fetchrow(
            "INSERT INTO webhook_subscription"
            " (webhook_id, owner_role, owner_id, url, kinds, description, secret_sealed)"
            f" VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_SUBSCRIPTION}",
            webhook_id,
            role.value,
            owner_id,
            url,
            list(kinds),
            description,
            sealed,
        )
        assert row is not None
        return subscription(row)

    async def delete(self, webhook_id: str) -> bool:
        """Stop a subscription: nothing more is delivered to it; its deliveries stay readable."""
        done = await self._conn.execute(
            "UPDATE webhook_subscription SET deleted_at = now() WHERE webhook_id = $1 AND deleted_at IS NULL",
            webhook_id,
        )
        await self._conn.execute(
            "UPDATE webhook_delivery SET status = 'failed', last_error = 'the subscription was deleted'"
            " WHERE webhook_id = $1 AND status = 'pending'",
            webhook_id,
        )
        return bool(done.endswith(" 1"))


class DeliveryStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def retry(self, webhook_id: str, delivery_id: int) -> str | None:
        """Make a delivery due now (a failed one waits for this); its status before, None when unknown."""
        row = await self._conn.fetchrow(
            "WITH before AS (SELECT status FROM webhook_delivery WHERE delivery_id = $2 AND webhook_id = $1"
            "                FOR UPDATE)"
            " UPDATE webhook_delivery d SET status = 'pending', next_attempt_at = now()"
            "   FROM before WHERE d.delivery_id = $2 AND before.status <> 'delivered'"
            " RETURNING (SELECT status FROM before) AS was",
            webhook_id,
            delivery_id,
        )
        if row is not None:
            return str(row["was"])
        status = await self._conn.fetchval(
            "SELECT status FROM webhook_delivery WHERE delivery_id = $2 AND webhook_id = $1", webhook_id, delivery_id
        )
        return None if status is None else str(status)


@dataclass(frozen=True, slots=True)
class Settled:
    """What to record of one attempt at a delivery (``retry_in_s`` None with ``delivered`` false: failed)."""

    delivery_id: int
    delivered: bool
    status: int | None
    error: str | None
    retry_in_s: float | None


# The tables of things sent with retries, and their id columns: webhook deliveries and rider notices.
_ATTEMPTED = {"webhook_delivery": "delivery_id", "rider_notice": "notice_id"}


async def settle_attempts(
    conn: asyncpg.Connection, table: Literal["webhook_delivery", "rider_notice"], outcomes: Sequence[Settled]
) -> None:
    """Record many attempts' outcomes in one statement: delivered, tried again in ``retry_in_s``, or
    ``failed`` for good when that is None (``Settled.delivery_id`` is the row's id in ``table``)."""
    if not outcomes:
        return
    key = _ATTEMPTED[table]
    await conn.execute(
        f"UPDATE {table} d SET attempts = d.attempts + 1, last_status = o.status, last_error = o.error,"
        " status = CASE WHEN o.delivered THEN 'delivered' WHEN o.retry_in_s IS NULL THEN 'failed'"
        "               ELSE 'pending' END,"
        " delivered_at = CASE WHEN o.delivered THEN now() ELSE d.delivered_at END,"
        " next_attempt_at = CASE WHEN o.delivered OR o.retry_in_s IS NULL THEN d.next_attempt_at"
        "                        ELSE now() + make_interval(secs => o.retry_in_s) END"
        "  FROM unnest($1::bigint[], $2::bool[], $3::int[], $4::text[], $5::float8[])"
        "       AS o(delivery_id, delivered, status, error, retry_in_s)"
        f" WHERE d.{key} = o.delivery_id",
        [o.delivery_id for o in outcomes],
        [o.delivered for o in outcomes],
        [o.status for o in outcomes],
        [None if o.delivered else o.error for o in outcomes],
        [None if o.delivered else o.retry_in_s for o in outcomes],
    )


class DeliveryWriter:
    """The deliveries the consumer records and the sender works through."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def listening(self) -> list[Subscription]:
        """Every live subscription."""
        rows = await self._conn.fetch(f"SELECT {_SUBSCRIPTION} FROM webhook_subscription WHERE deleted_at IS NULL")
        return [subscription(r) for r in rows]

    async def partners_of(self, redemption_ids: Sequence[str]) -> dict[str, str]:
        """The partner of each redemption (its reward's), for scoping partners' webhooks."""
        if not redemption_ids:
            return {}
        rows = await self._conn.fetch(
            "SELECT redemption_id, partner_id FROM redemption WHERE redemption_id = ANY($1::text[])",
            list(redemption_ids),
        )
        return {r["redemption_id"]: r["partner_id"] for r in rows}

    async def record(self, deliveries: Sequence[tuple[str, str, str, str]]) -> int:
        """(webhook_id, event_id, kind, body) rows, each once: a message read again adds nothing. When any
        is new, the senders listening on ``DUE_CHANNEL`` are told so when the transaction commits."""
        if not deliveries:
            return 0
        done = await self._conn.execute(
            "INSERT INTO webhook_delivery (webhook_id, event_id, kind, body)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])"
            " ON CONFLICT (webhook_id, event_id) DO NOTHING",
            *[list(column) for column in zip(*deliveries, strict=True)],
        )
        added = int(done.rsplit(" ", 1)[-1])
        if added:
            await self._conn.execute("SELECT pg_notify($1, '')", DUE_CHANNEL)
        return added

    async def claim_due(
        self, limit: int, per_subscription: int, lease_s: float, busy: Mapping[str, int] | None = None
    ) -> list[tuple[Due, bytes]]:
        """Pending deliveries whose time has come, oldest first, at most ``per_subscription`` of each
        subscription less the ``busy`` ones the caller already holds of it (so one slow receiver's backlog
        is never claimed faster than it is sent), with their subscription's sealed secret, leased for
        ``lease_s``: another sender (a replica) does not take them meanwhile, and if this one dies they come
        due again when the lease ends (at least once).

        Only the oldest ``4 × limit`` due deliveries of the subscriptions not already at their bound are
        ranked (an index scan in time order), not the whole backlog: ranking all of 20,000 due rows took
        a quarter of a second a claim. A subscription at its bound is passed over, so a slow receiver's
        backlog at the front does not hide the others' deliveries behind it."""
        held = busy or {}
        # The oldest due rows by walking the due index in time order; PostgreSQL's estimate of how many
        # rows are due lags a fast-moving backlog, and it would read and sort all of them instead.
        await self._conn.execute("SELECT set_config('enable_bitmapscan', 'off', true)")
        rows = await self._conn.fetch(
            "WITH held AS (SELECT * FROM unnest($4::text[], $5::int[]) AS h(webhook_id, n)),"
            " candidates AS ("
            "  SELECT w.delivery_id, w.webhook_id, w.next_attempt_at FROM webhook_delivery w"
            "   WHERE w.status = 'pending' AND w.next_attempt_at <= now()"
            "     AND NOT EXISTS (SELECT 1 FROM held h WHERE h.webhook_id = w.webhook_id AND h.n >= $3)"
            "   ORDER BY w.next_attempt_at LIMIT $1 * 4),"
            " ranked AS ("
            "  SELECT c.delivery_id, coalesce(h.n, 0)"
            "         + row_number() OVER (PARTITION BY c.webhook_id ORDER BY c.next_attempt_at) AS n"
            "    FROM candidates c LEFT JOIN held h ON h.webhook_id = c.webhook_id),"
            " due AS ("
            "  SELECT d.delivery_id FROM webhook_delivery d JOIN ranked r ON r.delivery_id = d.delivery_id"
            "   WHERE r.n <= $3 AND d.status = 'pending' AND d.next_attempt_at <= now()"
            "   ORDER BY d.next_attempt_at LIMIT $1 FOR UPDATE OF d SKIP LOCKED)"
            " UPDATE webhook_delivery d SET next_attempt_at = now() + make_interval(secs => $2)"
            "   FROM due, webhook_subscription s"
            "  WHERE d.delivery_id = due.delivery_id AND s.webhook_id = d.webhook_id"
            " RETURNING d.delivery_id, d.webhook_id, d.event_id, s.url, d.body, d.attempts, d.created_at,"
            "           s.secret_sealed, d.kind",
            limit,
            lease_s,
            per_subscription,
            list(held),
            list(held.values()),
        )
        await self._conn.execute("SELECT set_config('enable_bitmapscan', 'on', true)")
        return [
            (
                Due(
                    r["delivery_id"],
                    r["webhook_id"],
                    r["event_id"],
                    r["url"],
                    r["body"],
                    r["attempts"],
                    r["created_at"],
                    r["kind"],
                ),
                bytes(r["secret_sealed"]),
            )
            for r in rows
        ]

    async def release(self, delivery_ids: Sequence[int]) -> int:
        """Give back deliveries this sender claimed and did not finish (it is stopping): due at once for
        any sender, rather than when their lease ends. Only those still pending and leased (due later);
        how many."""
        released: str = await self._conn.execute(
            "UPDATE webhook_delivery SET next_attempt_at = now()"
            " WHERE delivery_id = ANY($1::bigint[]) AND status = 'pending' AND next_attempt_at > now()",
            list(delivery_ids),
        )
        return int(released.rsplit(" ", 1)[-1])

    async def settle(self, outcomes: Sequence[Settled]) -> None:
        """Record many attempts' outcomes in one statement (``settle_attempts``)."""
        await settle_attempts(self._conn, "webhook_delivery", outcomes)

    async def delivered(self, delivery_id: int, status: int | None) -> None:
        await self.settle([Settled(delivery_id, True, status, None, None)])

    async def attempt_failed(
        self, delivery_id: int, status: int | None, error: str | None, retry_in_s: float | None
    ) -> None:
        """A failed attempt: tried again in ``retry_in_s``, or ``failed`` for good when it is None."""
        await self.settle([Settled(delivery_id, False, status, error, retry_in_s)])

    async def backlog(self) -> tuple[float, int]:
        """The age in seconds of the oldest pending delivery (0 when none), and how many live
        subscriptions have a delivery pending after a failed attempt."""
        row = await self._conn.fetchrow(
            "SELECT coalesce(extract(epoch FROM now() - min(d.created_at)), 0)::float8 AS oldest,"
            "       count(DISTINCT d.webhook_id) FILTER (WHERE d.attempts > 0) AS failing"
            "  FROM webhook_delivery d WHERE d.status = 'pending'"
        )
        assert row is not None
        return float(row["oldest"]), int(row["failing"])
