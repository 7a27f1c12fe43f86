"""Operators see everything: a real Prometheus scrapes the running services after events of several
categories, a duplicate hazard, invalid input, a dead letter and redemptions, and every metric the
dashboard and the alert rules name is there. The logs are JSON with request, event and rider ids, and
no token."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from libs.platform.auth import Role
from libs.platform.localstack import LocalStack
from tests.conftest import SPARE_PORTS
from tests.e2e.conftest import LOG_DIR, Api, eventually, shift, to_kafka
from tests.e2e.test_categories import EVERY_CATEGORY, event, hazard
from tests.e2e.test_redemption import catalogue_entry, grant
from tests.observability.promql import alert_rules, dashboard_exprs, names_used, plain_promql

pytestmark = pytest.mark.e2e

JOBS = ("warmbee-events", "warmbee-points", "warmbee-redemption", "warmbee-points-worker", "warmbee-pages")


class Prometheus:
    def __init__(self, url: str, http: httpx.AsyncClient) -> None:
        self.url = url
        self.http = http

    async def query(self, promql: str) -> list[dict[str, Any]]:
        r = await self.http.get(f"{self.url}/api/v1/query", params={"query": promql})
        assert r.status_code == 200, f"{promql}: {r.text}"
        result: list[dict[str, Any]] = r.json()["data"]["result"]
        return result

    async def value(self, promql: str) -> float:
        result = await self.query(promql)
        return float(result[0]["value"][1]) if result else 0.0

    async def missing(self, names: set[str]) -> set[str]:
        r = await self.http.get(f"{self.url}/api/v1/label/__name__/values")
        assert r.status_code == 200, r.text
        return names - set(r.json()["data"])

    async def rules(self) -> list[dict[str, Any]]:
        r = await self.http.get(f"{self.url}/api/v1/rules")
        assert r.status_code == 200, r.text
        return [rule for group in r.json()["data"]["groups"] for rule in group["rules"]]


async def demo_traffic(api: Api, kafka: AIOKafkaProducer, rider: str, request_id: str) -> None:
    """What the demo does and more: every category, a duplicate hazard report, a duplicate, an invalid
    event, a dead letter, and redemptions confirmed and cancelled."""
    other = f"{rider}-b"
    now = datetime.now(UTC).replace(microsecond=0)
    events = [event(rider, t, d) for t, d, _ in EVERY_CATEGORY]
    events.append(shift(rider, 1, time=(now - timedelta(minutes=30)).isoformat()))
    batch = await api.http.post(
        f"{api.events_url}/v1/events",
        content=orjson.dumps(events),
        headers={
            **api.token(Role.SOURCE, "community-centre-r29"),
            "content-type": "application/cloudevents-batch+json",
            "x-request-id": request_id,
        },
    )
    # the shift is the volunteer platform's: a 403 for the whole batch, then each with its own token
    assert batch.status_code == 403, batch.text
    assert batch.headers["x-request-id"] == request_id
    for e in events:
        assert (await api.publish(e, source=e["source"])).status_code == 202
    assert (await api.publish(events[-1], source="volunteer-platform")).json() == {"accepted": 0, "duplicates": 1}
    assert (await api.publish(shift(rider, -1))).status_code == 422

    lat = 31.0 + uuid.uuid4().int % 100_000 / 1_000_000
    first, later = hazard(rider, lat, 121.4), hazard(other, lat, 121.4)
    assert (await api.publish(first, source="grid-office")).status_code == 202
    await api.wait_scored("grid-office", first["id"])
    assert (await api.publish(later, source="grid-office")).status_code == 202
    assert (await api.wait_scored("grid-office", later["id"]))["points"] == 1

    await to_kafka(kafka, api.settings, b'{"specversion": "1.0", "id": ', rider)  # not JSON: a dead letter
    for e in events:
        await api.wait_scored(e["source"], e["id"])

    partner_id, reward_id = await catalogue_entry(api, cost=30)
    await grant(api, rider, 100)
    rider_token = api.token(Role.RIDER, rider)
    held = []
    for key in ("obs-1", "obs-2"):
        r = await api.http.post(
            f"{api.redemption_url}/v1/redemptions",
            json={"reward_id": reward_id},
            headers={**rider_token, "idempotency-key": key},
        )
        assert r.status_code == 201, r.text
        held.append(r.json())
    partner_token = api.token(Role.PARTNER, partner_id)
    r = await api.http.post(
        f"{api.redemption_url}/v1/partner/confirmations", json={"code": held[0]["code"]}, headers=partner_token
    )
    assert r.status_code == 200, r.text
    r = await api.http.post(
        f"{api.redemption_url}/v1/redemptions/{held[1]['redemption_id']}/cancel", headers=rider_token
    )
    assert r.status_code == 200, r.text


async def test_prometheus_scrapes_every_metric_the_dashboard_and_the_alerts_name(
    stack: LocalStack, api: Api, kafka: AIOKafkaProducer, rider: str, tmp_path: Path
) -> None:
    request_id = f"obs-{uuid.uuid4().hex}"
    await demo_traffic(api, kafka, rider, request_id)
    used = names_used()

    url = await stack.start_prometheus(data_dir=tmp_path / "tsdb", scrape_interval_s=1)
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            prometheus = Prometheus(url, http)

            async def all_up() -> bool:
                up = {r["metric"]["job"]: r["value"][1] for r in await prometheus.query('up{job=~"warmbee-.+"}')}
                return all(up.get(job) == "1" for job in JOBS)

            await eventually(all_up, 60, "Prometheus scraping every service")

            async def none_missing() -> bool:
                return not await prometheus.missing(set(used))

            with contextlib.suppress(AssertionError):  # the relays and sweeps report every few seconds
                await eventually(none_missing, 30, "every metric scraped")
            missing = await prometheus.missing(set(used))
            assert {name: sorted(used[name]) for name in missing} == {}

            # the demo's outcomes are visible with their labels
            assert await prometheus.value('sum(warmbee_events_scored_total{outcome="duplicate_hazard"})') >= 1
            assert await prometheus.value('sum(warmbee_events_scored_total{outcome="awarded"})') >= len(EVERY_CATEGORY)
            assert await prometheus.value('sum(warmbee_events_received_total{outcome="invalid"})') >= 1
            assert await prometheus.value('sum(warmbee_events_received_total{outcome="duplicate"})') >= 1
            assert await prometheus.value('sum(warmbee_events_received_total{outcome="refused"})') >= 1
            assert await prometheus.value("warmbee_dead_letters_total") >= 1
            assert await prometheus.value('warmbee_points_redeemed_total{kind="merchant"}') >= 30
            assert await prometheus.value('warmbee_points_released_total{kind="merchant",reason="cancelled"}') >= 30
            assert await prometheus.value('sum(warmbee_points_issued_total{category="honors"})') >= 300
            assert await prometheus.value("sum(warmbee_scoring_delay_from_event_time_seconds_count)") >= 1
            assert await prometheus.value('count(warmbee_consumer_lag_messages{topic="activity-events"})') >= 1
            assert await prometheus.value('max(warmbee_db_pool_max_connections{service="points-worker"})') >= 1

            # every alert is loaded and evaluates; every panel query runs
            loaded = {r["name"]: r for r in await prometheus.rules() if r["type"] == "alerting"}
            assert set(loaded) == {r["alert"] for r in alert_rules()}

            async def evaluated() -> bool:
                rules = {r["name"]: r for r in await prometheus.rules() if r["type"] == "alerting"}
                return all(r["health"] == "ok" for r in rules.values())

            await eventually(evaluated, 30, "every alert rule evaluated without error")
            for expr in dashboard_exprs():
                await prometheus.query(plain_promql(expr))
    finally:
        stack.stop("prometheus")


LOGGED_EVENTS_PORT = SPARE_PORTS[1]


async def test_logs_are_json_with_request_event_and_rider_ids_and_no_token(
    stack: LocalStack, api: Api, rider: str
) -> None:
    """A replica of the events service with a log of its own, read whole once it has stopped."""
    name = "events-logged"
    log = LOG_DIR / f"{name}.log"
    log.unlink(missing_ok=True)
    url = f"http://{api.settings.host}:{LOGGED_EVENTS_PORT}"
    stack.start_service("events", {"WARMBEE_EVENTS_PORT": str(LOGGED_EVENTS_PORT)}, instance=name)
    request_id = f"obs-{uuid.uuid4().hex}"
    e = shift(rider, 1)
    token = api.token(Role.SOURCE, "volunteer-platform")
    try:

        async def ready() -> bool:
            try:
                return (await api.http.get(f"{url}/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(ready, 60, "the second events service ready")
        r = await api.http.post(
            f"{url}/v1/events",
            content=orjson.dumps(e),
            headers={**token, "content-type": "application/cloudevents+json", "x-request-id": request_id},
        )
        unknown = await api.http.post(f"{url}/v1/events", headers={"authorization": "Bearer not-a-token"})
        await api.wait_scored("volunteer-platform", e["id"])
    finally:
        stack.stop(name)
    lines = [orjson.loads(line) for line in log.read_text().splitlines()]  # every line is JSON
    accepted = [line for line in lines if line.get("request_id") == request_id]
    secret = token["authorization"].removeprefix("Bearer ")

    assert r.status_code == 202, r.text
    assert r.headers["x-request-id"] == request_id
    assert unknown.status_code == 401
    assert all(isinstance(line, dict) and line["service"] == "events" for line in lines)
    assert [(x["msg"], x["source"], x["event_id"], x["rider_id"]) for x in accepted] == [
        ("events.accepted", "volunteer-platform", e["id"], rider)
    ]
    logged = "\n".join(path.read_text(errors="replace") for path in LOG_DIR.glob("*.log") if path.name != "broker.log")
    assert secret not in logged
    assert secret.rsplit(".", 1)[1] not in logged  # not even its signature
    assert "not-a-token" not in logged
