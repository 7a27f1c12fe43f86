"""The operators' reports on the real stack: points awarded through events, adjusted and redeemed, read
back as JSON, as CSV (parsed with csv) and as Excel (parsed with openpyxl); the settlements of every
partner; who may read them; and the bad input they refuse. Entries are recorded now, so the reports ask
for yesterday to tomorrow in Asia/Shanghai (a run across midnight stays inside)."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from httpx import Response

from libs.platform.auth import Role
from libs.platform.tables import CSV, XLSX
from tests.e2e.conftest import Api, shift
from tests.e2e.test_redemption import catalogue_entry, confirm_code, grant, new_hold

pytestmark = pytest.mark.e2e

TODAY = datetime.now(ZoneInfo("Asia/Shanghai")).date()
FROM, TO = (TODAY - timedelta(days=1)).isoformat(), (TODAY + timedelta(days=1)).isoformat()
MONTH = TODAY.strftime("%Y-%m")


@pytest.fixture(scope="module")
async def world(stack: Any) -> dict[str, Any]:
    """A rider with two scored shifts, a grant of 50 and one redemption of 30 confirmed at a partner; another
    rider with a grant of 5; and a second partner that redeemed nothing."""
    import httpx

    async with httpx.AsyncClient(timeout=15) as http:
        api = Api(stack.settings, http)
        rider = f"rep-{uuid.uuid4().hex[:12]}"
        events = [shift(rider, 2), shift(rider, 1)]
        assert (await api.publish(events, batch=True)).status_code == 202
        scored = [await api.wait_scored("volunteer-platform", str(e["id"])) for e in events]
        await grant(api, rider, 50)
        other = f"rep-{uuid.uuid4().hex[:12]}"
        await grant(api, other, 5)
        partner, reward = await catalogue_entry(api, cost=30)
        idle, _ = await catalogue_entry(api, cost=10)
        held = await new_hold(api, rider, reward)
        assert (await confirm_code(api, partner, held["code"])).status_code == 200
        return {
            "rider": rider,
            "other": other,
            "awarded": sum(s["points"] for s in scored),
            "partner": partner,
            "idle": idle,
        }


async def points(api: Api, query: str, accept: str | None = None, role: Role = Role.OPERATOR) -> Response:
    headers = {**api.token(role, "ops-test" if role is Role.OPERATOR else "someone")}
    if accept:
        headers["accept"] = accept
    return await api.http.get(f"{api.points_url}/v1/reports/points?{query}", headers=headers)


async def settlements(api: Api, query: str, accept: str | None = None) -> Response:
    headers = {**api.token_for_operator(), **({"accept": accept} if accept else {})}
    return await api.http.get(f"{api.redemption_url}/v1/reports/settlements?{query}", headers=headers)


async def test_by_rider_the_json_report_pages_to_the_riders_sums(api: Api, world: dict[str, Any]) -> None:
    rider = world["rider"]
    # The cursor just before the rider's id: the page of one starts at the rider.
    r = await points(api, f"from={FROM}&to={TO}&by=rider&limit=1&cursor={rider[:-1]}")

    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["from"], body["to"], body["by"]) == (FROM, TO, "rider")
    assert body["items"] == [
        {"key": rider, "awarded": world["awarded"], "adjusted": 50, "redeemed": 30, "lapsed": 0, "events": 2}
    ]
    assert body["next_cursor"] == rider


async def test_by_rider_the_csv_has_chinese_headers_and_the_whole_table(api: Api, world: dict[str, Any]) -> None:
    r = await points(api, f"from={FROM}&to={TO}&by=rider&limit=1", accept=CSV)

    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"] == f'attachment; filename="points-{FROM}_{TO}-by-rider.csv"'
    assert r.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0] == ["骑手", "奖励积分", "调整积分", "兑换积分", "过期积分", "事件数"]
    assert [world["rider"], str(world["awarded"]), "50", "30", "0", "2"] in rows
    assert [world["other"], "0", "5", "0", "0", "0"] in rows  # no paging: limit=1 is for JSON pages only


async def test_by_category_the_excel_file_names_the_categories_in_chinese(api: Api, world: dict[str, Any]) -> None:
    r = await points(api, f"from={TODAY}&to={TODAY}&by=category", accept=XLSX)

    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == XLSX
    assert r.headers["content-disposition"] == f'attachment; filename="points-{TODAY}_{TODAY}-by-category.xlsx"'
    sheet = openpyxl.load_workbook(io.BytesIO(r.content))["积分台账"]
    rows = [[c.value for c in row] for row in sheet.iter_rows()]
    assert rows[0] == ["类别", "类别名称", "奖励积分", "调整积分", "兑换积分", "过期积分", "事件数"]
    volunteer = next(row for row in rows if row[0] == "volunteer_service")
    assert volunteer[1] == "志愿服务"
    assert isinstance(volunteer[2], int)
    assert volunteer[2] >= world["awarded"]
    assert volunteer[6] >= 2
    assert sheet.freeze_panes == "A2"


async def test_by_day_the_json_report_has_todays_row(api: Api, world: dict[str, Any]) -> None:
    r = await points(api, f"from={FROM}&to={TO}&by=day", accept="text/html")  # unknown Accept: JSON

    assert r.status_code == 200, r.text
    assert "accept" in [v.strip().lower() for v in r.headers["vary"].split(",")]
    today = next(i for i in r.json()["items"] if i["key"] == TODAY.isoformat())
    assert today["awarded"] >= world["awarded"]
    assert today["redeemed"] >= 30


async def test_settlements_file_every_partner_zeros_included(api: Api, world: dict[str, Any]) -> None:
    r = await settlements(api, f"month={MONTH}")
    assert r.status_code == 200, r.text
    items = {i["partner_id"]: i for i in r.json()["items"]}
    assert items[world["partner"]] == {
        "partner_id": world["partner"],
        "name": "老王面馆",
        "kind": "merchant",
        "redemptions": 1,
        "points_total": 30,
    }
    assert (items[world["idle"]]["redemptions"], items[world["idle"]]["points_total"]) == (0, 0)

    as_csv = await settlements(api, f"month={MONTH}", accept=CSV)
    rows = list(csv.reader(io.StringIO(as_csv.content.decode("utf-8-sig"))))
    assert as_csv.headers["content-disposition"] == f'attachment; filename="settlements-{MONTH}.csv"'
    assert rows[0] == ["商户编号", "商户名称", "类型", "月份", "兑换笔数", "结算积分"]
    assert [world["partner"], "老王面馆", "商家", MONTH, "1", "30"] in rows

    as_xlsx = await settlements(api, f"month={MONTH}", accept=XLSX)
    sheet = openpyxl.load_workbook(io.BytesIO(as_xlsx.content))["结算表"]
    assert [world["idle"], "老王面馆", "商家", MONTH, 0, 0] in [[c.value for c in row] for row in sheet.iter_rows()]


@pytest.mark.parametrize("role", [Role.RIDER, Role.PARTNER, Role.SOURCE])
async def test_only_operators_read_reports(api: Api, role: Role) -> None:
    headers = api.token(role, "someone")
    answers = [
        await api.http.get(f"{api.points_url}/v1/reports/points?from={FROM}&to={TO}&by=day", headers=headers),
        await api.http.get(f"{api.redemption_url}/v1/reports/settlements?month={MONTH}", headers=headers),
        await api.http.get(
            f"{api.points_url}/v1/reports/points?from={FROM}&to={TO}&by=day", headers=headers | {"accept": CSV}
        ),
    ]
    assert [a.status_code for a in answers] == [403, 403, 403]
    assert all(a.headers["content-type"] == "application/problem+json" for a in answers)


async def test_no_token_is_401(api: Api) -> None:
    answers = [
        await api.http.get(f"{api.points_url}/v1/reports/points?from={FROM}&to={TO}&by=day"),
        await api.http.get(f"{api.redemption_url}/v1/reports/settlements?month={MONTH}"),
    ]
    assert [a.status_code for a in answers] == [401, 401]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=2026-11-30&to=2026-11-01&by=day", "from"),
        ("from=2024-01-01&to=2025-01-01&by=day", "to"),
        ("from=2026-11-31&to=2026-12-01&by=day", "from"),
        ("from=9999-12-31&to=9999-12-31&by=day", "from"),
        ("from=2026-11-01%00&to=2026-11-30&by=day", "from"),
        (f"from=2026-11-01&to={'9' * 60_000}&by=day", "to"),
        ("from=2026-11-01&to=2026-11-30&by=week", "by"),
        ("from=2026-11-01&to=2026-11-30", "by"),
        ("from=2026-11-01&to=2026-11-30&by=rider&cursor=a%2Fb", "cursor"),
        ("from=2026-11-01&to=2026-11-30&by=day&cursor=rider-1", "cursor"),
        ("from=2026-11-01&to=2026-11-30&by=rider&limit=501", "limit"),
        ("from=2026-11-01&to=2026-11-30&by=rider&limit=x", "limit"),
    ],
)
async def test_bad_points_queries_are_422_naming_the_field(api: Api, query: str, field: str) -> None:
    for accept in (None, CSV):
        r = await points(api, query, accept=accept)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert field in r.json()["detail"]


@pytest.mark.parametrize("month", ["2026-13", "9999-01", "2026-1", "2026-11%00", ""])
async def test_bad_months_are_422(api: Api, month: str) -> None:
    r = await settlements(api, f"month={month}")
    assert r.status_code == 422, r.text
    assert "month" in r.json()["detail"]
