"""The lapse job over 100,000 due lots of 10,000 riders (issue 20: under 60 s), on a database of its own.

Each run has a fresh database. Seeded through ``LedgerStore.append`` in batches of 1,000, as the ledger's
writers append: 100,000 credits that open lots (10 a rider, 10 to 20 points each, last good days spread
over the 90 days before today), and one rider in four has spent 25 points of its soonest-lapsing lots by
a negative adjustment, so some lots lapse what is left of them and some nothing (spent whole). Then,
timed: ``lapse_due`` over all of them (pages of 1,000 lots a transaction), checked afterwards: one lapse
entry per lot that had points left, every point left lapsed, reconcile clean (also timed).

The baseline, in the same run and database: 100,000 plain negative adjustments of 1 point (riders with
no lots, 10 a rider) in batches of 1,000 over 1,000 riders each, as a lapse page is, through the same
``LedgerStore.append``, each batch built in the timed part as the lapse builds its entries: the ratio
lapse / baseline says what lots cost. A lapse page also reads its due lots twice (before and under the
riders' locks) and adds an outbox row; the baseline does neither.

Holds: 2,000 riders with 3 lots (10 points each) and 2,000 with 30 points in no lot each hold 15 points,
one hold a transaction as the redemption service holds, the two kinds taking turns so the machine's
noise falls on both alike: the extra µs a hold pays for lots.

The machine is shared: 3 runs, medians with their ranges; CPU seconds of this process beside wall time.
Results in bench/results/lapsing.json.
Usage: python -m bench.lapsing [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from libs.i18n.reasons import Reason
from libs.ledger.keys import PROGRAMME_ADJUSTMENTS, adjustment_key, rider_available
from libs.ledger.model import EntryKind, LedgerTransaction, LotTerms, transfer
from libs.ledger.store import AppendResult, LedgerStore
from libs.platform.db import Database, drop_database
from libs.platform.settings import Settings
from services.cli import prepare_database
from services.points.domain.lapsing import today
from services.points.handlers import reconcile
from services.points.lapsing import lapse_due
from services.redemption.domain.holds import hold_entry

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = Settings(pg_database="warmbee_bench_lapsing")
RIDERS, LOTS, BATCH = 10_000, 100_000, 1_000
SPENDERS_EVERY, SPENT = 4, 25  # one rider in four has spent 25 points of its soonest-lapsing lots
BASELINE_CREDIT = LOTS // RIDERS  # each baseline rider: enough for its 10 debits of 1 point
HOLDS, HOLD_LOTS, LOT_POINTS, HOLD_COST = 2_000, 3, 10, 15
OPERATOR = "bench"


@dataclass(frozen=True, slots=True)
class Timed:
    wall_s: float
    cpu_s: float  # this process's CPU: the Python side of the work


def credit(key: str, rider_id: str, amount: int, lot: LotTerms | None) -> LedgerTransaction:
    return LedgerTransaction(
        idempotency_key=adjustment_key(OPERATOR, key),
        kind=EntryKind.ADJUSTMENT,
        rider_id=rider_id,
        reason=Reason.of("adjustment", note="bench"),
        postings=transfer(PROGRAMME_ADJUSTMENTS, rider_available(rider_id), amount),
        actor=OPERATOR,
        lot=lot,
    )


def debit(key: str, rider_id: str, amount: int) -> LedgerTransaction:
    return LedgerTransaction(
        idempotency_key=adjustment_key(OPERATOR, key),
        kind=EntryKind.ADJUSTMENT,
        rider_id=rider_id,
        reason=Reason.of("adjustment", note="bench"),
        postings=transfer(rider_available(rider_id), PROGRAMME_ADJUSTMENTS, amount),
        actor=OPERATOR,
    )


async def append_batches(db: Database, txs: Callable[[int], LedgerTransaction], n: int) -> Timed:
    """Append ``txs(0)`` to ``txs(n - 1)`` in batches of BATCH, one transaction each, as the points worker
    does; each batch is built in the timed part, as the lapse job builds its entries in its own."""
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(0, n, BATCH):
        batch = [txs(j) for j in range(i, min(i + BATCH, n))]

        async def append(conn: asyncpg.Connection, batch: list[LedgerTransaction] = batch) -> AppendResult:
            return await LedgerStore(conn).append(batch)

        appended = await db.run(append)
        assert len(appended.recorded) == len(batch), "a seed entry was there before"
    return Timed(time.perf_counter() - started, time.process_time() - cpu)


def lot_rider(i: int) -> str:
    return f"lots-{i}"


def due_lot(day: date, j: int) -> LedgerTransaction:
    """Lot j is rider j % RIDERS's: each batch of 1,000 credits is 1,000 riders, and so is a lapse page."""
    lapses_on = day - timedelta(days=1 + j % 90)
    terms = LotTerms(lapses_on - timedelta(days=365), lapses_on)
    return credit(f"lot-{j}", lot_rider(j % RIDERS), 10 + j % 11, terms)


