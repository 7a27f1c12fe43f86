"""The webhook sender against real HTTP receivers: a Starlette app served by uvicorn in the test process,
which checks every delivery's signature with the ``standardwebhooks`` library and records what it got.

The receiver's path says how it answers: ``/status/<code>/<name>``, ``/sleep/<seconds>/<name>``,
``/redirect/<name>`` (a 302 to ``/status/200/<name>-redirected``), ``/huge/<name>`` (a 200 with a 256 MiB
body, produced only while the sender is still listening), ``/trickle/<name>`` (a 200 whose body comes a byte
every 0.25 s for 5 s). ``<name>`` tells the tests' deliveries apart."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

import aiohttp
import asyncpg
import orjson
import pytest
import uvicorn
from prometheus_client import REGISTRY
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from libs.platform.auth import Role
from libs.platform.db import Database
from libs.platform.settings import Settings
from services.notifications.addresses import GuardedResolver
from services.notifications.domain.deliveries import Due, Outcome
from services.notifications.domain.subscriptions import UrlPolicy, new_webhook_id
from services.notifications.entrypoints.sending import send_forever
from services.notifications.handlers import _given_back, record_deliveries, send_due, settled_outcomes
from services.notifications.sealing import Sealer
from services.notifications.sender import MAX_RESPONSE_BYTES, USER_AGENT, Sender
from services.notifications.store import SubscriptionStore
from tests.conftest import SPARE_PORTS, TEST_ENV

SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()
RECEIVER_PORT = SPARE_PORTS[0]
NOBODY_PORT = SPARE_PORTS[1]
HUGE_CHUNK = b"x" * 65_536
HUGE_CHUNKS = 4096  # 256 MiB


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    at: float  # time.monotonic() on arrival


@dataclass
class Receiver:
    base: str
    got: list[Received] = field(default_factory=list)
    in_flight: dict[str, int] = field(default_factory=dict)  # by <name>'s first part (the subscription)
    most_in_flight: dict[str, int] = field(default_factory=dict)
    total_in_flight: int = 0
    most_total_in_flight: int = 0
    huge_bytes_sent: int = 0

    def named(self, name: str) -> list[Received]:
        return [r for r in self.got if r.path.rsplit("/", 1)[-1] == name]


def _receiver_app(receiver: Receiver) -> Starlette:
    async def receive(request: Request) -> Response:
        body = await request.body()
        headers = dict(request.headers)
        try:
            Webhook(SECRET).verify(body, headers)
            verified = True
        except WebhookVerificationError:
            verified = False
        path = request.url.path
        receiver.got.append(Received(path, headers, body, verified, time.monotonic()))
        parts = path.strip("/").split("/")
        subscription = parts[-1].split("-")[0]
        receiver.in_flight[subscription] = receiver.in_flight.get(subscription, 0) + 1
        receiver.most_in_flight[subscription] = max(
            receiver.most_in_flight.get(subscription, 0), receiver.in_flight[subscription]
        )
        receiver.total_in_flight += 1
        receiver.most_total_in_flight = max(receiver.most_total_in_flight, receiver.total_in_flight)
        try:
            if parts[0] == "status":
                return Response(status_code=int(parts[1]), content=b"" if parts[1] == "204" else b"ok")
            if parts[0] == "sleep":
                await asyncio.sleep(float(parts[1]))
                return Response(b"ok")
            if parts[0] == "redirect":
                return RedirectResponse(f"/status/200/{parts[-1]}-redirected", status_code=302)
            if parts[0] == "huge":

                async def huge() -> AsyncIterator[bytes]:
                    for _ in range(HUGE_CHUNKS):
                        if await request.is_disconnected():
                            return  # uvicorn drops what is sent after the sender hung up: stop producing it
                        receiver.huge_bytes_sent += len(HUGE_CHUNK)
                        yield HUGE_CHUNK
                        await asyncio.sleep(0)

                return StreamingResponse(
                    huge(),
                    media_type="application/octet-stream",
                    headers={"content-length": str(HUGE_CHUNKS * len(HUGE_CHUNK))},
                )
            if parts[0] == "trickle":

                async def trickle() -> AsyncIterator[bytes]:
                    for _ in range(20):
                        if await request.is_disconnected():
                            return
                        yield b"."
                        await asyncio.sleep(0.25)

                return StreamingResponse(trickle(), media_type="text/plain")
            return Response(status_code=400)
        finally:
            receiver.in_flight[subscription] -= 1
            receiver.total_in_flight -= 1

    return Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver(base=f"http://127.0.0.1:{RECEIVER_PORT}")
    config = uvicorn.Config(
        _receiver_app(state),
        host="127.0.0.1",
        port=RECEIVER_PORT,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.02)
    assert server.started, "the test receiver did not start"
    yield state
    server.should_exit = True
    await task


async def _allow(url: str) -> str | None:
    return None


async def _refuse(url: str) -> str | None:
    return "the address is private (10.0.0.7)"


def _due(url: str, *, webhook_id: str = "wh-1", event_id: str | None = None) -> Due:
    event_id = event_id or str(uuid.uuid4())
    body = orjson.dumps(
        {"specversion": "1.0", "id": event_id, "type": "points.awarded", "data": {"rider_id": "rider-1", "n": "积分"}}
    ).decode()
    return Due(
        delivery_id=1,
        webhook_id=webhook_id,
        event_id=event_id,
        url=url,
        body=body,
        attempts=0,
        created_at=datetime.now(UTC),
    )


def _name() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
async def sender() -> AsyncIterator[Sender]:
    async with Sender(_allow, timeout_s=5) as s:
        yield s


@pytest.mark.parametrize("code", [200, 204])
async def test_a_2xx_is_delivered_signed_with_the_event_id(receiver: Receiver, sender: Sender, code: int) -> None:
    name = _name()
    due = _due(f"{receiver.base}/status/{code}/{name}")
    outcome = await sender.attempt(due, SECRET)
    assert outcome.delivered
    assert outcome.status == code
    assert outcome.error is None
    assert 0 < outcome.seconds < 5
    [got] = receiver.named(name)
    assert got.verified
    assert got.headers["webhook-id"] == due.event_id
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"] == USER_AGENT
    assert got.headers["webhook-signature"].startswith("v1,")
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 5
    assert got.body == due.body.encode("utf-8")
    assert orjson.loads(got.body)["data"]["n"] == "积分"


async def test_a_wrong_secret_does_not_verify(receiver: Receiver, sender: Sender) -> None:
    """The receiver's check is a real one: signed with another secret, the delivery does not verify."""
    name = _name()
    other = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    outcome = await sender.attempt(_due(f"{receiver.base}/status/200/{name}"), other)
    assert outcome.delivered  # the receiver answered 200 regardless
    [got] = receiver.named(name)
    assert not got.verified


