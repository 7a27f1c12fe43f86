"""The sub-district's console (/operator) in a real browser (Debian's chromium driven by Playwright)
against the real stack, at a 1280 px screen and a 390 px phone: signing in with a pasted token, finding a
rider and adjusting its points through a confirmation step, partners and rewards added, edited and taken
off the catalogue, dead letters with their reasons and a retry. Each form shows the server's refusal next
to its field and nothing is half applied. Screenshots: test-artifacts/screenshots/operator-*.png (the
docs' docs/operator-*.png are copies)."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import orjson
import pytest
import yaml
from aiokafka import AIOKafkaProducer
from playwright.async_api import Browser, Page, ViewportSize, expect

from libs.platform.auth import Role, mint_token
from libs.platform.localstack import LocalStack
from services.points.rules_files import DEFAULT_RULES_FILE
from tests.e2e.conftest import SHOTS, Api, eventually, shift, to_kafka
from tests.e2e.test_redemption import catalogue_entry, grant

pytestmark = pytest.mark.e2e

SCREEN: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
SHANGHAI = ZoneInfo("Asia/Shanghai")
WIDTHS = [pytest.param(SCREEN, id="1280px"), pytest.param(PHONE, id="390px")]


@pytest.fixture
async def console(browser: Browser, api: Api, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """A fresh tab on /operator, signed in by pasting an operator token, on the overview."""
    viewport: ViewportSize = getattr(request, "param", SCREEN)
    context = await browser.new_context(viewport=viewport, locale="zh-CN", timezone_id="Asia/Shanghai")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"http://{api.settings.host}:{api.settings.pages_port}/operator")
    await page.get_by_label("登录令牌").fill(mint_token(api.settings, Role.OPERATOR, "街道-王"))
    await page.locator("#signin-form button").click()
    await expect(page.locator("#who-sub")).to_have_text("街道-王")
    await expect(page.locator("body[data-ready=true]")).to_have_count(1)  # the overview has loaded
    yield page
    assert errors == [], errors
    await context.close()


async def open_tab(page: Page, name: str) -> None:
    await page.get_by_role("tab", name=name).click()
    await expect(page.locator("body[data-ready=true]")).to_have_count(1)


async def shot(page: Page, name: str) -> None:
    suffix = "" if (page.viewport_size or SCREEN)["width"] >= 1000 else "-phone"
    await page.screenshot(path=SHOTS / f"operator-{name}{suffix}.png", full_page=True)


@pytest.mark.parametrize("console", WIDTHS, indirect=True)
async def test_an_operator_finds_a_rider_and_adjusts_its_points_after_confirming(
    console: Page, api: Api, rider: str
) -> None:
    page = console
    await grant(api, rider, 25)
    assert "token" not in page.url  # pasted, never in an address
    await open_tab(page, "骑手")
    await page.get_by_label("骑手编号开头").fill(rider)
    await page.get_by_role("button", name="查找").click()
    await page.get_by_role("button", name=rider).click()
    detail = page.get_by_test_id("rider-detail")
    await expect(detail.get_by_test_id("rd-available")).to_have_text("25")
    await expect(detail.get_by_test_id("rd-entry").first).to_contain_text("test grant")

    # Checked on the page before anything is sent: nothing posted.
    form = page.locator("#adjust-form")
    await form.get_by_label("积分（正数增加，负数扣减）").fill("0")
    await form.get_by_role("button", name="核对").click()
    await expect(page.locator("#adj-amount-error")).to_have_text("请输入不为 0 的整数，例如 30 或 -10。")

    # Refused by the server, shown next to its field, nothing changed.
    await form.get_by_label("积分（正数增加，负数扣减）").fill("-100")
    await form.get_by_label("原因（骑手可见）").fill("扣减测试")
    await form.get_by_role("button", name="核对").click()
    await page.get_by_role("button", name="确认调整").click()
    await expect(page.locator("#adj-amount-error")).to_have_text("骑手可用积分不足，扣减不能超过可用积分。")
    assert (await api.balance(rider))["available"] == 25

    # Cancelled at the confirmation: nothing posted; confirmed: posted once.
    await form.get_by_label("积分（正数增加，负数扣减）").fill("15")
    await form.get_by_label("原因（骑手可见）").fill("补发 5 月 3 日志愿服务积分")
    await form.get_by_role("button", name="核对").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_contain_text(f"确认给 {rider} 调整 +15 分")
    await dialog.get_by_role("button", name="取消").click()
    assert (await api.balance(rider))["available"] == 25
    await form.get_by_role("button", name="核对").click()
    await page.get_by_role("button", name="确认调整").click()
    await expect(page.locator("#status")).to_have_text(f"已给 {rider} 调整 +15 分。")
    await expect(detail.get_by_test_id("rd-available")).to_have_text("40")
    await expect(detail.get_by_test_id("rd-entry").first).to_contain_text("补发 5 月 3 日志愿服务积分")
    await expect(detail.get_by_test_id("rd-entry").first).to_contain_text("操作人 街道-王")
    adjustments = [e for e in await api.entries(rider) if e["kind"] == "adjustment"]
    assert [e["amount"] for e in adjustments] == [15, 25]
    await shot(page, "riders")


@pytest.mark.parametrize("console", WIDTHS, indirect=True)
async def test_an_operator_adds_a_barber_and_a_reward_edits_it_and_takes_it_off(console: Page, api: Api) -> None:
    page = console
    tag = uuid.uuid4().hex[:6]
    partner, reward = f"barber-{tag}", f"haircut-{tag}"
    await open_tab(page, "商家与奖励")

    partner_form = page.locator("#partner-form")
    await partner_form.get_by_label("商家编号").fill("bad id/with slash")
    await partner_form.get_by_label("商家", exact=True).fill("老李理发")
    await partner_form.get_by_role("button", name="添加商家").click()
    await expect(page.locator("#pf-partner_id-error")).not_to_be_empty()
    await partner_form.get_by_label("商家编号").fill(partner)
    await partner_form.locator("#pf-kind").select_option("barber")
    await partner_form.get_by_role("button", name="添加商家").click()
    await expect(page.locator("#status")).to_have_text("已添加 老李理发。")
    await expect(page.get_by_test_id("partner-row").filter(has_text=partner)).to_contain_text("理发")

    reward_form = page.locator("#reward-form")
    await reward_form.get_by_label("奖励编号").fill(reward)
    await reward_form.locator("#rf-partner_id").select_option(partner)
    await reward_form.get_by_label("名称").fill("免费理发一次")
    await reward_form.locator("#rf-cost").fill("-5")
    await reward_form.get_by_role("button", name="保存奖励").click()
    await expect(page.locator("#rf-cost-error")).not_to_be_empty()
    assert reward not in await catalogue_ids(api)  # refused: nothing stored
    await reward_form.locator("#rf-cost").fill("60")
    await reward_form.get_by_label("每月库存").fill("20")
    await reward_form.get_by_role("button", name="保存奖励").click()
    await expect(page.locator("#status")).to_have_text("已保存“免费理发一次”。")
    row = page.locator(f"[data-testid=reward-row][data-reward={reward}]")
    await expect(row).to_contain_text("上架中")
    await expect(row).to_contain_text("20")

    await row.get_by_role("button", name="编辑 免费理发一次").click()
    await reward_form.locator("#rf-cost").fill("50")
    await reward_form.get_by_role("button", name="保存奖励").click()
    await expect(row).to_contain_text("50")

    await row.get_by_role("button", name="下架 免费理发一次").click()
    await page.get_by_role("dialog").get_by_role("button", name="下架").click()
    await expect(page.locator("#status")).to_have_text("“免费理发一次”已下架。")
    await expect(row).to_contain_text("已下架")
    assert reward not in await catalogue_ids(api)  # the riders' catalogue no longer offers it
    await shot(page, "partners")


async def catalogue_ids(api: Api) -> set[str]:
    r = await api.http.get(f"{api.redemption_url}/v1/rewards", headers=api.token(Role.RIDER, "any-rider"))
    assert r.status_code == 200, r.text
    return {i["reward_id"] for i in r.json()["items"]}


@pytest.mark.parametrize("console", WIDTHS, indirect=True)
async def test_an_operator_sees_a_dead_letter_with_its_reason_and_retries_it(
    console: Page, api: Api, stack: LocalStack, kafka: AIOKafkaProducer, rider: str
) -> None:
    page = console
    bad = shift(rider, 1, type="volunteer.shift.invented")
    await to_kafka(kafka, stack.settings, orjson.dumps(bad), rider)

    async def listed() -> bool | None:
        r = await api.http.get(f"{api.events_url}/v1/dead-letters?limit=50", headers=api.token_for_operator())
        return True if any(d["event_id"] == bad["id"] for d in r.json()["items"]) else None

    await eventually(listed, 30, "the dead letter")
    await open_tab(page, "异常")
    letter = page.get_by_test_id("dead-letter").filter(has_text=bad["id"])
    await expect(letter.locator(".reason")).not_to_be_empty()
    await letter.locator("summary").click()
    await expect(letter.locator("pre")).to_contain_text(rider)
    await letter.get_by_role("button", name="重试").click()
    await expect(letter.get_by_test_id("dl-result")).to_have_text("仍被拒绝：刷新后查看新的原因。")
    await shot(page, "dead-letters")


async def test_a_token_of_another_role_is_refused_and_a_token_in_the_address_is_ignored(
    browser: Browser, api: Api
) -> None:
    context = await browser.new_context(viewport=SCREEN, locale="zh-CN")
    page = await context.new_page()
    url = f"http://{api.settings.host}:{api.settings.pages_port}/operator"
    await page.goto(f"{url}#token={mint_token(api.settings, Role.OPERATOR, 'ops-test')}")
    await expect(page.locator("#signin")).to_be_visible()  # the console takes a pasted token only
    assert await page.evaluate("sessionStorage.length") == 0
    await page.get_by_label("登录令牌").fill(mint_token(api.settings, Role.RIDER, "rider-x"))
    await page.locator("#signin-form button").click()
    await expect(page.locator("#error")).to_have_text("这个令牌不能做这件事。")
    await expect(page.locator("#app")).to_be_hidden()
    headers = (await page.request.get(url)).headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert f"http://{api.settings.host}:{api.settings.events_port}" in headers["content-security-policy"]
    await context.close()


@pytest.mark.parametrize("console", WIDTHS, indirect=True)
async def test_the_overview_charts_todays_points_by_category_and_counts_waiting_dead_letters(
    console: Page, api: Api, rider: str
) -> None:
    page = console
    event = shift(rider, 2, time=datetime.now(SHANGHAI).isoformat())  # scored today, under the rules in force
    assert (await api.publish(event)).status_code == 202
    await api.wait_scored("volunteer-platform", str(event["id"]))
    await open_tab(page, "概览")
    today = page.get_by_test_id("chart-today")
    await expect(today.locator("svg text").first).to_have_text("志愿服务类")
    assert int((await page.locator("#ov-today-total").inner_text()).replace(",", "")) >= 20
    await expect(page.get_by_test_id("chart-kinds").locator("svg text").first).to_have_text("暖“新”商家")
    await expect(page.get_by_test_id("ov-dead")).to_have_text(re.compile(r"^\d+\+?$"))
    await expect(page.get_by_test_id("ov-last-scored")).to_have_text(re.compile(r"(秒钟前|分钟前|现在)$"))
    await shot(page, "overview")


RULES_DAY = "2025-04-15"  # a day of this test's own: the what-if covers every event of its period


@pytest.mark.parametrize("console", [pytest.param(SCREEN, id="1280px")], indirect=True)
async def test_an_operator_checks_a_rules_file_tries_it_out_and_publishes_it(
    console: Page, api: Api, rider: str
) -> None:
    page = console
    event = shift(rider, 2, time=f"{RULES_DAY}T10:00:00+08:00")
    assert (await api.publish(event)).status_code == 202
    await api.wait_scored("volunteer-platform", str(event["id"]))
    await open_tab(page, "规则")
    await expect(page.get_by_test_id("rule-version").filter(has_text="warmbee-default v1")).to_have_count(1)

    # A broken file: every problem with its line, nothing stored.
    text = DEFAULT_RULES_FILE.read_text(encoding="utf-8")
    broken = text.replace("points_per_hour: 10", "points_per_hour: 0")
    await page.locator("#ru-text").fill(broken)
    await page.get_by_role("button", name="检查").click()
    line = broken.splitlines().index(next(x for x in broken.splitlines() if "points_per_hour: 0" in x)) + 1
    await expect(page.get_by_test_id("rule-problem")).to_contain_text(f"第 {line} 行")

    # A candidate of its own rules id: doubled volunteer points, effective in a minute.
    rules_id = f"console-{uuid.uuid4().hex[:6]}"
    candidate = yaml.safe_load(text) | {"rules_id": rules_id, "version": 1}
    candidate["categories"]["volunteer_service"]["points_per_hour"] = 20
    await page.locator("#ru-text").fill(yaml.safe_dump(candidate, allow_unicode=True, sort_keys=False))
    await page.get_by_role("button", name="检查").click()
    await expect(page.get_by_test_id("rule-valid")).to_contain_text(f"检查通过：{rules_id} v1")

    await page.locator("#ru-from").fill(RULES_DAY)
    await page.locator("#ru-to").fill(RULES_DAY)
    await page.get_by_role("button", name="试算").click()
    report = page.get_by_test_id("whatif")
    await expect(report.get_by_test_id("whatif-row").filter(has_text="志愿服务类")).to_contain_text("+")
    await expect(report.get_by_test_id("whatif-row").filter(has_text=rider)).to_contain_text("+20")
    await shot(page, "rules")

    # Publishing asks first; the version published is listed. It scores as the rules in force do, and
    # takes effect in seconds (a version far ahead would refuse every later one an earlier date).
    in_force = (await api.http.get(f"{api.points_url}/v1/rules", headers=api.token_for_operator())).json()
    candidate["categories"] = in_force["categories"]
    effective = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=8)
    candidate["effective_from"] = effective.isoformat()
    await page.locator("#ru-text").fill(yaml.safe_dump(candidate, allow_unicode=True, sort_keys=False))
    await page.get_by_role("button", name="发布").click()
    await page.get_by_role("dialog").get_by_role("button", name="发布").click()
    await expect(page.locator("#status")).to_contain_text(f"已发布 {rules_id} v1")
    await expect(page.get_by_test_id("rule-version").filter(has_text=f"{rules_id} v1")).to_have_count(1)
    # In force before the test ends: a later test's version, a few seconds ahead of its own now, is after it.
    await asyncio.sleep(max(0.0, (effective - datetime.now(UTC)).total_seconds() + 0.5))


@pytest.mark.parametrize("console", WIDTHS, indirect=True)
async def test_the_monthly_ledger_and_the_settlements_show_and_download_as_csv_and_excel(
    console: Page, api: Api, rider: str, tmp_path: Path
) -> None:
    page = console
    await catalogue_entry(api)  # a partner to settle, even on a stack of this test alone
    await grant(api, rider, 7)
    event = shift(rider, 1, time=datetime.now(SHANGHAI).isoformat())
    assert (await api.publish(event)).status_code == 202
    await api.wait_scored("volunteer-platform", str(event["id"]))
    month = datetime.now(SHANGHAI).strftime("%Y-%m")
    await open_tab(page, "报表")
    await expect(page.get_by_test_id("report-row").filter(has_text="志愿服务类")).to_have_count(1)
    await expect(page.get_by_test_id("report-row").filter(has_text="未分类")).to_have_count(1)  # adjustments
    await expect(page.get_by_test_id("settlement-row").filter(has_text="老王面馆").first).to_contain_text("暖“新”商家")
    await page.locator("#rp-by").select_option("rider")
    await page.locator("#report-form button[type=submit]").click()
    await expect(page.locator("#rp-key-h")).to_have_text("骑手")

    async with page.expect_download() as csv_download:
        await page.get_by_role("button", name="下载 CSV").first.click()
    saved = await (await csv_download.value).path()
    assert (await csv_download.value).suggested_filename.endswith(".csv")
    text = await asyncio.to_thread(Path(saved).read_text, encoding="utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][0] == "骑手"
    assert next(r for r in rows if r[0] == rider)[1:4] == ["10", "7", "0"]  # awarded, adjusted, redeemed

    async with page.expect_download() as xlsx_download:
        await page.get_by_role("button", name="下载 Excel").first.click()
    workbook = tmp_path / (await xlsx_download.value).suggested_filename  # openpyxl goes by the extension
    await (await xlsx_download.value).save_as(workbook)
    book = openpyxl.load_workbook(workbook, read_only=True)
    sheet_rows = list(book.active.iter_rows(values_only=True))
    assert sheet_rows[0][0] == "骑手"
    assert any(r[0] == rider for r in sheet_rows[1:])
    assert month in (await xlsx_download.value).suggested_filename
    await shot(page, "reports")


async def test_the_english_switch_keeps_the_operator_signed_in_and_the_tab_in_english(console: Page) -> None:
    page = console
    await page.get_by_role("link", name="Switch to English").click()
    await expect(page.locator("h1")).to_have_text("Sub-district console")
    assert await page.locator("html").get_attribute("lang") == "en"
    await expect(page.locator("#who-sub")).to_have_text("街道-王")  # the token stayed in the tab
    await open_tab(page, "Partners and rewards")
    await expect(page.get_by_role("heading", name="Partners", exact=True)).to_be_visible()
