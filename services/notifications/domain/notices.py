"""Rider notices: what a rider is told, in Chinese with English beside it, and when. Pure, no I/O.

Six kinds (API.md, "Webhooks and rider notices"): ``points.awarded`` sums a rider's awards heard within a
few minutes into one notice; ``redemption.confirmed`` and ``redemption.expired`` tell of a code used or
lapsed; ``redemption.expiring`` warns once, an hour before a held code expires; ``dispute.resolved`` tells
a rider the answer to its dispute (申诉), and the points it moved; ``points.lapsing`` warns a rider of
points that lapse within 30 days (积分有效期), once per ``points.lapsing`` event of the points worker's lapse
job. A notice is the gateway's JSON ``{"rider_id", "kind", "text", "text_en", "at"}``; its key, sent as
``webhook-id``, is the same on every attempt, so the gateway sends the rider one message however often it
is posted.

Events older than ``stale_after`` when heard (a new deployment reading the topic from its start, a
worker back after a long outage) make no notice: a rider is not told today of last month's points."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from babel.dates import format_skeleton

from libs.i18n.language import Language, locale, long_date, translations
from libs.i18n.reasons import term
from services.notifications.domain.kinds import LedgerEvent

NOTICE_KINDS: tuple[str, ...] = (
    "points.awarded",
    "redemption.confirmed",
    "redemption.expiring",
    "redemption.expired",
    "dispute.resolved",
    "points.lapsing",
)
PROGRAMME_ZONE = ZoneInfo("Asia/Shanghai")  # the riders' clock, whatever the server's
_LIST_SEPARATOR: Mapping[Language, str] = {"zh": "、", "en": ", "}
_CLOCK_SEPARATOR: Mapping[Language, str] = {"zh": " ", "en": ", "}


def N_(message: str) -> str:
    """Marks an English sentence for ``make i18n-notices``."""
    return message


def Nn_(singular: str, plural: str) -> tuple[str, str]:
    """Marks an English sentence and its plural for ``make i18n-notices``."""
    return singular, plural


AWARDED_FOR = Nn_("You earned {points} point for {category}.", "You earned {points} points for {category}.")
AWARDED_IN = Nn_("You earned {points} point: {parts}.", "You earned {points} points: {parts}.")
CONFIRMED = Nn_(
    "Your redemption of “{title}” at {partner} is confirmed: {cost} point spent.",
    "Your redemption of “{title}” at {partner} is confirmed: {cost} points spent.",
)
EXPIRING = Nn_(
    "Your code for “{title}” at {partner} expires at {time}: use it before then, or the {cost} point "
    "comes back to you.",
    "Your code for “{title}” at {partner} expires at {time}: use it before then, or the {cost} points "
    "come back to you.",
)
EXPIRED = Nn_(
    "Your code for “{title}” at {partner} has expired: the {cost} point is back in your balance.",
    "Your code for “{title}” at {partner} has expired: the {cost} points are back in your balance.",
)
UPHELD = Nn_(
    "Your dispute of entry {entry_id} was upheld: {amount} point. The operator's reply: {reply}",
    "Your dispute of entry {entry_id} was upheld: {amount} points. The operator's reply: {reply}",
)
LAPSING = Nn_(
    "{points} point of yours lapses after {day}: use it before then.",
    "{points} points of yours lapse after {day}: use them before then.",
)
REJECTED = N_("Your dispute of entry {entry_id} was not upheld; no points changed. The operator's reply: {reply}")
_OF_KIND: Mapping[str, tuple[str, str]] = {
    "redemption.confirmed": CONFIRMED,
    "redemption.expiring": EXPIRING,
    "redemption.expired": EXPIRED,
}


@dataclass(frozen=True, slots=True)
class Notice:
    key: str  # webhook-id
    rider_id: str
    kind: str
    text: str  # Chinese
    text_en: str
    at: datetime

    def body(self) -> str:
        """The JSON the gateway receives, exactly as signed."""
        at = self.at.astimezone(UTC).isoformat().replace("+00:00", "Z")
        fields = {"rider_id": self.rider_id, "kind": self.kind, "text": self.text, "text_en": self.text_en, "at": at}
        return orjson.dumps(fields).decode()


@dataclass(frozen=True, slots=True)
class Award:
    """One award a notice sums."""

    event_id: str
    rider_id: str
    category: str | None
    points: int


@dataclass(frozen=True, slots=True)
class Hold:
    """A redemption as its notices name it."""

    redemption_id: str
    rider_id: str
    cost: int
    expires_at: datetime
    title: str  # the reward's title (its id where the catalogue has none)
    partner: str  # the partner's name (its id where the catalogue has none)


@dataclass(slots=True)
class Heard:
    """What a batch of points-ledger events asks of the notices."""

    awards: list[Award] = field(default_factory=list)
    holds: list[tuple[str, str, datetime]] = field(default_factory=list)  # (redemption_id, rider_id, expires_at)
    ended: list[str] = field(default_factory=list)  # redemptions whose code is no longer open
    told: list[tuple[str, str, datetime]] = field(default_factory=list)  # (redemption_id, kind, at) to tell of
    notices: list[Notice] = field(default_factory=list)  # told at once, from the event alone (disputes, lapsing)


def hear(events: Iterable[LedgerEvent], now: datetime, stale_after: timedelta) -> Heard:
    """Sort a batch's events into awards to sum, holds to time and redemptions to tell of."""
    heard = Heard()
    for event in events:
        at = happened_at(event, now)
        fresh = now - at <= stale_after
        if event.kind == "points.awarded":
            points = event.data.get("amount")
            if fresh and isinstance(points, int) and points > 0:
                category = event.data.get("category")
                heard.awards.append(
                    Award(event.event_id, event.rider_id, category if isinstance(category, str) else None, points)
                )
        elif event.kind == "dispute.resolved":
            if fresh and (notice := dispute_notice(event, at)) is not None:
                heard.notices.append(notice)
        elif event.kind == "points.lapsing":
            # Heard late (the notifications were down a while), a warning still holds while its day is ahead:
            # the points worker warns of a lot once, so a warning dropped as stale would never come again.
            if (notice := lapsing_notice(event, at)) is not None and _day_ahead(event, now):
                heard.notices.append(notice)
        elif event.kind.startswith("redemption.") and (redemption_id := event.redemption_id):
            if event.kind == "redemption.held":
                expires_at = _instant(event.data.get("expires_at"))
                if expires_at is not None and expires_at > now:
                    heard.holds.append((redemption_id, event.rider_id, expires_at))
                continue
            heard.ended.append(redemption_id)
            if fresh and event.kind in _OF_KIND:
                heard.told.append((redemption_id, event.kind, at))
    return heard


