"""The operators' points report against a month of 10,000 riders and 200,000 entries, on a database and
ports of its own: the month by category, by rider (every JSON page of 500) and by day, as JSON and as
Excel, through the points API; the median of 5 runs of each. The month's entries sit between a month
before and a month after of the same size, so the report has to find its month in a ledger of 600,000.

Recorded times rise with the entries' ids, as the ledger writer's now() makes them; riders and
categories take turns. Seeded set-based as the owner role (INSERT ... SELECT over generate_series), in
the ledger's own shape: awards (85%, a tenth of them capped to 0 points), adjustments (10%, signed) and
confirmed redemptions (5%), each with its postings. Results in bench/results/reports.json."""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx

from bench.stack import fresh_stack, results_head, write_results
from libs.platform.auth import Role, mint_token
from libs.platform.db import drop_database
from libs.platform.settings import Settings
from libs.platform.tables import XLSX
from services.cli import prepare_database

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = Settings(
    pg_database="warmbee_bench_reports",
    kafka_bootstrap="127.0.0.1:29192",
    events_port=28101,
    points_port=28102,
    redemption_port=28103,
    worker_metrics_port=28112,
    pages_port=28104,
    notifications_port=28105,
    notifications_worker_metrics_port=28115,
    notify_gateway_port=28116,
)
RIDERS, ENTRIES, RUNS = 10_000, 200_000, 5
SHANGHAI = ZoneInfo("Asia/Shanghai")
MONTH = ("2026-11-01", "2026-11-30")
CATEGORIES = (
    "volunteer_service",
    "civic_practice",
    "activity_participation",
    "grassroots_governance",
    "safe_riding",
    "skill_development",
    "publicity_outreach",
    "honors",
)

# $1: how many; $2: the first moment; $3: the span in seconds; $4: a tag for unique keys.
SEED_ENTRIES = """
INSERT INTO ledger_transaction (idempotency_key, input_hash, kind, rider_id, available_delta, category, source,
                                event_id, reason, recorded_at)
SELECT 'bench:' || $4 || ':' || i, 'bench', kind, 'bench-rider-' || (i % 10000), delta,
       CASE kind WHEN 'award' THEN (ARRAY['volunteer_service', 'civic_practice', 'activity_participation',
            'grassroots_governance', 'safe_riding', 'skill_development', 'publicity_outreach', 'honors'])[1 + i % 8]
            WHEN 'redeem' THEN 'redemption' END,
       'bench', CASE WHEN kind IN ('award', 'redeem') THEN $4 || '-' || i END, 'bench',
       $2::timestamptz + make_interval(secs => i::float8 * $3 / $1)
  FROM generate_series(1, $1) AS i,
       LATERAL (SELECT CASE WHEN i % 20 < 17 THEN 'award' WHEN i % 20 < 19 THEN 'adjustment' ELSE 'redeem' END) k(kind),
       LATERAL (SELECT CASE kind WHEN 'award' THEN (CASE WHEN i % 10 = 0 THEN 0 ELSE 5 + i % 20 END)
                                 WHEN 'adjustment' THEN (CASE WHEN i % 2 = 0 THEN 10 ELSE -3 END)
                                 ELSE 0 END) d(delta)
"""
SEED_POSTINGS = """
INSERT INTO ledger_posting (tx_id, posting_no, account, amount)
SELECT t.tx_id, n, CASE WHEN n = 1 THEN src ELSE dst END, CASE WHEN n = 1 THEN -amount ELSE amount END
  FROM ledger_transaction t,
       LATERAL (SELECT CASE WHEN t.kind = 'redeem' THEN 30 ELSE abs(t.available_delta) END AS amount,
                       CASE WHEN t.kind = 'redeem' THEN 'rider:' || t.rider_id || ':held'
                            WHEN t.available_delta > 0 THEN 'programme:issued'
                            ELSE 'rider:' || t.rider_id || ':available' END AS src,
                       CASE WHEN t.kind = 'redeem' THEN 'partner:bench:redeemed'
                            WHEN t.available_delta > 0 THEN 'rider:' || t.rider_id || ':available'
                            ELSE 'programme:issued' END AS dst) m,
       generate_series(1, 2) AS n
 WHERE t.idempotency_key LIKE 'bench:%' AND m.amount > 0
"""


