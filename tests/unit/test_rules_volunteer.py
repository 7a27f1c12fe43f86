"""volunteer_service (志愿服务类): 10 points per verified hour, counted in whole half-hours,
capped at 40 points a day and 200 a month, calendar periods in Asia/Shanghai by the event's own time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import ValidationError

from libs.activity.model import ActivityEvent
from services.points.domain.rules import RuleBook, Rules
from services.points.domain.scoring import counter_key
from tests.unit.rules_factories import counters_needed, score

RULES_FILE = Path(__file__).resolve().parents[2] / "rules" / "warmbee-default.v1.yaml"
SHANGHAI = ZoneInfo("Asia/Shanghai")

DAY = "volunteer_service:day:2024-05-01"
MONTH = "volunteer_service:month:2024-05"


# --- factories -------------------------------------------------------------------------------------


def default_document() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    return document


def default_rules() -> Rules:
    return Rules.model_validate(default_document())


def rules_document(
    version: int = 1,
    effective_from: str = "2024-01-01T00:00:00+08:00",
    points_per_hour: int = 10,
    counted_in_minutes: int = 30,
    caps: dict[str, int] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """The default rules file's categories, with volunteer_service as given here."""
    categories = default_document()["categories"]
    categories["volunteer_service"] = {
        "points_per_hour": points_per_hour,
        "counted_in_minutes": counted_in_minutes,
        "caps": {"day": 40, "month": 200} if caps is None else caps,
    }
    return {
        "rules_id": "warmbee-default",
        "version": version,
        "effective_from": effective_from,
        "timezone": "Asia/Shanghai",
        "categories": categories,
        **overrides,
    }


def rules(**kwargs: Any) -> Rules:
    return Rules.model_validate(rules_document(**kwargs))


def volunteer_event(hours: float, time: str = "2024-05-01T09:00:00+08:00", rider: str = "rider-1") -> ActivityEvent:
    document = {
        "specversion": "1.0",
        "id": "shift-1",
        "source": "volunteer-platform",
        "type": "volunteer.shift.completed",
        "subject": rider,
        "time": time,
        "data": {"shift_id": "s-1", "hours": hours},
    }
    return ActivityEvent(
        source="volunteer-platform",
        event_id="shift-1",
        type="volunteer.shift.completed",
        rider_id=rider,
        time=datetime.fromisoformat(time),
        data={"shift_id": "s-1", "hours": hours},
        document=document,
    )


def civic_event(time: str = "2024-05-01T09:00:00+08:00") -> ActivityEvent:
    data = {"action": "litter_pickup"}
    return ActivityEvent(
        "grid-office", "civic-1", "civic.action.verified", "rider-1", datetime.fromisoformat(time), data, {}
    )


BOOK = RuleBook([default_rules()])


# --- the default rules file ------------------------------------------------------------------------


def test_the_default_rules_file_holds_the_programme_numbers():
    v1 = default_rules()
    rule = v1.categories.volunteer_service
    assert (v1.rules_id, v1.version, v1.timezone) == ("warmbee-default", 1, "Asia/Shanghai")
    assert v1.effective_from == datetime(2024, 1, 1, tzinfo=SHANGHAI)
    assert rule is not None
    assert (rule.points_per_hour, rule.counted_in_minutes, rule.points_per_unit) == (10, 30, 5)
    assert (rule.caps.day, rule.caps.week, rule.caps.month, rule.caps.year) == (40, None, 200, None)


# --- whole half-hours ------------------------------------------------------------------------------


def test_two_and_a_half_hours_earn_25_points():
    result = score(volunteer_event(hours=2.5), {}, BOOK)
    assert result.points == 25
    assert result.category == "volunteer_service"
    assert "5 whole half-hours" in result.reason.render()
    assert (result.rule_id, result.rule_version) == ("warmbee-default", 1)


