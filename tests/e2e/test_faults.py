"""Fault scenarios on real processes: workers killed mid-batch, the broker restarted, duplicate and
shuffled delivery, poison messages, a redemption replica killed. Each ends with `warmbee reconcile`."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from libs.platform.auth import Role
from libs.platform.kafka import make_producer
from libs.platform.localstack import ROOT, LocalStack
from tests.conftest import SPARE_PORTS
from tests.e2e.conftest import Api, eventually, shanghai, shift, to_kafka
from tests.e2e.test_redemption import catalogue_entry, confirm_code, grant, ready, reserve

pytestmark = pytest.mark.e2e


def reconcile(stack: LocalStack) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", **stack.settings.as_env()}
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "reconcile", "--stuck-after", "60"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_reconciled(stack: LocalStack) -> None:
    result = reconcile(stack)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reconciled: no mismatch" in result.stdout


@pytest.fixture
async def ledger(stack: LocalStack) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(stack.settings.database_url)
    yield conn
    await conn.close()


async def awards_with_prefix(conn: asyncpg.Connection, prefix: str) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM ledger_transaction WHERE kind = 'award' AND event_id LIKE $1", f"{prefix}%"
        )
    )


POINTS_PER_COURSE = 20  # skill development has no cap and no once-only limit: every event earns 20


def stream(prefix: str, n: int, riders: int) -> list[dict[str, Any]]:
    """n completed courses spread over riders: a total that any loss or double count would change."""
    return [
        shift(
            f"rider-{prefix}-{i % riders}",
            1,
            id=f"{prefix}-{i}",
            source="training-school",
            type="skill.course.completed",
            data={"course_id": f"course-{i}"},
            time=shanghai("2024-03-01", 10),
        )
        for i in range(n)
    ]


async def test_the_worker_killed_mid_batch_repeatedly_while_events_stream_in_scores_each_event_once(
    stack: LocalStack, kafka: AIOKafkaProducer, ledger: asyncpg.Connection
) -> None:
    prefix = f"kill-{uuid.uuid4().hex[:6]}"
    events = stream(prefix, 3000, riders=50)

    async def publish() -> None:
        for i in range(0, len(events), 100):
            await asyncio.gather(
                *(to_kafka(kafka, stack.settings, orjson.dumps(e), e["subject"]) for e in events[i : i + 100])
            )
            await asyncio.sleep(0.2)

    publishing = asyncio.create_task(publish())
    kills = 0
    for _ in range(3):
        await asyncio.sleep(random.uniform(1.5, 3.0))
        stack.stop("points-worker", signal.SIGKILL)
        kills += 1
        stack.start_service("points-worker")
    await publishing
    await stack.wait_healthy(["points-worker"])

    async def all_scored() -> int | None:
        scored = await awards_with_prefix(ledger, prefix)
        return scored if scored >= len(events) else None

    assert await eventually(all_scored, 180, f"{len(events)} events scored") == len(events)
    assert kills == 3
    total = await ledger.fetchval(
        "SELECT sum(available) FROM rider_balance WHERE rider_id LIKE $1", f"rider-{prefix}-%"
    )
    assert total == POINTS_PER_COURSE * len(events)  # none lost, none doubled
    assert_reconciled(stack)


@pytest.mark.after_all  # the restarted local broker may come back with other partitions: disturb no other test
async def test_events_accepted_over_http_while_the_broker_restarts_empty_are_each_scored_once(
    stack: LocalStack, api: Api, ledger: asyncpg.Connection
) -> None:
    prefix = f"brk-{uuid.uuid4().hex[:6]}"
    events = stream(prefix, 600, riders=20)
    accepted = 0

    async def publish() -> None:
        nonlocal accepted
        for i in range(0, len(events), 20):
            r = await api.publish(events[i : i + 20], source="training-school", batch=True)
            assert r.status_code == 202, r.text
            accepted += r.json()["accepted"]
            await asyncio.sleep(0.1)

    publishing = asyncio.create_task(publish())
    await asyncio.sleep(1.5)
    # In a thread: the broker may take seconds to stop, and the publishing goes on meanwhile (blocking this
    # loop for longer than the events service's keep-alive made a pooled connection go stale under load).
    await asyncio.to_thread(stack.stop, "broker")  # memory-only: whatever it held is gone
    await asyncio.sleep(2)
    await stack.start_broker()
    await publishing

    async def all_scored() -> int | None:
        scored = await awards_with_prefix(ledger, prefix)
        return scored if scored >= len(events) else None

    assert accepted == len(events)
    assert await eventually(all_scored, 180, "every accepted event scored") == len(events)
    total = await ledger.fetchval(
        "SELECT sum(available) FROM rider_balance WHERE rider_id LIKE $1", f"rider-{prefix}-%"
    )
    assert total == POINTS_PER_COURSE * len(events)

    async def kafka_flows_again() -> bool | None:
        # A source publishing straight to the restarted local broker sees errors until it has reconnected
        # and the topic exists again; like any Kafka client it retries.
        marker = shift(f"rider-{prefix}-marker", 1)
        producer = make_producer(stack.settings)
        try:
            await producer.start()
            await to_kafka(producer, stack.settings, orjson.dumps(marker), marker["subject"])
            await api.wait_scored("volunteer-platform", marker["id"], timeout_s=15)
        except (KafkaError, AssertionError):
            return None
        finally:
            await producer.stop()
        return True

    assert await eventually(kafka_flows_again, 120, "the Kafka path flowing after the restart")
    assert_reconciled(stack)


async def test_the_same_events_twice_shuffled_over_kafka_and_http_count_once(
    stack: LocalStack, api: Api, kafka: AIOKafkaProducer, ledger: asyncpg.Connection
) -> None:
    prefix = f"dup-{uuid.uuid4().hex[:6]}"
    events = stream(prefix, 200, riders=10)
    copies = [(path, e) for e in events for path in ("kafka", "http")] * 2
    random.Random(7).shuffle(copies)

    for path, e in copies:
        if path == "kafka":
            await to_kafka(kafka, stack.settings, orjson.dumps(e), e["subject"])
        else:
            assert (await api.publish(e, source="training-school")).status_code == 202

    async def all_scored() -> int | None:
        scored = await awards_with_prefix(ledger, prefix)
        return scored if scored >= len(events) else None

    assert await eventually(all_scored, 120, "every event scored") == len(events)
    await asyncio.sleep(2)  # late copies still arriving must change nothing
    assert await awards_with_prefix(ledger, prefix) == len(events)
    for r in range(10):
        assert (await api.balance(f"rider-{prefix}-{r}"))["available"] == 20 * POINTS_PER_COURSE
    assert_reconciled(stack)


async def test_poison_on_kafka_is_dead_lettered_and_the_partition_keeps_flowing(
    stack: LocalStack, api: Api, rider: str
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=stack.settings.kafka_bootstrap, enable_idempotence=False, max_request_size=8 * 1024 * 1024
    )
    await producer.start()
    good = shift(rider, 1)
    poison: dict[str, bytes] = {
        "5 MB value": orjson.dumps({**shift(rider, 1), "data": {"shift_id": "s", "hours": 1, "pad": "x" * 5_000_000}}),
        "wrong types": orjson.dumps(shift(rider, 1, subject=42, data={"shift_id": 7, "hours": True})),
        "unknown type": orjson.dumps(shift(rider, 1, type="volunteer.shift.invented")),
        "year 9999": orjson.dumps(shift(rider, 1, time="9999-01-01T00:00:00+08:00")),
        "invalid JSON": b"{not json",
        "invalid UTF-8": b"\xc3\x28",
        "JSON array": orjson.dumps([shift(rider, 1)]),
    }
    try:
        for value in poison.values():
            await producer.send_and_wait(stack.settings.topic_activity_events, value, key=rider.encode())
        await producer.send_and_wait(stack.settings.topic_activity_events, orjson.dumps(good), key=rider.encode())
    finally:
        await producer.stop()

    assert (await api.wait_scored("volunteer-platform", good["id"]))["points"] == 10
    letters = await api.http.get(f"{api.events_url}/v1/dead-letters?limit=50", headers=api.token_for_operator())
    mine = [d for d in letters.json()["items"] if d["key"] == rider]
    assert len(mine) == len(poison)
    assert all(d["reason"] for d in mine)
    assert_reconciled(stack)


async def test_a_redemption_replica_killed_between_reserve_and_confirm_loses_nothing(
    stack: LocalStack, api: Api, rider: str
) -> None:
    replica = f"http://127.0.0.1:{SPARE_PORTS[3]}"
    stack.start_service("redemption", {"WARMBEE_REDEMPTION_PORT": str(SPARE_PORTS[3])}, instance="redemption-b")
    try:
        await eventually(lambda: ready(api, f"{replica}/readyz"), 60, "the second replica ready")
        partner_id, reward_id = await catalogue_entry(api, cost=30)
        await grant(api, rider, 30)
        held = await reserve(api, rider, reward_id)
        assert held.status_code == 201, held.text
        stack.stop("redemption", signal.SIGKILL)  # the replica that issued the code dies

        confirmed = await api.http.post(
            f"{replica}/v1/partner/confirmations",
            json={"code": held.json()["code"]},
            headers=api.token(Role.PARTNER, partner_id),
        )
    finally:
        stack.start_service("redemption")
        await stack.wait_healthy(["redemption"])
        stack.stop("redemption-b")

    assert confirmed.status_code == 200, confirmed.text
    assert (await api.balance(rider))["redeemed_total"] == 30
    assert (await confirm_code(api, partner_id, held.json()["code"])).status_code == 409
    assert_reconciled(stack)


async def test_two_replicas_sweeping_expiry_expire_each_hold_exactly_once(
    stack: LocalStack, api: Api, rider: str, ledger: asyncpg.Connection
) -> None:
    ports = [SPARE_PORTS[2], SPARE_PORTS[3]]
    short = {"WARMBEE_REDEMPTION_HOLD_TTL_S": "2", "WARMBEE_REDEMPTION_EXPIRY_SWEEP_S": "0.2"}
    for n, port in enumerate(ports):
        stack.start_service("redemption", {**short, "WARMBEE_REDEMPTION_PORT": str(port)}, instance=f"sweeper-{n}")
    try:
        for port in ports:
            await eventually(lambda p=port: ready(api, f"http://127.0.0.1:{p}/readyz"), 60, "replica ready")  # type: ignore[misc]
        _, reward_id = await catalogue_entry(api, cost=5)
        await grant(api, rider, 100)
        holds = [await reserve(api, rider, reward_id, url=f"http://127.0.0.1:{ports[i % 2]}") for i in range(20)]
        assert all(h.status_code == 201 for h in holds)
        ids = [h.json()["redemption_id"] for h in holds]

        async def all_expired() -> bool | None:
            statuses = await ledger.fetch("SELECT status FROM redemption WHERE redemption_id = ANY($1)", ids)
            return True if all(s["status"] == "expired" for s in statuses) else None

        await eventually(all_expired, 60, "every hold expired")
    finally:
        for n in range(len(ports)):
            stack.stop(f"sweeper-{n}")

    expiries = await ledger.fetchval(
        "SELECT count(*) FROM ledger_transaction WHERE kind = 'expire' AND event_id = ANY($1)", ids
    )
    assert expiries == 20
    assert (await api.balance(rider))["available"] == 100
    assert_reconciled(stack)


def restart_postgres() -> None:
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        capture_output=True,
        timeout=120,
    )


async def test_postgres_restarted_mid_stream_loses_nothing_and_the_services_reconnect_by_themselves(
    stack: LocalStack, api: Api, kafka: AIOKafkaProducer
) -> None:
    prefix = f"pg-{uuid.uuid4().hex[:6]}"
    events = stream(prefix, 800, riders=20)
    pids = {name: p.pid for name, p in stack.processes.items()}
    accepted: list[dict[str, Any]] = []

    async def publish() -> None:
        for i in range(0, len(events), 20):
            chunk = events[i : i + 20]
            if i % 40:
                await asyncio.gather(*(to_kafka(kafka, stack.settings, orjson.dumps(e), e["subject"]) for e in chunk))
                accepted.extend(chunk)
                continue
            while True:  # a source retries what was not accepted; what was accepted is warmbee's
                try:
                    r = await api.publish(chunk, source="training-school", batch=True)
                except httpx.TransportError:
                    r = None
                if r is not None and r.status_code == 202:
                    accepted.extend(chunk)
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(0.1)

    publishing = asyncio.create_task(publish())
    await asyncio.sleep(1.0)
    await asyncio.to_thread(restart_postgres)
    await publishing

    async def all_scored() -> int | None:
        conn = await asyncpg.connect(stack.settings.database_url)
        try:
            scored = await awards_with_prefix(conn, prefix)
        finally:
            await conn.close()
        return scored if scored >= len(events) else None

    assert len(accepted) == len(events)
    assert await eventually(all_scored, 180, "every event scored after the restart") == len(events)
    assert {name: p.pid for name, p in stack.processes.items()} == pids  # nobody was restarted
    await stack.wait_healthy(list(pids.keys() - {"broker"}), timeout_s=30)
    assert_reconciled(stack)
