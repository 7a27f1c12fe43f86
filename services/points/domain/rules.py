"""Rules: a versioned document of per-category parameters, and the pure scoring function.

``score(event, counters, book)`` decides what one event earns from the event, the rider's counters
(points per cap period, once-only and count limits) and the rules in force at the event's own time.
No I/O: the caller loads the counters named by ``counters_needed`` and, for a hazard report, looks up
an earlier report of the same hazard within ``hazard_search``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from libs.activity.model import ActivityEvent
from libs.platform.errors import DomainError

Period = Literal["day", "week", "month", "year"]
PERIODS: tuple[Period, ...] = ("day", "week", "month", "year")
PERIOD_WORDS: Mapping[str, str] = {"day": "daily", "week": "weekly", "month": "monthly", "year": "yearly"}
Points = Field(ge=0, le=100_000)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Caps(_Strict):
    """Most points a rider earns in one category per calendar period (absent: no cap)."""

    day: int | None = Field(default=None, gt=0)
    week: int | None = Field(default=None, gt=0)
    month: int | None = Field(default=None, gt=0)
    year: int | None = Field(default=None, gt=0)

    def items(self) -> list[tuple[Period, int]]:
        return [(p, v) for p in PERIODS if (v := getattr(self, p)) is not None]


class _CategoryRule(_Strict):
    caps: Caps = Caps()


class VolunteerServiceRule(_CategoryRule):
    points_per_hour: int = Field(gt=0, le=10_000)
    counted_in_minutes: int = Field(default=30, gt=0, le=60)

    @model_validator(mode="after")
    def _whole_points_per_unit(self) -> VolunteerServiceRule:
        if (self.points_per_hour * self.counted_in_minutes) % 60:
            raise ValueError("points_per_hour × counted_in_minutes must be a multiple of 60 (whole points per unit)")
        return self

    @property
    def points_per_unit(self) -> int:
        return self.points_per_hour * self.counted_in_minutes // 60


class CivicPracticeRule(_CategoryRule):
    points_per_action: int = Points


class ActivityParticipationRule(_CategoryRule):
    points_per_activity: int = Points
    max_activities_per_week: int | None = Field(default=None, gt=0)


class PointsBySeverity(_Strict):
    low: int = Points
    medium: int = Points
    high: int = Points
    rejected: int = Points


class SameHazard(_Strict):
    """Reports within ``radius_m`` and ``window_hours`` (by ``reported_at``) of one already paid in full."""

    radius_m: float = Field(gt=0, le=5_000)
    window_hours: float = Field(gt=0, le=24 * 30)
    points: int = Points


class GrassrootsGovernanceRule(_CategoryRule):
    points_by_severity: PointsBySeverity
    same_hazard: SameHazard


class SafeRidingRule(_CategoryRule):
    training: int = Points
    quiz: int = Points  # once per quiz
    clean_month: int = Points  # once per month


class SkillDevelopmentRule(_CategoryRule):
    course: int = Points
    certificate: int = Points


class PublicityOutreachRule(_CategoryRule):
    points_per_session: int = Points


class PointsByLevel(_Strict):
    district: int = Points
    street: int = Points
    community: int = Points


class HonorsRule(_CategoryRule):
    points_by_level: PointsByLevel  # once per honour per year


class CategoryRules(_Strict):
    """Every category has rules in every version: a file that leaves one out is refused."""

    volunteer_service: VolunteerServiceRule
    civic_practice: CivicPracticeRule
    activity_participation: ActivityParticipationRule
    grassroots_governance: GrassrootsGovernanceRule
    safe_riding: SafeRidingRule
    skill_development: SkillDevelopmentRule
    publicity_outreach: PublicityOutreachRule
    honors: HonorsRule


class Rules(_Strict):
    rules_id: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    version: int = Field(gt=0)
    effective_from: AwareDatetime
    timezone: str = "Asia/Shanghai"
    description: str | None = None
    categories: CategoryRules

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Asia/Shanghai") from exc
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class NoRulesInForce(DomainError):
    """No published version is in force yet."""

    kind = "no-rules"


class RuleBook:
    """Every published version; an event is scored by the version in force at its time."""

    def __init__(self, versions: Sequence[Rules]) -> None:
        self._versions = sorted(versions, key=lambda r: (r.effective_from, r.version))

    def in_force_at(self, when: datetime) -> Rules | None:
        current = None
        for rules in self._versions:
            if rules.effective_from <= when:
                current = rules
            else:
                break
        return current

    @property
    def versions(self) -> Sequence[Rules]:
        return tuple(self._versions)


@dataclass(frozen=True, slots=True)
class Score:
    category: str
    points: int
    reason: str
    rule_id: str | None
    rule_version: int | None
    counters: Mapping[str, int] = field(default_factory=dict)  # increments to apply
    paid_in_full_hazard: bool = False  # a hazard report that later reports of the same hazard defer to
    duplicate_hazard: bool = False  # a later report of a hazard already paid in full


@dataclass(frozen=True, slots=True)
class Once:
    """Pays at most once: ``key`` counts how often it has paid."""

    key: str
    already: str  # the reason when it has paid before


@dataclass(frozen=True, slots=True)
class Limit:
    """Pays at most ``most`` times per key (e.g. activities per ISO week)."""

    key: str
    most: int
    reached: str


@dataclass(frozen=True, slots=True)
class Claim:
    """What an event would earn before caps and limits: ``base`` points, and how."""

    base: int
    earned: str
    caps: Caps
    once: tuple[Once, ...] = ()
    limits: tuple[Limit, ...] = ()


@dataclass(frozen=True, slots=True)
class HazardSearch:
    """Where an earlier report of the same hazard would be: a box around the report, a time window."""

    lat_min: float
    lat_max: float
    lon_min: float
    lon_max: float
    reported_from: datetime
    reported_to: datetime
    radius_m: float


@dataclass(frozen=True, slots=True)
class EarlierReport:
    """A report already paid in full, as the caller found it."""

    report_id: str
    rider_id: str
    lat: float
    lon: float
    reported_at: datetime


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
    c, data, local = rules.categories, event.data, event.time.astimezone(rules.zone)
    match event.type:
        case "volunteer.shift.completed":
            return _volunteer(Decimal(repr(data["hours"])), c.volunteer_service)
        case "civic.action.verified":
            rule = c.civic_practice
            action = str(data["action"]).replace("_", " ")
            return Claim(
                rule.points_per_action, f"verified civic action ({action}): {rule.points_per_action} points", rule.caps
            )
        case "activity.attended":
            return _activity(str(data["activity_id"]), local, c.activity_participation)
        case "hazard.report.verified":
            severity = str(data["severity"])
            points = getattr(c.grassroots_governance.points_by_severity, severity)
            text = "rejected by the grid office" if severity == "rejected" else f"verified, severity {severity}"
            return Claim(
                points, f"hazard report {data['report_id']} {text}: {points} points", c.grassroots_governance.caps
            )
        case "safety.training.completed":
            rule_sr = c.safe_riding
            return Claim(rule_sr.training, f"safety training completed: {rule_sr.training} points", rule_sr.caps)
        case "safety.quiz.passed":
            rule_sr = c.safe_riding
            quiz = str(data["quiz_id"])
            return Claim(
                rule_sr.quiz,
                f"safety quiz {quiz} passed: {rule_sr.quiz} points",
                rule_sr.caps,
                once=(Once(f"safe_riding:once:quiz:{quiz}", f"safety quiz {quiz} was already rewarded"),),
            )
        case "safety.month.clean":
            rule_sr = c.safe_riding
            month = str(data["month"])
            return Claim(
                rule_sr.clean_month,
                f"no traffic violation in {month}: {rule_sr.clean_month} points",
                rule_sr.caps,
                once=(Once(f"safe_riding:once:clean_month:{month}", f"the clean month {month} was already rewarded"),),
            )
        case "skill.course.completed":
            rule_sd = c.skill_development
            return Claim(rule_sd.course, f"course completed: {rule_sd.course} points", rule_sd.caps)
        case "skill.certificate.obtained":
            rule_sd = c.skill_development
            return Claim(rule_sd.certificate, f"certificate obtained: {rule_sd.certificate} points", rule_sd.caps)
        case "outreach.session.completed":
            rule_po = c.publicity_outreach
            topic = {"anti_fraud": "anti-fraud", "health": "health"}.get(str(data["topic"]), "outreach")
            return Claim(
                rule_po.points_per_session, f"{topic} session given: {rule_po.points_per_session} points", rule_po.caps
            )
        case "honor.awarded":
            return _honour(str(data["honor_id"]), str(data["level"]), local, c.honors)
    raise ValueError(f"no rule for event type {event.type!r}")  # validation lets no other type through


def _volunteer(hours: Decimal, rule: VolunteerServiceRule) -> Claim:
    units = int(hours * 60 // rule.counted_in_minutes)
    unit = "half-hour" if rule.counted_in_minutes == 30 else f"{rule.counted_in_minutes}-minute unit"
    if units == 0:
        return Claim(0, f"{_fmt(hours)} verified hours is less than one whole {unit}: 0 points", rule.caps)
    plural = "" if units == 1 else "s"
    base = units * rule.points_per_unit
    return Claim(
        base,
        f"{_fmt(hours)} verified hours = {units} whole {unit}{plural} × {rule.points_per_unit} points = {base} points",
        rule.caps,
    )


def _activity(activity_id: str, local: datetime, rule: ActivityParticipationRule) -> Claim:
    limits: tuple[Limit, ...] = ()
    if rule.max_activities_per_week is not None:
        iso = local.isocalendar()
        week = f"{iso.year}-W{iso.week:02d}"
        limits = (
            Limit(
                f"activity_participation:count:week:{week}",
                rule.max_activities_per_week,
                f"weekly limit of {rule.max_activities_per_week} activities reached in {week}",
            ),
        )
    return Claim(
        rule.points_per_activity,
        f"activity {activity_id} attended: {rule.points_per_activity} points",
        rule.caps,
        once=(Once(f"activity_participation:once:{activity_id}", f"activity {activity_id} was already rewarded"),),
        limits=limits,
    )


def _honour(honor_id: str, level: str, local: datetime, rule: HonorsRule) -> Claim:
    points = getattr(rule.points_by_level, level)
    year = local.strftime("%Y")
    return Claim(
        points,
        f"{level} honour {honor_id}: {points} points",
        rule.caps,
        once=(Once(f"honors:once:{honor_id}:{year}", f"honour {honor_id} was already rewarded in {year}"),),
    )


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
        search=_hazard_search(event, rules),
    )


def counters_needed(event: ActivityEvent, book: RuleBook) -> list[str]:
    """The counter keys ``score`` will read for this event, so the caller can load them first."""
    return plan(event, book).counters


def hazard_search(event: ActivityEvent, book: RuleBook) -> HazardSearch | None:
    """Where to look for an earlier report of the same hazard; None when the event needs no look."""
    rules = book.in_force_at(event.time)
    return _hazard_search(event, rules) if rules is not None else None


def _hazard_search(event: ActivityEvent, rules: Rules) -> HazardSearch | None:
    if event.type != "hazard.report.verified" or event.data["severity"] == "rejected":
        return None
    same = rules.categories.grassroots_governance.same_hazard
    lat, lon = float(event.data["lat"]), float(event.data["lon"])
    reported_at = datetime.fromisoformat(str(event.data["reported_at"]).upper())
    margin = 1.01  # the box must contain every point within the radius, whatever the rounding
    dlat = margin * same.radius_m / METRES_PER_DEGREE
    dlon = margin * same.radius_m / (METRES_PER_DEGREE * max(math.cos(math.radians(min(abs(lat), 89.0))), 0.01))
    window = timedelta(hours=same.window_hours)
    return HazardSearch(
        lat - dlat, lat + dlat, lon - dlon, lon + dlon, reported_at - window, reported_at + window, same.radius_m
    )


METRES_PER_DEGREE = 111_320.0
EARTH_RADIUS_M = 6_371_008.8


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def same_hazard(
    event: ActivityEvent, search: HazardSearch, candidates: Sequence[EarlierReport]
) -> EarlierReport | None:
    """The first candidate that really is within the radius and window (the box over-approximates)."""
    lat, lon = float(event.data["lat"]), float(event.data["lon"])
    for report in candidates:
        in_box = search.lat_min <= report.lat <= search.lat_max and search.lon_min <= report.lon <= search.lon_max
        within_time = search.reported_from <= report.reported_at <= search.reported_to
        if in_box and within_time and distance_m(lat, lon, report.lat, report.lon) <= search.radius_m:
            return report
    return None


def _grid_side(radius_m: float) -> float:
    return 2 * radius_m / METRES_PER_DEGREE  # degrees, in both directions


def _box_cells(search: HazardSearch) -> list[tuple[int, int]]:
    side = _grid_side(search.radius_m)
    rows = range(math.floor(search.lat_min / side), math.floor(search.lat_max / side) + 1)
    cols = range(math.floor(search.lon_min / side), math.floor(search.lon_max / side) + 1)
    return [(r, c) for r in rows for c in cols]


class PaidReports:
    """Reports paid in full, in the order they were paid, found by grid cell: a batch checks each new
    report against the few reports near it rather than against all of them."""

    def __init__(self, reports: Iterable[EarlierReport] = ()) -> None:
        self._reports: list[EarlierReport] = []
        self._grids: dict[float, dict[tuple[int, int], list[int]]] = {}  # by radius: cell -> positions
        for report in reports:
            self.add(report)

    def add(self, report: EarlierReport) -> None:
        self._reports.append(report)
        for radius_m, grid in self._grids.items():
            grid.setdefault(self._cell(report, radius_m), []).append(len(self._reports) - 1)

    def first_same_hazard(self, event: ActivityEvent, search: HazardSearch) -> EarlierReport | None:
        """What ``same_hazard`` finds among all the reports, looking only in the search box's cells."""
        grid = self._grids.get(search.radius_m)
        if grid is None:
            grid = self._grids[search.radius_m] = {}
            for position, report in enumerate(self._reports):
                grid.setdefault(self._cell(report, search.radius_m), []).append(position)
        near = sorted(p for cell in _box_cells(search) for p in grid.get(cell, ()))
        return same_hazard(event, search, [self._reports[p] for p in near])

    @staticmethod
    def _cell(report: EarlierReport, radius_m: float) -> tuple[int, int]:
        side = _grid_side(radius_m)
        return (math.floor(report.lat / side), math.floor(report.lon / side))