async def test_the_same_due_sent_twice_carries_the_same_webhook_id(receiver: Receiver, sender: Sender) -> None:
    name = _name()
    due = _due(f"{receiver.base}/status/200/{name}")
    first = await sender.attempt(due, SECRET)
    second = await sender.attempt(due, SECRET)
    assert first.delivered
    assert second.delivered
    got = receiver.named(name)
    assert len(got) == 2
    assert all(g.verified for g in got)
    assert got[0].headers["webhook-id"] == got[1].headers["webhook-id"] == due.event_id


@pytest.mark.parametrize("code", [500, 404, 503, 429])
async def test_an_error_answer_is_a_failure_with_its_status(receiver: Receiver, sender: Sender, code: int) -> None:
    name = _name()
    outcome = await sender.attempt(_due(f"{receiver.base}/status/{code}/{name}"), SECRET)
    assert not outcome.delivered
    assert outcome.status == code
    assert outcome.error == f"receiver answered {code}"
    assert len(receiver.named(name)) == 1


async def test_a_receiver_slower_than_the_timeout_times_out(receiver: Receiver) -> None:
    name = _name()
    async with Sender(_allow, timeout_s=0.5) as sender:
        started = time.monotonic()
        outcome = await sender.attempt(_due(f"{receiver.base}/sleep/3/{name}"), SECRET)
        elapsed = time.monotonic() - started
    assert not outcome.delivered
    assert outcome.status is None
    assert outcome.error == "timed out after 0.5 s"
    assert 0.45 <= outcome.seconds < 1.0
    assert elapsed < 1.5
    assert len(receiver.named(name)) == 1  # it was sent; the answer came too late