async def seed(settings: Settings) -> float:
    started = time.perf_counter()
    conn = await asyncpg.connect(settings.as_owner().database_url)
    try:
        month_s = 30 * 86_400
        async with conn.transaction():
            await conn.execute(SEED_ENTRIES, ENTRIES, datetime(2026, 10, 2, tzinfo=SHANGHAI), month_s, "before")
            await conn.execute(SEED_ENTRIES, ENTRIES, datetime(2026, 11, 1, tzinfo=SHANGHAI), month_s, "month")
            await conn.execute(SEED_ENTRIES, ENTRIES, datetime(2026, 12, 1, tzinfo=SHANGHAI), month_s, "after")
            await conn.execute(SEED_POSTINGS)
        await conn.execute("VACUUM (ANALYZE) ledger_transaction")
        await conn.execute("VACUUM (ANALYZE) ledger_posting")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def timed(run: Any) -> dict[str, Any]:
    """``run`` once to warm up, then RUNS times: the median and every sample, in milliseconds."""
    await run()
    samples = []
    for _ in range(RUNS):
        started = time.perf_counter()
        await run()
        samples.append(round((time.perf_counter() - started) * 1000, 1))
    return {"median_ms": statistics.median(samples), "samples_ms": samples}


async def measure(settings: Settings) -> dict[str, Any]:
    url = f"http://{settings.host}:{settings.points_port}/v1/reports/points?from={MONTH[0]}&to={MONTH[1]}"
    operator = {"authorization": f"Bearer {mint_token(settings, Role.OPERATOR, 'bench')}"}
    results: dict[str, Any] = {}
    async with httpx.AsyncClient(timeout=60, headers=operator) as http:

        async def json_of(by: str) -> int:
            rows, cursor = 0, None
            while True:
                r = await http.get(f"{url}&by={by}&limit=500" + (f"&cursor={cursor}" if cursor else ""))
                r.raise_for_status()
                rows += len(r.json()["items"])
                if (cursor := r.json()["next_cursor"]) is None:
                    return rows

        async def excel_of(by: str) -> int:
            r = await http.get(f"{url}&by={by}", headers={"accept": XLSX})
            r.raise_for_status()
            return len(r.content)

        for by in ("category", "rider", "day"):
            results[f"json_by_{by}"] = await timed(lambda by=by: json_of(by)) | {"rows": await json_of(by)}
            results[f"excel_by_{by}"] = await timed(lambda by=by: excel_of(by)) | {"bytes": await excel_of(by)}
    return results


async def main() -> None:
    stack = await fresh_stack(SETTINGS, "bench-reports-logs")
    try:
        await stack.start_infrastructure(prepare_database, with_broker=False)
        seed_s = await seed(SETTINGS)
        stack.start_service("points-api")
        await stack.wait_healthy(["points-api"])
        measured = await measure(SETTINGS)
    finally:
        await asyncio.to_thread(stack.stop_all)
        await drop_database(SETTINGS)
    result = results_head() | {
        "riders": RIDERS,
        "entries_in_month": ENTRIES,
        "entries_in_ledger": 3 * ENTRIES,
        "seeded_in_s": round(seed_s, 1),
        "report": measured,
    }
    for name, m in measured.items():
        size = f"{m['rows']} rows" if "rows" in m else f"{m['bytes']} bytes"
        print(f"{name:<18} median {m['median_ms']:>8} ms   ({size}; runs {m['samples_ms']})")
    write_results("reports.json", result)


if __name__ == "__main__":
    asyncio.run(main())