@pytest.mark.parametrize(
    ("hours", "points"),
    [(0.5, 5), (0.75, 5), (1, 10), (1.2, 10), (2.5, 25), (3.99, 35), (4, 40)],
)
def test_only_whole_half_hours_count_at_5_points_each(hours, points):
    result = score(volunteer_event(hours), {}, BOOK)
    assert result.points == points


def test_less_than_one_whole_half_hour_earns_nothing_and_says_why():
    result = score(volunteer_event(hours=0.4), {}, BOOK)
    assert result.points == 0
    assert "less than one whole half-hour" in result.reason.render()
    assert (result.rule_id, result.rule_version) == ("warmbee-default", 1)


def test_three_quarters_of_an_hour_earn_one_half_hour():
    result = score(volunteer_event(hours=0.75), {}, BOOK)
    assert result.points == 5


# --- caps ------------------------------------------------------------------------------------------


def test_an_event_crossing_the_daily_cap_of_40_earns_what_is_left():
    result = score(volunteer_event(hours=2), {DAY: 30}, BOOK)
    assert result.points == 10
    assert "daily cap of 40 points" in result.reason.render()
    assert "10 of 20 awarded" in result.reason.render()


def test_an_event_at_the_daily_cap_earns_nothing_and_says_the_cap_was_already_reached():
    result = score(volunteer_event(hours=2), {DAY: 40}, BOOK)
    assert result.points == 0
    assert "daily cap of 40 points" in result.reason.render()
    assert "already reached" in result.reason.render()


def test_a_counter_already_over_the_cap_never_gives_negative_points():
    result = score(volunteer_event(hours=2), {DAY: 45}, BOOK)
    assert result.points == 0


def test_one_24_hour_shift_is_clipped_to_the_daily_cap_of_40():
    result = score(volunteer_event(hours=24), {}, BOOK)
    assert result.points == 40
    assert "40 of 240 awarded" in result.reason.render()


def test_the_monthly_cap_of_200_wins_when_its_remainder_is_smaller():
    result = score(volunteer_event(hours=2), {DAY: 0, MONTH: 195}, BOOK)
    assert result.points == 5
    assert "monthly cap of 200 points" in result.reason.render()
    assert "5 of 20 awarded" in result.reason.render()


def test_the_daily_cap_wins_when_its_remainder_is_smaller():
    result = score(volunteer_event(hours=2), {DAY: 35, MONTH: 190}, BOOK)
    assert result.points == 5
    assert "daily cap of 40 points" in result.reason.render()


def test_an_event_at_the_monthly_cap_earns_nothing():
    result = score(volunteer_event(hours=2), {MONTH: 200}, BOOK)
    assert result.points == 0
    assert "monthly cap of 200 points" in result.reason.render()
    assert "already reached" in result.reason.render()


def test_counters_of_another_day_do_not_count_toward_todays_cap():
    result = score(volunteer_event(hours=2), {"volunteer_service:day:2024-04-30": 40}, BOOK)
    assert result.points == 20


# --- counter increments ----------------------------------------------------------------------------


def test_the_awarded_points_are_added_to_each_cap_counter():
    result = score(volunteer_event(hours=2.5), {}, BOOK)
    assert result.counters == {DAY: 25, MONTH: 25}


def test_a_clipped_award_adds_only_the_awarded_points_to_each_cap_counter():
    result = score(volunteer_event(hours=2), {DAY: 30}, BOOK)
    assert result.counters == {DAY: 10, MONTH: 10}


@pytest.mark.parametrize(("hours", "counters"), [(0.4, {}), (2, {DAY: 40})], ids=["below-unit", "at-cap"])
def test_an_award_of_0_points_adds_to_no_counter(hours, counters):
    result = score(volunteer_event(hours), counters, BOOK)
    assert result.points == 0
    assert result.counters == {}


# --- Asia/Shanghai calendar ------------------------------------------------------------------------


