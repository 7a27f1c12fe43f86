"""Scoring: what one event earns under the rules in force at its own time. Pure, no I/O.

``plan(event, book)`` works out once what scoring the event reads: the rules version, the event's claim
(its base award and how it was earned), the rider's counters it needs (once-only, limits, caps) and, for
a hazard report, where an earlier report of the same hazard would be. The caller loads those, then
``score_planned`` clips the claim to the caps and limits left and says why, in the rider's words."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from libs.activity.model import ActivityEvent
from libs.i18n.reasons import Reason
from libs.ledger.model import LotTerms
from services.points.domain.hazards import EarlierReport, HazardSearch, PaidReports, report_of, where_to_look
from services.points.domain.rules import (
    ActivityParticipationRule,
    Caps,
    CategoryRules,
    HonorsRule,
    Period,
    RuleBook,
    Rules,
    VolunteerServiceRule,
)

Data = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Score:
    category: str
    points: int
    reason: Reason
    rule_id: str | None
    rule_version: int | None
    counters: Mapping[str, int] = field(default_factory=dict)  # increments to apply
    paid_in_full_hazard: bool = False  # a hazard report that later reports of the same hazard defer to
    duplicate_hazard: bool = False  # a later report of a hazard already paid in full


@dataclass(frozen=True, slots=True)
class Once:
    """Pays at most once: ``key`` counts how often it has paid."""

    key: str
    already: Reason  # the reason when it has paid before


@dataclass(frozen=True, slots=True)
class Limit:
    """Pays at most ``most`` times per key (e.g. activities per ISO week)."""

    key: str
    most: int
    week: str


@dataclass(frozen=True, slots=True)
class Claim:
    """What an event would earn before caps and limits: ``base`` points, and how."""

    base: int
    earned: Reason
    caps: Caps
    once: tuple[Once, ...] = ()
    limits: tuple[Limit, ...] = ()


def counter_key(category: str, period: Period, local: datetime) -> str:
    match period:
        case "day":
            label = f"{local.year:04d}-{local.month:02d}-{local.day:02d}"  # f-strings: strftime is slower
        case "week":
            iso = local.isocalendar()
            label = f"{iso.year}-W{iso.week:02d}"
        case "month":
            label = f"{local.year:04d}-{local.month:02d}"
        case "year":
            label = f"{local.year:04d}"
    return f"{category}:{period}:{label}"


def claim(event: ActivityEvent, rules: Rules) -> Claim:
    """The base award of an event under one version of the rules, with its once-only limits."""
    claim_of = CLAIMS.get(event.type)
    if claim_of is None:
        raise ValueError(f"no rule for event type {event.type!r}")  # validation lets no other type through
    return claim_of(event.data, event.time.astimezone(rules.zone), rules.categories)


def _volunteer_shift(data: Data, local: datetime, c: CategoryRules) -> Claim:
    return _volunteer(Decimal(repr(data["hours"])), c.volunteer_service)


def _civic_action(data: Data, local: datetime, c: CategoryRules) -> Claim:
    rule = c.civic_practice
    points = rule.points_per_action
    return Claim(points, Reason.of("award.civic_practice", action=str(data["action"]), points=points), rule.caps)


def _activity_attended(data: Data, local: datetime, c: CategoryRules) -> Claim:
    return _activity(str(data["activity_id"]), local, c.activity_participation)


def _hazard_report(data: Data, local: datetime, c: CategoryRules) -> Claim:
    rule = c.grassroots_governance
    severity = str(data["severity"])
    points = getattr(rule.points_by_severity, severity)
    report_id = str(data["report_id"])
    if severity == "rejected":
        reason = Reason.of("award.grassroots_governance.rejected", report_id=report_id, points=points)
    else:
        reason = Reason.of("award.grassroots_governance", report_id=report_id, severity=severity, points=points)
    return Claim(points, reason, rule.caps)


def _safety_training(data: Data, local: datetime, c: CategoryRules) -> Claim:
    safe_riding = c.safe_riding
    points = safe_riding.training
    return Claim(points, Reason.of("award.safe_riding.training", points=points), safe_riding.caps)


def _safety_quiz(data: Data, local: datetime, c: CategoryRules) -> Claim:
    safe_riding, quiz = c.safe_riding, str(data["quiz_id"])
    return Claim(
        safe_riding.quiz,
        Reason.of("award.safe_riding.quiz", quiz_id=quiz, points=safe_riding.quiz),
        safe_riding.caps,
        once=(Once(f"safe_riding:once:quiz:{quiz}", Reason.of("award.already_paid.safe_riding.quiz", quiz_id=quiz)),),
    )


def _clean_month(data: Data, local: datetime, c: CategoryRules) -> Claim:
    safe_riding, month = c.safe_riding, str(data["month"])
    return Claim(
        safe_riding.clean_month,
        Reason.of("award.safe_riding.clean_month", month=month, points=safe_riding.clean_month),
        safe_riding.caps,
        once=(
            Once(
                f"safe_riding:once:clean_month:{month}",
                Reason.of("award.already_paid.safe_riding.clean_month", month=month),
            ),
        ),
    )


def _course(data: Data, local: datetime, c: CategoryRules) -> Claim:
    skills = c.skill_development
    return Claim(skills.course, Reason.of("award.skill_development.course", points=skills.course), skills.caps)


def _certificate(data: Data, local: datetime, c: CategoryRules) -> Claim:
    skills = c.skill_development
    points = skills.certificate
    return Claim(points, Reason.of("award.skill_development.certificate", points=points), skills.caps)


def _outreach_session(data: Data, local: datetime, c: CategoryRules) -> Claim:
    outreach = c.publicity_outreach
    points = outreach.points_per_session
    return Claim(points, Reason.of("award.publicity_outreach", topic=str(data["topic"]), points=points), outreach.caps)


def _honour_awarded(data: Data, local: datetime, c: CategoryRules) -> Claim:
    return _honour(str(data["honor_id"]), str(data["level"]), local, c.honors)


def _volunteer(hours: Decimal, rule: VolunteerServiceRule) -> Claim:
    minutes = rule.counted_in_minutes
    units = int(hours * 60 // minutes)
    shown = _fmt(hours)
    if units == 0:
        if minutes == 30:
            return Claim(0, Reason.of("award.volunteer_service.short", hours=shown), rule.caps)
        return Claim(0, Reason.of("award.volunteer_service.short_units", hours=shown, minutes=minutes), rule.caps)
    per_unit = rule.points_per_unit
    base = units * per_unit
    if minutes == 30:
        reason = Reason.of("award.volunteer_service", hours=shown, units=units, per_unit=per_unit, points=base)
    else:
        reason = Reason.of(
            "award.volunteer_service.units", hours=shown, units=units, minutes=minutes, per_unit=per_unit, points=base
        )
    return Claim(base, reason, rule.caps)


def _activity(activity_id: str, local: datetime, rule: ActivityParticipationRule) -> Claim:
    limits: tuple[Limit, ...] = ()
    if rule.max_activities_per_week is not None:
        iso = local.isocalendar()
        week = f"{iso.year}-W{iso.week:02d}"
        limits = (Limit(f"activity_participation:count:week:{week}", rule.max_activities_per_week, week),)
    return Claim(
        rule.points_per_activity,
        Reason.of("award.activity_participation", activity_id=activity_id, points=rule.points_per_activity),
        rule.caps,
        once=(
            Once(
                f"activity_participation:once:{activity_id}",
                Reason.of("award.already_paid.activity_participation", activity_id=activity_id),
            ),
        ),
        limits=limits,
    )


def _honour(honor_id: str, level: str, local: datetime, rule: HonorsRule) -> Claim:
    points = getattr(rule.points_by_level, level)
    year = local.strftime("%Y")
    return Claim(
        points,
        Reason.of("award.honors", level=level, honor_id=honor_id, points=points),
        rule.caps,
        once=(
            Once(
                f"honors:once:{honor_id}:{year}",
                Reason.of("award.already_paid.honors", honor_id=honor_id, year=int(year)),
            ),
        ),
    )


# What each event type earns before caps and limits: (the event's data, its time in the rules' zone,
# the rules of every category) -> its claim.
CLAIMS: Mapping[str, Callable[[Data, datetime, CategoryRules], Claim]] = {
    "volunteer.shift.completed": _volunteer_shift,
    "civic.action.verified": _civic_action,
    "activity.attended": _activity_attended,
    "hazard.report.verified": _hazard_report,
    "safety.training.completed": _safety_training,
    "safety.quiz.passed": _safety_quiz,
    "safety.month.clean": _clean_month,
    "skill.course.completed": _course,
    "skill.certificate.obtained": _certificate,
    "outreach.session.completed": _outreach_session,
    "honor.awarded": _honour_awarded,
}


@dataclass(frozen=True, slots=True)
class Plan:
    """How one event will be scored, worked out once: the rules in force at its time, its claim, the
    counters it reads (once-only, limits, then caps) and, for a hazard report, where an earlier report
    of the same hazard would be."""

    rules: Rules | None
    claim: Claim | None
    limit_keys: tuple[str, ...] = ()
    cap_keys: tuple[tuple[Period, int, str], ...] = ()  # (period, cap, counter key)
    search: HazardSearch | None = None

    @property
    def counters(self) -> list[str]:
        return [*self.limit_keys, *(key for _, _, key in self.cap_keys)]


def plan(event: ActivityEvent, book: RuleBook) -> Plan:
    rules = book.in_force_at(event.time)
    if rules is None:
        return Plan(None, None)
    c = claim(event, rules)
    local = event.time.astimezone(rules.zone)
    return Plan(
        rules,
        c,
        limit_keys=(*(o.key for o in c.once), *(lim.key for lim in c.limits)),
        cap_keys=tuple((period, cap, counter_key(event.category, period, local)) for period, cap in c.caps.items()),
        search=where_to_look(event, rules),
    )


def score_planned(
    event: ActivityEvent, p: Plan, counters: Mapping[str, int], earlier: EarlierReport | None = None
) -> Score:
    """What the event earns under its plan, given the rider's ``counters`` (those ``plan`` named) and
    ``earlier``, a report of the same hazard already paid in full, if any."""
    rules, c = p.rules, p.claim
    if rules is None or c is None:
        return Score(event.category, 0, Reason.of("award.no_rules"), None, None)
    for once in c.once:
        if counters.get(once.key, 0) > 0:
            return Score(event.category, 0, once.already, rules.rules_id, rules.version)
    for limit in c.limits:
        if counters.get(limit.key, 0) >= limit.most:
            reached = Reason.of("award.weekly_limit", most=limit.most, week=limit.week, base=c.base)
            return Score(event.category, 0, reached, rules.rules_id, rules.version)
    if earlier is not None:
        same = rules.categories.grassroots_governance.same_hazard
        points = min(same.points, c.base)
        later = Reason.of(
            "award.same_hazard",
            radius_m=_number(same.radius_m),
            window_hours=_number(same.window_hours),
            first_report_id=earlier.report_id,
            points=points,
        )
        c = Claim(points, later, c.caps, c.once, c.limits)
    result = _capped(event, counters, rules, c, p.cap_keys)
    paid_in_full = earlier is None and p.search is not None and result.points > 0
    return Score(
        result.category,
        result.points,
        result.reason,
        result.rule_id,
        result.rule_version,
        result.counters,
        paid_in_full,
        earlier is not None,
    )


def _capped(
    event: ActivityEvent,
    counters: Mapping[str, int],
    rules: Rules,
    c: Claim,
    cap_keys: Sequence[tuple[Period, int, str]],
) -> Score:
    """Clip the base to what is left below every cap; the smallest remainder wins and is named."""
    points, binding = c.base, None
    for period, cap, key in cap_keys:
        left = max(cap - counters.get(key, 0), 0)
        if left < points:
            points, binding = left, (period, cap)
    if binding is None:
        reason = c.earned
    else:
        period, cap = binding
        if points == 0:
            reason = Reason.of("award.cap_reached", period=period, cap=cap, category=event.category, base=c.base)
        else:
            reason = Reason.of(
                "award.cap_clipped", period=period, cap=cap, category=event.category, points=points, base=c.base
            )
    increments: dict[str, int] = {}
    if points > 0:  # a limit is used up only by an event that paid something
        increments = {key: points for _, _, key in cap_keys}
        increments |= {o.key: 1 for o in c.once} | {lim.key: 1 for lim in c.limits}
    return Score(event.category, points, reason, rules.rules_id, rules.version, increments)


def _number(value: float) -> int | float:
    """A rules value as the sentence shows it: 50, not 50.0."""
    return int(value) if float(value).is_integer() else value


def _fmt(value: Decimal) -> str:
    return format(value.normalize(), "f")


def award_lot(rules: Rules | None, event: ActivityEvent, points: int) -> LotTerms | None:
    """The lot an award of ``points`` opens: fixed by the version in force at the event's own time (so a
    replay fixes the same last good day), none without a lapse policy or without points."""
    return rules.lot_terms(event.time) if rules is not None and points > 0 else None


CounterKey = tuple[str, str]  # (rider_id, counter)


@dataclass(slots=True)
class Tally:
    """What scoring reads and leaves behind, event after event: each rider's counters and the hazard
    reports paid in full, in the order scored. The live scorer fills one from the database for a batch
    and writes back what changed (``increments``, ``paid_now``); a replay keeps one in memory from the
    first event to the last (``keep_changes=False``: nothing to write back). Both score through ``score``,
    so the two cannot drift apart."""

    counters: dict[CounterKey, int] = field(default_factory=dict)
    paid: PaidReports = field(default_factory=PaidReports)
    keep_changes: bool = True
    increments: dict[CounterKey, int] = field(default_factory=dict)
    paid_now: list[tuple[ActivityEvent, EarlierReport]] = field(default_factory=list)

    def score(self, event: ActivityEvent, p: Plan) -> Score:
        """Score ``event`` under its plan against what the events before it left, and count it in."""
        rider = event.rider_id
        view = {c: self.counters.get((rider, c), 0) for c in p.counters}
        earlier = self.paid.first_same_hazard(event, p.search) if p.search is not None else None
        result = score_planned(event, p, view, earlier)
        if result.paid_in_full_hazard:
            report = report_of(event)
            self.paid.add(report)
            if self.keep_changes:
                self.paid_now.append((event, report))
        for counter, amount in result.counters.items():
            key = (rider, counter)
            self.counters[key] = self.counters.get(key, 0) + amount
            if self.keep_changes:
                self.increments[key] = self.increments.get(key, 0) + amount
        return result
