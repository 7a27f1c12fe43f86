"""A burst of reserves (issue 22: 200 reserves of one reward at the same instant, p99 under 250 ms, no
overdraft), on a stack of its own.

Each run: a new reward, 200 riders with points for one redemption each, every rider reserving at the same
instant and then having the code confirmed (bench/load.py's burst, with no sustained part). Three runs of a
reward with no stock limit and three of one with a stock (10,000 a month: room for every reserve, so the
count is taken and checked on every one). Beside the latencies: each process's CPU per redemption (reserve
and confirm) and what PostgreSQL's client sessions were waiting on during the runs (pg_stat_activity
sampled every 5 ms: a lock on one row shows as ``Lock/transactionid`` or ``Lock/tuple``, the commit's WAL
flush as ``IO/WALSync``, a session idle in its transaction while its process computes as
``idle in transaction``). Results in bench/results/reserves.json.
Usage: python -m bench.reserves [--runs 3] [--riders 200] [--api-replicas 1]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import statistics
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from bench.redemption import redemption_latency
from bench.stack import fresh_stack, results_head, write_results
from bench.throughput import SETTINGS, cpu_seconds, per_request_us, replica_ports, start_api_replicas
from libs.platform.localstack import LocalStack
from services.cli import SERVICES, prepare_database

STOCK = 10_000


async def sample_waits(dsn: str, database: str, stop: asyncio.Event) -> collections.Counter[str]:
    """What the client sessions of ``database`` are doing, sampled every 5 ms until ``stop``: a count of
    samples per wait (or state, where a session waits on nothing)."""
    seen: collections.Counter[str] = collections.Counter()
    conn = await asyncpg.connect(dsn)
    try:
        while not stop.is_set():
            rows = await conn.fetch(
                "SELECT state, wait_event_type, wait_event FROM pg_stat_activity"
                " WHERE datname = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
                "   AND state <> 'idle'",
                database,
            )
            for r in rows:
                what = f"{r['wait_event_type']}/{r['wait_event']}" if r["wait_event_type"] else r["state"]
                seen[what] += 1
            await asyncio.sleep(0.005)
    finally:
        await conn.close()
    return seen


@contextlib.asynccontextmanager
async def observed(stack: LocalStack, riders: int, seen: dict[str, Any]) -> AsyncIterator[None]:
    """Around the load: each process's CPU per redemption and the sessions' waits, into ``seen``."""
    stop = asyncio.Event()
    waits = asyncio.create_task(sample_waits(SETTINGS.database_url, SETTINGS.pg_database, stop))
    before = cpu_seconds(stack.processes)
    try:
        yield
    finally:
        seen["cpu_us_per_redemption"] = per_request_us(before, cpu_seconds(stack.processes), riders)
        stop.set()
        sampled = await waits
        total = sum(sampled.values()) or 1
        seen["session_waits_share"] = {k: round(v / total, 3) for k, v in sampled.most_common(8)}


async def one_burst(riders: int, stock: int | None, api_replicas: int, stack: LocalStack) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    measured = await redemption_latency(
        SETTINGS,
        riders=riders,
        seconds=0,
        pause_s=0.01,
        replica_ports=replica_ports(SETTINGS.redemption_port, api_replicas),
        stock=stock,
        around_load=observed(stack, riders, seen),
    )
    return {
        "reserve": measured["burst_reserve"],
        "confirm": measured["burst_confirm"],
        "lowest_balance": measured["lowest_balance"],
        "unexpected_statuses": measured["unexpected_statuses"],
        **seen,
    }


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    p99 = [r["reserve"]["p99_ms"] for r in runs]
    p50 = [r["reserve"]["p50_ms"] for r in runs]
    return {
        "reserve_p50_ms": statistics.median(p50),
        "reserve_p99_ms": statistics.median(p99),
        "reserve_p99_range_ms": [min(p99), max(p99)],
        "lowest_balance": min(r["lowest_balance"] for r in runs),
    }


async def main(runs: int, riders: int, api_replicas: int) -> None:
    stack = await fresh_stack(SETTINGS)
    result = results_head(riders=riders, api_replicas=api_replicas)
    try:
        await stack.start_infrastructure(prepare_database)
        for name in SERVICES:
            stack.start_service(name)
        await stack.wait_healthy(list(SERVICES))
        await start_api_replicas(stack, api_replicas)
        await one_burst(riders, None, api_replicas, stack)  # warm-up: connections, statements, caches
        for label, stock in (("no_stock_limit", None), ("stock_limit", STOCK)):
            measured = [await one_burst(riders, stock, api_replicas, stack) for _ in range(runs)]
            result[label] = {"runs": measured, **medians(measured)}
            print(f"{label}: {json.dumps(result[label] | {'runs': None})}", flush=True)
            for r in measured:
                print(f"  p99 {r['reserve']['p99_ms']} ms, waits {r['session_waits_share']}", flush=True)
                print(f"  cpu us/redemption {r['cpu_us_per_redemption']}", flush=True)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(stack.stop_all)
    write_results("reserves.json", result)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--riders", type=int, default=200)
    parser.add_argument("--api-replicas", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.riders, args.api_replicas))
