"""The 8 categories of DOMAIN.md under the default rules (warmbee-default v1): one row per rule and edge.

Caps and limits are per rider per calendar period in Asia/Shanghai, by the event's own time. A limit
(once per activity / quiz / month / honour per year, 3 activities a week) is used up only by an event
that paid; a cap counter grows by the points awarded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from libs.activity.model import ActivityEvent
from services.points.domain.hazards import (
    EARTH_RADIUS_M,
    EarlierReport,
    PaidReports,
    distance_m,
    hazard_cells,
    same_hazard,
)
from services.points.domain.rules import RuleBook, Rules
from tests.unit.rules_factories import DEFAULT_BOOK, counters_needed, default_document, event, hazard_search, score

BOOK = DEFAULT_BOOK
DEG = 111_320  # metres per degree of latitude, for offsets

# People's Square, Shanghai
LAT, LON = 31.2304, 121.4737
REPORTED_AT = "2024-05-01T09:00:00+08:00"


# --- factories -------------------------------------------------------------------------------------


def civic(action: str = "litter_pickup", **kw: Any) -> ActivityEvent:
    return event("civic.action.verified", {"action": action}, **kw)


def activity(activity_id: str = "a-1", **kw: Any) -> ActivityEvent:
    return event("activity.attended", {"activity_id": activity_id, "title": "恳谈会"}, **kw)


def hazard(
    severity: str = "low",
    report_id: str = "r-1",
    lat: float = LAT,
    lon: float = LON,
    reported_at: str = REPORTED_AT,
    **kw: Any,
) -> ActivityEvent:
    data = {"report_id": report_id, "severity": severity, "lat": lat, "lon": lon, "reported_at": reported_at}
    return event("hazard.report.verified", data, **kw)


def training(training_id: str = "t-1", **kw: Any) -> ActivityEvent:
    return event("safety.training.completed", {"training_id": training_id}, **kw)


def quiz(quiz_id: str = "q-1", **kw: Any) -> ActivityEvent:
    return event("safety.quiz.passed", {"quiz_id": quiz_id}, **kw)


def clean_month(month: str = "2024-04", **kw: Any) -> ActivityEvent:
    return event("safety.month.clean", {"month": month}, **kw)


def course(course_id: str = "c-1", **kw: Any) -> ActivityEvent:
    return event("skill.course.completed", {"course_id": course_id}, **kw)


def certificate(certificate_id: str = "cert-1", **kw: Any) -> ActivityEvent:
    return event("skill.certificate.obtained", {"certificate_id": certificate_id}, **kw)


def outreach(session_id: str = "s-1", topic: str = "anti_fraud", **kw: Any) -> ActivityEvent:
    return event("outreach.session.completed", {"session_id": session_id, "topic": topic}, **kw)


def honour(honor_id: str = "h-1", level: str = "district", **kw: Any) -> ActivityEvent:
    return event("honor.awarded", {"honor_id": honor_id, "level": level, "title": "最美小哥"}, **kw)


def moved(north_m: float, east_m: float, lat: float = LAT, lon: float = LON) -> tuple[float, float]:
    """A point about north_m / east_m metres away (small offsets on a flat map)."""
    return lat + north_m / DEG, lon + east_m / (DEG * math.cos(math.radians(lat)))


def earlier_report(
    lat: float = LAT, lon: float = LON, reported_at: str = REPORTED_AT, report_id: str = "r-0"
) -> EarlierReport:
    return EarlierReport(report_id, "rider-2", lat, lon, datetime.fromisoformat(reported_at))


def score_in_order(events: Sequence[ActivityEvent], book: RuleBook = BOOK) -> list[int]:
    """Score events one after another as the points service does, applying each score's increments."""
    counters: dict[str, int] = {}
    points = []
    for e in events:
        result = score(e, {k: counters.get(k, 0) for k in counters_needed(e, book)}, book)
        for key, increment in result.counters.items():
            counters[key] = counters.get(key, 0) + increment
        points.append(result.points)
    return points


# --- what one event earns --------------------------------------------------------------------------

