"""Webhook deliveries per second, and event-to-delivery latency, through the notifications sender's whole path.

Throughput (the default): 10 subscriptions hear of N points-ledger events: ``record_deliveries`` writes the
10 × N delivery rows (as the worker does before acknowledging), then ``send_due`` works through them: claim
with a lease, sign, POST, record the outcome. The baseline, measured in the same run: the same number of
signed POSTs by the same Sender without the database, so the ratio says what the database steps cost.

Latency (``--latency``): events are fed at ``--rate`` a second for ``--seconds``, heard of by 1 and then by
10 subscriptions, and recorded in batches as the worker's agent takes them (every ``BATCH_WITHIN_S``, at
most ``BATCH_MAX``), while the worker's sender loop (``send_forever``: woken by NOTIFY, polling every
``webhook_sender_interval_s``) sends them. Event to
delivery is from the moment an event is fed to the moment the receiver has read its POST (both clocks of
this machine); Kafka's own hop from the ledger writer to the agent is not in it.

The receiver is a real HTTP/1.1 server in a process of its own: a plain asyncio protocol with httptools'
parser (keep-alive, answers 204 to every POST), which costs far less CPU per request than uvicorn and
Starlette, so on 2 cores it leaves the CPU to the sender being measured. It notes when each webhook-id
arrived, for the latency mode.
With ``--senders N`` the deliveries are sent by N ``warmbee worker notifications-sender`` processes (the
deployment where the worker only records), not by this process's loop; their CPU per delivery is reported.
Usage: python -m bench.webhooks [--events 2000] [--runs 3] [--latency [--rate 100] [--seconds 30] [--senders N]]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import httptools
import orjson

from libs.platform.auth import Role
from libs.platform.db import Database, drop_database
from libs.platform.settings import Settings
from services.cli import prepare_database
from services.notifications.domain.deliveries import Due
from services.notifications.domain.subscriptions import new_secret, new_webhook_id
from services.notifications.entrypoints.consumer import BATCH_MAX, BATCH_WITHIN_S
from services.notifications.entrypoints.sending import send_forever
from services.notifications.handlers import record_deliveries, send_due
from services.notifications.sealing import Sealer
from services.notifications.sender import Sender
from services.notifications.store import SubscriptionStore

ROOT = Path(__file__).resolve().parents[1]
RECEIVER_PORT = 28099
SENDER_METRICS_PORT = 28101  # and up: the sender processes' metrics (--senders)
SUBSCRIPTIONS = 10
LATENCY_SUBSCRIPTIONS = (1, 10)  # each event to one webhook (100 deliveries/s), and to ten (1,000/s)
SETTINGS = Settings(
    pg_database="warmbee_bench_webhooks",
    webhook_in_flight=64,
    webhook_in_flight_per_subscription=8,
)
RECEIVER_KIND = "asyncio + httptools HTTP/1.1 server, 1 process, answers 204"


class _Hook(asyncio.Protocol):
    """One keep-alive connection of the receiver: parses requests, answers each POST 204 once read whole,
    and notes (webhook-id, arrival) for ``GET /received``, which answers them as JSON and forgets them."""

    arrivals: list[tuple[str, float]] = []  # noqa: RUF012  # shared by the connections of the process

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._parser = httptools.HttpRequestParser(self)
        self._webhook_id = ""

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._transport.close()

    def on_message_begin(self) -> None:
        self._webhook_id = ""

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"webhook-id":
            self._webhook_id = value.decode()

    def on_message_complete(self) -> None:
        if self._parser.get_method() == b"GET":
            body = orjson.dumps(_Hook.arrivals)
            _Hook.arrivals = []
            head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
            self._transport.write(head.encode() + body)
            return
        _Hook.arrivals.append((self._webhook_id, time.time()))
        self._transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")


async def serve_receiver(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_Hook, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


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


def sender_of(settings: Settings) -> Sender:
    return Sender(
        no_refusal,
        timeout_s=settings.webhook_timeout_s,
        in_flight=settings.webhook_in_flight,
        in_flight_per_subscription=settings.webhook_in_flight_per_subscription,
    )


async def subscribe(db: Database, tag: str, subscriptions: int) -> None:
    """Each run its own subscriptions (the last run's are deleted), on a vacuumed table: the local cluster
    runs with autovacuum off, and the dead index entries of the runs before would slow each claim."""
    sealer = Sealer.of(SETTINGS)
    async with db.read() as conn:
        await conn.execute("UPDATE webhook_subscription SET deleted_at = now() WHERE deleted_at IS NULL")
    owner = await asyncpg.connect(SETTINGS.owner_database_url)  # only the table's owner may vacuum it
    try:
        await owner.execute("VACUUM (ANALYZE) webhook_delivery")
    finally:
        await owner.close()
    for n in range(subscriptions):
        url = f"http://127.0.0.1:{RECEIVER_PORT}/hook/{tag}-{n}"

        async def create(conn: asyncpg.Connection, url: str = url) -> None:
            await SubscriptionStore(conn).create(
                new_webhook_id(), Role.OPERATOR, "bench", url, ["points.awarded"], "", sealer.seal(new_secret())
            )

        await db.run(create)


async def one_run(db: Database, events: int) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    await subscribe(db, tag, SUBSCRIPTIONS)
    messages = [ledger_message(i, tag) for i in range(events)]
    started = time.perf_counter()
    for i in range(0, events, BATCH_MAX):
        await record_deliveries(db, messages[i : i + BATCH_MAX])
    recorded_s = time.perf_counter() - started
    async with sender_of(SETTINGS) as sender:
        started, cpu = time.perf_counter(), time.process_time()
        sent = 0
        while (step := await send_due(db, SETTINGS, sender, 500)) > 0:
            sent += step
        send_s, send_cpu_s = time.perf_counter() - started, time.process_time() - cpu
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
        started, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(dues), SETTINGS.webhook_in_flight):
            await sender.attempt_all(dues[i : i + SETTINGS.webhook_in_flight])
        baseline_s, baseline_cpu_s = time.perf_counter() - started, time.process_time() - cpu
    async with db.read() as conn:
        pending = await conn.fetchval("SELECT count(*) FROM webhook_delivery WHERE status <> 'delivered'")
    return {
        "deliveries": sent,
        "record_per_s": round(sent / recorded_s),
        "deliveries_per_s": round(sent / send_s),
        "baseline_posts_per_s": round(sent / baseline_s),
        "ratio_to_baseline": round(baseline_s / send_s, 2),
        # The sender process's CPU per delivery: steadier than the rates on a shared machine, and the
        # rate one free core would give is 1000 / this.
        "cpu_ms_per_delivery": round(send_cpu_s * 1000 / sent, 3),
        "baseline_cpu_ms_per_post": round(baseline_cpu_s * 1000 / sent, 3),
        "not_delivered": pending,
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def latency_run(
    db: Database, http: aiohttp.ClientSession, rate: float, seconds: float, subscriptions: int, senders: int
) -> dict[str, Any]:
    """Feed ``rate`` events a second for ``seconds`` to the agent's batching and the sender loop, each
    event heard of by ``subscriptions`` subscriptions; ``senders`` > 0: sent by that many sender
    processes instead of this one's loop."""
    tag = uuid.uuid4().hex[:6]
    await subscribe(db, tag, subscriptions)
    async with http.get(f"http://127.0.0.1:{RECEIVER_PORT}/received") as answer:
        await answer.read()  # forget what came before
    fed: dict[str, float] = {}
    buffer: list[bytes] = []

    async def feed() -> None:
        started = time.monotonic()
        for i in range(round(rate * seconds)):
            await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
            fed[f"entry-{tag}-{i}"] = time.time()
            buffer.append(ledger_message(i, tag))

    async def agent() -> None:  # faust's noack_take: what came within BATCH_WITHIN_S, at most BATCH_MAX
        while True:
            await asyncio.sleep(BATCH_WITHIN_S)
            while buffer:
                batch = buffer[:BATCH_MAX]
                del buffer[: len(batch)]
                await record_deliveries(db, batch)

    processes: list[asyncio.subprocess.Process] = []
    async with contextlib.AsyncExitStack() as stack:
        if senders:  # processes of their own, as deployed: the worker then only records
            processes = await stack.enter_async_context(sender_processes(senders))
            sending = asyncio.create_task(asyncio.sleep(10**9))
        else:  # in this process, as the worker's own sender task is beside its agent
            sender = await stack.enter_async_context(sender_of(SETTINGS))
            sending = asyncio.create_task(send_forever(db, SETTINGS, sender))
        cpu_before = [_cpu_s(p.pid) for p in processes]
        taking = asyncio.create_task(agent())
        try:
            await feed()
            expected = len(fed) * subscriptions
            arrivals: list[tuple[str, float]] = []
            deadline = time.monotonic() + 60
            while len(arrivals) < expected and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                async with http.get(f"http://127.0.0.1:{RECEIVER_PORT}/received") as answer:
                    arrivals += orjson.loads(await answer.read())
        finally:
            for task in (taking, sending):
                task.cancel()
            await asyncio.gather(taking, sending, return_exceptions=True)
        senders_cpu_s = sum(_cpu_s(p.pid) - before for p, before in zip(processes, cpu_before, strict=True))
    latencies = [at - fed[event_id] for event_id, at in arrivals if event_id in fed]
    return {
        "events": len(fed),
        "deliveries_expected": expected,
        "deliveries_arrived": len(latencies),
        "p50_s": round(_percentile(latencies, 0.5), 3),
        "p99_s": round(_percentile(latencies, 0.99), 3),
        "max_s": round(max(latencies), 3),
        **({"senders_cpu_ms_per_delivery": round(senders_cpu_s * 1000 / len(latencies), 3)} if senders else {}),
    }


def _cpu_s(pid: int) -> float:
    """The CPU seconds (user and system) process ``pid`` has used (Linux's /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.asynccontextmanager
async def sender_processes(n: int) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """``n`` webhook senders, each ``warmbee worker notifications-sender`` in a process of its own, on the
    bench's database and limits; stopped by SIGTERM at the end."""
    env = os.environ | {
        "WARMBEE_PG_DATABASE": SETTINGS.pg_database,
        "WARMBEE_WEBHOOK_IN_FLIGHT": str(SETTINGS.webhook_in_flight),
        "WARMBEE_WEBHOOK_IN_FLIGHT_PER_SUBSCRIPTION": str(SETTINGS.webhook_in_flight_per_subscription),
        "WARMBEE_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
        "WARMBEE_WEBHOOK_REQUIRE_HTTPS": "false",
        "WARMBEE_LOG_LEVEL": "WARNING",
    }
    processes = []
    try:
        for i in range(n):
            port = {"WARMBEE_NOTIFICATIONS_SENDER_METRICS_PORT": str(SENDER_METRICS_PORT + i)}
            processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "services.cli", "worker", "notifications-sender", cwd=ROOT, env=env | port
                )
            )
        async with aiohttp.ClientSession() as http:  # each is up once its metrics answer
            for i in range(n):
                for _ in range(200):
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.get(f"http://127.0.0.1:{SENDER_METRICS_PORT + i}/metrics") as answer:
                            await answer.read()
                            break
                    await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # their database pools open and their LISTENs are in place
        yield processes
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        for process in processes:
            await process.wait()