def test_the_day_is_the_shanghai_day_of_the_event():
    event = volunteer_event(hours=2, time="2024-04-30T16:30:00Z")  # 2024-05-01 00:30 in Shanghai
    assert counters_needed(event, BOOK) == [DAY, MONTH]


def test_just_before_shanghai_midnight_is_still_the_previous_day_and_month():
    event = volunteer_event(hours=2, time="2024-04-30T15:59:59Z")  # 2024-04-30 23:59:59 in Shanghai
    assert counters_needed(event, BOOK) == [
        "volunteer_service:day:2024-04-30",
        "volunteer_service:month:2024-04",
    ]


def test_an_event_after_shanghai_midnight_is_capped_by_the_shanghai_day():
    result = score(volunteer_event(hours=2, time="2024-04-30T16:30:00Z"), {DAY: 40}, BOOK)
    assert result.points == 0


def test_the_cap_counters_follow_the_event_time_not_today():
    result = score(volunteer_event(hours=1, time="2024-02-29T10:00:00+08:00"), {}, BOOK)
    assert result.counters == {"volunteer_service:day:2024-02-29": 10, "volunteer_service:month:2024-02": 10}


def test_a_weekly_cap_reads_the_iso_week_counter():
    book = RuleBook([rules(caps={"week": 100})])
    assert counters_needed(volunteer_event(hours=2), book) == ["volunteer_service:week:2024-W18"]


# --- counter keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "key"),
    [
        ("day", "volunteer_service:day:2024-05-01"),
        ("week", "volunteer_service:week:2024-W18"),
        ("month", "volunteer_service:month:2024-05"),
        ("year", "volunteer_service:year:2024"),
    ],
)
def test_counter_key_names_the_category_period_and_label(period, key):
    assert counter_key("volunteer_service", period, datetime(2024, 5, 1, 9, 0, tzinfo=SHANGHAI)) == key


def test_the_week_key_uses_the_iso_year_at_a_year_boundary():
    monday = datetime(2024, 12, 30, 9, 0, tzinfo=SHANGHAI)  # Monday of ISO week 2025-W01
    assert counter_key("volunteer_service", "week", monday) == "volunteer_service:week:2025-W01"


def test_the_week_key_pads_single_digit_weeks():
    assert counter_key("x", "week", datetime(2024, 1, 3, tzinfo=SHANGHAI)) == "x:week:2024-W01"


# --- versions --------------------------------------------------------------------------------------

V1 = rules(version=1, effective_from="2024-01-01T00:00:00+08:00", points_per_hour=10, caps={"day": 40})
V2 = rules(version=2, effective_from="2025-01-01T00:00:00+08:00", points_per_hour=20, caps={"day": 60})


def test_a_2024_event_is_scored_by_version_1():
    result = score(volunteer_event(hours=2, time="2024-12-31T23:59:59+08:00"), {}, RuleBook([V1, V2]))
    assert (result.points, result.rule_version) == (20, 1)


def test_a_2025_event_is_scored_by_version_2():
    result = score(volunteer_event(hours=2, time="2025-01-01T00:00:00+08:00"), {}, RuleBook([V1, V2]))
    assert (result.points, result.rule_version) == (40, 2)


def test_the_version_boundary_is_compared_as_an_instant():
    event = volunteer_event(hours=2, time="2024-12-31T16:00:00Z")  # 2025-01-01 00:00 in Shanghai
    result = score(event, {}, RuleBook([V1, V2]))
    assert result.rule_version == 2


def test_in_force_at_does_not_depend_on_the_order_versions_are_given():
    assert RuleBook([V2, V1]).in_force_at(datetime(2024, 6, 1, tzinfo=UTC)) == V1
    assert RuleBook([V2, V1]).in_force_at(datetime(2025, 6, 1, tzinfo=UTC)) == V2


def test_in_force_at_before_the_first_version_is_none():
    assert RuleBook([V1, V2]).in_force_at(datetime(2023, 12, 31, 15, 59, 59, tzinfo=UTC)) is None


