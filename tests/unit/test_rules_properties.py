"""Properties of scoring whole histories under the default rules: whatever riders do, in whatever order
their events arrive, caps hold, once-only rewards pay once, at most 3 activities pay per ISO week, and
no event earns more than its rule's base award.

Each history is scored the way the points service does it: load the counters ``counters_needed`` names
(per rider), score, apply the score's increments; a hazard report looks for an earlier report of the same
hazard among those already paid in full.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from libs.activity.model import CATEGORY_OF_TYPE, ActivityEvent
from services.points.domain.hazards import EarlierReport, distance_m, same_hazard
from services.points.domain.rules import PERIODS
from services.points.domain.scoring import Score, claim, counter_key
from tests.unit.rules_factories import DEFAULT_BOOK, counters_needed, default_rules, event, hazard_search, score

RULES = default_rules()
SHANGHAI = ZoneInfo("Asia/Shanghai")
START = datetime(2024, 4, 24, tzinfo=UTC)  # a few weeks across the April/May month and ISO week boundaries
SPAN_MINUTES = 24 * 60 * 21
PLACES = [(31.2304, 121.4737), (31.23084, 121.4737), (31.2304, 121.47422), (31.2313, 121.4737)]  # 0, 49, 49, 100 m


# --- random histories ------------------------------------------------------------------------------


def payloads(**pools: Sequence[Any]) -> list[dict[str, Any]]:
    """Every payload made of one value from each pool: small pools, so ids repeat."""
    return [dict(zip(pools, values, strict=True)) for values in itertools.product(*pools.values())]


PAYLOADS: dict[str, list[dict[str, Any]]] = {
    "volunteer.shift.completed": payloads(shift_id=["s-1", "s-2"], hours=[0.25, 0.5, 1, 1.5, 2.5, 4, 8, 24]),
    "civic.action.verified": payloads(action=["litter_pickup", "bike_tidy", "civility_guidance"]),
    "activity.attended": payloads(activity_id=[f"a-{i}" for i in range(6)]),
    "hazard.report.verified": payloads(
        severity=["low", "medium", "high", "rejected"],
        place=PLACES,
        reported_hours_before=[0, 1, 12, 23, 25, 36],
    ),
    "safety.training.completed": payloads(training_id=["t-1", "t-2"]),
    "safety.quiz.passed": payloads(quiz_id=["q-1", "q-2", "q-3"]),
    "safety.month.clean": payloads(month=["2024-03", "2024-04", "2024-05"]),
    "skill.course.completed": payloads(course_id=["c-1", "c-2"]),
    "skill.certificate.obtained": payloads(certificate_id=["cert-1", "cert-2"]),
    "outreach.session.completed": payloads(session_id=["o-1", "o-2", "o-3"], topic=["anti_fraud", "health", "other"]),
    "honor.awarded": payloads(honor_id=["h-1", "h-2"], level=["district", "street", "community"]),
}
assert set(PAYLOADS) == set(CATEGORY_OF_TYPE)

# half the times fall on a few days (Tue 30 Apr, Wed 1 May, Sun 5 May, Mon 6 May: the April/May and the
# W18/W19 boundaries) so caps and limits are reached; the others anywhere in three weeks
CLUSTERED = [
    datetime(2024, 4, 30, tzinfo=SHANGHAI) + timedelta(days=day, minutes=minute)
    for day in (0, 1, 5, 6)
    for minute in range(0, 24 * 60, 10)
]
ANYTIME = [START + timedelta(minutes=minute) for minute in range(0, SPAN_MINUTES, 37)]
TIMES = st.one_of(st.sampled_from(CLUSTERED), st.sampled_from(ANYTIME))


@st.composite
def activity_events(draw: st.DrawFn, types: Sequence[str], riders: Sequence[str]) -> ActivityEvent:
    type_ = draw(st.sampled_from(types))
    data = dict(draw(st.sampled_from(PAYLOADS[type_])))
    time = draw(TIMES)
    rider = draw(st.sampled_from(riders))
    if type_ == "hazard.report.verified":
        (lat, lon), hours_before = data.pop("place"), data.pop("reported_hours_before")
        reported_at = (time - timedelta(hours=hours_before)).isoformat()
        report_id = f"r-{draw(st.integers(min_value=1, max_value=10_000))}"
        data |= {"report_id": report_id, "lat": lat, "lon": lon, "reported_at": reported_at}
    return event(type_, data, time=time.isoformat(), rider=rider)


@st.composite
def histories(draw: st.DrawFn) -> list[ActivityEvent]:
    # a history dwells on a few types, so caps and limits are reached
    types = draw(st.lists(st.sampled_from(sorted(PAYLOADS)), min_size=1, max_size=3, unique=True))
    riders = draw(st.sampled_from([["rider-1"], ["rider-1", "rider-2"]]))
    return draw(st.lists(activity_events(types, riders), min_size=8, max_size=30))


# --- scoring a history as the service does ---------------------------------------------------------


@dataclass
class Scored:
    event: ActivityEvent
    score: Score
    earlier: EarlierReport | None


def score_history(events: Sequence[ActivityEvent]) -> list[Scored]:
    counters: dict[tuple[str, str], int] = defaultdict(int)  # (rider, key) -> value
    paid_in_full: list[EarlierReport] = []
    scored = []
    for e in events:
        search = hazard_search(e, DEFAULT_BOOK)
        earlier = same_hazard(e, search, paid_in_full) if search else None
        loaded = {key: counters[(e.rider_id, key)] for key in counters_needed(e, DEFAULT_BOOK)}
        result = score(e, loaded, DEFAULT_BOOK, earlier)
        for key, increment in result.counters.items():
            counters[(e.rider_id, key)] += increment
        if result.paid_in_full_hazard:
            paid_in_full.append(
                EarlierReport(
                    str(e.data["report_id"]),
                    e.rider_id,
                    float(e.data["lat"]),
                    float(e.data["lon"]),
                    datetime.fromisoformat(str(e.data["reported_at"])),
                )
            )
        scored.append(Scored(e, result, earlier))
    return scored


def shanghai(e: ActivityEvent) -> datetime:
    return e.time.astimezone(SHANGHAI)


def once_identity(e: ActivityEvent) -> tuple[str, ...] | None:
    """What a once-only reward is once per, worked out from DOMAIN.md rather than the rules code."""
    match e.type:
        case "activity.attended":
            return (e.rider_id, "activity", str(e.data["activity_id"]))
        case "safety.quiz.passed":
            return (e.rider_id, "quiz", str(e.data["quiz_id"]))
        case "safety.month.clean":
            return (e.rider_id, "clean month", str(e.data["month"]))
        case "honor.awarded":
            return (e.rider_id, "honour", str(e.data["honor_id"]), str(shanghai(e).year))
    return None


# --- properties ------------------------------------------------------------------------------------

EXAMPLES = settings(max_examples=200, deadline=None)


@EXAMPLES
@given(histories())
def test_no_cap_is_ever_exceeded_per_rider_category_and_shanghai_period(events):
    awarded: Counter[tuple[str, str]] = Counter()
    caps: dict[str, int] = {}
    for s in score_history(events):
        rule = getattr(RULES.categories, s.event.category)
        for period, cap in rule.caps.items():
            key = counter_key(s.event.category, period, shanghai(s.event))
            awarded[(s.event.rider_id, key)] += s.score.points
            caps[key] = cap
    for (rider, key), points in awarded.items():
        assert points <= caps[key], f"{rider} earned {points} under {key}, cap {caps[key]}"


@EXAMPLES
@given(histories())
def test_a_once_only_reward_never_pays_twice(events):
    paid = Counter(
        identity for s in score_history(events) if s.score.points > 0 and (identity := once_identity(s.event))
    )
    assert all(times == 1 for times in paid.values()), paid


@EXAMPLES
@given(histories())
def test_at_most_3_activities_pay_per_rider_and_iso_week(events):
    paid = Counter(
        (s.event.rider_id, shanghai(s.event).isocalendar()[:2])
        for s in score_history(events)
        if s.event.type == "activity.attended" and s.score.points > 0
    )
    assert all(activities <= 3 for activities in paid.values()), paid


@EXAMPLES
@given(histories())
def test_every_event_earns_between_0_and_its_base_award(events):
    for s in score_history(events):
        assert 0 <= s.score.points <= claim(s.event, RULES).base


@EXAMPLES
@given(histories())
def test_cap_counters_hold_the_points_awarded_and_a_limit_is_used_once_per_paying_event(events):
    cap_counters: Counter[tuple[str, str]] = Counter()
    awarded: Counter[tuple[str, str]] = Counter()
    for s in score_history(events):
        rider = s.event.rider_id
        if s.score.points == 0:
            assert s.score.counters == {}
        for key, increment in s.score.counters.items():
            if key.split(":")[1] in PERIODS:
                cap_counters[(rider, key)] += increment
            else:
                assert increment == 1  # a once-only or weekly limit
        for period, _ in getattr(RULES.categories, s.event.category).caps.items():
            awarded[(rider, counter_key(s.event.category, period, shanghai(s.event)))] += s.score.points
    assert cap_counters == awarded  # a Counter treats a missing key as 0


@EXAMPLES
@given(histories())
def test_a_hazard_is_paid_in_full_once_and_later_reports_of_it_earn_at_most_1(events):
    scored = [s for s in score_history(events) if s.event.type == "hazard.report.verified"]
    for s in scored:
        if s.earlier is not None:
            assert s.score.points <= 1
            assert not s.score.paid_in_full_hazard
    in_full = [s.event for s in scored if s.score.paid_in_full_hazard]
    for i, a in enumerate(in_full):
        for b in in_full[i + 1 :]:
            apart = distance_m(a.data["lat"], a.data["lon"], b.data["lat"], b.data["lon"])
            hours = abs(
                datetime.fromisoformat(a.data["reported_at"]) - datetime.fromisoformat(b.data["reported_at"])
            ) / timedelta(hours=1)
            assert apart > 50 or hours > 24, "two reports of the same hazard were both paid in full"
