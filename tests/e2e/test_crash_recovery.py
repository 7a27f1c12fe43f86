"""Real processes killed by real signals: nothing is lost and nothing counts twice."""

from __future__ import annotations

import asyncio
import re
import signal

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from libs.platform.localstack import LocalStack
from tests.e2e.conftest import Api, shanghai, shift, to_kafka

pytestmark = pytest.mark.e2e


async def _metric(settings_url: str, name: str, labels: str) -> float:
    async with httpx.AsyncClient(timeout=5) as http:
        text = (await http.get(settings_url)).text
    match = re.search(rf"^{name}\{{{labels}\}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_a_worker_killed_after_writing_but_before_committing_offsets_counts_nothing_twice(
    stack: LocalStack, api: Api, kafka: AIOKafkaProducer, rider: str
) -> None:
    stack.stop("points-worker")
    crashing = stack.start_service("points-worker", {"WARMBEE_FAILPOINTS": "after_ledger_commit"})
    events = [shift(rider, 1, time=shanghai(f"2024-06-{day:02d}")) for day in range(1, 11)]  # 10 points each
    for event in events:
        await to_kafka(kafka, stack.settings, orjson.dumps(event), rider)

    returncode = await asyncio.to_thread(crashing.wait, 60)
    assert returncode == -signal.SIGKILL
    written_before_the_crash = len(await api.entries(rider))
    assert written_before_the_crash >= 1

    stack.start_service("points-worker")
    await stack.wait_healthy(["points-worker"])
    marker = shift(rider, 1, time=shanghai("2024-06-11"))  # behind the redelivered batch, same partition
    await to_kafka(kafka, stack.settings, orjson.dumps(marker), rider)
    await api.wait_scored("volunteer-platform", marker["id"], timeout_s=120)

    entries = await api.entries(rider)
    assert len(entries) == 11
    assert len({e["event_id"] for e in entries}) == 11
    assert (await api.balance(rider))["available"] == 110
    metrics_url = f"http://{stack.settings.host}:{stack.settings.worker_metrics_port}/metrics"
    redelivered = await _metric(metrics_url, "warmbee_events_consumed_total", 'outcome="duplicate"')
    assert redelivered >= written_before_the_crash  # the batch came again and was recognised


async def test_an_event_accepted_while_the_broker_is_unreachable_is_scored_once_it_answers(
    stack: LocalStack, api: Api, rider: str
) -> None:
    broker = stack.processes["broker"]
    broker.send_signal(signal.SIGSTOP)  # unreachable, as a network partition makes it; its memory stays
    try:
        event = shift(rider, 2)
        accepted = await api.publish(event)
        status = (await api.status("volunteer-platform", event["id"])).json()["status"]
        await asyncio.sleep(3)
    finally:
        broker.send_signal(signal.SIGCONT)

    assert accepted.status_code == 202
    assert status == "pending"
    assert (await api.wait_scored("volunteer-platform", event["id"], timeout_s=120))["points"] == 20
    assert (await api.balance(rider))["available"] == 20
