"""`warmbee publish` (the publishing client, clients/python) as a source system runs it: a real subprocess
against the real stack. A month's backlog of 50,000 events sent twice (all accepted, then all duplicates),
the balances the rules give; Retry-After from a server in front of the events service; Kafka with the
rider as key; a file with a bad line and a refused event."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from libs.platform.auth import Role
from libs.platform.kafka import client_options
from libs.platform.localstack import LocalStack
from tests.conftest import TEST_ENV
from tests.e2e.conftest import Api, eventually

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
RUNS = ROOT / "test-artifacts" / "publish"  # what each run printed, for docs/publishing.md
SOURCE = "training-school"

# One rider's month, as the training school's backlog holds it. By the default rules (v1): a course 20,
# a certificate 50, a civic action 5 with at most 20 a day (the 10 actions of one day earn 20 in all).
COURSES, CERTIFICATES, ACTIONS_ONE_DAY = 70, 20, 10
PER_RIDER = COURSES + CERTIFICATES + ACTIONS_ONE_DAY  # 100 events
RIDER_BALANCE = COURSES * 20 + CERTIFICATES * 50 + 20  # 2,420 points
RIDERS = 500  # 50,000 events


def rider_month(run: str, rider: str) -> Iterator[dict[str, Any]]:
    def event(n: int, kind: str, day: int, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "specversion": "1.0",
            "id": f"{run}-{rider}-{n}",
            "source": SOURCE,
            "type": kind,
            "subject": rider,
            "time": f"2024-05-{day:02d}T{9 + n % 10:02d}:00:00+08:00",
            "datacontenttype": "application/json",
            "data": data,
        }

    n = 0
    for c in range(COURSES):
        yield event(n := n + 1, "skill.course.completed", 1 + c % 28, {"course_id": f"course-{c}"})
    for c in range(CERTIFICATES):
        yield event(n := n + 1, "skill.certificate.obtained", 1 + c % 28, {"certificate_id": f"cert-{c}"})
    for _ in range(ACTIONS_ONE_DAY):
        yield event(n := n + 1, "civic.action.verified", 15, {"action": "litter_pickup"})


def write_backlog(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def warmbee_publish(*args: str, keep_as: str | None = None) -> subprocess.CompletedProcess[str]:
    """`warmbee publish ...` as its own process, with the tests' settings (ports, broker)."""
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "publish", *args],
        cwd=ROOT,
        env={**os.environ, **TEST_ENV},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if keep_as:
        RUNS.mkdir(parents=True, exist_ok=True)
        (RUNS / f"{keep_as}.txt").write_text(f"$ warmbee publish {' '.join(args)}\n{done.stderr}{done.stdout}")
    return done


async def balances(api: Api, prefix: str) -> dict[str, int]:
    found: dict[str, int] = {}
    cursor: str | None = None
    while True:
        params = {"prefix": prefix, "limit": "500", **({"cursor": cursor} if cursor else {})}
        r = await api.http.get(f"{api.points_url}/v1/riders", params=params, headers=api.token_for_operator())
        assert r.status_code == 200, r.text
        page = r.json()
        found |= {b["rider_id"]: b["available"] for b in page["items"]}
        if not (cursor := page["next_cursor"]):
            return found


async def all_scored(api: Api, prefix: str, riders: int, balance: int, timeout_s: float) -> dict[str, int]:
    async def done() -> dict[str, int] | None:
        now = await balances(api, prefix)
        return now if len(now) == riders and all(v == balance for v in now.values()) else None

    return await eventually(done, timeout_s, f"{riders} riders of {prefix} at {balance} points")


@pytest.mark.timeout(900)
async def test_a_backlog_of_50000_events_sent_twice_is_accepted_once_then_all_duplicates(
    stack: LocalStack, api: Api, tmp_path: Path
) -> None:
    run = f"bk{uuid.uuid4().hex[:8]}"
    riders = [f"{run}-r{i:03d}" for i in range(RIDERS)]
    lines = [orjson.dumps(e) for r in riders for e in rider_month(run, r)]
    assert len(lines) == 50_000
    backlog = write_backlog(tmp_path / "month.jsonl", lines)
    token = api.token(Role.SOURCE, SOURCE)["authorization"].removeprefix("Bearer ")
    url = api.events_url

    started = time.monotonic()
    first = await asyncio.to_thread(warmbee_publish, str(backlog), "--token", token, "--url", url, keep_as="first")
    first_s = time.monotonic() - started
    assert first.returncode == 0, first.stdout + first.stderr
    assert "50000 lines sent over http" in first.stdout
    assert "  accepted    50000\n  duplicates  0\n  refused     0\n" in first.stdout
    assert "50000/50000" in first.stderr  # the progress bar's last state

    # Scored by the worker as the rules say: every rider at the same month's total.
    started = time.monotonic()
    scored = await all_scored(api, f"{run}-r", RIDERS, RIDER_BALANCE, timeout_s=600)
    scoring_s = time.monotonic() - started
    assert sum(scored.values()) == RIDERS * RIDER_BALANCE

    started = time.monotonic()
    second = await asyncio.to_thread(warmbee_publish, str(backlog), "--token", token, "--url", url, keep_as="second")
    second_s = time.monotonic() - started
    assert second.returncode == 0, second.stdout + second.stderr
    assert "  accepted    0\n  duplicates  50000\n  refused     0\n" in second.stdout
    await asyncio.sleep(2)  # a duplicate scored twice would show up here
    assert await balances(api, f"{run}-r") == scored
    print(f"\n50,000 events: first send {first_s:.1f} s, scored {scoring_s:.1f} s later, second send {second_s:.1f} s")