SUNDAY_NIGHT = "2024-05-05T23:30:00+08:00"  # ISO week 2024-W18
MONDAY_MORNING = "2024-05-06T00:10:00+08:00"  # ISO week 2024-W19
SUNDAY_EVENING_UTC = "2024-05-05T17:00:00Z"  # Monday 2024-05-06 01:00 in Shanghai: 2024-W19
NEW_YEAR_UTC = "2024-12-31T17:00:00Z"  # 2025-01-01 01:00 in Shanghai

SCORING = [
    # 2 civic practice: 5 per verified action, cap 20 a day
    pytest.param(civic("litter_pickup"), {}, 5, "verified civic action (litter pickup): 5 points", id="civic-litter-5"),
    pytest.param(civic("bike_tidy"), {}, 5, "verified civic action (bike tidy): 5 points", id="civic-bike-tidy-5"),
    pytest.param(civic("civility_guidance"), {}, 5, "5 points", id="civic-guidance-5"),
    pytest.param(
        civic(),
        {"civic_practice:day:2024-05-01": 15},
        5,
        "verified civic action",
        id="civic-up-to-the-cap-of-20-in-full",
    ),
    pytest.param(
        civic(),
        {"civic_practice:day:2024-05-01": 18},
        2,
        "daily cap of 20 points for civic practice reached: 2 of 5 awarded",
        id="civic-crossing-cap-20-clipped-to-2",
    ),
    pytest.param(
        civic(),
        {"civic_practice:day:2024-05-01": 20},
        0,
        "daily cap of 20 points for civic practice already reached: 0 of 5 awarded",
        id="civic-at-cap-20-earns-0",
    ),
    pytest.param(
        civic(),
        {"civic_practice:day:2024-04-30": 20},
        5,
        "verified civic action",
        id="civic-yesterdays-cap-does-not-count",
    ),
    # the day boundary of caps is midnight in Shanghai
    pytest.param(
        civic(time="2024-04-30T16:30:00Z"),
        {"civic_practice:day:2024-05-01": 20},
        0,
        "already reached",
        id="day-after-shanghai-midnight-is-the-new-day",
    ),
    pytest.param(
        civic(time="2024-04-30T15:59:59Z"),
        {"civic_practice:day:2024-05-01": 20},
        5,
        "verified civic action",
        id="day-before-shanghai-midnight-is-the-old-day",
    ),
    # 3 activity participation: 8 per activity, once per activity, at most 3 activities a week
    pytest.param(activity("a-1"), {}, 8, "activity a-1 attended: 8 points", id="activity-8"),
    pytest.param(
        activity("a-1"),
        {"activity_participation:once:a-1": 1},
        0,
        "activity a-1 was already rewarded: 0 points",
        id="activity-same-one-twice-0",
    ),
    pytest.param(
        activity("a-2"),
        {"activity_participation:once:a-1": 1},
        8,
        "activity a-2 attended",
        id="activity-another-one-8",
    ),
    pytest.param(
        activity("a-3"),
        {"activity_participation:count:week:2024-W18": 2},
        8,
        "activity a-3 attended",
        id="activity-third-of-the-week-8",
    ),
    pytest.param(
        activity("a-4"),
        {"activity_participation:count:week:2024-W18": 3},
        0,
        "weekly limit of 3 activities reached in 2024-W18: 0 of 8 awarded",
        id="activity-fourth-of-the-week-0",
    ),
    pytest.param(
        activity("a-4", time=SUNDAY_NIGHT),
        {"activity_participation:count:week:2024-W18": 3},
        0,
        "weekly limit of 3 activities reached in 2024-W18",
        id="activity-sunday-2330-shanghai-is-still-w18",
    ),
    pytest.param(
        activity("a-4", time=MONDAY_MORNING),
        {"activity_participation:count:week:2024-W18": 3},
        8,
        "activity a-4 attended",
        id="activity-monday-0010-shanghai-is-w19",
    ),
    pytest.param(
        activity("a-4", time=SUNDAY_EVENING_UTC),
        {"activity_participation:count:week:2024-W18": 3},
        8,
        "activity a-4 attended",
        id="activity-sunday-evening-utc-is-monday-w19-in-shanghai",
    ),
    # 4 grassroots governance: by verified severity
    pytest.param(hazard("low"), {}, 5, "hazard report r-1 verified, severity low: 5 points", id="hazard-low-5"),
    pytest.param(hazard("medium"), {}, 15, "severity medium: 15 points", id="hazard-medium-15"),
    pytest.param(hazard("high"), {}, 30, "severity high: 30 points", id="hazard-high-30"),
    pytest.param(
        hazard("rejected"), {}, 0, "hazard report r-1 rejected by the grid office: 0 points", id="hazard-rejected-0"
    ),
    # 5 safe riding: training 10, quiz 5 once per quiz, clean month 20 once per month
    pytest.param(training(), {}, 10, "safety training completed: 10 points", id="safety-training-10"),
    pytest.param(quiz("q-1"), {}, 5, "safety quiz q-1 passed: 5 points", id="safety-quiz-5"),
    pytest.param(
        quiz("q-1"),
        {"safe_riding:once:quiz:q-1": 1},
        0,
        "safety quiz q-1 was already rewarded: 0 points",
        id="safety-same-quiz-again-0",
    ),
    pytest.param(
        quiz("q-2"), {"safe_riding:once:quiz:q-1": 1}, 5, "safety quiz q-2 passed", id="safety-different-quiz-5"
    ),
    pytest.param(clean_month("2024-04"), {}, 20, "no traffic violation in 2024-04: 20 points", id="clean-month-20"),
    pytest.param(
        clean_month("2024-04"),
        {"safe_riding:once:clean_month:2024-04": 1},
        0,
        "the clean month 2024-04 was already rewarded: 0 points",
        id="clean-month-same-month-twice-0",
    ),
    pytest.param(
        clean_month("2024-05", time="2024-06-01T09:00:00+08:00"),
        {"safe_riding:once:clean_month:2024-04": 1},
        20,
        "no traffic violation in 2024-05",
        id="clean-month-next-month-20",
    ),
    # 6 skill development: course 20, certificate 50
    pytest.param(course(), {}, 20, "course completed: 20 points", id="skill-course-20"),
    pytest.param(certificate(), {}, 50, "certificate obtained: 50 points", id="skill-certificate-50"),
    # 7 publicity outreach: 5 per session, cap 15 a day
    pytest.param(outreach(topic="anti_fraud"), {}, 5, "anti-fraud session given: 5 points", id="outreach-anti-fraud-5"),
    pytest.param(outreach(topic="health"), {}, 5, "health session given: 5 points", id="outreach-health-5"),
    pytest.param(
        outreach(),
        {"publicity_outreach:day:2024-05-01": 10},
        5,
        "session given",
        id="outreach-third-session-of-the-day-5",
    ),
    pytest.param(
        outreach(),
        {"publicity_outreach:day:2024-05-01": 15},
        0,
        "daily cap of 15 points for publicity outreach already reached: 0 of 5 awarded",
        id="outreach-fourth-session-of-the-day-0",
    ),
    pytest.param(
        outreach(time="2024-04-30T16:30:00Z"),
        {"publicity_outreach:day:2024-04-30": 15},
        5,
        "session given",
        id="outreach-after-shanghai-midnight-is-a-new-day",
    ),
    # 8 honours: district 300, street 200, community 100, once per honour per (Shanghai) year
    pytest.param(honour("h-1", "district"), {}, 300, "district honour h-1: 300 points", id="honour-district-300"),
    pytest.param(honour("h-1", "street"), {}, 200, "street honour h-1: 200 points", id="honour-street-200"),
    pytest.param(honour("h-1", "community"), {}, 100, "community honour h-1: 100 points", id="honour-community-100"),
    pytest.param(
        honour("h-1"),
        {"honors:once:h-1:2024": 1},
        0,
        "honour h-1 was already rewarded in 2024: 0 points",
        id="honour-same-one-twice-in-a-year-0",
    ),
    pytest.param(
        honour("h-2"), {"honors:once:h-1:2024": 1}, 300, "district honour h-2", id="honour-another-one-same-year-300"
    ),
    pytest.param(
        honour("h-1", time="2025-03-01T09:00:00+08:00"),
        {"honors:once:h-1:2024": 1},
        300,
        "district honour h-1: 300 points",
        id="honour-same-one-next-year-300",
    ),
    pytest.param(
        honour("h-1", time=NEW_YEAR_UTC),
        {"honors:once:h-1:2024": 1},
        300,
        "district honour h-1: 300 points",
        id="honour-2024-12-31T17Z-is-2025-in-shanghai-pays-again",
    ),
    pytest.param(
        honour("h-1", time=NEW_YEAR_UTC),
        {"honors:once:h-1:2025": 1},
        0,
        "honour h-1 was already rewarded in 2025",
        id="honour-2024-12-31T17Z-counts-as-2025",
    ),
]