def hazard_cells(search: HazardSearch) -> list[str]:
    """Lock names of the grid cells a report's search box touches. The grid depends only on the radius,
    and a report lies in its own box, so two reports of the same hazard always share a cell: workers
    scoring them at the same moment take turns."""
    return sorted(f"hazard-cell:{search.radius_m:g}:{r}:{c}" for r, c in _box_cells(search))


def score(
    event: ActivityEvent, counters: Mapping[str, int], book: RuleBook, earlier: EarlierReport | None = None
) -> Score:
    """What the event earns. ``earlier`` is a report of the same hazard already paid in full, if any."""
    return score_planned(event, plan(event, book), counters, earlier)


def score_planned(
    event: ActivityEvent, p: Plan, counters: Mapping[str, int], earlier: EarlierReport | None = None
) -> Score:
    """``score`` with the event's plan worked out already (the worker plans a batch once)."""
    rules, c = p.rules, p.claim
    if rules is None or c is None:
        return Score(event.category, 0, "no rules were in force at the time of this activity", None, None)
    for once in c.once:
        if counters.get(once.key, 0) > 0:
            return Score(event.category, 0, f"{once.already}: 0 points", rules.rules_id, rules.version)
    for limit in c.limits:
        if counters.get(limit.key, 0) >= limit.most:
            return Score(event.category, 0, f"{limit.reached}: 0 of {c.base} awarded", rules.rules_id, rules.version)
    if earlier is not None:
        same = rules.categories.grassroots_governance.same_hazard
        c = Claim(
            min(same.points, c.base),
            f"the same hazard (within {same.radius_m:g} m and {same.window_hours:g} h) was first reported in report "
            f"{earlier.report_id}, paid in full: this later report earns {_points(min(same.points, c.base))}",
            c.caps,
            c.once,
            c.limits,
        )
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
    label = event.category.replace("_", " ")
    if binding is None:
        reason = c.earned
    else:
        period, cap = binding
        state = "already reached" if points == 0 else "reached"
        reason = f"{PERIOD_WORDS[period]} cap of {cap} points for {label} {state}: {points} of {c.base} awarded"
    increments: dict[str, int] = {}
    if points > 0:  # a limit is used up only by an event that paid something
        increments = {key: points for _, _, key in cap_keys}
        increments |= {o.key: 1 for o in c.once} | {lim.key: 1 for lim in c.limits}
    return Score(event.category, points, reason, rules.rules_id, rules.version, increments)


