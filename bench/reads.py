"""Balance reads alone (issue 22: balance p99 at most 2x the raw row's p99), on a stack of its own: the
broker, PostgreSQL and the points API, nothing else running, so what is measured is the read path.

Each run: one rider's balance at ``rate`` requests a second for ``seconds`` from a load process of its own,
open loop (bench/load.py, as ``make bench`` reads it), then at the same rate the API's ``/healthz`` and the
balance row straight from PostgreSQL. Beside the latencies: the points API's and PostgreSQL's CPU per read.
Three runs; medians and ranges. Results in bench/results/reads.json.
Usage: python -m bench.reads [--runs 3] [--rate 1000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
from typing import Any

import httpx

from bench.stack import fresh_stack, results_head, write_results
from bench.throughput import SETTINGS, balance_reads, cpu_seconds, per_request_us, raw_reads
from libs.platform.auth import Role, mint_token
from libs.platform.localstack import LocalStack
from services.cli import prepare_database

RIDER = "bench-rider-1"


async def grant(points: int) -> None:
    """Points for the rider whose balance is read, so that the row and its lots exist."""
    operator = {"authorization": f"Bearer {mint_token(SETTINGS, Role.OPERATOR, 'bench')}"}
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(
            f"http://{SETTINGS.host}:{SETTINGS.points_port}/v1/adjustments",
            json={"rider_id": RIDER, "amount": points, "reason": "bench"},
            headers={**operator, "idempotency-key": f"{RIDER}-grant"},
        )
        r.raise_for_status()


async def one_run(stack: LocalStack, rate: int, seconds: int) -> dict[str, Any]:
    before = cpu_seconds(stack.processes)
    reads = await balance_reads(SETTINGS, seconds, rate=rate)
    cpu = per_request_us(before, cpu_seconds(stack.processes), reads["count"])
    healthz = await balance_reads(SETTINGS, seconds, rate=rate, path="/healthz")
    raw = await raw_reads(SETTINGS, seconds, rate=rate)
    return {
        "balance": reads,
        "healthz": healthz,
        "raw": raw,
        "balance_p99_over_raw_p99": round(reads["p99_ms"] / raw["p99_ms"], 2) if raw["p99_ms"] else None,
        "cpu_us_per_read": {k: v for k, v in cpu.items() if k in ("points-api", "postgres")},
    }


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def spread(values: list[float]) -> dict[str, float | list[float]]:
        return {"median": statistics.median(values), "range": [min(values), max(values)]}

    return {
        "balance_p50_ms": spread([r["balance"]["p50_ms"] for r in runs]),
        "balance_p99_ms": spread([r["balance"]["p99_ms"] for r in runs]),
        "raw_p99_ms": spread([r["raw"]["p99_ms"] for r in runs]),
        "healthz_p99_ms": spread([r["healthz"]["p99_ms"] for r in runs]),
        "ratio": spread([r["balance_p99_over_raw_p99"] or 0.0 for r in runs]),
        "points_api_cpu_us_per_read": spread([r["cpu_us_per_read"].get("points-api", 0.0) for r in runs]),
    }


async def main(runs: int, rate: int, seconds: int) -> None:
    stack = await fresh_stack(SETTINGS)
    result = results_head(rate=rate, seconds=seconds)
    try:
        await stack.start_infrastructure(prepare_database)
        stack.start_service("points-api")
        await stack.wait_healthy(["points-api"])
        await grant(100)
        await balance_reads(SETTINGS, 5, rate=rate)  # warm-up: connections and statements
        measured = []
        for _ in range(runs):
            measured.append(await one_run(stack, rate, seconds))
            last = measured[-1]
            print(
                f"balance p50 {last['balance']['p50_ms']} p99 {last['balance']['p99_ms']} ms,"
                f" raw p99 {last['raw']['p99_ms']} ms, healthz p99 {last['healthz']['p99_ms']} ms,"
                f" ratio {last['balance_p99_over_raw_p99']}, cpu us/read {last['cpu_us_per_read']}",
                flush=True,
            )
        result |= {"runs": measured, **medians(measured)}
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(stack.stop_all)
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=1))
    write_results("reads.json", result)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.rate, args.seconds))
