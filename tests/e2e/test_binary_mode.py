"""Both CloudEvents content modes from real third-party sources: the CloudEvents Python SDK's to_binary and
to_structured over HTTP against the real events service, and librdkafka (the confluent-kafka wheel)
producing binary-mode records (ce_* headers, data as the value) to the real broker, scored end to end.
A binary event is the same event as its structured twin: sent in both modes it is accepted once."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import orjson
import pytest
from cloudevents.v1.conversion import to_binary, to_structured
from cloudevents.v1.http import CloudEvent
from confluent_kafka import Producer

from libs.platform.auth import Role
from libs.platform.settings import Settings
from tests.e2e.conftest import Api, eventually

pytestmark = pytest.mark.e2e


def sdk_event(rider: str, hours: float, **attributes: Any) -> CloudEvent:
    return CloudEvent(
        {
            "specversion": "1.0",
            "id": f"bin-{uuid.uuid4().hex[:12]}",
            "source": "volunteer-platform",
            "type": "volunteer.shift.completed",
            "subject": rider,
            "time": "2024-05-01T09:00:00+08:00",
            "datacontenttype": "application/json",
            **attributes,
        },
        {"shift_id": f"s-{uuid.uuid4().hex[:8]}", "hours": hours},
    )


async def post(api: Api, headers: dict[str, str] | list[tuple[str, str]], body: bytes) -> httpx.Response:
    token = list(api.token(Role.SOURCE, "volunteer-platform").items())
    pairs = list(headers.items()) if isinstance(headers, dict) else headers
    return await api.http.post(f"{api.events_url}/v1/events", content=body, headers=[*token, *pairs])


def librdkafka(settings: Settings) -> Producer:
    # The local broker has no InitProducerId, so no idempotent producer (librdkafka's default is off too).
    return Producer({"bootstrap.servers": settings.kafka_bootstrap, "enable.idempotence": False, "acks": "all"})


def produce(settings: Settings, key: str, value: bytes | None, headers: list[tuple[str, str | bytes | None]]) -> None:
    producer = librdkafka(settings)
    delivered: list[str] = []

    def report(error: Any, _message: Any) -> None:
        delivered.append("ok" if error is None else str(error))

    producer.produce(settings.topic_activity_events, value=value, key=key, headers=headers, on_delivery=report)
    assert producer.flush(30) == 0
    assert delivered == ["ok"]


def kafka_headers(event: CloudEvent) -> list[tuple[str, str | bytes | None]]:
    """The CloudEvents Kafka binding as the SDK writes it: ce_* headers of UTF-8 values, content-type."""
    headers, _ = to_binary(event)
    return [(k.replace("ce-", "ce_", 1), v.encode()) for k, v in headers.items()]


async def dead_letter_of(api: Api, event_id: str) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        r = await api.http.get(f"{api.events_url}/v1/dead-letters?limit=200", headers=api.token_for_operator())
        return next((d for d in r.json()["items"] if d["event_id"] == event_id), None)

    return await eventually(found, 30, f"the dead letter of {event_id}")


async def test_sdk_binary_over_http_is_scored_and_its_structured_twin_is_a_duplicate(api: Api) -> None:
    rider = f"rider-bin-{uuid.uuid4().hex[:6]}"
    event = sdk_event(rider, 2)
    headers, body = to_binary(event)
    r = await post(api, headers, body)
    assert (r.status_code, r.json()) == (202, {"accepted": 1, "duplicates": 0})
    headers, body = to_structured(event)
    r = await post(api, headers, body)
    assert (r.status_code, r.json()) == (202, {"accepted": 0, "duplicates": 1})
    scored = await api.wait_scored("volunteer-platform", event["id"])
    assert scored["points"] == 20  # 2 hours: 4 half hours at 5 points
    assert (await api.balance(rider))["available"] == 20


async def test_sdk_structured_over_http_is_scored(api: Api) -> None:
    rider = f"rider-bin-{uuid.uuid4().hex[:6]}"
    event = sdk_event(rider, 1)
    headers, body = to_structured(event)
    assert (await post(api, headers, body)).status_code == 202
    assert (await api.wait_scored("volunteer-platform", event["id"]))["points"] == 10


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda h: [(k, v) for k, v in h if k != "ce-id"], "ce-id: is required; send the header ce-id"),
        (lambda h: [*h, ("ce-id", "bin-other")], "ce-id: sent twice; send each attribute once"),
        (lambda h: [*h, ("ce-note", "line%0A")], "ce-note: holds the control character U+000A"),
        (lambda h: [(k, "0.3" if k == "ce-specversion" else v) for k, v in h], "specversion: must be '1.0'"),
        (lambda h: [(k, "text/plain" if k == "content-type" else v) for k, v in h], "content-type: text/plain"),
        (
            lambda h: [(k, "application/cloudevents-batch+json" if k == "content-type" else v) for k, v in h],
            "Content-Type: application/cloudevents-batch+json with ce-* headers mixes the two modes",
        ),
    ],
)
async def test_a_binary_request_is_refused_naming_the_header(api: Api, change: Any, reason: str) -> None:
    headers, body = to_binary(sdk_event("rider-bin-refused", 1))
    r = await post(api, change(list(headers.items())), body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"].endswith("/invalid-event")
    assert r.json()["errors"][0]["reason"].startswith(reason)


async def test_a_binary_body_that_is_not_json_or_too_large_is_refused(api: Api) -> None:
    headers, _ = to_binary(sdk_event("rider-bin-refused", 1))
    r = await post(api, headers, b'{"shift_id": ')
    assert r.status_code == 422
    assert r.json()["errors"][0]["reason"].startswith("body: is not valid JSON")
    large = orjson.dumps({"shift_id": "s-1", "hours": 1, "note": "x" * (1024 * 1024)})
    r = await post(api, headers, large)
    assert r.status_code == 422
    assert r.json()["errors"][0]["reason"].startswith("event: is ")
    assert "an event may be at most 1048576 bytes" in r.json()["errors"][0]["reason"]


async def test_librdkafka_binary_records_are_scored_end_to_end(api: Api) -> None:
    rider = f"rider-rdk-{uuid.uuid4().hex[:6]}"
    events = [sdk_event(rider, 1), sdk_event(rider, 2)]
    for event in events:
        await asyncio.to_thread(produce, api.settings, rider, to_binary(event)[1], kafka_headers(event))
    for event in events:
        await api.wait_scored("volunteer-platform", event["id"])
    assert (await api.balance(rider))["available"] == 30  # 10 + 20


@pytest.mark.parametrize(
    ("change", "value", "reason"),
    [
        (lambda h: [*h, ("ce_subject", b"rider-other")], None, "ce_subject: sent twice; send each attribute once"),
        (lambda h: [*h, ("ce_note", b"\xff")], None, "ce_note: is not valid UTF-8 (byte 0)"),
        (lambda h: h, b"not json", "value: is not valid JSON"),
        (lambda h: [(k, b"0.3" if k == "ce_specversion" else v) for k, v in h], None, "specversion: must be '1.0'"),
    ],
)
async def test_a_bad_binary_record_is_dead_lettered_with_its_reason(
    api: Api, change: Any, value: bytes | None, reason: str
) -> None:
    rider = f"rider-rdk-{uuid.uuid4().hex[:6]}"
    event = sdk_event(rider, 1)
    data = value if value is not None else to_binary(event)[1]
    await asyncio.to_thread(produce, api.settings, rider, data, change(kafka_headers(event)))
    letter = await dead_letter_of(api, event["id"])
    assert letter["reason"].startswith(reason)
    assert letter["source"] == "volunteer-platform"
    assert letter["topic"] == api.settings.topic_activity_events
