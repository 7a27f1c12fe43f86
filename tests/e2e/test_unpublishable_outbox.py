"""End to end: an outbox row the events service's relay can never publish does not hold back the next
one; the operator sees it in the metrics and with `warmbee outbox parked`."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import asyncpg
import pytest

from libs.platform.localstack import ROOT, LocalStack
from tests.e2e.conftest import Api, eventually, shift

pytestmark = pytest.mark.e2e


async def test_an_unpublishable_outbox_row_does_not_hold_back_the_next_one(
    stack: LocalStack, api: Api, rider: str
) -> None:
    settings = stack.settings
    conn = await asyncpg.connect(settings.database_url)
    # An event of 2 MiB, as the events service accepted them (up to 4 MiB) before events were limited to
    # 1 MiB: over the producer's limit, the relay could never publish it and retried it forever.
    stuck = await conn.fetchval(
        "INSERT INTO outbox (topic, key, value) VALUES ($1, $2, $3) RETURNING outbox_id",
        settings.topic_activity_events,
        rider.encode(),
        b'{"padding": "' + b"x" * (2 * 1024 * 1024) + b'"}',
    )
    try:
        event = shift(rider, 2)
        accepted = await api.publish(event)
        assert accepted.status_code == 202, accepted.text

        await api.wait_scored("volunteer-platform", event["id"], timeout_s=30)  # behind the big row, same key

        row = await conn.fetchrow("SELECT relayed_at, parked_at, park_reason FROM outbox WHERE outbox_id = $1", stuck)
        assert row is not None
        assert row["relayed_at"] is None
        assert row["parked_at"] is not None
        assert "over the producer's limit" in row["park_reason"]

        async def gauge() -> bool:
            r = await api.http.get(f"{api.events_url}/metrics")
            return f'warmbee_outbox_parked_messages{{topic="{settings.topic_activity_events}"}} 1.0' in r.text

        await eventually(gauge, 15, "the parked gauge of the events service at 1")

        listed = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "services.cli", "outbox", "parked", "--topic", settings.topic_activity_events],
            cwd=ROOT,
            env={"PATH": "/usr/bin:/bin", **settings.as_env()},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert listed.returncode == 0, listed.stderr
        assert any(line.strip().startswith(f"{stuck} ") and rider in line for line in listed.stdout.splitlines())
    finally:
        # Leave no parked row behind: the rest of the suite (and its alerts) should see a clean outbox.
        await conn.execute("DELETE FROM outbox WHERE outbox_id = $1", stuck)
        await conn.close()

    async def gauge_back_to_zero() -> bool:
        r = await api.http.get(f"{api.events_url}/metrics")
        return f'warmbee_outbox_parked_messages{{topic="{settings.topic_activity_events}"}} 0.0' in r.text

    await eventually(gauge_back_to_zero, 15, "the parked gauge back at 0")
