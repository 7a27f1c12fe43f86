"""The rider notices' use cases: hear a batch of points-ledger events (before it is acknowledged), make
the notices that have come due (awards summed over the window, warnings of codes about to expire), and
deliver them to the sub-district's gateway."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import groupby

import asyncpg
import structlog

from libs.platform.db import Database
from libs.platform.settings import Settings
from services.notifications import metrics
from services.notifications.domain.kinds import LedgerEvent
from services.notifications.domain.notices import (
    awards_notice,
    hear,
    redemption_notice,
    worth_warning,
)
from services.notifications.handlers import settled_outcomes
from services.notifications.notice_store import NoticeWriter
from services.notifications.sender import Sender

log = structlog.get_logger(__name__)

GATHER_RIDERS = 500  # riders whose awards one step sums
WARN_HOLDS = 500  # warnings one step makes


async def record_notices(db: Database, settings: Settings, events: Sequence[LedgerEvent]) -> int:
    """What a batch of points-ledger events means for the riders' notices, in one transaction: awards to
    sum, holds to warn of; redemptions confirmed or expired, disputes resolved and points about to lapse
    told at once. The caller acknowledges the batch after it commits; the same batch again adds nothing.
    How many notices it added."""
    if settings.gateway_url is None:
        return 0
    now = datetime.now(UTC)
    heard = hear(events, now, timedelta(seconds=settings.notice_stale_after_s))
    if not (heard.awards or heard.holds or heard.ended or heard.notices):
        return 0

    async def work(conn: asyncpg.Connection) -> int:
        writer = NoticeWriter(conn)
        await writer.hear_awards(heard.awards)
        await writer.arm_holds(heard.holds, timedelta(seconds=settings.notice_expiry_warning_s))
        await writer.end_holds(heard.ended)
        holds = await writer.holds([redemption_id for redemption_id, _, _ in heard.told])
        told = [redemption_notice(kind, holds[r], at) for r, kind, at in heard.told if r in holds]
        return len(await writer.add([*told, *heard.notices]))

    added = await db.run(work)
    metrics.RIDER_NOTICES_MADE.inc(added)
    return added


async def make_due_notices(db: Database, settings: Settings) -> int:
    """Sum each rider's awards whose window has passed into one notice, and warn of the codes that
    expire within the warning time; one replica at a time. How many notices it made."""
    if settings.gateway_url is None:
        return 0

    async def work(conn: asyncpg.Connection) -> int:
        writer = NoticeWriter(conn)
        if not await writer.gather():
            return 0
        now = datetime.now(UTC)
        awards = await writer.awards_due(timedelta(seconds=settings.notice_award_window_s), GATHER_RIDERS)
        groups = [list(group) for _, group in groupby(awards, key=lambda a: a.rider_id)]
        # The first award's event id names the notice: each award is told of once, so no two notices share it.
        summed = [awards_notice(f"points.awarded-{group[0].event_id}", group, now) for group in groups]
        added = await writer.add(summed)
        await writer.told(
            {
                added[n.key]: [a.event_id for a in group]
                for n, group in zip(summed, groups, strict=True)
                if n.key in added
            }
        )
        holds = await writer.holds(await writer.holds_to_warn(WARN_HOLDS))
        warnings = [
            redemption_notice("redemption.expiring", hold, now)
            for hold in holds.values()
            if worth_warning(hold.expires_at, now)
        ]
        return len(added) + len(await writer.add(warnings))

    made = await db.run(work)
    metrics.RIDER_NOTICES_MADE.inc(made)
    return made


async def send_due_notices(db: Database, settings: Settings, sender: Sender, limit: int) -> int:
    """Post the notices that are due to the gateway, signed with its secret; record each outcome."""
    url = settings.gateway_url
    if url is None:
        return 0
    lease_s = settings.webhook_timeout_s * 2 + 30
    claimed = await db.run(lambda conn: NoticeWriter(conn).claim_due(url, limit, lease_s))
    if not claimed:
        return 0
    outcomes = await sender.attempt_all([(due, settings.notify_gateway_secret) for due in claimed])
    settled = settled_outcomes(outcomes, settings)
    await db.run(lambda conn: NoticeWriter(conn).settle(settled))
    for (due, outcome), record in zip(outcomes, settled, strict=True):
        if outcome.delivered:
            metrics.RIDER_NOTICES.labels(due.webhook_kind, "delivered").inc()
        elif record.retry_in_s is None:
            metrics.RIDER_NOTICES.labels(due.webhook_kind, "failed").inc()
            log.warning("notice.failed", notice_id=due.delivery_id, key=due.event_id, error=outcome.error)
    return len(claimed)


async def measure_notice_backlog(db: Database) -> None:
    async with db.read() as conn:
        metrics.NOTICE_OLDEST_PENDING.set(await NoticeWriter(conn).oldest_pending_s())