@pytest.mark.parametrize(("activity_event", "counters", "points", "reason"), SCORING)
def test_an_event_earns_the_points_of_its_rule_and_says_why(activity_event, counters, points, reason):
    result = score(activity_event, counters, BOOK)
    assert result.points == points
    assert reason in result.reason.render()
    assert (result.category, result.rule_id, result.rule_version) == (
        activity_event.category,
        "warmbee-default",
        1,
    )


# --- what a scored event uses up -------------------------------------------------------------------

INCREMENTS = [
    pytest.param(civic(), {}, {"civic_practice:day:2024-05-01": 5}, id="civic-adds-5-to-the-day"),
    pytest.param(
        civic(),
        {"civic_practice:day:2024-05-01": 18},
        {"civic_practice:day:2024-05-01": 2},
        id="civic-clipped-adds-only-2",
    ),
    pytest.param(civic(), {"civic_practice:day:2024-05-01": 20}, {}, id="civic-at-cap-adds-nothing"),
    pytest.param(
        activity("a-1"),
        {},
        {"activity_participation:once:a-1": 1, "activity_participation:count:week:2024-W18": 1},
        id="activity-uses-its-once-and-one-of-the-week",
    ),
    pytest.param(
        activity("a-4"),
        {"activity_participation:count:week:2024-W18": 3},
        {},
        id="activity-over-the-weekly-limit-uses-nothing",
    ),
    pytest.param(
        activity("a-1"), {"activity_participation:once:a-1": 1}, {}, id="activity-already-rewarded-uses-nothing"
    ),
    pytest.param(hazard("high"), {}, {}, id="hazard-has-no-counters"),
    pytest.param(hazard("rejected"), {}, {}, id="hazard-rejected-has-no-counters"),
    pytest.param(training(), {}, {}, id="training-has-no-counters"),
    pytest.param(quiz("q-1"), {}, {"safe_riding:once:quiz:q-1": 1}, id="quiz-uses-its-once"),
    pytest.param(
        clean_month("2024-04"), {}, {"safe_riding:once:clean_month:2024-04": 1}, id="clean-month-uses-its-month"
    ),
    pytest.param(outreach(), {}, {"publicity_outreach:day:2024-05-01": 5}, id="outreach-adds-5-to-the-day"),
    pytest.param(honour("h-1"), {}, {"honors:once:h-1:2024": 1}, id="honour-uses-its-year"),
    pytest.param(honour("h-1", time=NEW_YEAR_UTC), {}, {"honors:once:h-1:2025": 1}, id="honour-uses-its-shanghai-year"),
]


