"""What a lapse is in the ledger, and what a rider is warned of before one. Pure, no I/O.

A lot lapses the day after its last good day (in Asia/Shanghai, as the rules count days), once: one
``lapse`` entry of what is left of it, keyed by the lot. The rider is warned ``WARN_DAYS`` before."""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from libs.i18n.reasons import Reason
from libs.ledger.keys import PROGRAMME_LAPSED, lapse_key, rider_available
from libs.ledger.lot_store import DueLot, Warning
from libs.ledger.model import EntryKind, LedgerTransaction, transfer

ZONE = ZoneInfo("Asia/Shanghai")
SOURCE = "warmbee/lapsing"
WARN_DAYS = 30


def today(now: datetime) -> date:
    """The programme's day at ``now``: a lot whose last good day is before it lapses."""
    return now.astimezone(ZONE).date()


def warn_until(day: date) -> date:
    return day + timedelta(days=WARN_DAYS)


def lapse_entry(lot: DueLot) -> LedgerTransaction:
    """The one lapse of a lot: what is left of it, back to the programme, naming the award it came from."""
    return LedgerTransaction(
        idempotency_key=lapse_key(lot.lot_id),
        kind=EntryKind.LAPSE,
        rider_id=lot.rider_id,
        reason=Reason.of(
            "lapse",
            points=lot.remaining,
            entry_id=lot.lot_id,
            awarded_on=lot.awarded_on.isoformat(),
            lapses_on=lot.lapses_on.isoformat(),
        ),
        postings=transfer(rider_available(lot.rider_id), PROGRAMME_LAPSED, lot.remaining),
        category=lot.category,
        source=SOURCE,
        event_id=str(lot.lot_id),
        details={"lot_id": lot.lot_id, "award_entry_id": lot.lot_id, "lapses_on": lot.lapses_on.isoformat()},
        lot_id=lot.lot_id,
    )


def warning_event(warning: Warning, at: datetime) -> dict[str, Any]:
    """The ``points-ledger`` CloudEvent ``points.lapsing``: a rider's points that lapse after a day. Its id
    is fixed by the lots it warns of, so a relay's retry is the same event and a later lot a new one."""
    digest = hashlib.sha256(f"{warning.rider_id}\n{warning.on}\n{warning.lot_ids}".encode()).hexdigest()[:32]
    return {
        "specversion": "1.0",
        "id": f"lapsing-{digest}",
        "source": "warmbee/points",
        "type": "points.lapsing",
        "subject": warning.rider_id,
        "time": at,
        "datacontenttype": "application/json",
        "data": {
            "rider_id": warning.rider_id,
            "on": warning.on.isoformat(),
            "points": warning.points,
            "lot_ids": list(warning.lot_ids),
        },
    }