def test_an_event_before_any_rules_earns_nothing_without_a_rule():
    result = score(volunteer_event(hours=2, time="2023-12-31T23:59:59+08:00"), {}, BOOK)
    assert result.points == 0
    assert (result.rule_id, result.rule_version) == (None, None)
    assert "no rules" in result.reason.render()
    assert result.counters == {}


def test_an_event_before_any_rules_needs_no_counters():
    assert counters_needed(volunteer_event(hours=2, time="2023-12-31T23:59:59+08:00"), BOOK) == []


# --- other categories ------------------------------------------------------------------------------


def test_civic_practice_now_has_rules_and_a_verified_action_earns_5_points():
    result = score(civic_event(), {}, BOOK)
    assert (result.category, result.points) == ("civic_practice", 5)
    assert (result.rule_id, result.rule_version) == ("warmbee-default", 1)


def test_civic_practice_reads_its_own_daily_cap_counter():
    assert counters_needed(civic_event(), BOOK) == ["civic_practice:day:2024-05-01"]


def test_rules_that_leave_volunteer_service_out_are_refused():
    document = rules_document()
    del document["categories"]["volunteer_service"]
    with pytest.raises(ValidationError, match="volunteer_service"):
        Rules.model_validate(document)


# --- rules validation ------------------------------------------------------------------------------


def test_rules_refuse_a_rate_that_gives_a_half_hour_a_fraction_of_a_point():
    with pytest.raises(ValidationError, match="multiple of 60"):
        rules(points_per_hour=7, counted_in_minutes=30)  # 3.5 points per half-hour


def test_rules_accept_a_rate_that_gives_each_half_hour_whole_points():
    rule = rules(points_per_hour=6, counted_in_minutes=30).categories.volunteer_service
    assert rule is not None
    assert rule.points_per_unit == 3


def test_rules_refuse_a_timezone_path_that_is_not_a_zone_name():
    with pytest.raises(ValidationError, match="timezone"):
        rules(timezone="../etc/localtime")


def test_rules_refuse_unknown_top_level_keys():
    with pytest.raises(ValidationError, match="extra"):
        rules(points_cap=500)


def test_rules_refuse_unknown_keys_in_a_category():
    document = rules_document()
    document["categories"]["volunteer_service"]["points_per_shift"] = 3
    with pytest.raises(ValidationError, match="points_per_shift"):
        Rules.model_validate(document)


def test_rules_refuse_an_unknown_period_in_caps():
    with pytest.raises(ValidationError, match="fortnight"):
        rules(caps={"fortnight": 80})


def test_rules_refuse_version_0():
    with pytest.raises(ValidationError, match="version"):
        rules(version=0)


def test_rules_refuse_a_cap_of_0():
    with pytest.raises(ValidationError, match="day"):
        rules(caps={"day": 0})


def test_rules_refuse_an_effective_date_without_an_offset():
    with pytest.raises(ValidationError, match="effective_from"):
        rules(effective_from="2024-01-01T00:00:00")


# --- properties ------------------------------------------------------------------------------------


@given(
    half_hours=st.integers(min_value=0, max_value=48),
    extra_minutes=st.integers(min_value=0, max_value=29),
    day_used=st.integers(min_value=0, max_value=60),
    month_used=st.integers(min_value=0, max_value=250),
)
def test_points_are_5_per_whole_half_hour_clipped_to_the_smallest_cap_remainder(
    half_hours, extra_minutes, day_used, month_used
):
    minutes = half_hours * 30 + extra_minutes
    assume(minutes > 0)  # verified hours are > 0
    result = score(volunteer_event(hours=minutes / 60), {DAY: day_used, MONTH: month_used}, BOOK)
    expected = min(half_hours * 5, max(40 - day_used, 0), max(200 - month_used, 0))
    assert result.points == expected
    assert result.counters == ({DAY: expected, MONTH: expected} if expected else {})