class RetryLater(BaseHTTPRequestHandler):
    """In front of the events service: the first POST is answered 503 (or 429) with Retry-After, every
    one after is passed through; what arrived when is kept on the server."""

    def do_POST(self) -> None:
        server: Any = self.server
        body = self.rfile.read(int(self.headers["content-length"]))
        server.received.append((time.monotonic(), body))
        if len(server.received) == 1:
            self.send_response(server.first_status)
            self.send_header("retry-after", "2")
            self.send_header("content-type", "application/problem+json")
            problem = b'{"type":"https://warmbee.dev/problems/not-ready","title":"Not ready","status":503}'
            self.send_header("content-length", str(len(problem)))
            self.end_headers()
            self.wfile.write(problem)
            return
        forwarded = urllib.request.Request(  # noqa: S310 (the test's own loopback URL)
            server.upstream + self.path,
            data=body,
            method="POST",
            headers={k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")},
        )
        try:
            with urllib.request.urlopen(forwarded, timeout=30) as answer:  # noqa: S310
                status, payload, media = answer.status, answer.read(), answer.headers["content-type"]
        except urllib.error.HTTPError as refused:
            status, payload, media = refused.code, refused.read(), refused.headers["content-type"]
        self.send_response(status)
        self.send_header("content-type", media)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize("status", [503, 429])
async def test_publish_waits_as_long_as_retry_after_says_and_sends_the_same_ids(
    stack: LocalStack, api: Api, tmp_path: Path, rider: str, status: int
) -> None:
    proxy: Any = ThreadingHTTPServer(("127.0.0.1", 0), RetryLater)
    proxy.received, proxy.first_status, proxy.upstream = [], status, api.events_url
    threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        run = f"ra{uuid.uuid4().hex[:8]}"
        events = list(rider_month(run, rider))[:3]
        backlog = write_backlog(tmp_path / "three.jsonl", [orjson.dumps(e) for e in events])
        token = api.token(Role.SOURCE, SOURCE)["authorization"].removeprefix("Bearer ")
        url = f"http://127.0.0.1:{proxy.server_address[1]}"
        done = await asyncio.to_thread(warmbee_publish, str(backlog), "--token", token, "--url", url)
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "  accepted    3\n" in done.stdout
    assert "  retries     1" in done.stdout
    (first_at, first), (second_at, second) = proxy.received
    assert second_at - first_at >= 2.0  # Retry-After: 2, not the back-off's first fraction of a second
    assert first == second
    assert [e["id"] for e in orjson.loads(second)] == [e["id"] for e in events]
    assert (await api.wait_scored(SOURCE, events[0]["id"]))["points"] == 20


async def test_a_bad_line_and_a_refused_event_are_reported_and_the_rest_goes(
    stack: LocalStack, api: Api, tmp_path: Path, rider: str
) -> None:
    run = f"bad{uuid.uuid4().hex[:8]}"
    good = list(rider_month(run, rider))[:4]
    wrong = {**good[3], "id": f"{run}-wrong", "data": {}}  # a course without its course_id
    lines = [orjson.dumps(good[0]), b'{"specversion": "1.0", "id": ', orjson.dumps(good[1]), orjson.dumps(wrong)]
    lines += [b"[1, 2]", orjson.dumps(good[2])]
    backlog = write_backlog(tmp_path / "bad.jsonl", lines)
    token = api.token(Role.SOURCE, SOURCE)["authorization"].removeprefix("Bearer ")
    done = await asyncio.to_thread(
        warmbee_publish, str(backlog), "--token", token, "--url", api.events_url, keep_as="refused"
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "6 lines sent over http\n  accepted    3\n  duplicates  0\n  refused     1\n" in done.stdout
    assert "× data.course_id: is required  (line 4)" in done.stdout
    assert "  unreadable  2\n    line 2: not JSON: " in done.stdout
    assert "    line 5: not a JSON object but list: one CloudEvent a line" in done.stdout
    for e in (good[0], good[1], good[2]):
        assert (await api.wait_scored(SOURCE, e["id"]))["points"] == 20
    assert (await api.status(SOURCE, wrong["id"])).status_code == 404  # refused: it stays with its sender


async def test_over_kafka_the_events_arrive_keyed_by_the_rider_and_are_scored(
    stack: LocalStack, api: Api, tmp_path: Path, rider: str
) -> None:
    run = f"kf{uuid.uuid4().hex[:8]}"
    events = list(rider_month(run, rider))
    backlog = write_backlog(tmp_path / "kafka.jsonl", [orjson.dumps(e) for e in events])
    topic = api.settings.topic_activity_events
    consumer = AIOKafkaConsumer(**client_options(api.settings), enable_auto_commit=False)  # no group
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        before = await consumer.end_offsets(partitions)
        done = await asyncio.to_thread(warmbee_publish, str(backlog), "--over", "kafka", "--batch-size", "50")
        assert done.returncode == 0, done.stdout + done.stderr
        ours: list[tuple[int, bytes | None]] = []
        for tp in partitions:  # from where each partition ended before: what arrived since
            consumer.seek(tp, before[tp])
        deadline = time.monotonic() + 30
        while len(ours) < PER_RIDER and time.monotonic() < deadline:
            for tp, messages in (await consumer.getmany(timeout_ms=500)).items():
                ours += [(tp.partition, m.key) for m in messages if run.encode() in (m.value or b"")]  # ids hold it
    finally:
        await consumer.stop()
    assert f"{PER_RIDER} lines sent over kafka\n  delivered   {PER_RIDER}" in done.stdout
    assert len(ours) == PER_RIDER
    assert {key for _, key in ours} == {rider.encode()}  # keyed by the rider ...
    assert len({partition for partition, _ in ours}) == 1  # ... so on one partition, in order
    assert await all_scored(api, rider, 1, RIDER_BALANCE, timeout_s=60) == {rider: RIDER_BALANCE}
