"""``warmbee replay`` over 200,000 scored events (issue 22: at least 20,000 events a second), and
``warmbee reconcile`` over the ledger they make, on a database of their own.

Seeded once: 200,000 events of 10,000 riders in all 8 categories (bench.throughput's mix: caps reached,
hazards), scored into the ledger by the live scorer (``Scorer.score_batch``, batches of 2,000: a batch
takes a lock per rider, and 10,000 riders at once exceed PostgreSQL's default lock table), then vacuumed
and analysed as autovacuum would have done.

Timed, 3 runs each, the shared machine's noise in medians and ranges:
- ``replay``: the whole comparison in this process (one snapshot, every event scored in memory, every
  award compared), events a second, CPU seconds of this process beside;
- the baseline, in the same run: the same read with no scoring (every live award with its event, through
  the same cursor), so replay / baseline says what scoring in memory adds to reading;
- ``warmbee replay`` as a command (a process of its own: imports, connection, report), wall time;
- ``reconcile`` of the same ledger (every check), wall time.
Results in bench/results/replay.json.

With ``--reconcile-only`` (``make bench-reconcile``: 1,000,000 events, issue 22's reconcile under 10 s), no
replay: the whole reconcile 3 times, then 1,000 more events scored (a few minutes of a busy programme)
and the worker's scoped reconcile over what changed since the whole run (``since`` = its snapshot's time,
without the worker's 10-minute overlap, which here would take in the seeding itself) 3 times; results in
bench/results/reconcile.json.
Usage: python -m bench.replay [--events 200000] [--runs 3] [--reconcile-only]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from bench.throughput import events as bench_events
from libs.activity.model import load_schemas
from libs.platform.db import Connection, Database, drop_database
from libs.platform.kafka import MadeRecord
from libs.platform.settings import Settings
from services.cli import prepare_database
from services.points.domain.reconcile import Report
from services.points.handlers import BatchOutcome, RulesCache, Scorer, reconcile
from services.points.queries import ReplayQueries
from services.points.replay import BATCH, replay

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = Settings(pg_database="warmbee_bench_replay")
CHANGED = 1_000  # events scored after the whole reconcile, for the scoped one
RIDERS, SEED_BATCH = 10_000, 2_000  # a batch locks its riders: 10,000 at once exceed max_locks_per_transaction


async def score(scorer: Scorer, records: list[MadeRecord], conn: Connection) -> BatchOutcome:
    return await scorer.score_batch(conn, records)


async def seed(db: Database, n: int, prefix: str = "replay", vacuum: bool = True) -> float:
    scorer = Scorer(SETTINGS, load_schemas(), RulesCache())
    documents = bench_events(n, RIDERS, prefix)
    started = time.perf_counter()
    for i in range(0, n, SEED_BATCH):
        records = [
            MadeRecord("activity-events", 0, i + j, str(d["subject"]).encode(), orjson.dumps(d), 0)
            for j, d in enumerate(documents[i : i + SEED_BATCH])
        ]
        outcome = await db.run(partial(score, scorer, records))
        assert not outcome.dead_letters, outcome.dead_letters[:3]
    if not vacuum:
        return time.perf_counter() - started
    owner = await asyncpg.connect(SETTINGS.owner_database_url)  # only the tables' owner may vacuum them
    try:
        for table in ("activity_event", "ledger_transaction", "ledger_posting", "rider_balance", "rider_counter"):
            await owner.execute(f"VACUUM (ANALYZE) {table}")
    finally:
        await owner.close()
    return time.perf_counter() - started


async def read_only(db: Database) -> int:
    """The baseline: what replay reads, in the same snapshot kind of transaction, without scoring."""
    async with db.read() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        n = 0
        async for page in ReplayQueries(conn).awards_in_order(BATCH):
            n += len(page)
    return n


async def one_run(db: Database, n: int) -> dict[str, Any]:
    schemas = load_schemas()
    started, cpu = time.perf_counter(), time.process_time()
    report = await replay(db, SETTINGS, schemas)
    replay_s, replay_cpu = time.perf_counter() - started, time.process_time() - cpu
    assert report.compared == n, report.compared
    assert not report.differences, report.differences[:3]
    started = time.perf_counter()
    assert await read_only(db) == n
    baseline_s = time.perf_counter() - started
    started = time.perf_counter()
    command = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "services.cli", "replay"),
        cwd=ROOT,
        env={**os.environ, **SETTINGS.as_env()},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await command.communicate()
    command_s = time.perf_counter() - started
    assert command.returncode == 0, err.decode()[-2000:]
    started = time.perf_counter()
    checked = await reconcile(db, 3600)
    reconcile_s = time.perf_counter() - started
    assert checked.ok, checked.lines()
    return {
        "replay_s": round(replay_s, 2),
        "replay_cpu_s": round(replay_cpu, 2),
        "events_per_s": round(n / replay_s),
        "baseline_read_s": round(baseline_s, 2),
        "ratio_to_read": round(replay_s / baseline_s, 2),
        "command_s": round(command_s, 2),
        "command_events_per_s": round(n / command_s),
        "reconcile_s": round(reconcile_s, 2),
    }


async def timed_reconcile(db: Database, since: datetime | None = None) -> tuple[float, Report]:
    started = time.perf_counter()
    checked = await reconcile(db, 3600, since=since)
    assert checked.ok, checked.lines()
    return round(time.perf_counter() - started, 2), checked


async def reconcile_runs(db: Database, runs: int) -> dict[str, Any]:
    whole = [await timed_reconcile(db) for _ in range(runs)]
    as_of = whole[-1][1].as_of
    await seed(db, CHANGED, prefix="changed", vacuum=False)
    scoped = [await timed_reconcile(db, as_of) for _ in range(runs)]
    return {
        "reconcile_s": [s for s, _ in whole],
        "changed_events": CHANGED,
        "scoped_reconcile_s": [s for s, _ in scoped],
        "scoped_examined_transactions": scoped[0][1].checks[0].examined,
    }


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _median(runs: list[dict[str, Any]], key: str) -> dict[str, float]:
    return _spread([r[key] for r in runs])


async def main(n: int, runs: int, reconcile_only: bool) -> None:
    await drop_database(SETTINGS)
    await prepare_database(SETTINGS)
    db = Database(SETTINGS)
    await db.open()
    try:
        seed_s = await seed(db, n)
        async with db.read() as conn:
            entries = await conn.fetchval("SELECT count(*) FROM ledger_posting")
            transactions = await conn.fetchval("SELECT count(*) FROM ledger_transaction")
        results: list[dict[str, Any]] = []
        checked: dict[str, Any] = {}
        if reconcile_only:
            checked = await reconcile_runs(db, runs)
        else:
            results = [await one_run(db, n) for _ in range(runs)]
    finally:
        await db.close()
    common = {
        "measured_at": datetime.now(UTC).isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "events": n,
        "ledger_entries": transactions,
        "ledger_postings": entries,
        "seed_s": round(seed_s, 1),
    }
    if reconcile_only:
        spreads = {"reconcile": checked["reconcile_s"], "scoped_reconcile": checked["scoped_reconcile_s"]}
        _write("reconcile.json", {**common, **checked, **{k: _spread(v) for k, v in spreads.items()}})
    else:
        medians = {key: _median(results, key) for key in ("events_per_s", "ratio_to_read", "command_s", "reconcile_s")}
        _write("replay.json", {**common, "runs": results, **medians})


def _write(name: str, summary: dict[str, Any]) -> None:
    (ROOT / "bench" / "results" / name).write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--reconcile-only", action="store_true", help="reconcile, whole and scoped; no replay")
    args = parser.parse_args()
    asyncio.run(main(args.events, args.runs, args.reconcile_only))
