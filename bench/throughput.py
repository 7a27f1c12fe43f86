"""Events per second through the points path, on its own stack (own database and ports).

Publishes N valid volunteer shifts across R riders, over Kafka and over HTTP (batches of 500),
and times each run from the first publish until the last award entry is committed.
Usage: python -m bench.throughput [--events 20000] [--riders 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

from bench.redemption import redemption_latency
from libs.platform.auth import Role, mint_token
from libs.platform.db import drop_database
from libs.platform.kafka import make_producer
from libs.platform.localstack import LocalStack
from libs.platform.settings import Settings
from services.cli import SERVICES, prepare_database

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = Settings(
    pg_database="warmbee_bench",
    kafka_bootstrap="127.0.0.1:29092",
    events_port=28001,
    points_port=28002,
    redemption_port=28003,
    worker_metrics_port=28012,
)


def events(n: int, riders: int, tag: str) -> list[dict[str, Any]]:
    start = datetime(2024, 3, 1, 9, tzinfo=UTC)
    return [
        {
            "specversion": "1.0",
            "id": f"bench-{tag}-{i}",
            "source": "volunteer-platform",
            "type": "volunteer.shift.completed",
            "subject": f"rider-{i % riders}",
            "time": (start + timedelta(hours=i // riders)).isoformat(),
            "data": {"shift_id": f"s-{tag}-{i}", "hours": 0.5},
        }
        for i in range(n)
    ]


async def awards(conn: asyncpg.Connection, tag: str) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM ledger_transaction WHERE kind = 'award' AND event_id LIKE $1", f"bench-{tag}-%"
        )
    )


async def wait_all(conn: asyncpg.Connection, tag: str, n: int) -> None:
    """Poll the ledger: the benchmark watches the database, not a signal from the code it measures."""
    while True:
        if await awards(conn, tag) >= n:
            return
        await asyncio.sleep(0.05)


async def via_kafka(settings: Settings, conn: asyncpg.Connection, n: int, riders: int) -> float:
    tag = uuid.uuid4().hex[:8]
    batch = events(n, riders, tag)
    producer = make_producer(settings)
    await producer.start()
    started = time.perf_counter()
    futures = [
        await producer.send(settings.topic_activity_events, orjson.dumps(e), key=e["subject"].encode()) for e in batch
    ]
    await asyncio.gather(*futures)
    await producer.stop()
    await wait_all(conn, tag, n)
    return n / (time.perf_counter() - started)


async def via_http(settings: Settings, conn: asyncpg.Connection, n: int, riders: int) -> float:
    tag = uuid.uuid4().hex[:8]
    batch = events(n, riders, tag)
    headers = {
        "authorization": f"Bearer {mint_token(settings, Role.SOURCE, 'volunteer-platform')}",
        "content-type": "application/cloudevents-batch+json",
    }
    url = f"http://{settings.host}:{settings.events_port}/v1/events"
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=60) as http:
        for i in range(0, n, 500):
            r = await http.post(url, content=orjson.dumps(batch[i : i + 500]), headers=headers)
            r.raise_for_status()
    await wait_all(conn, tag, n)
    return n / (time.perf_counter() - started)


async def main(n: int, riders: int) -> None:
    stack = LocalStack(SETTINGS, ROOT / ".run" / "bench-logs")
    stack.check_ports_free()
    await drop_database(SETTINGS)
    try:
        await stack.start_infrastructure(prepare_database)
        for name in SERVICES:
            stack.start_service(name)
        await stack.wait_healthy(list(SERVICES))
        conn = await asyncpg.connect(SETTINGS.database_url)
        await via_kafka(SETTINGS, conn, 2000, riders)  # warm-up: group join, caches, plans
        kafka_rate = await via_kafka(SETTINGS, conn, n, riders)
        http_rate = await via_http(SETTINGS, conn, n, riders)
        await conn.close()
        redemption = await redemption_latency(SETTINGS)
    finally:
        await asyncio.to_thread(stack.stop_all)
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "events": n,
        "riders": riders,
        "kafka_events_per_s": round(kafka_rate),
        "http_events_per_s": round(http_rate),
        "redemption": redemption,
    }
    print(f"{'path':<28}{'events/s':>10}")
    print(f"{'Kafka -> ledger':<28}{result['kafka_events_per_s']:>10}")
    print(f"{'HTTP -> outbox -> ledger':<28}{result['http_events_per_s']:>10}")
    red = redemption
    print(
        f"\nredemption: {red['riders']} riders at once, {red['reserves']} reserves, {red['confirms']} confirms,"
        f" {red['refused_for_points']} refused for lack of points, lowest balance {red['lowest_balance']}"
    )
    print(f"{'':<28}{'p50 ms':>10}{'p99 ms':>10}")
    print(f"{'reserve':<28}{red['reserve_p50_ms']:>10}{red['reserve_p99_ms']:>10}")
    print(f"{'confirm':<28}{red['confirm_p50_ms']:>10}{red['confirm_p99_ms']:>10}")
    out = ROOT / "bench" / "results" / "throughput.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--riders", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.riders))