@pytest.mark.parametrize(("activity_event", "counters", "increments"), INCREMENTS)
def test_a_score_adds_its_points_to_cap_counters_and_1_to_limits_only_when_it_pays(
    activity_event, counters, increments
):
    assert score(activity_event, counters, BOOK).counters == increments


NEEDED = [
    pytest.param(civic(), ["civic_practice:day:2024-05-01"], id="civic-its-day"),
    pytest.param(civic(time="2024-04-30T16:30:00Z"), ["civic_practice:day:2024-05-01"], id="civic-the-shanghai-day"),
    pytest.param(
        activity("a-1", time=SUNDAY_NIGHT),
        ["activity_participation:once:a-1", "activity_participation:count:week:2024-W18"],
        id="activity-sunday-2330-shanghai-w18",
    ),
    pytest.param(
        activity("a-1", time=MONDAY_MORNING),
        ["activity_participation:once:a-1", "activity_participation:count:week:2024-W19"],
        id="activity-monday-0010-shanghai-w19",
    ),
    pytest.param(
        activity("a-1", time=SUNDAY_EVENING_UTC),
        ["activity_participation:once:a-1", "activity_participation:count:week:2024-W19"],
        id="activity-sunday-evening-utc-w19",
    ),
    pytest.param(hazard("medium"), [], id="hazard-none"),
    pytest.param(training(), [], id="training-none"),
    pytest.param(quiz("q-7"), ["safe_riding:once:quiz:q-7"], id="quiz-its-once"),
    pytest.param(clean_month("2024-03"), ["safe_riding:once:clean_month:2024-03"], id="clean-month-its-month"),
    pytest.param(certificate(), [], id="certificate-none"),
    pytest.param(outreach(), ["publicity_outreach:day:2024-05-01"], id="outreach-its-day"),
    pytest.param(honour("h-1", time=NEW_YEAR_UTC), ["honors:once:h-1:2025"], id="honour-its-shanghai-year"),
]