async def test_a_2xx_whose_body_trickles_past_the_timeout_is_delivered(receiver: Receiver) -> None:
    """The answer's status came within the timeout; its body is not waited for beyond it."""
    async with Sender(_allow, timeout_s=0.5) as sender:
        outcome = await sender.attempt(_due(f"{receiver.base}/trickle/{_name()}"), SECRET)
    assert outcome.delivered
    assert outcome.status == 200
    assert outcome.seconds < 1.0


async def test_connection_refused(sender: Sender) -> None:
    with socket.socket() as probe:  # nobody listens there
        assert probe.connect_ex(("127.0.0.1", NOBODY_PORT)) != 0
    outcome = await sender.attempt(_due(f"http://127.0.0.1:{NOBODY_PORT}/hook"), SECRET)
    assert not outcome.delivered
    assert outcome.status is None
    assert outcome.error == "connection refused"


async def test_tls_to_a_plain_http_receiver_is_a_tls_failure(receiver: Receiver, sender: Sender) -> None:
    outcome = await sender.attempt(_due(f"https://127.0.0.1:{RECEIVER_PORT}/status/200/{_name()}"), SECRET)
    assert not outcome.delivered
    assert outcome.status is None
    assert outcome.error is not None
    assert outcome.error.startswith("TLS: ")
    assert len(outcome.error) <= 300


async def test_a_redirect_is_not_followed(receiver: Receiver, sender: Sender) -> None:
    name = _name()
    outcome = await sender.attempt(_due(f"{receiver.base}/redirect/{name}"), SECRET)
    assert not outcome.delivered
    assert outcome.status == 302
    assert outcome.error == "redirects are not followed"
    assert len(receiver.named(name)) == 1
    assert receiver.named(f"{name}-redirected") == []


async def test_a_callers_client_does_not_follow_redirects_and_stays_open(receiver: Receiver) -> None:
    name = _name()
    async with aiohttp.ClientSession() as client:
        sender = Sender(_allow, timeout_s=5, client=client)
        outcome = await sender.attempt(_due(f"{receiver.base}/redirect/{name}"), SECRET)
        await sender.aclose()
        assert not client.closed  # the caller's client stays the caller's
    assert outcome.status == 302
    assert receiver.named(f"{name}-redirected") == []


async def test_a_refused_address_sends_nothing(receiver: Receiver) -> None:
    name = _name()
    checked: list[str] = []

    async def refuse(url: str) -> str | None:
        checked.append(url)
        return await _refuse(url)

    url = f"{receiver.base}/status/200/{name}"
    async with Sender(refuse, timeout_s=5) as sender:
        outcome = await sender.attempt(_due(url), SECRET)
    assert checked == [url]
    assert not outcome.delivered
    assert outcome.status is None
    assert outcome.error == "refused: the address is private (10.0.0.7)"
    await asyncio.sleep(0.1)
    assert receiver.named(name) == []


async def test_a_name_that_passes_the_check_and_resolves_to_loopback_when_connecting_is_refused(
    receiver: Receiver,
) -> None:
    """DNS rebinding: the check before the attempt saw a public address (here: it allows anything), the
    connection's own look-up finds loopback. The guarded resolver refuses it; nothing reaches the receiver."""
    name = _name()
    guarded = GuardedResolver(UrlPolicy(local=False, require_https=False))
    async with Sender(_allow, timeout_s=5, resolver=guarded) as sender:
        outcome = await sender.attempt(_due(f"http://localhost:{RECEIVER_PORT}/status/200/{name}"), SECRET)
    assert not outcome.delivered
    assert outcome.status is None
    assert outcome.error is not None
    assert outcome.error.startswith("refused when connecting: resolves to ")
    assert "a loopback address" in outcome.error
    await asyncio.sleep(0.1)
    assert receiver.named(name) == []


