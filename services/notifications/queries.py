"""The notifications service's reads: subscriptions and their deliveries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from libs.platform.auth import Role
from services.notifications.store import _SUBSCRIPTION, Subscription, subscription


@dataclass(frozen=True, slots=True)
class Delivery:
    delivery_id: int
    event_id: str
    kind: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class NotificationQueries:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def subscriptions(self, role: Role, owner_id: str, limit: int, offset: int = 0) -> list[Subscription]:
        """Live subscriptions, oldest first: an operator sees all, anyone else its own."""
        rows = await self._conn.fetch(
            f"SELECT {_SUBSCRIPTION} FROM webhook_subscription"
            " WHERE deleted_at IS NULL AND ($1 OR (owner_role = $2 AND owner_id = $3))"
            " ORDER BY created_at, webhook_id LIMIT $4 OFFSET $5",
            role is Role.OPERATOR,
            role.value,
            owner_id,
            limit,
            offset,
        )
        return [subscription(r) for r in rows]

    async def subscription(self, webhook_id: str) -> Subscription | None:
        row = await self._conn.fetchrow(
            f"SELECT {_SUBSCRIPTION} FROM webhook_subscription WHERE webhook_id = $1 AND deleted_at IS NULL",
            webhook_id,
        )
        return None if row is None else subscription(row)

    async def deliveries(
        self, webhook_id: str, status: str | None, limit: int, before_id: int | None
    ) -> list[Delivery]:
        rows = await self._conn.fetch(
            "SELECT delivery_id, event_id, kind, status, attempts, next_attempt_at, last_status, last_error,"
            "       created_at, delivered_at FROM webhook_delivery"
            " WHERE webhook_id = $1 AND ($2::text IS NULL OR status = $2)"
            "   AND ($3::bigint IS NULL OR delivery_id < $3)"
            " ORDER BY delivery_id DESC LIMIT $4",
            webhook_id,
            status,
            before_id,
            limit,
        )
        return [Delivery(**dict(r)) for r in rows]