@pytest.mark.parametrize(("activity_event", "keys"), NEEDED)
def test_counters_needed_names_every_counter_the_score_reads(activity_event, keys):
    assert counters_needed(activity_event, BOOK) == keys


# --- events scored one after another ---------------------------------------------------------------

SEQUENCES = [
    pytest.param([civic() for _ in range(5)], [5, 5, 5, 5, 0], id="civic-fifth-action-of-a-day-0"),
    pytest.param(
        [civic(time="2024-05-01T23:00:00+08:00") for _ in range(4)] + [civic(time="2024-05-02T00:30:00+08:00")],
        [5, 5, 5, 5, 5],
        id="civic-cap-starts-again-after-shanghai-midnight",
    ),
    pytest.param([outreach(f"s-{i}") for i in range(4)], [5, 5, 5, 0], id="outreach-fourth-session-of-a-day-0"),
    pytest.param([activity("a-1"), activity("a-1")], [8, 0], id="activity-same-one-twice"),
    pytest.param(
        [activity(f"a-{i}", time=SUNDAY_NIGHT) for i in range(4)], [8, 8, 8, 0], id="activity-fourth-of-a-week-0"
    ),
    pytest.param(
        [activity(f"a-{i}", time=SUNDAY_NIGHT) for i in range(3)] + [activity("a-3", time=MONDAY_MORNING)],
        [8, 8, 8, 8],
        id="activity-fourth-on-monday-is-a-new-week",
    ),
    pytest.param(
        [activity(f"a-{i}", time=SUNDAY_NIGHT) for i in range(4)] + [activity("a-3", time=MONDAY_MORNING)],
        [8, 8, 8, 0, 8],
        id="activity-refused-by-the-weekly-limit-can-pay-next-week",
    ),
    pytest.param([quiz("q-1"), quiz("q-1"), quiz("q-2")], [5, 0, 5], id="quiz-once-per-quiz"),
    pytest.param(
        [clean_month("2024-04"), clean_month("2024-04"), clean_month("2024-05")],
        [20, 0, 20],
        id="clean-month-once-per-month",
    ),
    pytest.param(
        [honour("h-1"), honour("h-1", time="2024-11-01T09:00:00+08:00"), honour("h-1", time=NEW_YEAR_UTC)],
        [300, 0, 300],
        id="honour-once-per-shanghai-year",
    ),
]


@pytest.mark.parametrize(("events", "points"), SEQUENCES)
def test_events_scored_in_order_use_up_their_caps_and_limits(events, points):
    assert score_in_order(events) == points


# --- versions --------------------------------------------------------------------------------------


def v2_rules() -> Rules:
    document = default_document()
    document["version"] = 2
    document["effective_from"] = "2025-01-01T00:00:00+08:00"
    document["categories"]["civic_practice"]["points_per_action"] = 6
    return Rules.model_validate(document)


VERSIONED = RuleBook([*BOOK.versions, v2_rules()])


@pytest.mark.parametrize(
    ("time", "points", "version"),
    [
        pytest.param("2024-06-01T09:00:00+08:00", 5, 1, id="mid-2024-by-v1-5-points"),
        pytest.param("2024-12-31T23:59:59+08:00", 5, 1, id="last-second-of-2024-by-v1"),
        pytest.param("2025-01-01T00:00:00+08:00", 6, 2, id="first-second-of-2025-by-v2-6-points"),
        pytest.param("2024-12-31T16:00:00Z", 6, 2, id="2024-12-31T16Z-is-2025-in-shanghai-by-v2"),
    ],
)
def test_an_event_is_scored_by_the_rules_in_force_at_its_time(time, points, version):
    result = score(civic(time=time), {}, VERSIONED)
    assert (result.points, result.rule_version) == (points, version)