async def test_the_guarded_resolver_lets_a_local_run_and_an_allowed_network_through(receiver: Receiver) -> None:
    for policy in (
        UrlPolicy(local=True),
        UrlPolicy(
            local=False,
            require_https=False,
            allowed=(ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")),
        ),
    ):
        name = _name()
        async with Sender(_allow, timeout_s=5, resolver=GuardedResolver(policy)) as sender:
            outcome = await sender.attempt(_due(f"http://localhost:{RECEIVER_PORT}/status/200/{name}"), SECRET)
        assert outcome.delivered, outcome.error


async def test_a_huge_answer_is_not_read_whole(receiver: Receiver, sender: Sender) -> None:
    """The receiver answers 200 with a 256 MiB body: the attempt reads at most 64 KiB of it, hangs up and
    returns; the receiver stops producing the body soon after, far from its end."""
    name = _name()
    receiver.huge_bytes_sent = 0
    outcome = await sender.attempt(_due(f"{receiver.base}/huge/{name}"), SECRET)
    assert outcome.delivered
    assert outcome.status == 200
    assert outcome.seconds < 2
    assert len(receiver.named(name)) == 1
    await asyncio.sleep(0.5)
    sent = receiver.huge_bytes_sent
    await asyncio.sleep(0.2)
    assert receiver.huge_bytes_sent == sent  # the receiver noticed the sender hung up
    assert MAX_RESPONSE_BYTES <= sent < HUGE_CHUNKS * len(HUGE_CHUNK) // 4


async def test_a_slow_receiver_does_not_delay_another_subscription(receiver: Receiver) -> None:
    """Subscription A's receiver sleeps 2 s on each of three deliveries, two at a time allowed; B's answers at
    once. With three slots in all, A's third delivery waits for A's slot without holding one of all, so B
    goes out at once."""
    run = _name()
    a = [_due(f"{receiver.base}/sleep/2/a{run}-{i}", webhook_id=f"a{run}") for i in range(3)]
    b = _due(f"{receiver.base}/status/200/b{run}-0", webhook_id=f"b{run}")
    async with Sender(_allow, timeout_s=5, in_flight=3, in_flight_per_subscription=2) as sender:
        started = time.monotonic()
        results = await sender.attempt_all([*((d, SECRET) for d in a), (b, SECRET)])
    assert [due for due, _ in results] == [*a, b]
    outcomes = {due.url.rsplit("/", 1)[-1]: outcome for due, outcome in results}
    assert all(outcome.delivered for outcome in outcomes.values())
    b_seconds = outcomes[f"b{run}-0"].seconds
    a_seconds = [outcomes[f"a{run}-{i}"].seconds for i in range(3)]
    assert min(a_seconds) >= 1.9
    assert b_seconds < 0.5
    assert b_seconds * 4 < min(a_seconds)
    [b_got] = receiver.named(f"b{run}-0")
    assert b_got.at - started < 1.0  # B was not queued behind A
    assert receiver.most_in_flight[f"a{run}"] == 2  # A never had more than its two slots
    assert (
        sorted(r.at - started for r in receiver.got if r.path.endswith(tuple(f"a{run}-{i}" for i in range(3))))[2]
        >= 1.9
    )  # A's third went out only when one of its first two was answered


async def test_attempt_all_keeps_within_the_limit_of_all(receiver: Receiver) -> None:
    run = _name()
    dues = [(_due(f"{receiver.base}/sleep/0.3/s{run}{i}-0", webhook_id=f"s{run}{i}"), SECRET) for i in range(6)]
    before = receiver.most_total_in_flight
    receiver.most_total_in_flight = 0
    try:
        async with Sender(_allow, timeout_s=5, in_flight=2, in_flight_per_subscription=4) as sender:
            results = await sender.attempt_all(dues)
        assert all(outcome.delivered for _, outcome in results)
        assert receiver.most_total_in_flight == 2
        assert sender._subscriptions == {}  # no per-subscription limits left behind
    finally:
        receiver.most_total_in_flight = max(before, receiver.most_total_in_flight)


async def test_attempt_all_returns_every_outcome_delivered_or_not(receiver: Receiver, sender: Sender) -> None:
    run = _name()
    dues = [
        _due(f"{receiver.base}/status/200/{run}-ok", webhook_id="x"),
        _due(f"{receiver.base}/status/500/{run}-bad", webhook_id="x"),
        _due(f"http://127.0.0.1:{NOBODY_PORT}/{run}-down", webhook_id="y"),
    ]
    results = await sender.attempt_all([(d, SECRET) for d in dues])
    assert [(due, outcome.delivered, outcome.status) for due, outcome in results] == [
        (dues[0], True, 200),
        (dues[1], False, 500),
        (dues[2], False, None),
    ]
    assert await sender.attempt_all([]) == []


async def test_send_due_sends_and_records_every_outcome_within_the_limits(
    receiver: Receiver, db: Database, settings: Settings
) -> None:
    """The pipeline of send_due against the real database and receiver: small limits, so it claims many
    times while attempts are in flight; every delivery of the answering subscription is delivered once,
    signed; every one of the failing subscription is pending again with its error; neither subscription
    ever had more than its slots in flight."""
    settings = settings.model_copy(update={"webhook_in_flight": 4, "webhook_in_flight_per_subscription": 2})
    sealer = Sealer.of(settings)
    run = _name()
    hooks = {"ok": f"{receiver.base}/sleep/0.05/ok{run}", "bad": f"{receiver.base}/status/500/bad{run}"}
    ids = {name: new_webhook_id() for name in hooks}

    async def create(conn: asyncpg.Connection, name: str) -> None:
        await SubscriptionStore(conn).create(
            ids[name], Role.OPERATOR, "ops", hooks[name], ["points.awarded"], "", sealer.seal(SECRET)
        )

    for name in hooks:
        await db.run(partial(create, name=name))
    events = [
        orjson.dumps(
            {
                "specversion": "1.0",
                "id": f"entry-{run}-{i}",
                "source": "warmbee/points",
                "type": "points.award.recorded",
                "subject": "rider-1",
                "time": "2026-12-02T09:00:00Z",
                "data": {"entry_id": i, "kind": "award", "amount": 10, "source": "x"},
            }
        )
        for i in range(12)
    ]
    await record_deliveries(db, events)
    async with Sender(_allow, timeout_s=5, in_flight=4, in_flight_per_subscription=2) as sender:
        while await send_due(db, settings, sender, 500):
            pass
    async with db.read() as conn:
        rows = await conn.fetch(
            "SELECT webhook_id, status, attempts, last_status, last_error, next_attempt_at > now() AS later"
            " FROM webhook_delivery WHERE webhook_id = ANY($1::text[])",
            list(ids.values()),
        )
    by = {name: [r for r in rows if r["webhook_id"] == webhook_id] for name, webhook_id in ids.items()}
    assert {(r["status"], r["attempts"], r["last_status"], r["last_error"]) for r in by["ok"]} == {
        ("delivered", 1, 200, None)
    }
    assert {(r["status"], r["attempts"], r["last_status"], r["last_error"], r["later"]) for r in by["bad"]} == {
        ("pending", 1, 500, "receiver answered 500", True)
    }
    assert len(by["ok"]) == len(by["bad"]) == 12
    got = receiver.named(f"ok{run}")
    assert len(got) == 12
    assert all(g.verified for g in got)
    assert len({g.headers["webhook-id"] for g in got}) == 12
    assert receiver.most_in_flight[f"ok{run}"] <= 2
    assert receiver.most_in_flight[f"bad{run}"] <= 2


async def test_an_idle_sender_is_woken_by_new_deliveries(receiver: Receiver, db: Database, settings: Settings) -> None:
    """The worker's sender loop polls every webhook_sender_interval_s (30 s here), but deliveries recorded
    meanwhile wake it at once (NOTIFY on commit): the receiver has them long before the next poll."""
    settings = settings.model_copy(update={"webhook_sender_interval_s": 30.0})
    run = _name()
    webhook_id = new_webhook_id()
    sealed = Sealer.of(settings).seal(SECRET)
    url = f"{receiver.base}/status/204/wake{run}"
    await db.run(
        partial(_create, webhook_id=webhook_id, url=url, sealed=sealed)  # a subscription of its own
    )
    async with Sender(_allow, timeout_s=5) as sender:
        loop = asyncio.create_task(send_forever(db, settings, sender))
        try:
            await asyncio.sleep(1.0)  # idle by now: waiting for a notice or the poll in 30 s
            await record_deliveries(db, [_ledger_event(f"wake-{run}")])
            for _ in range(100):
                if receiver.named(f"wake{run}"):
                    break
                await asyncio.sleep(0.1)
        finally:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
    [got] = receiver.named(f"wake{run}")
    assert got.verified


async def test_a_sender_stopped_mid_send_gives_back_what_it_held_and_records_what_ended(
    receiver: Receiver, db: Database, settings: Settings
) -> None:
    """A stopping sender (its task cancelled, as SIGTERM does) does not leave its deliveries leased for
    their lease (150 s here): those still being sent to a receiver that takes 30 s are due again at once,
    with no attempt counted; those of a quick receiver stay delivered."""
    settings = settings.model_copy(update={"webhook_timeout_s": 40.0})
    run = _name()
    sealed = Sealer.of(settings).seal(SECRET)
    fast, slow = new_webhook_id(), new_webhook_id()
    await db.run(partial(_create, webhook_id=fast, url=f"{receiver.base}/status/204/fast{run}", sealed=sealed))
    await db.run(partial(_create, webhook_id=slow, url=f"{receiver.base}/sleep/30/slow{run}", sealed=sealed))
    await record_deliveries(db, [_ledger_event(f"stop-{run}-{i}") for i in range(3)])
    async with Sender(_allow, timeout_s=40) as sender:
        sending = asyncio.create_task(send_due(db, settings, sender, 500))
        for _ in range(100):  # the fast ones arrived; the slow receiver holds the others
            if len(receiver.named(f"fast{run}")) == 3 and len(receiver.named(f"slow{run}")) == 0:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sending
    async with db.read() as conn:
        rows = await conn.fetch(
            "SELECT webhook_id, status, attempts, next_attempt_at <= now() AS due_now FROM webhook_delivery"
            " WHERE webhook_id = ANY($1::text[])",
            [fast, slow],
        )
    by = {
        w: sorted((r["status"], r["attempts"], r["due_now"]) for r in rows if r["webhook_id"] == w)
        for w in (fast, slow)
    }
    assert by[slow] == [("pending", 0, True)] * 3  # given back: due at once, no attempt counted
    assert [status for status, _, _ in by[fast]] == ["delivered"] * 3


async def test_what_a_stopping_sender_records_is_counted_in_its_metrics(db: Database, settings: Settings) -> None:
    """The outcomes a stopping sender records in its last transaction count in the delivery metrics, as in
    a normal cycle (a dashboard would otherwise miss every delivery that ended in a restart's last second)."""
    run = _name()
    webhook_id = new_webhook_id()
    sealed = Sealer.of(settings).seal(SECRET)
    await db.run(partial(_create, webhook_id=webhook_id, url=f"http://127.0.0.1:9/{run}", sealed=sealed))
    await record_deliveries(db, [_ledger_event(f"count-{run}-{i}") for i in range(3)])
    async with db.read() as conn:
        rows = await conn.fetch(
            "SELECT delivery_id, event_id, created_at FROM webhook_delivery WHERE webhook_id = $1 ORDER BY 1",
            webhook_id,
        )
    dues = [Due(r["delivery_id"], webhook_id, r["event_id"], "", "", 0, r["created_at"]) for r in rows]

    def delivered() -> float:
        labels = {"kind": "points.awarded", "outcome": "delivered"}
        return REGISTRY.get_sample_value("warmbee_webhook_deliveries_total", labels) or 0.0

    before = delivered()
    done = [(dues[0], Outcome(True, 204, None, 0.01))]
    await _given_back(db, done, settled_outcomes(done, settings), [d.delivery_id for d in dues[1:]])
    assert delivered() - before == 1
    async with db.read() as conn:
        statuses = await conn.fetch(
            "SELECT status FROM webhook_delivery WHERE webhook_id = $1 ORDER BY delivery_id", webhook_id
        )
    assert [r["status"] for r in statuses] == ["delivered", "pending", "pending"]


async def _metric(http: aiohttp.ClientSession, port: int, line_start: str) -> float:
    async with http.get(f"http://127.0.0.1:{port}/metrics") as answer:
        text = await answer.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start))


