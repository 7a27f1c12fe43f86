"""Deliveries recorded from points-ledger events, against the real test database: one per subscription that
may hear of the event, once however often the event is read, and claimed by one sender at a time."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from libs.platform.auth import Role
from libs.platform.db import Database
from services.notifications.domain.subscriptions import new_webhook_id
from services.notifications.handlers import read_events, record_deliveries
from services.notifications.store import DeliveryWriter, Settled, SubscriptionStore


def ledger_message(kind: str, rider: str, **data: Any) -> bytes:
    entry = uuid.uuid4().int % 10**9
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": f"entry-{entry}",
            "source": "warmbee/points",
            "type": f"points.{kind}.recorded",
            "subject": rider,
            "time": "2026-12-02T09:00:00Z",
            "data": {"entry_id": entry, "kind": kind, "amount": 10, **data},
        }
    )


async def subscribe(db: Database, role: Role, owner: str, kinds: list[str]) -> str:
    webhook_id = new_webhook_id()
    await db.run(
        lambda conn: SubscriptionStore(conn).create(
            webhook_id, role, owner, "http://127.0.0.1:9/hook", kinds, "", b"sealed"
        )
    )
    return webhook_id


async def deliveries(db: Database, webhook_id: str) -> list[dict[str, Any]]:
    async with db.read() as conn:
        rows = await conn.fetch(
            "SELECT event_id, kind, body, status FROM webhook_delivery WHERE webhook_id = $1 ORDER BY delivery_id",
            webhook_id,
        )
    return [dict(r) for r in rows]


async def test_each_subscription_gets_what_it_may_hear_of_once(db: Database, rider: str) -> None:
    source = f"grid-{uuid.uuid4().hex[:6]}"
    operator = await subscribe(db, Role.OPERATOR, "ops", ["points.awarded", "points.adjusted"])
    own_source = await subscribe(db, Role.SOURCE, source, ["points.awarded"])
    other_source = await subscribe(db, Role.SOURCE, "someone-else", ["points.awarded"])
    partner = await subscribe(db, Role.PARTNER, "noodles", ["redemption.held"])
    award = ledger_message("award", rider, source=source, event_id="e-1")
    adjustment = ledger_message("adjustment", rider, source=None)
    hold = ledger_message("hold", rider, source="warmbee/redemption", event_id="no-such-redemption")

    batch = [award, adjustment, hold, b"not json", b"[]", None]
    await record_deliveries(db, batch)
    await record_deliveries(db, batch)  # read again after a crash before the acknowledgement

    assert [d["kind"] for d in await deliveries(db, operator)] == ["points.awarded", "points.adjusted"]
    assert [(d["kind"], d["status"]) for d in await deliveries(db, own_source)] == [("points.awarded", "pending")]
    assert await deliveries(db, other_source) == []
    assert await deliveries(db, partner) == []  # a hold of no redemption of this partner's
    (sent,) = await deliveries(db, own_source)
    assert sent["body"] == award.decode()  # the CloudEvent exactly as it came: what is signed and sent
    assert sent["event_id"] == orjson.loads(award)["id"]


def test_a_message_no_subscriber_can_ask_for_is_passed_over() -> None:
    assert read_events([b"\x00\xff", b'{"type": "x"}', orjson.dumps({"type": "points.award.recorded"})]) == []


async def test_two_senders_never_claim_the_same_delivery(db: Database, rider: str) -> None:
    webhook_id = await subscribe(db, Role.OPERATOR, "ops", ["points.awarded"])
    await record_deliveries(db, [ledger_message("award", rider, source="x") for _ in range(20)])

    first = await db.run(lambda conn: DeliveryWriter(conn).claim_due(500, 100, lease_s=60))
    second = await db.run(lambda conn: DeliveryWriter(conn).claim_due(500, 100, lease_s=60))

    mine = {d.delivery_id for d, _ in first if d.webhook_id == webhook_id}
    assert len(mine) == 20
    assert not mine & {d.delivery_id for d, _ in second}  # leased: due again only when the lease ends
    (due, sealed) = next((d, s) for d, s in first if d.webhook_id == webhook_id)
    assert sealed == b"sealed"
    assert due.url == "http://127.0.0.1:9/hook"

    await db.run(lambda conn: DeliveryWriter(conn).attempt_failed(due.delivery_id, 503, "receiver answered 503", 0))
    again = await db.run(lambda conn: DeliveryWriter(conn).claim_due(500, 100, lease_s=60))
    assert [(d.delivery_id, d.attempts) for d, _ in again if d.webhook_id == webhook_id] == [(due.delivery_id, 1)]
    await db.run(lambda conn: DeliveryWriter(conn).attempt_failed(due.delivery_id, None, "timed out", None))
    statuses = {d["status"] for d in await deliveries(db, webhook_id)}
    assert statuses == {"pending", "failed"}


async def test_a_claim_takes_at_most_so_many_of_one_subscription(db: Database, rider: str) -> None:
    webhook_id = await subscribe(db, Role.OPERATOR, "ops", ["points.adjusted"])
    await record_deliveries(db, [ledger_message("adjustment", rider) for _ in range(10)])
    claimed = await db.run(lambda conn: DeliveryWriter(conn).claim_due(500, 4, lease_s=60))
    assert len([d for d, _ in claimed if d.webhook_id == webhook_id]) == 4


async def test_a_claim_leaves_out_what_the_sender_already_holds_of_a_subscription(db: Database, rider: str) -> None:
    webhook_id = await subscribe(db, Role.OPERATOR, "ops", ["points.adjusted"])
    await record_deliveries(db, [ledger_message("adjustment", rider) for _ in range(10)])
    claimed = await db.run(lambda conn: DeliveryWriter(conn).claim_due(500, 4, 60, {webhook_id: 3}))
    mine = [d for d, _ in claimed if d.webhook_id == webhook_id]
    assert len(mine) == 1
    assert mine[0].webhook_kind == "points.adjusted"  # the kind the metrics count it under
    held_all = await db.run(lambda conn: DeliveryWriter(conn).claim_due(500, 4, 60, {webhook_id: 4}))
    assert [d for d, _ in held_all if d.webhook_id == webhook_id] == []


async def test_outcomes_are_settled_together(db: Database, rider: str) -> None:
    webhook_id = await subscribe(db, Role.OPERATOR, "ops", ["points.awarded"])
    await record_deliveries(db, [ledger_message("award", rider, source="x") for _ in range(3)])
    claimed = await db.run(lambda conn: DeliveryWriter(conn).claim_due(500, 100, lease_s=60))
    ok, retry, give_up = sorted(d.delivery_id for d, _ in claimed if d.webhook_id == webhook_id)
    await db.run(
        lambda conn: DeliveryWriter(conn).settle(
            [
                Settled(ok, True, 204, None, None),
                Settled(retry, False, 503, "receiver answered 503", 30),
                Settled(give_up, False, None, "timed out after 10 s", None),
            ]
        )
    )
    async with db.read() as conn:
        rows = await conn.fetch(
            "SELECT delivery_id, status, attempts, last_status, last_error, delivered_at IS NOT NULL AS at,"
            " next_attempt_at > now() + interval '25 seconds' AS later FROM webhook_delivery"
            " WHERE webhook_id = $1 ORDER BY delivery_id",
            webhook_id,
        )
    assert [tuple(r.values())[1:] for r in rows] == [
        ("delivered", 1, 204, None, True, True),  # still leased: it is not pending, so not claimed again
        ("pending", 1, 503, "receiver answered 503", False, True),
        ("failed", 1, None, "timed out after 10 s", False, True),
    ]