async def seed(db: Database, day: date) -> dict[str, float]:
    """Every rider of the run and its points; returns how long each part took (s)."""
    spent = [debit(f"spent-{i}", lot_rider(i), SPENT) for i in range(0, RIDERS, SPENDERS_EVERY)]
    plain = [credit(f"plain-{i}", f"plain-{i}", BASELINE_CREDIT, None) for i in range(RIDERS)]
    future = LotTerms(day - timedelta(days=30), day + timedelta(days=300))
    hold_lots = [
        credit(f"hold-lot-{i}-{n}", f"hold-lots-{i}", LOT_POINTS, future)
        for n in range(HOLD_LOTS)
        for i in range(HOLDS)
    ]
    hold_plain = [credit(f"hold-plain-{i}", f"hold-plain-{i}", HOLD_LOTS * LOT_POINTS, None) for i in range(HOLDS)]
    others = plain + hold_lots + hold_plain
    took = {
        "lot_credits_s": (await append_batches(db, lambda j: due_lot(day, j), LOTS)).wall_s,
        "part_spends_s": (await append_batches(db, spent.__getitem__, len(spent))).wall_s,
        "other_credits_s": (await append_batches(db, others.__getitem__, len(others))).wall_s,
    }
    # The local cluster runs with autovacuum off: vacuum and analyse what the seed wrote, as autovacuum
    # would have done long before 100,000 lots fell due. Only the tables' owner may vacuum them.
    owner = await asyncpg.connect(SETTINGS.owner_database_url)
    try:
        for table in ("ledger_transaction", "ledger_posting", "rider_balance", "ledger_lot", "ledger_lot_take"):
            await owner.execute(f"VACUUM (ANALYZE) {table}")
    finally:
        await owner.close()
    return {k: round(v, 2) for k, v in took.items()}


async def lots_left(db: Database, day: date) -> tuple[int, int]:
    """(lots, points) past their last good day with points left: what the lapse should take."""
    async with db.read() as conn:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, coalesce(sum(remaining), 0)::bigint AS points FROM ledger_lot"
            " WHERE remaining > 0 AND lapses_on < $1",
            day,
        )
    assert row is not None
    return row["n"], row["points"]


async def lapse_all(db: Database, now: datetime) -> dict[str, Any]:
    day = today(now)
    lots, points = await lots_left(db, day)
    started, cpu = time.perf_counter(), time.process_time()
    lapsed, lapsed_points = await lapse_due(db, SETTINGS, now)
    took = Timed(time.perf_counter() - started, time.process_time() - cpu)
    async with db.read() as conn:
        entries = await conn.fetchval("SELECT count(*) FROM ledger_transaction WHERE kind = 'lapse'")
    assert (lapsed, lapsed_points) == (lots, points), (
        f"lapsed {lapsed} lots, {lapsed_points} points of {lots}, {points}"
    )
    assert entries == lots, f"{entries} lapse entries for {lots} lots with points left"
    assert await lots_left(db, day) == (0, 0), "a due lot kept points"
    started = time.perf_counter()
    report = await reconcile(db, 3600)
    reconcile_s = time.perf_counter() - started
    assert report.ok, report.lines()
    return {
        "lots_with_points_left": lots,
        "points_lapsed": points,
        "lapse_entries": entries,
        "lapse_s": round(took.wall_s, 2),
        "lapse_cpu_s": round(took.cpu_s, 2),
        "lots_per_s": round(lots / took.wall_s),
        "reconcile_s": round(reconcile_s, 2),
        "reconcile_ok": report.ok,
    }


async def baseline(db: Database) -> dict[str, Any]:
    """LOTS debits of 1 point from riders without lots, each batch 1,000 riders, like a lapse page."""
    took = await append_batches(db, lambda j: debit(f"base-{j}", f"plain-{j % RIDERS}", 1), LOTS)
    return {
        "baseline_s": round(took.wall_s, 2),
        "baseline_cpu_s": round(took.cpu_s, 2),
        "baseline_entries_per_s": round(LOTS / took.wall_s),
    }