async def test_two_sender_processes_share_the_deliveries_and_stop_cleanly_on_sigterm(
    receiver: Receiver, db: Database, settings: Settings
) -> None:
    """``warmbee worker notifications-sender`` twice, real processes on the test database: they share 300
    deliveries through the leases (each sends some, none is sent twice), both signed; SIGTERM ends each
    within seconds with exit code 0."""
    run = _name()
    webhook_id = new_webhook_id()
    url = f"{receiver.base}/sleep/0.01/procs{run}"
    async with db.read() as conn:  # the other tests' subscriptions would hear of these events too
        await conn.execute("UPDATE webhook_subscription SET deleted_at = now() WHERE deleted_at IS NULL")
        await conn.execute("UPDATE webhook_delivery SET status = 'failed' WHERE status = 'pending'")
    await db.run(partial(_create, webhook_id=webhook_id, url=url, sealed=Sealer.of(settings).seal(SECRET)))
    ports = SPARE_PORTS[2:4]
    env = os.environ | TEST_ENV | {"WARMBEE_WEBHOOK_IN_FLIGHT_PER_SUBSCRIPTION": "4", "WARMBEE_LOG_LEVEL": "WARNING"}
    senders = [
        await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "services.cli", "worker", "notifications-sender"),
            env=env | {"WARMBEE_NOTIFICATIONS_SENDER_METRICS_PORT": str(port)},
        )
        for port in ports
    ]
    try:
        async with aiohttp.ClientSession() as http:
            for port in ports:  # each is up once its metrics answer
                for _ in range(300):
                    with contextlib.suppress(aiohttp.ClientError):
                        await _metric(http, port, "warmbee_webhook_attempts_total")
                        break
                    await asyncio.sleep(0.1)
            await record_deliveries(db, [_ledger_event(f"procs-{run}-{i}") for i in range(300)])
            for _ in range(600):
                if len(receiver.named(f"procs{run}")) >= 300:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # anything sent twice would have come by now
            attempts = [await _metric(http, port, "warmbee_webhook_attempts_total{") for port in ports]
        started = time.monotonic()
        for process in senders:
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            codes = [await process.wait() for process in senders]
        stopped_s = time.monotonic() - started
    finally:
        for process in senders:
            if process.returncode is None:
                process.kill()
                await process.wait()
    got = receiver.named(f"procs{run}")
    assert len(got) == 300
    assert len({g.headers["webhook-id"] for g in got}) == 300
    assert all(g.verified for g in got)
    assert sum(attempts) == 300
    assert all(n > 0 for n in attempts), f"one process sent everything: {attempts}"
    assert codes == [0, 0]
    assert stopped_s < 20
    async with db.read() as conn:
        statuses = await conn.fetch(
            "SELECT status, count(*) AS n FROM webhook_delivery WHERE webhook_id = $1 GROUP BY status", webhook_id
        )
    assert [(r["status"], r["n"]) for r in statuses] == [("delivered", 300)]


async def _create(conn: asyncpg.Connection, webhook_id: str, url: str, sealed: bytes) -> None:
    await SubscriptionStore(conn).create(webhook_id, Role.OPERATOR, "ops", url, ["points.awarded"], "", sealed)


def _ledger_event(event_id: str) -> bytes:
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": "warmbee/points",
            "type": "points.award.recorded",
            "subject": "rider-1",
            "time": "2026-12-02T09:00:00Z",
            "data": {"entry_id": 1, "kind": "award", "amount": 10, "source": "x"},
        }
    )
