"""What a points-ledger event is to a subscriber: its kind, and who may hear of it. Pure, no I/O.

Kinds (API.md, "Webhooks and rider notices"): ``points.awarded``, ``points.adjusted``, ``points.lapsed``,
``redemption.held``, ``redemption.confirmed``, ``redemption.cancelled``, ``redemption.expired``,
``event.dead_lettered``, and (added with disputes) ``dispute.opened``, ``dispute.resolved``. An operator
may subscribe to any; a partner only to redemptions, and hears only of its own; a source only to what
became of its own events; a rider to none (riders hear through notices).

``points.lapsing`` (points about to lapse, 30 days ahead) is read too, for the rider notices alone: it is
no webhook kind, so no one may subscribe to it nor hear of it (``points.lapsed`` is the lapse itself)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from libs.platform.auth import Role

KINDS: tuple[str, ...] = (
    "points.awarded",
    "points.adjusted",
    "points.lapsed",
    "redemption.held",
    "redemption.confirmed",
    "redemption.cancelled",
    "redemption.expired",
    "event.dead_lettered",
    "dispute.opened",
    "dispute.resolved",
)
# Read from points-ledger for the rider notices only: no subscription may ask for these.
NOTICE_ONLY_KINDS: frozenset[str] = frozenset({"points.lapsing"})
REDEMPTION_KINDS = frozenset(k for k in KINDS if k.startswith("redemption."))
SOURCE_KINDS = frozenset({"points.awarded", "event.dead_lettered"})
# The kinds each role may subscribe to (a rider: none; riders hear through notices).
MAY_SUBSCRIBE: Mapping[Role, frozenset[str]] = {
    Role.OPERATOR: frozenset(KINDS),
    Role.PARTNER: REDEMPTION_KINDS,
    Role.SOURCE: SOURCE_KINDS,
}

# The ledger entry's kind (the CloudEvent type points.<kind>.recorded) -> the webhook kind.
_OF_ENTRY: Mapping[str, str] = {
    "award": "points.awarded",
    "adjustment": "points.adjusted",
    "lapse": "points.lapsed",
    "hold": "redemption.held",
    "redeem": "redemption.confirmed",
    "release": "redemption.cancelled",
    "expire": "redemption.expired",
}


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    """A points-ledger CloudEvent as the notifications service reads it."""

    event_id: str  # the CloudEvent id: every delivery of it carries it as webhook-id
    kind: str
    rider_id: str
    data: Mapping[str, Any]
    time: str | None = None  # the CloudEvent's time (RFC 3339), as it came

    @property
    def source(self) -> str | None:
        """The source system whose event this entry scored (awards), if any."""
        value = self.data.get("source")
        return value if isinstance(value, str) else None

    @property
    def redemption_id(self) -> str | None:
        """The redemption a redemption event is of (the redemption service's own events name it
        ``redemption_id``; a ledger entry of one would name it ``event_id``)."""
        if self.kind not in REDEMPTION_KINDS:
            return None
        value = self.data.get("redemption_id") or self.data.get("event_id")
        return str(value) if value else None

    @property
    def partner_id(self) -> str | None:
        """The partner of a redemption event, where the event says it."""
        value = self.data.get("partner_id") if self.kind in REDEMPTION_KINDS else None
        return value if isinstance(value, str) else None


def ledger_event(cloud_event: Mapping[str, Any]) -> LedgerEvent | None:
    """The event as a subscriber (or the rider notices) sees it, or None for a type that neither a
    subscriber nor the notices can ask for."""
    type_ = cloud_event.get("type")
    data = cloud_event.get("data")
    if not isinstance(type_, str) or not isinstance(data, Mapping):
        return None
    kind = _kind_of_type(type_)
    if kind is None or not isinstance(cloud_event.get("id"), str) or not isinstance(cloud_event.get("subject"), str):
        return None
    time = cloud_event.get("time")
    return LedgerEvent(cloud_event["id"], kind, cloud_event["subject"], data, time if isinstance(time, str) else None)


def _kind_of_type(type_: str) -> str | None:
    if type_ in KINDS or type_ in NOTICE_ONLY_KINDS:
        return type_
    if type_.startswith("points.") and type_.endswith(".recorded"):
        return _OF_ENTRY.get(type_.removeprefix("points.").removesuffix(".recorded"))
    return None


def may_hear(role: Role, owner_id: str, event: LedgerEvent, partner_id: str | None) -> bool:
    """Whether a subscription of ``role``/``owner_id`` may be told of ``event``; ``partner_id`` is the
    partner of the event's redemption, where it is one. Never of a kind that is not a webhook kind,
    whatever a subscription's row says."""
    if event.kind not in KINDS:
        return False
    match role:
        case Role.OPERATOR:
            return True
        case Role.PARTNER:
            return event.kind in REDEMPTION_KINDS and partner_id == owner_id
        case Role.SOURCE:
            return event.kind in SOURCE_KINDS and event.source == owner_id
        case _:
            return False
