"""Use cases of lapsing points: the lapse job's pages, the warnings 30 days before, what is left overdue.

Exactly once, whoever runs it: a page's due lots are read again under their riders' balance locks (the
locks every ledger writer takes), so a hold or another replica's lapse that committed first is seen, and
each lapse's idempotency key is its lot's (``lapse:{lot_id}``), so no lot lapses twice. A job that was
down catches up: every lot past its day is due, however long ago the day was."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import orjson

from libs.ledger.feed import entries_reference
from libs.ledger.lot_store import LotStore
from libs.ledger.store import LedgerStore
from libs.platform.db import Connection, Database
from libs.platform.outbox_store import OutboxMessage, OutboxStore
from libs.platform.settings import Settings
from services.points.domain.lapsing import lapse_entry, today, warn_until, warning_event

PAGE = 1000


@dataclass(frozen=True, slots=True)
class LapsePage:
    lapsed: int  # lapse entries recorded now
    points: int
    seen: int  # due lots looked at (held ones are passed over until their hold ends)
    last: tuple[date, int] | None  # where the next page starts


async def lapse_page(
    db: Database, settings: Settings, day: date, after: tuple[date, int] = (date.min, 0), limit: int = PAGE
) -> LapsePage:
    """Lapse one page of the lots due on ``day`` (their last good day is before it), in one transaction."""
    async with db.read() as conn:
        due = await LotStore(conn).due(day, after, limit)
    if not due:
        return LapsePage(0, 0, 0, None)

    async def work(conn: Connection) -> tuple[int, int]:
        ledger, lots = LedgerStore(conn), LotStore(conn)
        await ledger.lock_riders([rider for _, rider, _ in due])
        entries = [lapse_entry(lot) for lot in await lots.lapsable([lot_id for lot_id, _, _ in due], day)]
        appended = await ledger.append(entries)
        if appended.recorded:
            await OutboxStore(conn).add(
                [entries_reference(settings.topic_points_ledger, list(appended.recorded.values()))]
            )
        return len(appended.recorded), sum(
            -e.available_delta for e in entries if e.idempotency_key in appended.recorded
        )

    lapsed, points = await db.run(work)
    return LapsePage(lapsed, points, len(due), (due[-1][2], due[-1][0]))


async def lapse_due(db: Database, settings: Settings, now: datetime | None = None) -> tuple[int, int]:
    """Every lot due at ``now`` (default: the clock), page by page: (lapse entries recorded, points)."""
    day = today(now or datetime.now(UTC))
    lapsed = points = 0
    after = (date.min, 0)
    while True:
        page = await lapse_page(db, settings, day, after)
        lapsed, points = lapsed + page.lapsed, points + page.points
        if page.last is None or page.seen < PAGE:
            return lapsed, points
        after = page.last


async def warn_riders(db: Database, settings: Settings, now: datetime | None = None, limit: int = PAGE) -> int:
    """Warn riders of points that lapse within 30 days, once per lot: one ``points.lapsing`` event per
    rider and day, for the notifications service to tell them. Returns how many warnings were sent."""
    at = now or datetime.now(UTC)
    day = today(at)

    async def work(conn: Connection) -> int:
        warnings = await LotStore(conn).warn(day, warn_until(day), limit)
        if warnings:
            await OutboxStore(conn).add([_message(settings, warning_event(w, at)) for w in warnings])
        return len(warnings)

    return await db.run(work)


def _message(settings: Settings, body: dict[str, object]) -> OutboxMessage:
    return OutboxMessage(settings.topic_points_ledger, str(body["subject"]).encode(), orjson.dumps(body))


async def overdue(db: Database, now: datetime | None = None) -> int:
    """How many lots the lapse job has yet to lapse (0 right after a run that did its work)."""
    async with db.read() as conn:
        return await LotStore(conn).overdue(today(now or datetime.now(UTC)))
