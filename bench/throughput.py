"""Events per second through the points path, on its own stack (own database and ports).

Publishes N valid volunteer shifts across R riders, over Kafka and over HTTP (batches of 500),
and times each run from the first publish until the last award entry is committed.
Usage: python -m bench.throughput [--events 200000] [--riders 10000] [--read-seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from bench.ceiling import ceiling
from bench.group import Worker, start_worker, wait_group_stable
from bench.redemption import redemption_latency, run_load
from bench.stack import fresh_stack, results_head, write_results
from libs.platform.auth import Role, mint_token
from libs.platform.kafka import Header, client_options, make_producer, send_in_batches
from libs.platform.localstack import LocalStack
from libs.platform.settings import Settings
from services.cli import SERVICES, prepare_database

SETTINGS = Settings(
    pg_database="warmbee_bench",
    kafka_bootstrap="127.0.0.1:29092",
    events_port=28001,
    points_port=28002,
    redemption_port=28003,
    worker_metrics_port=28012,
    pages_port=28004,
    notifications_port=28005,
    notifications_worker_metrics_port=28015,
    notify_gateway_port=28016,
)


def _payload(kind: int, i: int, tag: str) -> tuple[str, dict[str, Any]]:
    """One event of each of the 8 categories in turn (11 types), with unique ids."""
    match kind:
        case 0:
            return "volunteer.shift.completed", {"shift_id": f"s-{tag}-{i}", "hours": 0.5}
        case 1:
            return "civic.action.verified", {"action": "litter_pickup"}
        case 2:
            return "activity.attended", {"activity_id": f"a-{tag}-{i}"}
        case 3:
            return "hazard.report.verified", {
                "report_id": f"h-{tag}-{i}",
                "severity": "low",
                "lat": 30 + (i % 9973) / 1000,
                "lon": 104 + (i % 7919) / 1000,
                "reported_at": "2024-03-01T08:00:00+08:00",
            }
        case 4:
            return "safety.quiz.passed", {"quiz_id": f"q-{tag}-{i}"}
        case 5:
            return "skill.course.completed", {"course_id": f"c-{tag}-{i}"}
        case 6:
            return "outreach.session.completed", {"session_id": f"o-{tag}-{i}", "topic": "anti_fraud"}
        case _:
            return "honor.awarded", {"honor_id": f"h-{tag}-{i}", "level": "community"}


def events(n: int, riders: int, tag: str) -> list[dict[str, Any]]:
    """n valid events across riders and all 8 categories (the source's token is "bench")."""
    start = datetime(2024, 3, 1, 9, tzinfo=UTC)
    out = []
    for i in range(n):
        type_, data = _payload(i % 8, i, tag)
        out.append(
            {
                "specversion": "1.0",
                "id": f"bench-{tag}-{i}",
                "source": "bench",
                "type": type_,
                "subject": f"rider-{i % riders}",
                "time": (start + timedelta(minutes=i // riders)).isoformat(),
                "data": data,
            }
        )
    return out


async def wait_all(conn: asyncpg.Connection, tag: str, n: int) -> None:
    """Poll the ledger until all n awards of the run are there: the benchmark watches the database, not
    a signal from the code it measures. A poll counts only entries newer than the last one it saw, so
    watching costs the database little. Entries that commit out of id order can slip behind that
    cursor; when polls have found nothing new for half a second, one full count settles where the run is."""
    pattern = f"bench-{tag}-%"
    await conn.execute("SET plan_cache_mode TO force_custom_plan")  # an index range scan from the cursor
    seen, after_tx_id, progress_at = 0, 0, time.monotonic()
    while True:
        new, last = await conn.fetchrow(
            "SELECT count(*), max(tx_id) FROM ledger_transaction WHERE tx_id > $1 AND kind = 'award'"
            " AND event_id LIKE $2",
            after_tx_id,
            pattern,
        ) or (0, None)
        seen += new
        after_tx_id = last or after_tx_id
        if new:
            progress_at = time.monotonic()
        elif seen < n and time.monotonic() - progress_at > 0.5:
            progress_at = time.monotonic()
            seen = await conn.fetchval(
                "SELECT count(*) FROM ledger_transaction WHERE kind = 'award' AND event_id LIKE $1", pattern
            )
        if seen >= n:
            return
        await asyncio.sleep(0.05)


async def via_kafka(settings: Settings, conn: asyncpg.Connection, n: int, riders: int) -> float:
    tag = uuid.uuid4().hex[:8]
    batch = events(n, riders, tag)
    topic = settings.topic_activity_events
    # The sources' JSON, ready to send before the clock starts.
    messages: list[tuple[str, bytes | None, bytes, list[Header]]] = [
        (topic, e["subject"].encode(), orjson.dumps(e), []) for e in batch
    ]
    producer = make_producer(settings)
    await producer.start()
    started = time.perf_counter()
    await asyncio.gather(*await send_in_batches(producer, messages))
    await producer.stop()
    await wait_all(conn, tag, n)
    return n / (time.perf_counter() - started)


async def via_http(settings: Settings, conn: asyncpg.Connection, n: int, riders: int) -> float:
    tag = uuid.uuid4().hex[:8]
    batch = events(n, riders, tag)
    headers = {
        "authorization": f"Bearer {mint_token(settings, Role.SOURCE, 'bench')}",
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


async def settle(settings: Settings) -> float:
    """Vacuum and checkpoint after 250,000 inserts, so the reads and redemptions that follow measure
    their own path, not autovacuum and the checkpoint catching up on the two shared cores (they did:
    balance p99 49-69 ms instead of about 5). Returns how long settling took. As the admin: the services'
    role may vacuum no table (it owns none) and CHECKPOINT is for superusers."""
    started = time.perf_counter()
    conn = await asyncpg.connect(settings.admin_url(settings.pg_database))
    try:
        await conn.execute("VACUUM (ANALYZE)")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def notifications_caught_up(settings: Settings, timeout_s: float = 900.0) -> float | None:
    """Wait until the notifications worker's consumer group has committed the end of every
    points-ledger partition (every award heard, its rider notices made), so the reads that follow
    measure the points API and not the worker catching up beside it on the same two cores. Returns how
    long that took after the ledger was published; None when the lag could not be read (then it did
    not wait)."""
    started = time.perf_counter()
    # The group's committed offsets, read by a consumer of that group id that never subscribes (so it
    # never joins the group and causes no rebalance): OffsetFetch, which every broker has.
    consumer = AIOKafkaConsumer(**client_options(settings), group_id=settings.notifications_consumer_group)
    try:
        await consumer.start()
        topic = settings.topic_points_ledger
        await consumer.topics()  # the topic's metadata
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ends = await consumer.end_offsets(partitions)
        while time.perf_counter() - started < timeout_s:
            behind = 0
            for tp, end in ends.items():
                behind += end - ((await consumer.committed(tp)) or 0)
            if behind <= 0:
                return time.perf_counter() - started
            await asyncio.sleep(1.0)
        return time.perf_counter() - started
    except Exception as exc:  # a bench step that cannot read the lag does not stop the bench
        print(f"notifications lag unreadable ({exc!r}); the reads run without waiting for it")
        return None
    finally:
        await consumer.stop()


async def outbox_drained(conn: asyncpg.Connection) -> float:
    """Wait until the relays have published everything (points-ledger trails scoring); returns how long
    that took after the last award, so the reads and redemptions that follow run on a quiet stack."""
    started = time.perf_counter()
    while True:
        if not await conn.fetchval("SELECT count(*) FROM outbox WHERE relayed_at IS NULL"):
            return time.perf_counter() - started
        await asyncio.sleep(0.1)


REPLICA_PORT_STEP = 20  # a further replica of an API listens 20, 40, ... above the first one's port


def replica_ports(port: int, replicas: int) -> list[int]:
    """The ports of an API's further replicas (the first listens on ``port``)."""
    return [port + REPLICA_PORT_STEP * n for n in range(1, replicas)]


async def start_api_replicas(stack: LocalStack, replicas: int) -> None:
    """Further replicas of the points API and of redemption, as deploy/ runs two of each behind one
    address (the load processes spread their connections over them), once they answer /healthz."""
    waiting = []
    for name, variable, port in (
        ("points-api", "WARMBEE_POINTS_PORT", SETTINGS.points_port),
        ("redemption", "WARMBEE_REDEMPTION_PORT", SETTINGS.redemption_port),
    ):
        for n, replica_port in enumerate(replica_ports(port, replicas), start=2):
            stack.start_service(name, {variable: str(replica_port)}, instance=f"{name}-{n}")
            waiting.append(replica_port)
    async with httpx.AsyncClient(timeout=2) as http:
        for port in waiting:
            for _ in range(300):
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"http://{SETTINGS.host}:{port}/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.2)
            else:
                raise TimeoutError(f"the replica on port {port} did not answer; see {stack.log_dir}")


def cpu_seconds(processes: dict[str, subprocess.Popen[bytes]]) -> dict[str, float]:
    """CPU time (user + system) used so far by the stack's processes, all of PostgreSQL's, and this
    benchmark's own (it is the Kafka producer): where the two cores go."""
    used: dict[str, float] = {}
    for name, process in processes.items():
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(process.pid).cpu_times()
            used[name] = t.user + t.system
    used["postgres"] = 0.0
    for p in psutil.process_iter(["name"]):
        if (p.info["name"] or "").startswith("postgres"):
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                used["postgres"] += t.user + t.system
    t = psutil.Process().cpu_times()
    used["bench (producer)"] = t.user + t.system
    return used


async def job_runs(settings: Settings, workers: int) -> dict[str, dict[str, float]]:
    """How many runs of each background job (``warmbee_job_runs_total``) each process has made so far, read
    from its /metrics: the difference across the reads says which jobs ran while the reads were timed."""
    base = f"http://{settings.host}"
    ports = {
        "events": settings.events_port,
        "points-api": settings.points_port,
        "redemption": settings.redemption_port,
        "notifications": settings.notifications_port,
        **{
            ("points-worker" if i == 1 else f"points-worker-{i}"): settings.worker_metrics_port + i - 1
            for i in range(1, workers + 1)
        },
    }
    runs: dict[str, dict[str, float]] = {}
    async with httpx.AsyncClient(timeout=5) as http:
        for name, port in ports.items():
            with contextlib.suppress(httpx.HTTPError):
                text = (await http.get(f"{base}:{port}/metrics")).text
                for family in text_string_to_metric_families(text):
                    for sample in family.samples:
                        if sample.name == "warmbee_job_runs_total":
                            job = sample.labels["job"]
                            runs.setdefault(name, {})
                            runs[name][job] = runs[name].get(job, 0.0) + sample.value
    return runs


def jobs_between(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> dict[str, dict[str, int]]:
    ran = {
        name: {job: int(n - before.get(name, {}).get(job, 0.0)) for job, n in jobs.items()}
        for name, jobs in after.items()
    }
    return {name: {job: n for job, n in jobs.items() if n} for name, jobs in ran.items() if any(jobs.values())}


def per_request_us(before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, float]:
    """CPU per request of the processes that spent a millisecond or more in between (the rest idled)."""
    spent = {name: after[name] - before.get(name, 0.0) for name in after}
    return {name: round(s / max(requests, 1) * 1e6, 1) for name, s in spent.items() if s >= 0.001}


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


async def balance_reads(
    settings: Settings, seconds: int, rate: int = 1000, path: str = "", replicas: int = 1
) -> dict[str, Any]:
    """One rider's balance (or ``path`` of the points API) at ``rate`` requests a second from a load
    process of its own (bench/load.py), open loop: each request's latency counts from its moment on the
    schedule. Spread over the points API's ``replicas``."""
    return await run_load(
        "reads",
        {
            "url": f"http://{settings.host}:{settings.points_port}{path or '/v1/riders/bench-rider-1/balance'}",
            "replica_ports": replica_ports(settings.points_port, replicas),
            "token": mint_token(settings, Role.RIDER, "bench-rider-1"),
            "rate": rate,
            "seconds": seconds,
        },
    )


async def raw_reads(settings: Settings, seconds: int, rate: int = 1000) -> dict[str, Any]:
    """The same rider's balance row straight from PostgreSQL, at the same rate from the same kind of load
    process: the limit the route is measured against in the same run."""
    return await run_load(
        "raw-reads", {"dsn": settings.database_url, "rider_id": "bench-rider-1", "rate": rate, "seconds": seconds}
    )


async def main(n: int, riders: int, read_seconds: int, worker_count: int, api_replicas: int) -> None:
    stack = await fresh_stack(SETTINGS)
    try:
        await stack.start_infrastructure(prepare_database)
        # As the database's owner: the ceiling makes a schema of its own, which the services may not (0019).
        ceiling_result = await ceiling(SETTINGS.owner_database_url)
        for name in SERVICES:
            stack.start_service(name)
        await stack.wait_healthy(list(SERVICES))
        await start_api_replicas(stack, api_replicas)
        first = stack.processes["points-worker"]
        workers = [Worker("points-worker", SETTINGS.worker_metrics_port, first, stack.log_dir / "points-worker.log", 0)]
        workers += [
            start_worker(stack, f"points-worker-{i}", SETTINGS.worker_metrics_port + i)
            for i in range(2, worker_count + 1)
        ]
        await wait_group_stable(workers, partitions=SETTINGS.topic_partitions)
        conn = await asyncpg.connect(SETTINGS.database_url)
        await via_kafka(SETTINGS, conn, 2000, riders)  # warm-up: group join, caches, plans
        before = cpu_seconds(stack.processes)
        kafka_rate = await via_kafka(SETTINGS, conn, n, riders)
        cpu = per_request_us(before, cpu_seconds(stack.processes), n)
        before, http_n = cpu_seconds(stack.processes), min(n, 50_000)
        http_rate = await via_http(SETTINGS, conn, http_n, riders)
        http_cpu = per_request_us(before, cpu_seconds(stack.processes), http_n)
        outbox_drain_s = await outbox_drained(conn)
        notifications_s = await notifications_caught_up(SETTINGS)
        settle_s = await settle(SETTINGS)
        await conn.close()
        await balance_reads(SETTINGS, 5, replicas=api_replicas)  # warm-up: connections and statements
        jobs_before, cpu_before = await job_runs(SETTINGS, worker_count), cpu_seconds(stack.processes)
        reads = await balance_reads(SETTINGS, read_seconds, replicas=api_replicas)
        read_cpu = per_request_us(cpu_before, cpu_seconds(stack.processes), reads["count"])
        jobs_during_reads = jobs_between(jobs_before, await job_runs(SETTINGS, worker_count))
        healthz = await balance_reads(SETTINGS, read_seconds, path="/healthz", replicas=api_replicas)
        raw = await raw_reads(SETTINGS, read_seconds)
        redemption = await redemption_latency(
            SETTINGS, replica_ports=replica_ports(SETTINGS.redemption_port, api_replicas)
        )
        memory = {name: peak_rss_mb(p.pid) for name, p in stack.processes.items() if name != "broker"}
    finally:
        await asyncio.to_thread(stack.stop_all)
    result = results_head() | {
        "events": n,
        "riders": riders,
        "worker_processes": worker_count,
        "api_replicas": api_replicas,
        "ceiling": ceiling_result,
        "kafka_events_per_s": round(kafka_rate),
        "kafka_ratio_to_ceiling": round(kafka_rate / ceiling_result["batched_events_per_s"], 2),
        "kafka_cpu_us_per_event": cpu,
        "http_events_per_s": round(http_rate),
        "http_cpu_us_per_event": http_cpu,
        "outbox_drained_after_s": round(outbox_drain_s, 1),
        "notifications_caught_up_after_s": round(notifications_s, 1) if notifications_s is not None else None,
        "settled_in_s": round(settle_s, 1),
        "balance_reads": reads,
        "healthz_reads": healthz,
        "raw_reads": raw,
        "balance_p99_over_raw_p99": round(reads["p99_ms"] / raw["p99_ms"], 2) if raw["p99_ms"] else None,
        "jobs_during_balance_reads": jobs_during_reads,
        "cpu_us_per_balance_read": read_cpu,
        "redemption": redemption,
        "peak_rss_mb": memory,
    }
    report(result)
    write_results("latest.json", result)


def report(r: dict[str, Any]) -> None:
    c, red, reads = r["ceiling"], r["redemption"], r["balance_reads"]
    rows = [
        (
            "ceiling: raw PostgreSQL, 1,000 events a transaction",
            f"{c['batched_events_per_s']} events/s",
            f"median of {', '.join(str(x) for x in c['batched_samples'])}",
        ),
        ("ceiling: raw PostgreSQL, one event a transaction", f"{c['one_per_tx_events_per_s']} events/s", ""),
        (
            f"end to end: {r['events']} events over Kafka -> ledger, {r['worker_processes']} workers",
            f"{r['kafka_events_per_s']} events/s",
            f"{r['kafka_ratio_to_ceiling']} of the ceiling",
        ),
        ("end to end: HTTP batches -> outbox -> ledger", f"{r['http_events_per_s']} events/s", ""),
        ("points-ledger published, after the last award", f"{r['outbox_drained_after_s']} s", ""),
        ("the notifications worker caught up, after that", f"{r['notifications_caught_up_after_s']} s", ""),
        ("then VACUUM (ANALYZE) and CHECKPOINT before the reads", f"{r['settled_in_s']} s", ""),
        (
            f"balance reads, {reads['rate']:.0f}/s for {reads['seconds']:.0f} s: {reads['achieved_rate']} req/s",
            f"p50 {reads['p50_ms']} ms, p99 {reads['p99_ms']} ms",
            f"{reads['errors']} errors",
        ),
        (
            f"  the same rate: the points API's /healthz ({r['healthz_reads']['achieved_rate']} req/s)",
            f"p50 {r['healthz_reads']['p50_ms']} ms, p99 {r['healthz_reads']['p99_ms']} ms",
            f"{r['healthz_reads']['errors']} errors",
        ),
        (
            f"  the same rate: the row straight from PostgreSQL ({r['raw_reads']['achieved_rate']} req/s)",
            f"p50 {r['raw_reads']['p50_ms']} ms, p99 {r['raw_reads']['p99_ms']} ms",
            f"balance p99 / this p99 = {r['balance_p99_over_raw_p99']}",
        ),
        (
            "  CPU per balance read",
            ", ".join(f"{name} {us} us" for name, us in r["cpu_us_per_balance_read"].items() if us >= 1),
            "",
        ),
        (
            "  background jobs that ran during the balance reads",
            "; ".join(
                f"{name}: " + ", ".join(f"{job} x{n}" for job, n in jobs.items())
                for name, jobs in r["jobs_during_balance_reads"].items()
            )
            or "none",
            "",
        ),
        (
            f"reserve, {red['riders']} riders at the same instant",
            f"p50 {red['burst_reserve']['p50_ms']} ms, p99 {red['burst_reserve']['p99_ms']} ms",
            "",
        ),
        (
            f"confirm, the burst's {red['riders']} codes at once",
            f"p50 {red['burst_confirm']['p50_ms']} ms, p99 {red['burst_confirm']['p99_ms']} ms",
            "",
        ),
        (
            f"reserve, {red['riders']} riders redeeming ({red['requests_per_s']} req/s)",
            f"p50 {red['reserve']['p50_ms']} ms, p99 {red['reserve']['p99_ms']} ms",
            f"lowest balance {red['lowest_balance']}",
        ),
        (
            f"confirm, {red['riders']} riders redeeming",
            f"p50 {red['confirm']['p50_ms']} ms, p99 {red['confirm']['p99_ms']} ms",
            f"{red['refused_for_points']} refused for points",
        ),
    ]
    rows += [(f"CPU per event over Kafka: {name}", f"{us} us", "") for name, us in r["kafka_cpu_us_per_event"].items()]
    rows += [(f"CPU per event over HTTP: {name}", f"{us} us", "") for name, us in r["http_cpu_us_per_event"].items()]
    rows += [(f"peak RSS {name}", f"{mb} MB", "") for name, mb in r["peak_rss_mb"].items()]
    width = max(len(a) for a, _, _ in rows)
    print(f"\nwarmbee bench, {r['when']}, {r['machine']}")
    for a, b, c2 in rows:
        print(f"  {a:<{width}}  {b:<32}{c2}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--riders", type=int, default=10_000)
    parser.add_argument("--read-seconds", type=int, default=30)
    parser.add_argument(
        "--workers", type=int, default=2, help="points worker processes in the group (deploy/ runs 3 or more)"
    )
    parser.add_argument(
        "--api-replicas",
        type=int,
        default=1,
        help="processes of the points API and of redemption, the load spread over them (deploy/ runs 2)",
    )
    args = parser.parse_args()
    asyncio.run(main(args.events, args.riders, args.read_seconds, args.workers, args.api_replicas))