# --- the same hazard -------------------------------------------------------------------------------


def test_the_first_report_of_a_hazard_is_paid_in_full():
    result = score(hazard("low"), {}, BOOK, earlier=None)
    assert (result.points, result.paid_in_full_hazard) == (5, True)


@pytest.mark.parametrize("severity", ["low", "medium", "high"])
def test_a_later_report_of_the_same_hazard_earns_1_and_names_the_earlier_report(severity):
    result = score(hazard(severity, report_id="r-2"), {}, BOOK, earlier=earlier_report(report_id="r-0"))
    assert result.points == 1
    assert "first reported in report r-0" in result.reason.render()
    assert result.paid_in_full_hazard is False


def test_a_rejected_report_needs_no_search_for_an_earlier_one():
    assert hazard_search(hazard("rejected"), BOOK) is None


def test_a_rejected_report_is_never_the_one_paid_in_full():
    result = score(hazard("rejected"), {}, BOOK)
    assert (result.points, result.paid_in_full_hazard) == (0, False)


@pytest.mark.parametrize(
    ("north_m", "east_m", "metres", "hours", "same"),
    [
        pytest.param(49, 0, 49, -23, True, id="49m-north-23h-earlier-same"),
        pytest.param(0, 49, 49, -23, True, id="49m-east-23h-earlier-same"),
        pytest.param(-34.65, -34.65, 49, -23, True, id="49m-south-west-23h-earlier-same"),
        pytest.param(49, 0, 49, 23, True, id="49m-north-23h-later-same"),
        pytest.param(0, 0, 0, 0, True, id="same-place-same-time-same"),
        pytest.param(51, 0, 51, -1, False, id="51m-north-not-same"),
        pytest.param(0, -51, 51, -1, False, id="51m-west-not-same"),
        pytest.param(0, 0, 0, -25, False, id="25h-earlier-not-same"),
        pytest.param(0, 0, 0, 25, False, id="25h-later-not-same"),
    ],
)
def test_a_report_is_the_same_hazard_within_50m_and_24h_by_reported_at(north_m, east_m, metres, hours, same):
    lat, lon = moved(north_m, east_m)
    assert distance_m(LAT, LON, lat, lon) == pytest.approx(metres, rel=0.01, abs=0.01)
    reported_at = (datetime.fromisoformat(REPORTED_AT) + timedelta(hours=hours)).isoformat()
    candidate = earlier_report(lat, lon, reported_at)
    later = hazard("low", report_id="r-2")
    search = hazard_search(later, BOOK)
    assert search is not None
    assert same_hazard(later, search, [candidate]) == (candidate if same else None)
    if same:  # the search box the store queries contains every report of the same hazard
        assert search.lat_min <= lat <= search.lat_max
        assert search.lon_min <= lon <= search.lon_max
        assert search.reported_from <= candidate.reported_at <= search.reported_to