def happened_at(event: LedgerEvent, now: datetime) -> datetime:
    """The event's time; ``now`` when it has none that reads (the ledger's own events always have one)."""
    return _instant(event.time) or now


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        return None
    return instant if instant.tzinfo is not None else None


def warn_at(expires_at: datetime, warn_before: timedelta) -> datetime:
    """When a hold's rider is warned: ``warn_before`` ahead of its expiry (at once for a shorter hold)."""
    return expires_at - warn_before


def worth_warning(expires_at: datetime, now: datetime) -> bool:
    """A warning that would arrive after the code expired says nothing the expiry notice will not."""
    return expires_at - now > timedelta(seconds=1)


def awards_notice(key: str, awards: Sequence[Award], at: datetime) -> Notice:
    """One notice of a rider's awards, summed by category (the largest first)."""
    if not awards or len({a.rider_id for a in awards}) != 1:
        raise ValueError("an awards notice sums the awards of one rider, at least one")
    by_category: dict[str | None, int] = defaultdict(int)
    for award in awards:
        by_category[award.category] += award.points
    total = sum(by_category.values())
    ranked = sorted(by_category.items(), key=lambda item: (-item[1], item[0] or ""))
    return Notice(
        key,
        awards[0].rider_id,
        "points.awarded",
        _awarded_text(total, ranked, "zh"),
        _awarded_text(total, ranked, "en"),
        at,
    )