async def hold_once(db: Database, rider_id: str) -> float:
    entry = hold_entry(f"bench-{rider_id}", rider_id, HOLD_COST, "bench", "bench", "bench-reward")
    started = time.perf_counter()
    appended = await db.run(lambda conn: LedgerStore(conn).append([entry]))
    took = time.perf_counter() - started
    assert len(appended.recorded) == 1
    return took


async def holds(db: Database) -> dict[str, Any]:
    """One hold a rider, the rider with lots and the one without taking turns."""
    with_lots, without = [], []
    for i in range(HOLDS):
        with_lots.append(await hold_once(db, f"hold-lots-{i}"))
        without.append(await hold_once(db, f"hold-plain-{i}"))
    async with db.read() as conn:
        held = await conn.fetchval("SELECT sum(held)::bigint FROM ledger_lot WHERE rider_id LIKE 'hold-lots-%'")
    assert held == HOLDS * HOLD_COST, f"the holds took {held} points of lots"
    lots_us, plain_us = statistics.median(with_lots) * 1e6, statistics.median(without) * 1e6
    return {
        "hold_with_lots_us": round(lots_us),
        "hold_without_lots_us": round(plain_us),
        "hold_extra_for_lots_us": round(lots_us - plain_us),
        "hold_with_lots_mean_us": round(statistics.mean(with_lots) * 1e6),
        "hold_without_lots_mean_us": round(statistics.mean(without) * 1e6),
    }


async def one_run(n: int) -> dict[str, Any]:
    await drop_database(SETTINGS)
    await prepare_database(SETTINGS)
    db = Database(SETTINGS)
    await db.open()
    try:
        now = datetime.now(UTC)
        seeded = await seed(db, today(now))
        print(f"run {n}: seeded {seeded}", flush=True)
        result = await lapse_all(db, now)
        print(f"run {n}: lapse {result['lapse_s']} s, reconcile {result['reconcile_s']} s", flush=True)
        result |= await baseline(db)
        result["ratio_lapse_to_baseline"] = round(result["lapse_s"] / result["baseline_s"], 2)
        result["cpu_ratio_lapse_to_baseline"] = round(result["lapse_cpu_s"] / result["baseline_cpu_s"], 2)
        result |= await holds(db)
        result["seeded_s"] = seeded
    finally:
        await db.close()
        await drop_database(SETTINGS)
    print(f"run {n}: {json.dumps(result)}", flush=True)
    return result


MEASURES = (  # (key, label, unit)
    ("lapse_s", "lapse of 100,000 due lots (lapse_due)", "s"),
    ("lapse_cpu_s", "  of which this process's CPU", "s"),
    ("lots_per_s", "  lots lapsed per second", "/s"),
    ("reconcile_s", "reconcile afterwards (clean)", "s"),
    ("baseline_s", "baseline: 100,000 plain debits", "s"),
    ("baseline_cpu_s", "  of which this process's CPU", "s"),
    ("ratio_lapse_to_baseline", "ratio lapse / baseline", "x"),
    ("cpu_ratio_lapse_to_baseline", "  of this process's CPU", "x"),
    ("hold_with_lots_us", "hold, rider with 3 lots (p50)", "µs"),
    ("hold_without_lots_us", "hold, rider with no lot (p50)", "µs"),
    ("hold_extra_for_lots_us", "extra a hold pays for lots", "µs"),
)


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        key: {
            "median": statistics.median(r[key] for r in runs),
            "range": [min(r[key] for r in runs), max(r[key] for r in runs)],
        }
        for key, _, _ in MEASURES
    }


async def main(runs: int) -> None:
    results = [await one_run(n + 1) for n in range(runs)]
    medians = summary(results)
    out = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, shared",
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "riders": RIDERS,
        "lots": LOTS,
        "batch": BATCH,
        "target_lapse_s": 60,
        "runs": results,
        "medians": medians,
    }
    path = ROOT / "bench" / "results" / "lapsing.json"
    path.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwarmbee lapse bench, {out['when']}, {out['machine']}, median of {runs} runs [range]")
    for key, label, unit in MEASURES:
        m = medians[key]
        print(f"  {label:<38} {m['median']:>10} {unit:<3} [{m['range'][0]} .. {m['range'][1]}]")
    print(f"\nwritten to {path.relative_to(ROOT)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    asyncio.run(main(parser.parse_args().runs))
