"""The points path end to end: HTTP and Kafka in, the ledger, balances and history out."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from libs.platform.auth import Role
from libs.platform.kafka import client_options
from services.points.rules_files import DEFAULT_RULES_FILE, read_rules_file
from tests.e2e.conftest import Api, eventually, shanghai, shift, to_kafka

pytestmark = pytest.mark.e2e


async def test_an_event_over_http_reaches_the_balance(api: Api, rider: str) -> None:
    event = shift(rider, 2.5)

    r = await api.publish(event)

    assert r.status_code == 202
    assert r.json() == {"accepted": 1, "duplicates": 0}
    status = await api.wait_scored("volunteer-platform", event["id"])
    assert status["points"] == 25
    assert status["rule_id"] == "warmbee-default"
    assert status["rule_version"] == 1
    balance = await api.balance(rider)
    assert (balance["available"], balance["earned_total"], balance["held"]) == (25, 25, 0)


async def test_an_accepted_event_is_reported_pending_or_scored_from_the_moment_of_the_202(api: Api, rider: str) -> None:
    event = shift(rider, 1)

    await api.publish(event)
    r = await api.status("volunteer-platform", event["id"])

    assert r.status_code == 200
    assert r.json()["status"] in ("pending", "scored")


async def test_an_event_published_to_kafka_reaches_the_balance(api: Api, kafka: AIOKafkaProducer, rider: str) -> None:
    event = shift(rider, 1.5)

    await to_kafka(kafka, api.settings, orjson.dumps(event), rider)

    status = await api.wait_scored("volunteer-platform", event["id"])
    assert status["points"] == 15
    assert (await api.balance(rider))["available"] == 15


async def test_the_same_event_over_http_and_kafka_counts_once(api: Api, kafka: AIOKafkaProducer, rider: str) -> None:
    event = shift(rider, 2)

    first = await api.publish(event)
    await to_kafka(kafka, api.settings, orjson.dumps(event), rider)
    await to_kafka(kafka, api.settings, orjson.dumps(event), rider)
    again = await api.publish(event)
    marker = shift(rider, 0.5)
    await to_kafka(kafka, api.settings, orjson.dumps(marker), rider)  # same partition, after the copies

    assert first.json() == {"accepted": 1, "duplicates": 0}
    assert again.json() == {"accepted": 0, "duplicates": 1}
    await api.wait_scored("volunteer-platform", marker["id"])
    entries = await api.entries(rider)
    assert sorted(e["amount"] for e in entries) == [5, 20]
    assert (await api.balance(rider))["available"] == 25


async def test_a_shift_counts_whole_half_hours_only(api: Api, rider: str) -> None:
    short, odd = shift(rider, 0.4), shift(rider, 0.75, time=shanghai("2024-05-02"))

    await api.publish([short, odd], batch=True)

    assert (await api.wait_scored("volunteer-platform", short["id"]))["points"] == 0
    assert (await api.wait_scored("volunteer-platform", odd["id"]))["points"] == 5
    reasons = {e["event_id"]: e["reason"] for e in await api.entries(rider)}
    assert "less than one whole half-hour" in reasons[short["id"]]


async def test_the_daily_cap_of_40_clips_the_event_that_crosses_it_and_zeroes_the_next(api: Api, rider: str) -> None:
    morning = shift(rider, 3, time=shanghai("2024-05-03", 9))  # 30
    afternoon = shift(rider, 2, time=shanghai("2024-05-03", 14))  # 20 earned, 10 left below 40
    evening = shift(rider, 1, time=shanghai("2024-05-03", 19))  # cap reached: 0
    next_day = shift(rider, 1, time=shanghai("2024-05-04", 9))  # a new day: 10

    for event in (morning, afternoon, evening, next_day):
        assert (await api.publish(event)).status_code == 202

    points = [(await api.wait_scored("volunteer-platform", e["id"]))["points"] for e in (morning, afternoon, evening)]
    assert points == [30, 10, 0]
    assert (await api.wait_scored("volunteer-platform", next_day["id"]))["points"] == 10
    reasons = {e["event_id"]: e["reason"] for e in await api.entries(rider)}
    assert reasons[afternoon["id"]] == "daily cap of 40 points for volunteer service reached: 10 of 20 awarded"
    assert reasons[evening["id"]] == "daily cap of 40 points for volunteer service already reached: 0 of 10 awarded"
    assert (await api.balance(rider))["available"] == 50


async def test_poison_on_kafka_is_dead_lettered_and_the_partition_keeps_flowing(
    api: Api, kafka: AIOKafkaProducer, rider: str
) -> None:
    broken_json = b'{"specversion": "1.0", "id": '
    bad_hours = shift(rider, -1)
    good = shift(rider, 1)

    await to_kafka(kafka, api.settings, broken_json, rider)
    await to_kafka(kafka, api.settings, b"\xff\xfe not utf-8", rider)
    await to_kafka(kafka, api.settings, orjson.dumps([good]), rider)
    await to_kafka(kafka, api.settings, orjson.dumps(bad_hours), rider)
    await to_kafka(kafka, api.settings, orjson.dumps(good), rider)

    assert (await api.wait_scored("volunteer-platform", good["id"]))["points"] == 10
    r = await api.status("volunteer-platform", bad_hours["id"])
    assert r.json()["status"] == "dead_lettered"
    assert "data.hours" in r.json()["reason"]
    letters = await api.http.get(
        f"{api.events_url}/v1/dead-letters?limit=20", headers=api.token(Role.OPERATOR, "ops-test")
    )
    mine = [d for d in letters.json()["items"] if d["key"] == rider]
    reasons = " | ".join(d["reason"] for d in mine)
    assert len(mine) == 4
    assert "not valid JSON" in reasons
    assert "not valid UTF-8" in reasons
    assert "must be a JSON object" in reasons
    assert {d["payload_encoding"] for d in mine} == {"utf-8", "base64"}


async def test_a_rider_sees_only_their_own_account(api: Api, rider: str) -> None:
    other = await api.http.get(
        f"{api.points_url}/v1/riders/{rider}/balance", headers=api.token(Role.RIDER, "someone-else")
    )
    anonymous = await api.http.get(f"{api.points_url}/v1/riders/{rider}/balance")

    assert other.status_code == 403
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"


async def test_event_status_is_hidden_from_those_who_may_not_see_it(api: Api, rider: str) -> None:
    event = shift(rider, 1)
    await api.publish(event)
    await api.wait_scored("volunteer-platform", event["id"])
    url = f"{api.points_url}/v1/events/volunteer-platform/{event['id']}"

    as_source = await api.http.get(url, headers=api.token(Role.SOURCE, "volunteer-platform"))
    as_rider = await api.http.get(url, headers=api.token(Role.RIDER, rider))
    as_other_rider = await api.http.get(url, headers=api.token(Role.RIDER, "someone-else"))
    as_other_source = await api.http.get(url, headers=api.token(Role.SOURCE, "grid-office"))
    unknown = await api.status("volunteer-platform", "never-sent")

    assert (as_source.status_code, as_rider.status_code) == (200, 200)
    assert (as_other_rider.status_code, as_other_source.status_code, unknown.status_code) == (404, 404, 404)


async def test_an_operator_adjusts_a_balance_once_per_idempotency_key(api: Api, rider: str) -> None:
    url = f"{api.points_url}/v1/adjustments"
    operator = api.token(Role.OPERATOR, "ops-li")
    body = {"rider_id": rider, "amount": 50, "reason": "points lost in the 2024 paper records"}

    first = await api.http.post(url, json=body, headers={**operator, "idempotency-key": f"{rider}-1"})
    retry = await api.http.post(url, json=body, headers={**operator, "idempotency-key": f"{rider}-1"})
    too_much = await api.http.post(
        url, json={**body, "amount": -60}, headers={**operator, "idempotency-key": f"{rider}-2"}
    )
    no_key = await api.http.post(url, json=body, headers=operator)
    as_rider = await api.http.post(url, json=body, headers={**api.token(Role.RIDER, rider), "idempotency-key": "x"})

    assert first.status_code == 201
    assert first.json()["kind"] == "adjustment"
    assert first.json()["actor"] == "ops-li"
    assert retry.status_code == 201
    assert retry.json()["entry_id"] == first.json()["entry_id"]
    assert too_much.status_code == 409
    assert no_key.status_code == 422
    assert as_rider.status_code == 403
    assert (await api.balance(rider))["available"] == 50


async def test_the_rules_in_force_are_published(api: Api) -> None:
    r = await api.http.get(f"{api.points_url}/v1/rules", headers=api.token(Role.RIDER, "rider-1"))

    assert r.status_code == 200
    rules = r.json()
    # Tests of the shared stack (the console's, the rules API's) publish copies of the default under ids of
    # their own that score the same: what is in force is the default's document, whatever its id.
    assert rules["timezone"] == "Asia/Shanghai"
    assert rules["categories"]["volunteer_service"]["caps"] == {"day": 40, "month": 200}
    default = read_rules_file(DEFAULT_RULES_FILE)
    assert rules["categories"] == default.categories.model_dump(mode="json", exclude_none=True)


@pytest.mark.parametrize("service", ["events_url", "points_url"])
async def test_each_service_serves_health_readiness_openapi_and_metrics(api: Api, service: str) -> None:
    base = getattr(api, service)

    health, ready, openapi, metrics = [
        await api.http.get(f"{base}{path}") for path in ("/healthz", "/readyz", "/openapi.json", "/metrics")
    ]

    assert (health.status_code, ready.status_code, openapi.status_code, metrics.status_code) == (200, 200, 200, 200)
    assert openapi.json()["openapi"].startswith("3.")
    assert "warmbee_http_requests_total" in metrics.text


async def test_every_entry_of_a_rider_is_published_on_points_ledger_once(api: Api, rider: str) -> None:
    events = [shift(rider, 2), shift(rider, 1.5)]
    await api.publish(events, batch=True)
    for event in events:
        await api.wait_scored("volunteer-platform", event["id"])
    adjusted = await api.http.post(
        f"{api.points_url}/v1/adjustments",
        json={"rider_id": rider, "amount": 7, "reason": "a late paper record"},
        headers={**api.token_for_operator(), "idempotency-key": f"{rider}-feed"},
    )
    assert adjusted.status_code == 201
    entries = {e["entry_id"]: e for e in await api.entries(rider)}

    consumer = AIOKafkaConsumer(
        api.settings.topic_points_ledger, **client_options(api.settings), auto_offset_reset="earliest"
    )
    await consumer.start()
    seen: list[dict[str, Any]] = []

    async def all_published() -> bool:
        for batch in (await consumer.getmany(timeout_ms=500)).values():
            seen.extend(m for r in batch if (m := orjson.loads(r.value))["subject"] == rider)
        return {m["data"]["entry_id"] for m in seen} >= set(entries)

    try:
        await eventually(all_published, 60, f"points-ledger events for {rider}'s {len(entries)} entries")
    finally:
        await consumer.stop()
    assert len(seen) == len(entries)  # each entry once (the relay marks what it published)
    for message in seen:
        entry = entries[message["data"]["entry_id"]]
        assert message["type"] == f"points.{entry['kind']}.recorded"
        assert message["id"] == f"entry-{entry['entry_id']}"
        assert message["data"]["amount"] == entry["amount"]
        assert message["data"]["reason"] == entry["reason"]