def _points(n: int) -> str:
    return f"{n} point" if n == 1 else f"{n} points"


def _fmt(value: Decimal) -> str:
    return format(value.normalize(), "f")


def publication_problems(candidate: Rules, stored: Sequence[Rules], now: datetime, lead: timedelta) -> list[str]:
    """Why a version may not be published: it must be new, and take effect after every stored version
    and more than ``lead`` from now: so no event already scored is ever rescored by other rules (replay
    stays exact), and every worker's cached rules have reloaded before the version applies."""
    problems = []
    same_id = [r.version for r in stored if r.rules_id == candidate.rules_id]
    if same_id and candidate.version <= max(same_id):
        problems.append(
            f"version: {candidate.version} is not after the stored version {max(same_id)}; use {max(same_id) + 1}"
        )
    earliest = now + lead
    if candidate.effective_from <= earliest:
        problems.append(
            f"effective_from: {candidate.effective_from.isoformat()} is not in the future by more than "
            f"{lead.total_seconds():g} s; make it later than {earliest.isoformat()}, so that every worker has "
            "the version before it applies and no scored event is rescored"
        )
    latest = max((r.effective_from for r in stored), default=None)
    if latest is not None and candidate.effective_from <= latest:
        problems.append(
            f"effective_from: {candidate.effective_from.isoformat()} is not after the latest stored "
            f"version's {latest.isoformat()}"
        )
    return problems
