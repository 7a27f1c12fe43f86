"""Webhook deliveries per second: the notifications sender's whole path against a local receiver.

10 subscriptions hear of N points-ledger events: ``record_deliveries`` writes the 10 × N delivery rows
(as the worker does before acknowledging), then ``send_due`` works through them: claim with a lease,
sign, POST, record the outcome. The receiver runs in a process of its own and answers 204. The
baseline, measured in the same run: the same number of signed POSTs by the same Sender without the
database, so the ratio says what the database steps cost.
Usage: python -m bench.webhooks [--events 2000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

from libs.platform.auth import Role
from libs.platform.db import Database, drop_database
from libs.platform.settings import Settings
from services.cli import prepare_database
from services.notifications.domain.deliveries import Due
from services.notifications.domain.subscriptions import new_secret, new_webhook_id
from services.notifications.handlers import record_deliveries, send_due
from services.notifications.sealing import Sealer
from services.notifications.sender import Sender
from services.notifications.store import SubscriptionStore

ROOT = Path(__file__).resolve().parents[1]
RECEIVER_PORT = 28099
SUBSCRIPTIONS = 10
SETTINGS = Settings(
    pg_database="warmbee_bench_webhooks",
    webhook_in_flight=64,
    webhook_in_flight_per_subscription=8,
)
RECEIVER = f"""
import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
async def hook(request):
    await request.body()
    return Response(status_code=204)
uvicorn.run(Starlette(routes=[Route("/hook/{{n}}", hook, methods=["POST"])]), host="127.0.0.1",
            port={RECEIVER_PORT}, log_level="warning", access_log=False)
"""


def ledger_message(i: int, tag: str) -> bytes:
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": f"entry-{tag}-{i}",
            "source": "warmbee/points",
            "type": "points.award.recorded",
            "subject": f"rider-{i % 500}",
            "time": datetime.now(UTC),
            "data": {"entry_id": i, "kind": "award", "amount": 10, "source": "bench", "event_id": f"e-{tag}-{i}"},
        }
    )


async def no_refusal(url: str) -> str | None:
    return None


async def one_run(db: Database, events: int) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    sealer = Sealer.of(SETTINGS)
    async with db.read() as conn:  # each run its own 10 subscriptions
        await conn.execute("UPDATE webhook_subscription SET deleted_at = now() WHERE deleted_at IS NULL")
    for n in range(SUBSCRIPTIONS):
        url = f"http://127.0.0.1:{RECEIVER_PORT}/hook/{tag}-{n}"

        async def subscribe(conn: asyncpg.Connection, url: str = url) -> None:
            await SubscriptionStore(conn).create(
                new_webhook_id(), Role.OPERATOR, "bench", url, ["points.awarded"], "", sealer.seal(new_secret())
            )

        await db.run(subscribe)
    messages = [ledger_message(i, tag) for i in range(events)]
    started = time.perf_counter()
    for i in range(0, events, 500):
        await record_deliveries(db, messages[i : i + 500])
    recorded_s = time.perf_counter() - started
    async with Sender(
        no_refusal,
        timeout_s=SETTINGS.webhook_timeout_s,
        in_flight=SETTINGS.webhook_in_flight,
        in_flight_per_subscription=SETTINGS.webhook_in_flight_per_subscription,
    ) as sender:
        started = time.perf_counter()
        sent = 0
        while (step := await send_due(db, SETTINGS, sender, 500)) > 0:
            sent += step
        send_s = time.perf_counter() - started
        # The baseline: the same attempts, signed and sent by the same Sender, with no database.
        secret = new_secret()
        dues = [
            (
                Due(
                    i,
                    f"wh-{i % SUBSCRIPTIONS}",
                    f"entry-{i}",
                    f"http://127.0.0.1:{RECEIVER_PORT}/hook/base-{i % SUBSCRIPTIONS}",
                    messages[i % events].decode(),
                    0,
                    datetime.now(UTC),
                ),
                secret,
            )
            for i in range(sent)
        ]
        started = time.perf_counter()
        for i in range(0, len(dues), SETTINGS.webhook_in_flight):
            await sender.attempt_all(dues[i : i + SETTINGS.webhook_in_flight])
        baseline_s = time.perf_counter() - started
    async with db.read() as conn:
        pending = await conn.fetchval("SELECT count(*) FROM webhook_delivery WHERE status <> 'delivered'")
    return {
        "deliveries": sent,
        "record_per_s": round(sent / recorded_s),
        "deliveries_per_s": round(sent / send_s),
        "baseline_posts_per_s": round(sent / baseline_s),
        "ratio_to_baseline": round(baseline_s / send_s, 2),
        "not_delivered": pending,
    }


async def main(events: int, runs: int) -> None:
    receiver = await asyncio.create_subprocess_exec(sys.executable, "-c", RECEIVER)
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(100):
                try:
                    await http.post(f"http://127.0.0.1:{RECEIVER_PORT}/hook/ping", timeout=1)
                    break
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
        await drop_database(SETTINGS)
        await prepare_database(SETTINGS)
        db = Database(SETTINGS)
        await db.open()
        try:
            results = [await one_run(db, events) for _ in range(runs)]
        finally:
            await db.close()
    finally:
        receiver.terminate()
        await receiver.wait()
    summary = {
        "measured_at": datetime.now(UTC).isoformat(),
        "subscriptions": SUBSCRIPTIONS,
        "events_per_run": events,
        "runs": results,
        "median_deliveries_per_s": statistics.median(r["deliveries_per_s"] for r in results),
        "median_ratio_to_baseline": statistics.median(r["ratio_to_baseline"] for r in results),
    }
    out = ROOT / "bench" / "results" / "webhooks.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.runs))
