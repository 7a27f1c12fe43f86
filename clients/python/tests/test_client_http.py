"""The HTTP publisher against a real local HTTP server (the standard library's, in a thread) that answers
as the events service does: 429 or 503 with Retry-After first, 422 naming one event, then 202."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from warmbee_client import HttpPublisher, Outcome, RetryBudget, RetryPolicy


@dataclass
class Script:
    """What the server answers, request by request (then 202 counting every event new), and what it got."""

    answers: list[tuple[int, dict[str, str], Any]] = field(default_factory=list)
    received: list[tuple[float, dict[str, str], bytes]] = field(default_factory=list)


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            script.received.append((time.monotonic(), dict(self.headers.items()), body))
            if script.answers:
                status, headers, payload = script.answers.pop(0)
            else:
                parsed = json.loads(body)
                status, headers = 202, {}
                payload = {"accepted": len(parsed) if isinstance(parsed, list) else 1, "duplicates": 0}
            data = json.dumps(payload).encode()
            self.send_response(status)
            media = "application/json" if status == 202 else "application/problem+json"
            for name, value in {"content-type": media, **headers}.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


Server = tuple[str, Script]


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    httpd.shutdown()
    httpd.server_close()


def event(n: int) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"shift-{n}",
        "source": "volunteer-platform",
        "type": "volunteer.shift.completed",
        "subject": f"rider-{n % 3}",
        "time": "2024-05-01T09:00:00+08:00",
        "data": {"shift_id": f"s-{n}", "hours": 2},
    }


def problem(status: int, title: str, **extra: Any) -> dict[str, Any]:
    return {"type": "https://warmbee.dev/problems/x", "title": title, "status": status, "detail": title, **extra}


@pytest.mark.parametrize("status", [429, 503])
async def test_a_busy_answer_is_retried_after_its_retry_after_with_the_same_ids(server: Server, status: int) -> None:
    url, script = server
    script.answers.append((status, {"retry-after": "1"}, problem(status, "busy")))
    async with HttpPublisher(url, "tok") as publisher:
        result = await publisher.publish_batch([event(1), event(2)])
    assert [r.outcome for r in result.events] == [Outcome.ACCEPTED, Outcome.ACCEPTED]
    assert (result.accepted, result.retries) == (2, 1)
    (first_at, _, first), (second_at, headers, second) = script.received
    assert second_at - first_at >= 1.0  # Retry-After: 1 obeyed, not the policy's 0.2 s back-off
    assert first == second  # the same body: the same ids
    assert [e["id"] for e in json.loads(second)] == ["shift-1", "shift-2"]
    assert headers["content-type"] == "application/cloudevents-batch+json"
    assert headers["authorization"] == "Bearer tok"


async def test_a_refused_event_is_reported_with_its_reason_and_the_rest_is_sent_again(server: Server) -> None:
    url, script = server
    errors = [{"index": 1, "id": "shift-2", "reason": "data.hours: must be greater than 0, got -1"}]
    script.answers.append((422, {}, problem(422, "Invalid event", errors=errors)))
    async with HttpPublisher(url, "tok") as publisher:
        result = await publisher.publish_batch([event(1), event(2), event(3)])
    assert [(r.event_id, r.outcome, r.reason) for r in result.events] == [
        ("shift-1", Outcome.ACCEPTED, None),
        ("shift-2", Outcome.REFUSED, "data.hours: must be greater than 0, got -1"),
        ("shift-3", Outcome.ACCEPTED, None),
    ]
    assert [e["id"] for e in json.loads(script.received[1][2])] == ["shift-1", "shift-3"]


async def test_a_refusal_of_the_whole_request_refuses_each_event_with_the_problems_detail(server: Server) -> None:
    url, script = server
    script.answers.append((403, {}, problem(403, "the token's sub must equal the event's source")))
    async with HttpPublisher(url, "tok") as publisher:
        result = await publisher.publish_batch([event(1), event(2)])
    assert {(r.outcome, r.reason) for r in result.events} == {
        (Outcome.REFUSED, "the token's sub must equal the event's source")
    }
    assert len(script.received) == 1  # a 403 is not retried


async def test_a_batch_larger_than_the_limit_goes_in_several_requests(server: Server) -> None:
    url, script = server
    async with HttpPublisher(url, "tok", max_batch=2) as publisher:
        result = await publisher.publish_batch([event(n) for n in range(5)])
    assert [len(json.loads(body)) for _, _, body in script.received] == [2, 2, 1]
    assert result.accepted == 5
    assert [r.index for r in result.events] == [0, 1, 2, 3, 4]


async def test_one_event_goes_as_a_single_cloudevent(server: Server) -> None:
    url, script = server
    async with HttpPublisher(url, "tok") as publisher:
        result = await publisher.publish(event(1))
    assert result.events[0].outcome is Outcome.ACCEPTED
    _, headers, body = script.received[0]
    assert headers["content-type"] == "application/cloudevents+json"
    assert json.loads(body)["id"] == "shift-1"


async def test_mixed_counts_are_reported_as_the_service_counted_them(server: Server) -> None:
    url, script = server
    script.answers.append((202, {}, {"accepted": 1, "duplicates": 1}))
    async with HttpPublisher(url, "tok") as publisher:
        result = await publisher.publish_batch([event(1), event(2)])
    assert (result.accepted, result.duplicates) == (1, 1)
    assert {r.outcome for r in result.events} == {Outcome.ACCEPTED_OR_DUPLICATE}


async def test_when_the_retries_run_out_the_events_are_failed_not_refused(server: Server) -> None:
    url, script = server
    script.answers.extend([(503, {"retry-after": "0"}, problem(503, "Temporarily unavailable"))] * 3)
    async with HttpPublisher(url, "tok", policy=RetryPolicy(attempts=3)) as publisher:
        result = await publisher.publish_batch([event(1)])
    assert result.events[0].outcome is Outcome.FAILED
    assert result.events[0].reason == "gave up after 3 attempt(s): Temporarily unavailable (HTTP 503)"
    assert len(script.received) == 3


async def test_a_spent_budget_stops_retrying(server: Server) -> None:
    url, script = server
    script.answers.extend([(503, {"retry-after": "0"}, problem(503, "down"))] * 10)
    async with HttpPublisher(url, "tok", budget=RetryBudget(ratio=0, floor=1)) as publisher:
        first = await publisher.publish_batch([event(1)])
        second = await publisher.publish_batch([event(2)])
    assert (first.retries, first.events[0].outcome) == (1, Outcome.FAILED)
    assert (second.retries, second.events[0].outcome) == (0, Outcome.FAILED)
    assert len(script.received) == 3  # two first tries and the one retry the budget had


async def test_no_server_at_all_is_retried_then_failed() -> None:
    sleeps: list[float] = []

    async def sleep(s: float) -> None:
        sleeps.append(s)

    policy = RetryPolicy(attempts=3, base_s=0.01)
    async with HttpPublisher("http://127.0.0.1:9", "tok", policy=policy, sleep=sleep) as publisher:
        result = await publisher.publish(event(1))
    assert result.events[0].outcome is Outcome.FAILED
    assert str(result.events[0].reason).startswith("gave up after 3 attempt(s): Connect")
    assert len(sleeps) == 2
