"""The reports' pure parts: the period a report covers and its refusals, the Accept negotiation, the CSV
injection guard, and the rows as CSV and Excel."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import openpyxl
import pytest

from libs.platform.errors import DomainError
from libs.platform.tables import Column, Format, Table, format_of, safe_cell, to_csv, to_xlsx
from services.points.domain.reports import By, PointsRow, filename, page_after, period_of, points_table
from services.redemption.domain.catalogue import Partner
from services.redemption.domain.settlement import settlement_of, settlement_table


def test_a_period_is_whole_shanghai_days_both_included() -> None:
    p = period_of("2026-11-01", "2026-11-30")
    assert p.start == datetime(2026, 10, 31, 16, tzinfo=UTC)
    assert p.end == datetime(2026, 11, 30, 16, tzinfo=UTC)
    assert filename(p, By.CATEGORY) == "points-2026-11-by-category"
    assert filename(period_of("2026-11-03", "2026-11-09"), By.DAY) == "points-2026-11-03_2026-11-09-by-day"
    assert period_of("2026-12-01", "2026-12-31").name() == "2026-12"


def test_366_days_are_allowed_367_refused() -> None:
    assert period_of("2024-01-01", "2024-12-31").first.year == 2024  # 366 days, a leap year
    with pytest.raises(DomainError, match=r"^to: .* 367 days; ask for at most 366"):
        period_of("2024-01-01", "2025-01-01")


@pytest.mark.parametrize(
    ("first", "last", "field"),
    [
        ("2026-11-30", "2026-11-01", "from"),  # from after to
        ("2026-13-01", "2026-12-01", "from"),
        ("2026-11-1", "2026-11-30", "from"),
        ("2026-11-01", "２０２６-11-30", "to"),  # full-width digits
        ("2026-11-01", "2026-02-30", "to"),
        ("9999-12-31", "9999-12-31", "from"),  # no day after it
        ("2026-11-01", "9999-12-31", "to"),
        ("1999-12-31", "2000-01-01", "from"),
        ("2026-11-01\x00", "2026-11-30", "from"),
        ("x" * 1_048_576, "2026-11-30", "from"),
    ],
)
def test_bad_periods_are_refused_naming_the_field(first: str, last: str, field: str) -> None:
    with pytest.raises(DomainError) as refused:
        period_of(first, last)
    assert refused.value.detail.startswith(f"{field}: ")
    assert refused.value.status == 422
    assert len(refused.value.detail) < 200  # a 1 MiB value is not echoed back whole


@pytest.mark.parametrize(
    ("accept", "fmt"),
    [
        (None, Format.JSON),
        ("", Format.JSON),
        ("*/*", Format.JSON),
        ("application/json", Format.JSON),
        ("text/html, application/xml;q=0.9", Format.JSON),  # unknown: JSON, not 406
        ("text/csv", Format.CSV),
        ("TEXT/CSV; charset=utf-8", Format.CSV),
        ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", Format.XLSX),
        ("text/csv;q=0.5, application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", Format.XLSX),
        ("text/csv;q=0", Format.JSON),
        ("text/csv;q=nonsense", Format.JSON),
    ],
)
def test_the_accept_header_picks_the_format(accept: str | None, fmt: Format) -> None:
    assert format_of(accept) is fmt


@pytest.mark.parametrize("text", ["=1+1", "+1", "-2", "@SUM(A1)", "\t=1", "\r=1", '=HYPERLINK("http://x")'])
def test_a_cell_that_starts_like_a_formula_is_quoted(text: str) -> None:
    assert safe_cell(text) == "'" + text


@pytest.mark.parametrize("value", ["rider-1", "a=b", "", 5, -5])
def test_other_cells_stay_as_they_are(value: object) -> None:
    assert safe_cell(value) == value  # numbers, negative ones too, stay numbers


ROWS = [
    PointsRow("safe_riding", 30, -5, 0, 0, 3),
    PointsRow("volunteer_service", 120, 0, 0, 0, 4),
]


def test_by_category_the_table_carries_the_chinese_name() -> None:
    table = points_table(By.CATEGORY, ROWS)
    assert table.headers() == ["类别", "类别名称", "奖励积分", "调整积分", "兑换积分", "过期积分", "事件数"]
    assert table.rows[1] == ("volunteer_service", "志愿服务", 120, 0, 0, 0, 4)


def test_by_rider_the_key_is_the_rider() -> None:
    table = points_table(By.RIDER, [PointsRow("=cmd|' /C calc'!A0", 1, 0, 0, 0, 1)])
    assert table.headers()[0] == "骑手"
    parsed = list(csv.reader(io.StringIO(to_csv(table).decode("utf-8-sig"))))
    assert parsed[1] == ["'=cmd|' /C calc'!A0", "1", "0", "0", "0", "1"]


def test_csv_is_utf8_with_a_bom() -> None:
    body = to_csv(points_table(By.DAY, [PointsRow("2026-11-01", 5, 0, 0, 0, 1)]))
    assert body.startswith(b"\xef\xbb\xbf")
    assert body.decode("utf-8-sig").splitlines() == [
        "日期,奖励积分,调整积分,兑换积分,过期积分,事件数",
        "2026-11-01,5,0,0,0,1",
    ]


def test_excel_has_a_bold_frozen_header_and_numbers_as_numbers() -> None:
    table = Table((Column("key", "骑手", "text"), Column("n", "事件数")), [("=1+1", 3), ("rider-2", -4)])
    book = openpyxl.load_workbook(io.BytesIO(to_xlsx(table, "积分台账")))
    sheet = book["积分台账"]
    assert [c.value for c in sheet[1]] == ["骑手", "事件数"]
    assert sheet["A1"].font.b
    assert sheet.freeze_panes == "A2"
    assert sheet["A2"].value == "=1+1"
    assert sheet["A2"].data_type == "s"
    assert sheet["B3"].value == -4
    assert sheet["B3"].data_type == "n"
    assert sheet.column_dimensions["A"].width >= 8


def test_the_settlement_sheet_files_every_partner() -> None:
    partners = [Partner("noodles", "老王面馆", "merchant"), Partner("clinic", "社区医院", "hospital")]
    done = [settlement_of("noodles", "2026-11", []), settlement_of("clinic", "2026-11", [])]
    table = settlement_table(partners, done)
    assert table.rows == [
        ("noodles", "老王面馆", "商家", "2026-11", 0, 0),
        ("clinic", "社区医院", "医院", "2026-11", 0, 0),
    ]


def test_a_cursor_by_day_is_a_day() -> None:
    assert page_after(By.DAY, "2026-11-05") == "2026-11-05"
    assert page_after(By.RIDER, "rider-1") == "rider-1"
    with pytest.raises(DomainError, match=r"^cursor: "):
        page_after(By.DAY, "rider-1")
