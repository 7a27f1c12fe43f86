"""Every category end to end through HTTP and Kafka; the hazard race across two workers."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from libs.platform.localstack import LocalStack
from tests.conftest import SPARE_PORTS
from tests.e2e.conftest import LOG_DIR, Api, shift, to_kafka, wait_for_log

pytestmark = pytest.mark.e2e
DEGREE_M = 111_320.0


def event(
    rider: str,
    type_: str,
    data: dict[str, Any],
    source: str = "community-centre-r29",
    time: str = "2024-07-01T10:00:00+08:00",
) -> dict[str, Any]:
    return shift(rider, 1, type=type_, source=source, data=data, time=time, id=f"e-{uuid.uuid4().hex[:12]}")


def hazard(rider: str, lat: float, lon: float, severity: str = "medium") -> dict[str, Any]:
    report = f"r-{uuid.uuid4().hex[:8]}"
    return event(
        rider,
        "hazard.report.verified",
        {"report_id": report, "severity": severity, "lat": lat, "lon": lon, "reported_at": "2024-07-01T08:00:00+08:00"},
        source="grid-office",
    )


EVERY_CATEGORY = [  # (type, data, points under the default rules)
    ("civic.action.verified", {"action": "litter_pickup"}, 5),
    ("activity.attended", {"activity_id": "forum-2024-07", "title": "恳谈会"}, 8),
    ("safety.training.completed", {"training_id": "t-2024"}, 10),
    ("safety.quiz.passed", {"quiz_id": "q-7"}, 5),
    ("safety.month.clean", {"month": "2024-06"}, 20),
    ("skill.course.completed", {"course_id": "first-aid"}, 20),
    ("skill.certificate.obtained", {"certificate_id": "cert-electric-bike"}, 50),
    ("outreach.session.completed", {"session_id": "s-1", "topic": "anti_fraud"}, 5),
    ("honor.awarded", {"honor_id": "最美小哥-2024", "level": "district", "title": "最美小哥"}, 300),
]


@pytest.mark.parametrize("path", ["http", "kafka"])
async def test_every_category_earns_its_default_rule(api: Api, kafka: AIOKafkaProducer, rider: str, path: str) -> None:
    events = [event(rider, t, d) for t, d, _ in EVERY_CATEGORY]
    events.append(hazard(rider, 31.2 + uuid.uuid4().int % 10_000 / 10_000, 121.4, severity="high"))
    expected = [p for _, _, p in EVERY_CATEGORY] + [30]

    for e in events:
        if path == "http":
            assert (await api.publish(e, source=e["source"])).status_code == 202
        else:
            await to_kafka(kafka, api.settings, orjson.dumps(e), rider)

    scored = [(await api.wait_scored(e["source"], e["id"]))["points"] for e in events]
    assert scored == expected
    assert (await api.balance(rider))["available"] == sum(expected)


async def test_two_workers_scoring_reports_of_one_hazard_pay_exactly_one_in_full(
    stack: LocalStack, api: Api, kafka: AIOKafkaProducer
) -> None:
    log = LOG_DIR / "points-worker-2.log"
    log.unlink(missing_ok=True)
    stack.start_service(
        "points-worker", {"WARMBEE_WORKER_METRICS_PORT": str(SPARE_PORTS[0])}, instance="points-worker-2"
    )
    try:
        await asyncio.to_thread(wait_for_log, log, "activity-events', partition=")  # it holds partitions
        lat, lon = 31.0 + uuid.uuid4().int % 10_000 / 10_000, 121.0
        reports = [hazard(rider, lat + i * 5 / DEGREE_M, lon) for i, rider in enumerate(riders_on_every_partition())]
        await asyncio.gather(*(to_kafka(kafka, api.settings, orjson.dumps(r), r["subject"]) for r in reports))

        scored = [(await api.wait_scored("grid-office", r["id"], timeout_s=60))["points"] for r in reports]
        second_worker_scored = await hazards_scored(f"http://127.0.0.1:{SPARE_PORTS[0]}/metrics")
    finally:
        first_log = LOG_DIR / "points-worker.log"
        seen = first_log.stat().st_size
        stack.stop("points-worker-2")
        # The local broker wedges its group if a second member leaves mid-rebalance: let it settle.
        await asyncio.to_thread(wait_for_all_partitions, first_log, seen)

    assert sorted(scored) == [1, 1, 1, 1, 1, 1, 1, 15]
    assert 0 < second_worker_scored < 8  # both workers scored reports of this hazard


def wait_for_all_partitions(log: Path, after: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with log.open("rb") as f:
            f.seek(after)
            lines = f.read().decode(errors="replace").splitlines()
        if any("partitions_assigned" in line and all(f"partition={p})" in line for p in range(8)) for line in lines):
            return
        time.sleep(0.2)
    raise AssertionError(f"the first worker did not take all 8 partitions back within {timeout_s}s")


def riders_on_every_partition(partitions: int = 8) -> list[str]:
    """One rider per partition (Kafka's default partitioner), so every worker of the group gets some."""
    chooser, riders = DefaultPartitioner(), dict[int, str]()
    while len(riders) < partitions:
        rider = f"rider-{uuid.uuid4().hex[:8]}"
        riders.setdefault(chooser(rider.encode(), list(range(partitions)), list(range(partitions))), rider)
    return list(riders.values())


async def hazards_scored(metrics_url: str) -> float:
    async with httpx.AsyncClient(timeout=5) as http:
        text = (await http.get(metrics_url)).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith('warmbee_events_scored_total{category="grassroots_governance"')
    )
