"""Rules files as text (a file or a request body): every problem with its line, column and path;
hostile input refused with a problem, never an exception of the YAML library or of the database."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import pytest

from libs.platform.errors import DomainError
from services.points.handlers import RulesRefused, RulesVersionPublished
from services.points.replay import CategoryImpact, WhatIfReport, report_json, report_of_json, what_if_period
from services.points.rules_files import DEFAULT_RULES_FILE, RulesFileError, RulesProblem, parse_rules, rules_text

DEFAULT = DEFAULT_RULES_FILE.read_text(encoding="utf-8")
SHANGHAI = ZoneInfo("Asia/Shanghai")


def problems_of(text: str) -> list[RulesProblem]:
    with pytest.raises(RulesFileError) as refused:
        parse_rules(text, "test")
    return refused.value.problems


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_the_default_file_is_valid() -> None:
    rules = parse_rules(DEFAULT)
    assert (rules.rules_id, rules.version) == ("warmbee-default", 1)


def test_every_problem_is_listed_with_its_line_column_and_path() -> None:
    text = DEFAULT.replace("points_per_hour: 10", "points_per_hour: -3").replace(
        "points_per_action: 5", "points_per_action: many"
    )

    problems = problems_of(text)

    by_path = {p.path: p for p in problems}
    assert set(by_path) == {
        "categories.volunteer_service.points_per_hour",
        "categories.civic_practice.points_per_action",
    }
    hour = by_path["categories.volunteer_service.points_per_hour"]
    assert (hour.line, hour.column) == (line_of(text, "points_per_hour: -3"), 22)
    assert "greater than 0" in hour.message
    assert by_path["categories.civic_practice.points_per_action"].line == line_of(text, "points_per_action: many")
    assert str(hour).startswith(f"line {hour.line}: categories.volunteer_service.points_per_hour: ")


def test_a_missing_key_is_placed_at_its_parent() -> None:
    text = DEFAULT.replace("    points_per_action: 5\n", "")

    (problem,) = problems_of(text)

    assert problem.path == "categories.civic_practice.points_per_action"
    assert problem.line == line_of(text, "civic_practice:") + 1  # the parent's mapping starts on the next line
    assert "Field required" in problem.message


def test_the_problems_become_the_errors_of_a_422_problem() -> None:
    with pytest.raises(RulesFileError) as refused:
        parse_rules(DEFAULT.replace("version: 1", "version: 0"))

    assert refused.value.status == 422
    assert refused.value.kind == "invalid-rules"
    (error,) = refused.value.extra["errors"]
    assert error == {
        "line": line_of(DEFAULT, "version: 1"),
        "column": 10,
        "path": "version",
        "message": "Input should be greater than 0",
    }


def test_text_that_is_not_yaml_names_the_line_of_the_parse_error() -> None:
    text = DEFAULT.replace("timezone: Asia/Shanghai", "timezone: [Asia/Shanghai")

    (problem,) = problems_of(text)

    assert problem.path == ""
    assert problem.line > line_of(text, "timezone: [")
    assert problem.message.startswith("is not valid YAML")


@pytest.mark.parametrize(("text", "found"), [("- a\n- b\n", "a list"), ("just words\n", "a str"), ("", "nothing")])
def test_yaml_that_is_not_a_mapping_is_refused(text: str, found: str) -> None:
    (problem,) = problems_of(text)

    assert (
        f"must be a mapping of rules_id, version, effective_from, timezone and categories, got {found}"
        == problem.message
    )


def test_aliases_are_refused_before_anything_is_built() -> None:
    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(20)
    )

    (problem,) = problems_of(laughs)

    assert (problem.line, problem.column) == (2, 8)  # "b: &b [*a": the * is the 8th character
    assert problem.message == "the alias *a is not allowed; write the value out in full"


def test_a_nul_character_is_refused_with_its_line() -> None:
    text = DEFAULT.replace("description: Default", "description: Def\x00ault")

    (problem,) = problems_of(text)

    assert problem.line == line_of(DEFAULT, "description: Default")
    assert "NUL" in problem.message


@pytest.mark.parametrize("moment", ["9999-12-31T23:00:00-12:00", "1970-01-01T00:00:00+08:00"])
def test_an_effective_date_beyond_what_can_be_stored_is_refused(moment: str) -> None:
    (problem,) = problems_of(DEFAULT.replace('"2024-01-01T00:00:00+08:00"', f'"{moment}"'))

    assert problem.path == "effective_from"
    assert "must be from 2000-01-01 and before 9000-01-01" in problem.message


def test_a_version_beyond_a_database_integer_is_refused() -> None:
    (problem,) = problems_of(DEFAULT.replace("version: 1", f"version: {10**30}"))

    assert problem.path == "version"


def test_a_body_is_yaml_text_in_utf8() -> None:
    assert rules_text(DEFAULT.encode(), "application/yaml; charset=utf-8") == DEFAULT
    assert rules_text(b"a: 1", "text/yaml") == "a: 1"
    assert rules_text(b"a: 1", "application/x-yaml") == "a: 1"


@pytest.mark.parametrize("content_type", [None, "application/json", "text/plain", "multipart/form-data"])
def test_a_body_of_another_type_is_refused_with_415(content_type: str | None) -> None:
    with pytest.raises(DomainError) as refused:
        rules_text(b"a: 1", content_type)

    assert refused.value.status == 415
    assert "send the rules file as application/yaml" in refused.value.detail


def test_a_body_that_is_not_utf8_names_its_line() -> None:
    with pytest.raises(RulesFileError) as refused:
        rules_text(b"rules_id: x\nversion: \xff\n", "application/yaml")

    (problem,) = refused.value.problems
    assert (problem.line, problem.message) == (2, "is not UTF-8 (byte 21); send UTF-8")


def test_a_what_if_period_is_days_in_the_rules_zone_up_to_a_limit() -> None:
    start, end = what_if_period(SHANGHAI, date(2026, 11, 1), date(2026, 12, 1), 93)

    assert start.isoformat() == "2026-11-01T00:00:00+08:00"
    assert end.isoformat() == "2026-12-01T00:00:00+08:00"
    with pytest.raises(DomainError, match="at most 93 are scored at once"):
        what_if_period(SHANGHAI, date(2026, 1, 1), date(2026, 12, 1), 93)
    with pytest.raises(DomainError, match="is not after from"):
        what_if_period(SHANGHAI, date(2026, 12, 1), date(2026, 12, 1), 93)
    assert what_if_period(SHANGHAI, date(2000, 1, 1), date(9999, 12, 31))[1].year == 9999


def test_a_publication_refusal_names_each_field_as_an_invalid_file_does() -> None:
    refused = RulesVersionPublished(["version: 2 is not after the stored version 2; use 3", "no field here"])

    assert (refused.status, refused.kind) == (409, "rules-version-published")
    assert refused.extra["errors"] == [
        {"path": "version", "message": "2 is not after the stored version 2; use 3"},
        {"path": "", "message": "no field here"},
    ]
    assert RulesRefused(["effective_from: too soon"]).status == 422


def test_a_lapse_policy_is_read_and_a_wrong_one_named_with_its_line() -> None:
    good = parse_rules(DEFAULT + "lapse:\n  after_months: 12\n")
    assert good.lapse is not None
    assert good.lapse.lapses_on(date(2026, 12, 3)) == date(2027, 12, 31)
    text = DEFAULT + "lapse:\n  after_months: 12\n  end_of_year_after: 1\n"
    (both,) = problems_of(text)
    assert both.path == "lapse"
    assert "exactly one of after_months" in both.message
    (never,) = problems_of(DEFAULT + "lapse:\n  after_months: 0\n")
    assert (never.path, never.line) == (
        "lapse.after_months",
        line_of(DEFAULT + "lapse:\n  after_months: 0\n", "after_months: 0"),
    )


def test_a_what_if_report_crosses_to_another_process_and_back_whole() -> None:
    report = WhatIfReport(
        events=3,
        categories={"volunteer_service": CategoryImpact(2, 30, 20), "honors": CategoryImpact(1, 0, 50)},
        riders=[("rider:7", 30, 70), ("rider/8", 0, 0)],
        lapsing_current={},
        lapsing_candidate={date(2027, 12, 31): 70, date(9999, 12, 31): 1},
    )
    assert report_of_json(report_json(report)) == report
