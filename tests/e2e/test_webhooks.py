"""Webhooks end to end: the real stack (broker, database, services, the faust notifications worker) and a
real HTTP receiver that checks every signature with the ``standardwebhooks`` library.

The receiver listens on ``/hook/<name>``; a name registered with ``fail_first=n`` answers 503 to its first
n deliveries of each event, then 200."""

from __future__ import annotations

import asyncio
import re
import signal
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
import uvicorn
from aiokafka import AIOKafkaProducer
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from libs.platform.auth import Role
from libs.platform.localstack import LocalStack
from tests.conftest import SPARE_PORTS
from tests.e2e.conftest import Api, eventually, shift, to_kafka
from tests.e2e.test_notices import notices
from tests.e2e.test_redemption import catalogue_entry, confirm_code, grant, new_hold

pytestmark = pytest.mark.e2e
RECEIVER_PORT = SPARE_PORTS[3]


@dataclass
class Delivery:
    name: str
    headers: dict[str, str]
    body: dict[str, Any]
    verified: bool


@dataclass
class Receiver:
    url: str
    secrets: dict[str, str] = field(default_factory=dict)
    fail_first: dict[str, int] = field(default_factory=dict)
    got: list[Delivery] = field(default_factory=list)

    def of(self, name: str) -> list[Delivery]:
        return [d for d in self.got if d.name == name]

    def delivered_ids(self, name: str) -> set[str]:
        return {d.headers["webhook-id"] for d in self.of(name) if d.verified}


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver(f"http://127.0.0.1:{RECEIVER_PORT}/hook")
    attempts: dict[tuple[str, str], int] = {}

    async def hook(request: Request) -> Response:
        name = request.path_params["name"]
        body = await request.body()
        headers = dict(request.headers)
        try:
            Webhook(found.secrets[name]).verify(body, headers)
            verified = True
        except (WebhookVerificationError, KeyError):
            verified = False
        found.got.append(Delivery(name, headers, orjson.loads(body), verified))
        key = (name, headers.get("webhook-id", ""))
        attempts[key] = attempts.get(key, 0) + 1
        return Response(status_code=503 if attempts[key] <= found.fail_first.get(name, 0) else 200)

    app = Starlette(routes=[Route("/hook/{name}", hook, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=RECEIVER_PORT, log_level="warning"))
    task = asyncio.create_task(server.serve())
    for _ in range(200):  # uvicorn says it started by a flag, not an event
        if server.started:
            break
        await asyncio.sleep(0.05)
    assert server.started, "the test receiver did not start"
    yield found
    server.should_exit = True
    await task


async def subscribe(api: Api, receiver: Receiver, role: Role, sub: str, kinds: list[str], **options: int) -> str:
    name = f"{sub}-{uuid.uuid4().hex[:6]}"
    r = await api.http.post(
        f"http://{api.settings.host}:{api.settings.notifications_port}/v1/webhooks",
        json={"url": f"{receiver.url}/{name}", "kinds": kinds},
        headers=api.token(role, sub),
    )
    assert r.status_code == 201, r.text
    receiver.secrets[name] = r.json()["secret"]
    receiver.fail_first[name] = options.get("fail_first", 0)
    return name


async def test_an_award_reaches_an_operators_webhook_signed(api: Api, receiver: Receiver, rider: str) -> None:
    name = await subscribe(api, receiver, Role.OPERATOR, "ops", ["points.awarded"])
    event = shift(rider, 2)
    await api.publish(event)
    await api.wait_scored("volunteer-platform", event["id"])

    async def arrived() -> Delivery | None:
        return next((d for d in receiver.of(name) if d.body["data"]["event_id"] == event["id"]), None)

    delivery = await eventually(arrived, 30, "the award at the receiver")
    assert delivery.verified
    assert delivery.body["type"] == "points.award.recorded"
    assert delivery.headers["webhook-id"] == delivery.body["id"]
    assert delivery.body["data"]["reason_code"] == "award.volunteer_service"
    assert delivery.headers["content-type"] == "application/json"


async def test_a_receiver_failing_twice_gets_it_a_third_time_with_the_same_id(
    api: Api, receiver: Receiver, rider: str
) -> None:
    name = await subscribe(api, receiver, Role.OPERATOR, "ops", ["points.adjusted"], fail_first=2)
    made = await api.http.post(
        f"{api.points_url}/v1/adjustments",
        json={"rider_id": rider, "amount": 7, "reason": "补发"},
        headers={**api.token_for_operator(), "idempotency-key": uuid.uuid4().hex},
    )
    assert made.status_code == 201

    async def third() -> list[Delivery] | None:
        mine = [d for d in receiver.of(name) if d.body["subject"] == rider]
        return mine if len(mine) >= 3 else None

    attempts = await eventually(third, 60, "three attempts of the adjustment")  # pauses of 5 s, then 30 s
    assert len({d.headers["webhook-id"] for d in attempts}) == 1
    assert all(d.verified for d in attempts)
    assert len({d.headers["webhook-timestamp"] for d in attempts}) == 3  # each attempt signed anew


async def test_a_source_hears_only_of_its_own_events(api: Api, receiver: Receiver, rider: str) -> None:
    grid = await subscribe(api, receiver, Role.SOURCE, "grid-office", ["points.awarded"])
    volunteers = await subscribe(api, receiver, Role.SOURCE, "volunteer-platform", ["points.awarded"])
    event = shift(rider, 1)
    await api.publish(event)
    await api.wait_scored("volunteer-platform", event["id"])

    async def arrived() -> bool | None:
        return any(d.body["data"]["event_id"] == event["id"] for d in receiver.of(volunteers)) or None

    await eventually(arrived, 30, "the volunteer platform's award at its webhook")
    assert not [d for d in receiver.of(grid) if d.body["subject"] == rider]


async def test_a_source_hears_of_its_event_that_was_dead_lettered(
    api: Api, receiver: Receiver, kafka: AIOKafkaProducer, rider: str
) -> None:
    name = await subscribe(api, receiver, Role.SOURCE, "volunteer-platform", ["event.dead_lettered"])
    bad = shift(rider, -1)  # refused over HTTP; over Kafka it is dead-lettered
    await to_kafka(kafka, api.settings, orjson.dumps(bad), rider)

    async def arrived() -> Delivery | None:
        return next((d for d in receiver.of(name) if d.body["data"]["event_id"] == bad["id"]), None)

    delivery = await eventually(arrived, 30, "the dead letter at the source's webhook")
    assert delivery.verified
    assert delivery.body["type"] == "event.dead_lettered"
    assert delivery.body["data"]["reason"].startswith("data.hours: must be greater than 0, got -1")
    assert delivery.body["data"]["source"] == "volunteer-platform"


async def test_a_rider_cannot_subscribe(api: Api, receiver: Receiver, rider: str) -> None:
    r = await api.http.post(
        f"http://{api.settings.host}:{api.settings.notifications_port}/v1/webhooks",
        json={"url": f"{receiver.url}/rider", "kinds": ["points.awarded"]},
        headers=api.token(Role.RIDER, rider),
    )
    assert r.status_code == 403


async def test_the_notifications_worker_killed_mid_stream_loses_nothing_nor_tells_twice(
    stack: LocalStack, api: Api, receiver: Receiver, rider: str
) -> None:
    name = await subscribe(api, receiver, Role.OPERATOR, "ops", ["points.awarded"])
    events = [shift(rider, 1, time=f"2024-06-{day:02d}T09:00:00+08:00") for day in range(1, 21)]
    await api.publish(events[:10], batch=True)
    stack.stop("notifications-worker", signal.SIGKILL)
    await api.publish(events[10:], batch=True)
    for e in events:
        await api.wait_scored("volunteer-platform", e["id"])
    stack.start_service("notifications-worker")
    await stack.wait_healthy(["notifications-worker"])

    async def all_arrived() -> set[str] | None:
        got = {d.body["data"]["event_id"] for d in receiver.of(name) if d.verified and d.body["subject"] == rider}
        return got if got >= {e["id"] for e in events} else None

    await eventually(all_arrived, 90, "every award at the receiver after the kill")

    async def told() -> int | None:  # and the rider is told of each point once: 20 shifts of 10
        texts = [n["text_en"] for n in await notices(api, rider) if n["kind"] == "points.awarded"]
        total = sum(int(m[1]) for t in texts if (m := re.match(r"You earned (\d+) point", t)))
        return total if total >= 200 else None

    assert await eventually(told, 180, "the rider's notices of all 200 points") == 200
    deliveries = await api.http.get(
        f"http://{api.settings.host}:{api.settings.notifications_port}/v1/webhooks", headers=api.token_for_operator()
    )
    assert deliveries.status_code == 200


async def test_a_subscriptions_deliveries_are_listed(api: Api, receiver: Receiver, rider: str) -> None:
    name = await subscribe(api, receiver, Role.OPERATOR, "ops", ["points.awarded"])
    event = shift(rider, 1)
    await api.publish(event)
    await api.wait_scored("volunteer-platform", event["id"])
    base = f"http://{api.settings.host}:{api.settings.notifications_port}/v1/webhooks"
    webhooks = (await api.http.get(base, headers=api.token_for_operator())).json()["items"]
    webhook_id = next(w["webhook_id"] for w in webhooks if w["url"].endswith(f"/{name}"))

    async def delivered() -> list[dict[str, Any]] | None:
        r = await api.http.get(f"{base}/{webhook_id}/deliveries?status=delivered", headers=api.token_for_operator())
        return r.json()["items"] or None

    (done,) = await eventually(delivered, 30, "a delivered delivery")
    assert done["kind"] == "points.awarded"
    assert done["attempts"] == 1


async def test_a_partner_hears_only_of_its_own_redemptions(api: Api, receiver: Receiver, rider: str) -> None:
    partner_id, reward_id = await catalogue_entry(api, cost=30)
    other_id, _ = await catalogue_entry(api, cost=30)
    mine = await subscribe(api, receiver, Role.PARTNER, partner_id, ["redemption.held", "redemption.confirmed"])
    theirs = await subscribe(api, receiver, Role.PARTNER, other_id, ["redemption.held", "redemption.confirmed"])
    await grant(api, rider, 40)
    held = await new_hold(api, rider, reward_id)
    assert (await confirm_code(api, partner_id, held["code"])).status_code == 200

    async def both() -> list[Delivery] | None:
        got = [d for d in receiver.of(mine) if d.verified and d.body["subject"] == rider]
        return got if len({d.body["type"] for d in got}) == 2 else None

    got = await eventually(both, 30, "the hold and the confirmation at the partner's webhook")
    assert {d.body["data"]["redemption_id"] for d in got} == {held["redemption_id"]}
    assert {d.body["data"]["partner_id"] for d in got} == {partner_id}
    assert not [d for d in receiver.of(theirs) if d.body["subject"] == rider]


async def test_a_receiver_that_was_down_gets_everything_once_it_is_back(
    api: Api, receiver: Receiver, rider: str
) -> None:
    name = await subscribe(api, receiver, Role.OPERATOR, "ops", ["points.awarded"], fail_first=1)
    events = [shift(rider, 1, time=f"2024-07-{day:02d}T09:00:00+08:00") for day in range(1, 6)]
    await api.publish(events, batch=True)

    async def all_back() -> set[str] | None:
        delivered = {d.body["data"]["event_id"] for d in receiver.of(name) if d.verified and d.body["subject"] == rider}
        counts = [len([d for d in receiver.of(name) if d.body["data"]["event_id"] == e["id"]]) for e in events]
        return delivered if delivered == {e["id"] for e in events} and min(counts) >= 2 else None

    await eventually(all_back, 60, "every award delivered after the receiver refused each once")


async def test_after_the_broker_restarts_deliveries_flow_again(stack: LocalStack, api: Api, receiver: Receiver) -> None:
    """The local broker keeps nothing across a restart (Apache Kafka would keep the topic): the worker
    rejoins its group on the new broker and the awards published from then on reach the webhook."""
    name = await subscribe(api, receiver, Role.OPERATOR, "ops", ["points.awarded"])
    stack.stop("broker")
    await asyncio.sleep(2)
    await stack.start_broker()

    async def flows() -> bool | None:
        rider = f"rider-{uuid.uuid4().hex[:10]}"
        event = shift(rider, 1)
        if (await api.publish(event)).status_code != 202:
            return None
        for _ in range(20):
            if any(d.body["subject"] == rider and d.verified for d in receiver.of(name)):
                return True
            await asyncio.sleep(0.5)
        return None

    assert await eventually(flows, 180, "an award at the webhook after the broker restart")