def _awarded_text(total: int, ranked: Sequence[tuple[str | None, int]], language: Language) -> str:
    t = translations("notices", language)
    names = [(term("category", category, language) if category else "", points) for category, points in ranked]
    if len(names) == 1 and names[0][0]:
        return t.ngettext(*AWARDED_FOR, total).format(points=total, category=names[0][0])
    parts = _LIST_SEPARATOR[language].join(f"{name} {points}".strip() for name, points in names)
    return t.ngettext(*AWARDED_IN, total).format(points=total, parts=parts)


def redemption_notice(kind: str, hold: Hold, at: datetime) -> Notice:
    """A notice of a redemption: confirmed, expiring within the hour, or expired."""
    template = _OF_KIND.get(kind)
    if template is None:
        raise ValueError(f"no redemption notice of kind {kind!r}; the kinds are {sorted(_OF_KIND)}")

    def text(language: Language) -> str:
        words = {
            "title": hold.title,
            "partner": hold.partner,
            "cost": hold.cost,
            "time": _clock(hold.expires_at, language),
        }
        return translations("notices", language).ngettext(*template, hold.cost).format_map(words)

    return Notice(f"{kind}-{hold.redemption_id}", hold.rider_id, kind, text("zh"), text("en"), at)


def _clock(instant: datetime, language: Language) -> str:
    """12月2日 20:15 / Dec 2, 20:15, on the programme's clock."""
    local = instant.astimezone(PROGRAMME_ZONE)
    day = format_skeleton("MMMd", local, locale=locale(language))
    return f"{day}{_CLOCK_SEPARATOR[language]}{local:%H:%M}"


def dispute_notice(event: LedgerEvent, at: datetime) -> Notice | None:
    """A notice of a dispute resolved: upheld with the points it moved, or not, and the operator's reply."""
    data = event.data
    dispute_id, entry_id, reply = data.get("dispute_id"), data.get("entry_id"), data.get("reply")
    if not (isinstance(dispute_id, str) and isinstance(entry_id, int) and isinstance(reply, str)):
        return None
    amount = data.get("amount")
    upheld = data.get("outcome") == "upheld" and isinstance(amount, int)

    def text(language: Language) -> str:
        t = translations("notices", language)
        if upheld:
            assert isinstance(amount, int)
            shown = f"{amount:+d}"
            return t.ngettext(*UPHELD, abs(amount)).format(entry_id=entry_id, amount=shown, reply=reply)
        return t.gettext(REJECTED).format(entry_id=entry_id, reply=reply)

    return Notice(f"dispute.resolved-{dispute_id}", event.rider_id, "dispute.resolved", text("zh"), text("en"), at)


def _day_ahead(event: LedgerEvent, now: datetime) -> bool:
    """Whether a warning's last good day is today or later on the programme's clock."""
    on = _day(event.data.get("on"))
    return on is not None and on >= now.astimezone(PROGRAMME_ZONE).date()


def lapsing_notice(event: LedgerEvent, at: datetime) -> Notice | None:
    """A warning of a rider's points that lapse after a day (the last day they are good for, on the
    programme's clock). Its key is the event's: the points worker sends one event per rider, day and lots
    warned of, so a warning read twice is one notice, and another day's (or a later lot's) another."""
    data = event.data
    points, on = data.get("points"), _day(data.get("on"))
    if not (isinstance(points, int) and not isinstance(points, bool) and points > 0 and on is not None):
        return None

    def text(language: Language) -> str:
        words = {"points": points, "day": long_date(on, language)}
        return translations("notices", language).ngettext(*LAPSING, points).format_map(words)

    return Notice(f"points.lapsing-{event.event_id}", event.rider_id, "points.lapsing", text("zh"), text("en"), at)


def _day(value: Any) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None
