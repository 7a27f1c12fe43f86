"""Horizontal scale-out of the points worker, measured: 1, 2 and 4 worker processes in one consumer
group on a 16-partition ``activity-events``, the same workload each time, then 4 workers again with
one of them killed (SIGKILL) half-way, to show the group rebalance and every event scored exactly once.

Each run gets a fresh database and a fresh broker (the local broker keeps topics in memory), so the
runs start from the same state. A run is timed from the first publish until the last award entry is
committed, as in ``bench/throughput.py``, whose event generator it uses. PostgreSQL's share of the
time is read from the database itself (``pg_stat_database.active_time``: time spent executing
statements in this database) and from the CPU time of its backends, next to the workers', the
broker's and the publisher's.

The local broker (Tansu) can wedge a consumer group when two members leave at nearly the same moment,
so workers are started and stopped one at a time, each change waiting until every remaining worker
has its partitions again.

Usage: python -m bench.scaleout [--events 200000] [--riders 1000] [--workers 1,2,4] [--no-kill]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from bench.group import Worker, current_assignment, start_worker, wait_group_stable
from bench.throughput import events
from libs.platform.db import drop_database
from libs.platform.kafka import make_producer
from libs.platform.localstack import LocalStack
from libs.platform.settings import Settings
from services.cli import prepare_database

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 16
SETTINGS = Settings(
    pg_database="warmbee_scaleout",
    kafka_bootstrap="127.0.0.1:39092",
    events_port=38101,
    points_port=38102,
    redemption_port=38103,
    worker_metrics_port=38112,
    topic_partitions=PARTITIONS,
)
LOG_DIR = ROOT / ".run" / "scaleout-logs"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# The whole-database reconciliation inside the worker is pushed out of the measured window.
WORKER_ENV = {"WARMBEE_RECONCILE_INTERVAL_S": "3600"}
WARM_UP_EVENTS = 2000


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process, or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14 and 15)


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


@dataclass
class CpuMeter:
    """Samples the CPU time of named groups of processes; a process seen first after the baseline
    counts from zero, one that exits keeps its last sample."""

    first: dict[int, float] = field(default_factory=dict)
    last: dict[int, float] = field(default_factory=dict)
    group_of: dict[int, str] = field(default_factory=dict)

    def sample(self, groups: dict[str, list[int]], baseline: bool = False) -> None:
        for group, pids in groups.items():
            for pid in pids:
                seconds = cpu_seconds(pid)
                if seconds is None:
                    continue
                if pid not in self.first:
                    self.first[pid] = seconds if baseline else 0.0
                    self.group_of[pid] = group
                self.last[pid] = seconds

    def totals(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for pid, group in self.group_of.items():
            out[group] = out.get(group, 0.0) + self.last[pid] - self.first[pid]
        return out


def duplicates_seen(worker: Worker) -> int:
    """Redelivered messages the worker recognised as already scored (from its /metrics)."""
    url = f"http://{SETTINGS.host}:{worker.port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            text = response.read().decode()
    except OSError:
        return 0
    found = re.search(r'warmbee_events_consumed_total\{outcome="duplicate"\} ([0-9.e+]+)', text)
    return int(float(found.group(1))) if found else 0


async def count_awards(conn: asyncpg.Connection, tag: str) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM ledger_transaction WHERE kind = 'award' AND event_id LIKE $1", f"bench-{tag}-%"
        )
    )


async def wait_awards(conn: asyncpg.Connection, tag: str, n: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while await count_awards(conn, tag) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {await count_awards(conn, tag)} of {n} events scored after {timeout_s} s")
        await asyncio.sleep(0.25)


async def publish(n: int, riders: int, tag: str) -> float:
    """Publish the workload keyed by rider; returns the seconds it took."""
    batch = events(n, riders, tag)
    producer = make_producer(SETTINGS)
    await producer.start()
    started = time.perf_counter()
    try:
        futures = [
            await producer.send(SETTINGS.topic_activity_events, orjson.dumps(e), key=e["subject"].encode())
            for e in batch
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def pg_active_ms(conn: asyncpg.Connection) -> float:
    return float(
        await conn.fetchval("SELECT active_time FROM pg_stat_database WHERE datname = $1", SETTINGS.pg_database)
    )


async def pg_backend_pids(conn: asyncpg.Connection) -> list[int]:
    rows = await conn.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", SETTINGS.pg_database
    )
    return [int(r["pid"]) for r in rows]


async def stop_workers_one_at_a_time(stack: LocalStack, workers: list[Worker]) -> None:
    """SIGTERM one worker, wait until the rest own all partitions again, then the next."""
    remaining = [w for w in workers if w.process.poll() is None]
    while remaining:
        leaving = remaining.pop()
        await asyncio.to_thread(stack.stop, leaving.instance)
        if remaining:
            try:
                await wait_group_stable(remaining, timeout_s=60, partitions=PARTITIONS)
            except TimeoutError as exc:  # the broker is thrown away after the run: note it, carry on
                print(f"  (while stopping: {exc})", flush=True)


def cli(*args: str) -> tuple[int, str]:
    env = {**os.environ, **SETTINGS.as_env()}
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    return done.returncode, (done.stdout + done.stderr).strip()


async def run_once(stack: LocalStack, n_workers: int, n: int, riders: int, kill: bool) -> dict[str, Any]:
    label = f"{n_workers} workers" + (", one killed" if kill else "")
    print(f"\n== {label}: fresh database and broker, {PARTITIONS} partitions", flush=True)
    await asyncio.to_thread(stack.stop, "broker")
    await drop_database(SETTINGS)
    await prepare_database(SETTINGS)
    await stack.start_broker()

    run_id = f"w{n_workers}{'k' if kill else ''}"
    workers: list[Worker] = []
    for i in range(n_workers):  # one at a time: each join waits for the group to settle
        workers.append(start_worker(stack, f"worker-{run_id}-{i}", SETTINGS.worker_metrics_port + i, WORKER_ENV))
        await wait_group_stable(workers, partitions=PARTITIONS)
    print(f"  group stable: {[sorted(current_assignment(w) or []) for w in workers]}", flush=True)

    conn = await asyncpg.connect(SETTINGS.database_url)
    try:
        warm = uuid.uuid4().hex[:8]
        await publish(WARM_UP_EVENTS, riders, warm)  # joins, caches, plans
        await wait_awards(conn, warm, WARM_UP_EVENTS, timeout_s=120)
        await asyncio.sleep(2)  # idle backends flush their statistics within a second or so

        tag = uuid.uuid4().hex[:8]
        meter = CpuMeter()

        def groups() -> dict[str, list[int]]:
            return {
                "workers": [w.process.pid for w in workers],
                "broker": [stack.processes["broker"].pid],
                "postgres": backends,
                "publisher": [os.getpid()],
            }

        backends = await pg_backend_pids(conn)
        meter.sample(groups(), baseline=True)
        active_before = await pg_active_ms(conn)
        busy_before, total_before = machine_busy()

        killed: dict[str, Any] | None = None
        killed_at = 0.0
        rebalance: asyncio.Task[float] | None = None
        started = time.perf_counter()
        publishing = asyncio.create_task(publish(n, riders, tag))
        while True:
            done = await count_awards(conn, tag)
            backends = sorted(set(backends) | set(await pg_backend_pids(conn)))
            meter.sample(groups())
            if done >= n:
                break
            if kill and killed is None and done >= n // 2:
                victim = workers[1]
                victim.process.send_signal(signal.SIGKILL)
                killed_at = time.perf_counter()
                victim.process.wait()
                stack.processes.pop(victim.instance, None)
                print(f"  SIGKILL {victim.instance} at {done} of {n} scored", flush=True)
                survivors = [w for w in workers if w is not victim]
                killed = {"instance": victim.instance, "scored_when_killed": done, "survivors": survivors}
                rebalance = asyncio.create_task(wait_group_stable(survivors, timeout_s=120, partitions=PARTITIONS))
            if killed is not None and rebalance is not None and "rebalanced_after_s" not in killed and rebalance.done():
                rebalance.result()
                killed["rebalanced_after_s"] = round(time.perf_counter() - killed_at, 1)
                print(f"  group rebalanced {killed['rebalanced_after_s']} s after the kill", flush=True)
            if time.perf_counter() - started > 480:
                raise TimeoutError(f"{done} of {n} scored after 480 s; see {stack.log_dir}")
            await asyncio.sleep(0.25)
        wall = time.perf_counter() - started
        publish_s = await publishing
        if killed is not None and rebalance is not None and "rebalanced_after_s" not in killed:
            await rebalance
            killed["rebalanced_after_s"] = round(time.perf_counter() - killed_at, 1)

        await asyncio.sleep(2)
        meter.sample(groups())
        active_ms = await pg_active_ms(conn) - active_before
        busy_after, total_after = machine_busy()
        span = await conn.fetchrow(
            """SELECT min(recorded_at), max(recorded_at) FROM ledger_transaction
               WHERE kind = 'award' AND event_id LIKE $1""",
            f"bench-{tag}-%",
        )
        assert span is not None
        first, last = span[0], span[1]
        duplicate_entries = int(
            await conn.fetchval(
                """SELECT count(*) FROM (SELECT 1 FROM ledger_transaction
                   WHERE kind = 'award' AND event_id LIKE $1 GROUP BY source, event_id HAVING count(*) > 1) d""",
                f"bench-{tag}-%",
            )
        )
        scored = await count_awards(conn, tag)
        cpu = meter.totals()
        result: dict[str, Any] = {
            "workers": n_workers,
            "killed_one": kill,
            "events": n,
            "wall_s": round(wall, 1),
            "events_per_s": round(n / wall),
            "commit_span_events_per_s": round(n / max((last - first).total_seconds(), 1e-3)),
            "publish_s": round(publish_s, 1),
            "awards": scored,
            "duplicate_awards": duplicate_entries,
            "pg_active_s": round(active_ms / 1000, 1),
            "pg_active_share_of_worker_time": round(active_ms / 1000 / (wall * n_workers), 2),
            "cpu_s": {k: round(v, 1) for k, v in cpu.items()},
            "pg_share_of_cpu": round(cpu.get("postgres", 0.0) / max(sum(cpu.values()), 1e-9), 2),
            "machine_cpu_busy": round((busy_after - busy_before) / max(total_after - total_before, 1e-9), 2),
        }
        if killed is not None:
            survivors = killed.pop("survivors")
            killed["duplicates_recognised"] = sum(duplicates_seen(w) for w in survivors)
            rc, out = cli("replay")
            killed["replay"] = {"exit": rc, "output": out.splitlines()[-1] if out else ""}
            rc, out = cli("reconcile")
            killed["reconcile"] = (
                {"exit": rc, "output": out.splitlines()[-1] if out else ""}
                if "No such command" not in out
                else "not available in this checkout"
            )
            result["kill"] = killed
    finally:
        await conn.close()
        await stop_workers_one_at_a_time(stack, workers)
    print(f"  {json.dumps(result)}", flush=True)
    return result


def table(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"{'workers':<22}{'events/s':>9}{'wall s':>8}{'PG active':>10}{'PG CPU':>8}"
        f"{'worker CPU s':>13}{'PG CPU s':>9}{'broker CPU s':>13}{'machine busy':>13}"
    ]
    for r in results:
        name = f"{r['workers']}" + (" (one SIGKILLed)" if r["killed_one"] else "")
        cpu = r["cpu_s"]
        lines.append(
            f"{name:<22}{r['events_per_s']:>9}{r['wall_s']:>8}{r['pg_active_share_of_worker_time']:>10.0%}"
            f"{r['pg_share_of_cpu']:>8.0%}{cpu.get('workers', 0):>13}{cpu.get('postgres', 0):>9}"
            f"{cpu.get('broker', 0):>13}{r['machine_cpu_busy']:>13.0%}"
        )
    return lines


async def main(n: int, riders: int, worker_counts: list[int], kill: bool) -> None:
    shutil.rmtree(LOG_DIR, ignore_errors=True)
    stack = LocalStack(SETTINGS, LOG_DIR)
    stack.check_ports_free()
    for extra in range(1, max(worker_counts)):
        port = SETTINGS.worker_metrics_port + extra
        with socket.socket() as probe:
            if probe.connect_ex((SETTINGS.host, port)) == 0:
                raise RuntimeError(f"port {port} (metrics of an extra worker) is in use")
    results: list[dict[str, Any]] = []
    load_at_start = os.getloadavg()[0]
    try:
        # PostgreSQL up; each run then makes its own database and broker.
        await stack.start_infrastructure(prepare_database, with_broker=False)
        for count in worker_counts:
            results.append(await run_once(stack, count, n, riders, kill=False))
        if kill:
            results.append(await run_once(stack, max(worker_counts), n, riders, kill=True))
    finally:
        await asyncio.to_thread(stack.stop_all)
    summary = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average_1m": {"start": round(load_at_start, 1), "end": round(os.getloadavg()[0], 1)},
        "events": n,
        "riders": riders,
        "partitions": PARTITIONS,
        "runs": results,
    }
    print()
    for line in table(results):
        print(line)
    killed = next((r["kill"] for r in results if "kill" in r), None)
    if killed is not None:
        run = next(r for r in results if "kill" in r)
        print(
            f"\nkill: {killed['instance']} SIGKILLed at {killed['scored_when_killed']} of {n} scored; group rebalanced"
            f" {killed['rebalanced_after_s']} s later; awards {run['awards']} for {n} events, duplicate awards"
            f" {run['duplicate_awards']}, redelivered messages recognised as duplicates"
            f" {killed['duplicates_recognised']}\n  replay: {killed['replay']}\n  reconcile: {killed['reconcile']}"
        )
    out = ROOT / "bench" / "results" / "scaleout.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"written to {out.relative_to(ROOT)}")
    failures = [r for r in results if r["awards"] != n or r["duplicate_awards"]]
    if killed is not None:
        reconciled = killed["reconcile"]
        if killed["replay"]["exit"] != 0 or (isinstance(reconciled, dict) and reconciled["exit"] != 0):
            failures.append(run)
    if failures:
        raise SystemExit("scale-out: not every event was scored exactly once; see above")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--riders", type=int, default=1000)
    parser.add_argument("--workers", default="1,2,4", help="worker counts to run, e.g. 1,2,4")
    parser.add_argument("--no-kill", action="store_true", help="skip the run that SIGKILLs a worker")
    args = parser.parse_args()
    counts = [int(c) for c in args.workers.split(",")]
    asyncio.run(main(args.events, args.riders, counts, kill=not args.no_kill))
