"""The notifications service's writes: subscriptions, and the deliveries of points-ledger events to them.
Each runs on the caller's connection and transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from libs.platform.auth import Role


@dataclass(frozen=True, slots=True)
class Subscription:
    webhook_id: str
    owner_role: Role
    owner_id: str
    url: str
    kinds: tuple[str, ...]
    description: str
    created_at: datetime


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