@given(
    st.lists(
        st.tuples(st.floats(-150, 150), st.floats(-150, 150), st.integers(-30, 30)),
        max_size=30,
    )
)
def test_paid_reports_by_cell_find_what_a_search_through_all_of_them_finds(offsets):
    reports = [
        earlier_report(
            *moved(north, east),
            reported_at=(datetime.fromisoformat(REPORTED_AT) + timedelta(hours=hours)).isoformat(),
            report_id=f"r-{i}",
        )
        for i, (north, east, hours) in enumerate(offsets)
    ]
    later = hazard("low", report_id="r-later")
    search = hazard_search(later, BOOK)
    assert search is not None
    paid = PaidReports(reports[: len(reports) // 2])
    for report in reports[len(reports) // 2 :]:
        paid.add(report)
    assert paid.first_same_hazard(later, search) == same_hazard(later, search, reports)


def test_the_window_is_by_reported_at_not_by_the_event_time():
    candidate = earlier_report(reported_at="2024-04-29T09:00:00+08:00")  # 48 h before
    later = hazard("low", reported_at=REPORTED_AT, time="2024-04-29T10:00:00+08:00")
    search = hazard_search(later, BOOK)
    assert search is not None
    assert same_hazard(later, search, [candidate]) is None


# --- hazard cells: reports of the same hazard take turns -------------------------------------------

SIDE = 2 * 50 / 111_320  # degrees; the cell grid of a 50 m radius
ON_A_ROW_BOUNDARY = math.floor(LAT / SIDE) * SIDE
ON_A_COLUMN_BOUNDARY = math.floor(LON / SIDE) * SIDE


def cells_of(lat: float, lon: float) -> set[str]:
    search = hazard_search(hazard("low", lat=lat, lon=lon), BOOK)
    assert search is not None
    return set(hazard_cells(search))


@pytest.mark.parametrize(
    ("lat", "lon", "north_m", "east_m"),
    [
        pytest.param(LAT, LON, 49, 0, id="49m-north"),
        pytest.param(LAT, LON, 0, 49, id="49m-east"),
        pytest.param(LAT, LON, 34.6, 34.6, id="49m-north-east"),
        pytest.param(ON_A_ROW_BOUNDARY - 1e-7, LON, 49, 0, id="49m-north-across-a-row-boundary"),
        pytest.param(LAT, ON_A_COLUMN_BOUNDARY + 1e-7, 0, -49, id="49m-west-across-a-column-boundary"),
        pytest.param(ON_A_ROW_BOUNDARY, ON_A_COLUMN_BOUNDARY, -34.6, -34.6, id="49m-south-west-from-a-corner"),
    ],
)
def test_two_reports_49m_apart_share_a_cell(lat, lon, north_m, east_m):
    other_lat, other_lon = moved(north_m, east_m, lat, lon)
    assert distance_m(lat, lon, other_lat, other_lon) <= 50
    assert cells_of(lat, lon) & cells_of(other_lat, other_lon)


def destination(lat: float, lon: float, bearing_deg: float, metres: float) -> tuple[float, float]:
    """The point `metres` along a great circle from (lat, lon) at the bearing (on the haversine sphere)."""
    d = metres / EARTH_RADIUS_M
    p1, l1, b = math.radians(lat), math.radians(lon), math.radians(bearing_deg)
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
    l2 = l1 + math.atan2(math.sin(b) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
    return math.degrees(p2), math.degrees(l2)


@given(
    lat=st.floats(min_value=-60, max_value=60),
    lon=st.floats(min_value=-179, max_value=179),
    bearing=st.floats(min_value=0, max_value=360),
    metres=st.floats(min_value=0, max_value=50),
)
def test_any_two_reports_within_50m_share_a_cell(lat, lon, bearing, metres):
    other_lat, other_lon = destination(lat, lon, bearing, metres)
    assert distance_m(lat, lon, other_lat, other_lon) <= 50 + 1e-6
    assert cells_of(lat, lon) & cells_of(other_lat, other_lon)


# --- rules validation ------------------------------------------------------------------------------

DELETE = object()


def changed(path: tuple[str, ...], value: object) -> dict[str, Any]:
    document = default_document()
    *parents, last = path
    target = document
    for name in parents:
        target = target[name]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return document


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        pytest.param(("categories", "honors"), DELETE, "categories.honors", id="missing-category"),
        pytest.param(
            ("categories", "civic_practice", "caps", "day"),
            -5,
            "categories.civic_practice.caps.day",
            id="negative-cap",
        ),
        pytest.param(
            ("categories", "civic_practice", "points_per_hug"),
            1,
            "categories.civic_practice.points_per_hug",
            id="unknown-key",
        ),
        pytest.param(("version",), 0, "version", id="version-0"),
        pytest.param(("timezone",), "Mars/Olympus_Mons", "timezone", id="unknown-timezone"),
        pytest.param(
            ("categories", "volunteer_service"),
            {"points_per_hour": 7, "counted_in_minutes": 30},
            "points_per_hour",
            id="7-points-an-hour-in-half-hours",
        ),
    ],
)
def test_a_rules_document_that_breaks_a_rule_is_refused_naming_the_field(path, value, field):
    with pytest.raises(ValidationError) as refused:
        Rules.model_validate(changed(path, value))
    assert field in str(refused.value)
