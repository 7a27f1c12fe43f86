"""Bad input over HTTP: a 4xx problem naming the field and the fix, and nothing stored."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from libs.platform.auth import Role
from tests.e2e.conftest import Api, shift

pytestmark = pytest.mark.e2e

CE = "application/cloudevents+json"


def _without(event: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k != field}


CASES: dict[str, tuple[Any, str, int, str]] = {
    # name: (event or raw body, content type, status, words the problem must contain)
    "malformed JSON": (b'{"id": "x",', CE, 422, "not valid JSON"),
    "unknown type": ({"type": "volunteer.shift.invented"}, CE, 422, "type"),
    "missing subject": ("no-subject", CE, 422, "subject: is required"),
    "hours zero": ({"data": {"shift_id": "s", "hours": 0}}, CE, 422, "data.hours: must be greater than 0"),
    "hours negative": ({"data": {"shift_id": "s", "hours": -2}}, CE, 422, "data.hours"),
    "hours not a number": ({"data": {"shift_id": "s", "hours": "two"}}, CE, 422, "data.hours: must be a number"),
    "hours over a day": ({"data": {"shift_id": "s", "hours": 25}}, CE, 422, "data.hours: must be at most 24"),
    "time without offset": ({"time": "2024-05-01T09:00:00"}, CE, 422, "time"),
    "wrong content type": ({}, "text/plain", 415, "Content-Type"),
    "array without batch type": ("array", CE, 422, "application/cloudevents-batch+json"),
    "token of another source": ({"source": "grid-office"}, CE, 403, "source"),
    "latitude out of range": (
        {
            "type": "hazard.report.verified",
            "data": {"report_id": "r", "severity": "low", "lat": 91, "lon": 104, "reported_at": "2024-05-01T08:00:00Z"},
        },
        CE,
        422,
        "data.lat: must be at most 90",
    ),
    "month not YYYY-MM": ({"type": "safety.month.clean", "data": {"month": "2024-13"}}, CE, 422, "data.month"),
    "unknown honour level": (
        {"type": "honor.awarded", "data": {"honor_id": "h", "level": "national"}},
        CE,
        422,
        "data.level",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_bad_input_is_refused_with_a_problem_and_nothing_is_stored(api: Api, rider: str, case: str) -> None:
    change, content_type, status, words = CASES[case]
    event = shift(rider, 1)
    if isinstance(change, bytes):
        body = change
    elif change == "no-subject":
        body = orjson.dumps(_without(event, "subject"))
    elif change == "array":
        body = orjson.dumps([event])
    else:
        body = orjson.dumps({**event, **change})

    r = await api.http.post(
        f"{api.events_url}/v1/events",
        content=body,
        headers={**api.token(Role.SOURCE, "volunteer-platform"), "content-type": content_type},
    )

    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["type"].startswith("https://warmbee.dev/problems/")
    assert words in problem["detail"] + orjson.dumps(problem.get("errors", [])).decode()
    assert (await api.status("volunteer-platform", event["id"])).status_code == 404


async def test_a_batch_with_one_bad_event_accepts_nothing_and_names_the_event(api: Api, rider: str) -> None:
    good, bad = shift(rider, 1), shift(rider, "lots")

    r = await api.publish([good, bad], batch=True)

    assert r.status_code == 422
    assert r.json()["errors"] == [{"index": 1, "id": bad["id"], "reason": "data.hours: must be a number, got a string"}]
    assert (await api.status("volunteer-platform", good["id"])).status_code == 404


async def test_an_oversize_body_is_refused_before_it_is_read_whole(api: Api, rider: str) -> None:
    huge = shift(rider, 1, data={"shift_id": "s", "hours": 1, "notes": "x" * (5 * 1024 * 1024)})

    r = await api.publish(huge)

    assert r.status_code == 413
    assert "split the batch" in r.json()["detail"]


async def test_a_reused_event_id_with_other_content_is_a_conflict(api: Api, rider: str) -> None:
    first = shift(rider, 1)
    second = {**first, "data": {"shift_id": "other", "hours": 8}}

    await api.publish(first)
    r = await api.publish(second)

    assert r.status_code == 409
    assert r.json()["errors"][0]["id"] == first["id"]


async def test_no_token_is_401_and_a_rider_token_cannot_publish(api: Api, rider: str) -> None:
    event = shift(rider, 1)

    anonymous = await api.http.post(f"{api.events_url}/v1/events", json=event)
    as_rider = await api.http.post(
        f"{api.events_url}/v1/events",
        content=orjson.dumps(event),
        headers={**api.token(Role.RIDER, rider), "content-type": CE},
    )

    assert anonymous.status_code == 401
    assert as_rider.status_code == 403


async def test_slow_clients_holding_connections_open_do_not_take_the_service_down(api: Api, rider: str) -> None:
    host, port = api.settings.host, api.settings.events_port
    slow = []
    for _ in range(200):  # each sends half a request and then nothing
        _, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /v1/events HTTP/1.1\r\nHost: warmbee\r\nContent-Length: 100000\r\n\r\n{")
        await writer.drain()
        slow.append(writer)
    try:
        r = await api.publish(shift(rider, 1))  # the client's own timeout bounds the wait
    finally:
        for writer in slow:
            writer.close()

    assert r.status_code == 202
