"""The ceiling: raw PostgreSQL writing the ledger's shape of data with no application in between.

One event's worth is one transaction row, two posting rows and a balance upsert. Batched: 1,000 events
a transaction through INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING, from one asyncpg
connection. One-by-one: the same, one event a transaction. Both in tables of their own, in a schema that
is dropped afterwards: ordinary logged tables like the ledger's (temporary tables skip the write-ahead
log, which would make the ceiling a limit no durable ledger could reach).
"""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any

import asyncpg

SETUP = """
DROP SCHEMA IF EXISTS ceiling CASCADE;
CREATE SCHEMA ceiling;
SET search_path TO ceiling;
CREATE TABLE ceiling_tx (tx_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, key text UNIQUE NOT NULL,
    rider_id text NOT NULL, amount bigint NOT NULL, reason text NOT NULL, recorded_at timestamptz DEFAULT now());
CREATE TABLE ceiling_posting (tx_id bigint NOT NULL, posting_no smallint NOT NULL, account text NOT NULL,
    amount bigint NOT NULL, PRIMARY KEY (tx_id, posting_no));
CREATE TABLE ceiling_balance (rider_id text PRIMARY KEY, available bigint NOT NULL CHECK (available >= 0));
"""

INSERT_TX = """
INSERT INTO ceiling_tx (key, rider_id, amount, reason)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) ON CONFLICT (key) DO NOTHING
RETURNING tx_id, rider_id, amount
"""
INSERT_POSTINGS = """
INSERT INTO ceiling_posting SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::text[], $4::bigint[])
"""
UPSERT_BALANCES = """
INSERT INTO ceiling_balance AS b SELECT * FROM unnest($1::text[], $2::bigint[])
ON CONFLICT (rider_id) DO UPDATE SET available = b.available + EXCLUDED.available
"""


async def _write(conn: asyncpg.Connection, keys: list[str], riders: list[str]) -> None:
    async with conn.transaction():
        rows = await conn.fetch(INSERT_TX, keys, riders, [5] * len(keys), ["ceiling"] * len(keys))
        ids = [r["tx_id"] for r in rows for _ in (1, 2)]
        numbers = [n for _ in rows for n in (1, 2)]
        accounts = [a for r in rows for a in ("programme:issued", f"rider:{r['rider_id']}:available")]
        amounts = [a for r in rows for a in (-r["amount"], r["amount"])]
        await conn.execute(INSERT_POSTINGS, ids, numbers, accounts, amounts)
        totals: dict[str, int] = {}
        for r in rows:
            totals[r["rider_id"]] = totals.get(r["rider_id"], 0) + r["amount"]
        ordered = sorted(totals)
        await conn.execute(UPSERT_BALANCES, ordered, [totals[r] for r in ordered])


async def ceiling(database_url: str, events: int = 100_000, riders: int = 10_000, repeats: int = 3) -> dict[str, Any]:
    """The batched write ``repeats`` times (the median is reported: a single short run moved by a
    third between runs on this machine), then one event a transaction."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(SETUP)
        owners = [f"rider-{i % riders}" for i in range(events)]
        samples = []
        for _ in range(repeats):
            tag = uuid.uuid4().hex[:6]
            keys = [f"{tag}-{i}" for i in range(events)]
            started = time.perf_counter()
            for i in range(0, events, 1000):
                await _write(conn, keys[i : i + 1000], owners[i : i + 1000])
            samples.append(round(events / (time.perf_counter() - started)))
        single = 3000
        started = time.perf_counter()
        for i in range(single):
            await _write(conn, [f"one-{i}"], [owners[i]])
        one_by_one = single / (time.perf_counter() - started)
    finally:
        await conn.execute("DROP SCHEMA IF EXISTS ceiling CASCADE")
        await conn.close()
    batched = statistics.median(samples)
    return {
        "batched_events_per_s": round(batched),
        "batched_samples": samples,
        "one_per_tx_events_per_s": round(one_by_one),
        "batched_rows_per_s": round(batched * 3),
    }