async def main(events: int, runs: int, latency: bool, rate: float, seconds: float, senders: int) -> None:
    receiver = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.webhooks", "--receiver", cwd=ROOT)
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.get(f"http://127.0.0.1:{RECEIVER_PORT}/received") as answer:
                        await answer.read()
                    break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            await drop_database(SETTINGS)
            await prepare_database(SETTINGS)
            db = Database(SETTINGS)
            await db.open()
            try:
                if latency:
                    by_subscriptions = {
                        n: [await latency_run(db, http, rate, seconds, n, senders) for _ in range(runs)]
                        for n in LATENCY_SUBSCRIPTIONS
                    }
                else:
                    results = [await one_run(db, events) for _ in range(runs)]
            finally:
                await db.close()
    finally:
        receiver.terminate()
        await receiver.wait()
    summary: dict[str, Any] = {
        "measured_at": datetime.now(UTC).isoformat(),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),  # 2 cores, shared
        "receiver": RECEIVER_KIND,
        "in_flight": SETTINGS.webhook_in_flight,
        "in_flight_per_subscription": SETTINGS.webhook_in_flight_per_subscription,
    }
    if latency:
        summary |= {
            "events_per_s": rate,
            "seconds": seconds,
            "sender_interval_s": SETTINGS.webhook_sender_interval_s,
            "senders": f"{senders} processes of their own" if senders else "the recording process's own loop",
            "by_subscriptions": {
                str(n): {
                    "deliveries_per_s": rate * n,
                    "runs": results,
                    "median_p50_s": statistics.median(r["p50_s"] for r in results),
                    "median_p99_s": statistics.median(r["p99_s"] for r in results),
                }
                for n, results in by_subscriptions.items()
            },
        }
        out = ROOT / "bench" / "results" / f"webhooks_latency{f'_{senders}_senders' if senders else ''}.json"
    else:
        summary |= {
            "subscriptions": SUBSCRIPTIONS,
            "events_per_run": events,
            "runs": results,
            "median_deliveries_per_s": statistics.median(r["deliveries_per_s"] for r in results),
            "median_baseline_posts_per_s": statistics.median(r["baseline_posts_per_s"] for r in results),
            "median_ratio_to_baseline": statistics.median(r["ratio_to_baseline"] for r in results),
            "median_cpu_ms_per_delivery": statistics.median(r["cpu_ms_per_delivery"] for r in results),
        }
        out = ROOT / "bench" / "results" / "webhooks.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency", action="store_true", help="event-to-delivery latency at --rate events/s")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--senders", type=int, default=0, help="latency: send from this many sender processes")
    parser.add_argument("--receiver", action="store_true", help=argparse.SUPPRESS)  # the receiver's process
    args = parser.parse_args()
    if args.receiver:
        asyncio.run(serve_receiver(RECEIVER_PORT))
    else:
        asyncio.run(main(args.events, args.runs, args.latency, args.rate, args.seconds, args.senders))
