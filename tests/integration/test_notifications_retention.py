"""Retention of the notifications' tables against PostgreSQL: done rows older than the retention go, in
batches, from every table; pending deliveries and notices, and young rows, stay; a second run removes
nothing more; two runs at once remove each row once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial

import asyncpg
import pytest

from libs.platform.db import Database
from libs.platform.settings import Settings
from services.notifications import retention
from services.notifications.retention import prune_once

NOW = datetime.now(UTC)  # other tests' rows are young: only this test's backdated rows are old
OLD = NOW - timedelta(days=45)
YOUNG = NOW - timedelta(days=3)


async def seed(conn: asyncpg.Connection, tag: str) -> None:
    webhook = f"wh-{tag}"
    await conn.execute(
        "INSERT INTO webhook_subscription (webhook_id, owner_role, owner_id, url, kinds, secret_sealed)"
        " VALUES ($1, 'operator', 'ops', 'https://example.org/hook', '{points.awarded}', '\\x00')",
        webhook,
    )
    for n, (status, at) in enumerate([("delivered", OLD), ("failed", OLD), ("pending", OLD), ("delivered", YOUNG)]):
        await conn.execute(
            "INSERT INTO webhook_delivery (webhook_id, event_id, kind, body, status, created_at)"
            " VALUES ($1, $2, 'points.awarded', '{}', $3, $4)",
            webhook,
            f"{tag}-{n}",
            status,
            at,
        )
        await conn.execute(
            "INSERT INTO rider_notice (notice_key, rider_id, kind, body, status, created_at)"
            " VALUES ($1, $2, 'points.awarded', '{}', $3, $4)",
            f"{tag}-{n}",
            f"rider-{tag}",
            status,
            at,
        )
    for n, at in enumerate([OLD, YOUNG]):
        await conn.execute(
            "INSERT INTO notice_award (event_id, rider_id, points, heard_at, notice_id) VALUES ($1, $2, 5, $3, 1)",
            f"{tag}-award-{n}",
            f"rider-{tag}",
            at,
        )
        await conn.execute(
            "INSERT INTO notice_hold (redemption_id, rider_id, expires_at, warn_at, state)"
            " VALUES ($1, $2, $3, $3, 'ended')",
            f"{tag}-hold-{n}",
            f"rider-{tag}",
            at,
        )


async def left(conn: asyncpg.Connection, tag: str) -> dict[str, list[str]]:
    like = f"{tag}-%"
    return {
        "webhook_delivery": [
            r["status"]
            for r in await conn.fetch(
                "SELECT status FROM webhook_delivery WHERE event_id LIKE $1 ORDER BY event_id", like
            )
        ],
        "rider_notice": [
            r["status"]
            for r in await conn.fetch(
                "SELECT status FROM rider_notice WHERE notice_key LIKE $1 ORDER BY notice_key", like
            )
        ],
        "notice_award": [
            r["event_id"] for r in await conn.fetch("SELECT event_id FROM notice_award WHERE event_id LIKE $1", like)
        ],
        "notice_hold": [
            r["redemption_id"]
            for r in await conn.fetch("SELECT redemption_id FROM notice_hold WHERE redemption_id LIKE $1", like)
        ],
    }


async def test_done_rows_older_than_the_retention_go_and_pending_or_young_ones_stay(
    db: Database, settings: Settings
) -> None:
    tag = uuid.uuid4().hex[:8]
    await db.run(lambda conn: seed(conn, tag))

    while await prune_once(db, settings, now=NOW):
        pass

    async with db.read() as conn:
        remaining = await left(conn, tag)
    assert remaining == {
        "webhook_delivery": ["pending", "delivered"],  # a pending one is still being tried; a young one stays
        "rider_notice": ["pending", "delivered"],
        "notice_award": [f"{tag}-award-1"],
        "notice_hold": [f"{tag}-hold-1"],
    }
    assert not await prune_once(db, settings, now=NOW)


async def test_small_batches_and_two_runs_at_once_remove_each_row_once(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    tags = [uuid.uuid4().hex[:8] for _ in range(3)]
    for tag in tags:
        await db.run(partial(seed, tag=tag))
    monkeypatch.setattr(retention, "PRUNE_BATCH", 2)  # batches smaller than what is there
    rounds = 0
    while any(await asyncio.gather(*(prune_once(db, settings, now=NOW) for _ in range(2)))):
        rounds += 1
    assert rounds >= 2  # it took several batches
    async with db.read() as conn:
        for tag in tags:
            assert (await left(conn, tag))["webhook_delivery"] == ["pending", "delivered"]
