"""The outbox keeps what is not relayed yet, and forgets what was relayed long enough ago."""

from __future__ import annotations

import asyncio
import uuid

import orjson

from libs.i18n.reasons import Reason
from libs.ledger.feed import ENTRIES, entries_reference, render_entries
from libs.ledger.keys import PROGRAMME_ADJUSTMENTS, rider_available
from libs.ledger.model import EntryKind, LedgerTransaction, transfer
from libs.ledger.store import LedgerStore
from libs.platform.db import Connection, Database
from libs.platform.outbox_store import Backlog, OutboxMessage, OutboxStore
from libs.platform.relay import OutboxRelay


async def test_purge_deletes_relayed_messages_of_its_topics_and_keeps_the_rest(db: Database) -> None:
    topic, other = f"t-{uuid.uuid4().hex[:8]}", f"t-{uuid.uuid4().hex[:8]}"

    async def setup(conn: Connection) -> None:
        store = OutboxStore(conn)
        await store.add(
            [
                OutboxMessage(topic, None, b"relayed"),
                OutboxMessage(topic, None, b"waiting"),
                OutboxMessage(other, None, b"relayed elsewhere"),
            ]
        )
        claimed = await store.claim([topic, other], 10)
        await store.mark_relayed([p.outbox_id for p in claimed if p.message.value != b"waiting"])

    await db.run(setup)
    purged = await db.run(lambda conn: OutboxStore(conn).purge_relayed([topic], 0))

    async with db.read() as conn:
        left = {
            (r["topic"], bytes(r["value"]))
            for r in await conn.fetch("SELECT topic, value FROM outbox WHERE topic = ANY($1::text[])", [topic, other])
        }
    assert purged == 1
    assert left == {(topic, b"waiting"), (other, b"relayed elsewhere")}


class RecordingProducer:
    """Stands in for the Kafka producer (the relay's publishing is covered end to end in tests/e2e):
    here the claim, the rendering of reference rows and the mark run against the real database."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2}

    def create_batch(self) -> RecordedBatch:
        return RecordedBatch()

    async def send_batch(self, batch: RecordedBatch, topic: str, *, partition: int) -> asyncio.Future[None]:
        self.sent += [(topic, key, value) for key, value in batch.messages]
        return self._done()

    async def send(self, topic: str, **message: object) -> asyncio.Future[None]:
        raise AssertionError("every message here fits a batch")

    def _done(self) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class RecordedBatch:
    def __init__(self) -> None:
        self.messages: list[tuple[bytes | None, bytes]] = []

    def append(self, *, key: bytes | None, value: bytes, timestamp: None, headers: object) -> bool:
        self.messages.append((key, value))
        return True


async def test_a_reference_row_is_relayed_as_the_events_of_its_ledger_entries(db: Database) -> None:
    topic = f"t-{uuid.uuid4().hex[:8]}"
    rider = f"rider-feed-{uuid.uuid4().hex[:8]}"
    txs = [
        LedgerTransaction(
            idempotency_key=f"feed:{rider}:{n}",
            kind=EntryKind.ADJUSTMENT,
            rider_id=rider,
            reason=Reason.of("legacy.text", text=f"adjustment {n}"),
            postings=transfer(PROGRAMME_ADJUSTMENTS, rider_available(rider), n),
        )
        for n in (3, 4)
    ]

    async def record(conn: Connection) -> list[int]:
        appended = await LedgerStore(conn).append(txs)
        ids = list(appended.recorded.values())
        await OutboxStore(conn).add([entries_reference(topic, ids), OutboxMessage(topic, b"k", b"plain")])
        return ids

    ids = await db.run(record)
    blind, producer = RecordingProducer(), RecordingProducer()
    unable = OutboxRelay(db, lambda: blind, [topic])
    able = OutboxRelay(db, lambda: producer, [topic], renderers={ENTRIES: render_entries})
    unable._producer = blind
    able._producer = producer

    assert await unable.relay_once() == 1  # the plain message only: it cannot render the reference
    assert await able.relay_once() == 1
    assert await able.relay_once() == 0

    assert [value for _, _, value in blind.sent] == [b"plain"]
    events = [orjson.loads(value) for _, _, value in producer.sent]
    assert [e["data"]["entry_id"] for e in events] == sorted(ids)
    assert [e["data"]["amount"] for e in events] == [3, 4]
    assert {key for _, key, _ in producer.sent} == {rider.encode()}
    assert {e["type"] for e in events} == {"points.adjustment.recorded"}


async def test_the_backlog_counts_the_messages_a_reference_row_stands_for(db: Database) -> None:
    topic, idle = f"t-{uuid.uuid4().hex[:8]}", f"t-{uuid.uuid4().hex[:8]}"
    await db.run(
        lambda conn: OutboxStore(conn).add([entries_reference(topic, [1, 2, 3]), OutboxMessage(topic, b"k", b"one")])
    )

    async with db.read() as conn:
        backlog = await OutboxStore(conn).backlog_by_topic([topic, idle])

    assert backlog[topic].waiting == 4
    assert backlog[idle] == Backlog(0, 0.0, 0)


async def test_parked_rows_are_neither_claimed_nor_waiting_until_unparked(db: Database) -> None:
    topic = f"t-{uuid.uuid4().hex[:8]}"

    async def setup(conn: Connection) -> list[int]:
        store = OutboxStore(conn)
        await store.add([OutboxMessage(topic, None, b"stuck"), OutboxMessage(topic, None, b"fine")])
        claimed = await store.claim([topic], 10)
        stuck = claimed[0].outbox_id
        assert await store.park({stuck: "too large"}) == {stuck: topic}
        assert await store.park({stuck: "again"}) == {}  # parking twice is parking once
        return [p.outbox_id for p in claimed]

    stuck, fine = await db.run(setup)

    async def claim(conn: Connection) -> list[int]:
        return [p.outbox_id for p in await OutboxStore(conn).claim([topic], 10)]

    assert await db.run(claim) == [fine]
    async with db.read() as conn:
        store = OutboxStore(conn)
        backlog = (await store.backlog_by_topic([topic]))[topic]
        (parked,) = await store.parked(topic)
        created = await conn.fetchval("SELECT created_at FROM outbox WHERE outbox_id = $1", fine)
    assert (backlog.waiting, backlog.parked) == (1, 1)
    assert (parked.outbox_id, parked.reason, parked.size) == (stuck, "too large", 5)
    assert parked.created_at <= created  # the oldest age is the waiting row's, not the parked one's

    assert await db.run(lambda conn: OutboxStore(conn).unpark([stuck])) == [stuck]
    assert await db.run(claim) == [stuck, fine]
