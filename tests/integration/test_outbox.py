"""The outbox keeps what is not relayed yet, and forgets what was relayed long enough ago."""

from __future__ import annotations

import uuid

from libs.platform.db import Connection, Database
from libs.platform.outbox_store import OutboxMessage, OutboxStore


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
