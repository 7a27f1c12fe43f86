"""The redemption service's Prometheus metrics, recorded after a use case committed (``record``) and
by the expiry job (``set_open_holds``). Names and labels are read by the alerts and dashboards."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import structlog
from prometheus_client import Counter, Gauge

from services.redemption.domain.catalogue import PARTNER_KINDS
from services.redemption.domain.holds import Changed, Status

log = structlog.get_logger(__name__)

REDEMPTIONS = Counter(
    "warmbee_redemptions_total",
    "Redemption state changes by partner kind and new status: held (a hold placed), confirmed, cancelled, expired",
    ["kind", "status"],
)
POINTS_HELD = Counter("warmbee_points_held_total", "Points held for redemptions", ["kind"])
POINTS_REDEEMED = Counter("warmbee_points_redeemed_total", "Held points redeemed at partners (confirmed)", ["kind"])
POINTS_RELEASED = Counter(
    "warmbee_points_released_total",
    "Held points given back to riders, by reason: cancelled, expired",
    ["kind", "reason"],
)
HOLDS_OPEN = Gauge("warmbee_redemption_holds_open", "Holds waiting for their partner's confirmation", ["kind"])
for _kind in PARTNER_KINDS:  # every series from the start, so rates and alerts see 0 rather than nothing
    POINTS_HELD.labels(_kind)
    POINTS_REDEEMED.labels(_kind)
    for _status in Status:
        REDEMPTIONS.labels(_kind, _status.value)
    for _reason in (Status.CANCELLED, Status.EXPIRED):
        POINTS_RELEASED.labels(_kind, _reason.value)


def record(changes: Iterable[Changed]) -> None:
    """Count and log what a committed unit of work changed."""
    for change in changes:
        kind, r = change.kind, change.redemption
        REDEMPTIONS.labels(kind, r.status.value).inc()
        if r.status is Status.HELD:
            POINTS_HELD.labels(kind).inc(r.cost)
        elif r.status is Status.CONFIRMED:
            POINTS_REDEEMED.labels(kind).inc(r.cost)
        else:
            POINTS_RELEASED.labels(kind, r.status.value).inc(r.cost)
        log.info(
            f"redemption.{r.status.value}",
            redemption_id=r.redemption_id,
            rider_id=r.rider_id,
            partner_id=r.partner_id,
            kind=kind,
            reward_id=r.reward_id,
            cost=r.cost,
        )


def set_open_holds(counts: Mapping[str, int]) -> None:
    """Export the holds waiting for their partner, per partner kind (every replica reports the same)."""
    for kind in {*PARTNER_KINDS, *counts}:
        HOLDS_OPEN.labels(kind).set(counts.get(kind, 0))
