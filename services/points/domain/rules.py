"""The rules document: a versioned set of per-category parameters (caps, points, limits) in a time
zone, validated as it is loaded, and the book of every published version, of which the one in force at
an event's own time scores it. What a version may be published as is decided here too."""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from libs.ledger.model import LotTerms
from libs.platform.errors import DomainError

Period = Literal["day", "week", "month", "year"]
PERIODS: tuple[Period, ...] = ("day", "week", "month", "year")
Points = Field(ge=0, le=100_000)
MIN_EFFECTIVE = datetime(2000, 1, 1, tzinfo=UTC)
MAX_EFFECTIVE = datetime(9000, 1, 1, tzinfo=UTC)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Caps(_Strict):
    """Most points a rider earns in one category per calendar period (absent: no cap)."""

    day: int | None = Field(default=None, gt=0)
    week: int | None = Field(default=None, gt=0)
    month: int | None = Field(default=None, gt=0)
    year: int | None = Field(default=None, gt=0)

    @cached_property
    def in_order(self) -> tuple[tuple[Period, int], ...]:
        """The caps there are, day first: worked out once per rules version (every event's plan reads them)."""
        return tuple((p, v) for p in PERIODS if (v := getattr(self, p)) is not None)

    def items(self) -> tuple[tuple[Period, int], ...]:
        return self.in_order


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


class LapsePolicy(_Strict):
    """When points awarded under a version lapse (积分有效期), one of: at the end of the ``after_months``-th
    month after the award's month, or on 31 December of the ``end_of_year_after``-th year after the award's
    year, in the rules' time zone. A lot's last good day is fixed at its award and never changes."""

    after_months: int | None = Field(default=None, ge=1, le=120)
    end_of_year_after: int | None = Field(default=None, ge=0, le=10)

    @model_validator(mode="after")
    def _exactly_one(self) -> LapsePolicy:
        if (self.after_months is None) == (self.end_of_year_after is None):
            raise ValueError("give exactly one of after_months (e.g. 12) or end_of_year_after (e.g. 1)")
        return self

    def lapses_on(self, awarded_on: date) -> date:
        """The last day points awarded on ``awarded_on`` are good for."""
        if self.after_months is not None:
            months = awarded_on.year * 12 + awarded_on.month - 1 + self.after_months
            year, month = divmod(months, 12)
            if year > date.max.year:
                return date.max
            return date(year, month + 1, calendar.monthrange(year, month + 1)[1])
        return date(min(awarded_on.year + (self.end_of_year_after or 0), date.max.year), 12, 31)


class Rules(_Strict):
    rules_id: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    version: int = Field(gt=0, le=2_147_483_647)  # a PostgreSQL integer
    effective_from: AwareDatetime
    timezone: str = "Asia/Shanghai"
    description: str | None = Field(default=None, max_length=2000)
    categories: CategoryRules
    lapse: LapsePolicy | None = None  # absent: points awarded under this version never lapse

    @field_validator("effective_from")
    @classmethod
    def _within_the_calendar(cls, value: datetime) -> datetime:
        # Year 9999 with a negative offset is past the end of datetime in UTC: PostgreSQL could not store it.
        if not MIN_EFFECTIVE <= value < MAX_EFFECTIVE:
            raise ValueError(f"must be from {MIN_EFFECTIVE.date()} and before {MAX_EFFECTIVE.date()}")
        return value

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

    def lot_terms(self, awarded_at: datetime) -> LotTerms | None:
        """The lot a credit at ``awarded_at`` opens under this version: none without a lapse policy."""
        if self.lapse is None:
            return None
        awarded_on = awarded_at.astimezone(self.zone).date()
        return LotTerms(awarded_on, self.lapse.lapses_on(awarded_on))


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
