"""Points that lapse (积分有效期) on the pages, in a real browser against the real stack, at a 1280 px screen
and a 390 px phone: under the balance the rider reads one line per day that points lapse after, soonest
first, in Chinese and in English; a lapse in the history has its own label and the API's reason; the
console's 骑手 tab shows the same lines for the rider it shows. The lots are real ledger entries, appended
through the ledger package to the stack's database, and the lapse is the lapse job's own. Screenshot:
test-artifacts/screenshots/rider-lapsing.png at 390 px (docs/rider-lapsing.png is a copy)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import pytest
from babel.dates import format_date
from playwright.async_api import Browser, Locator, Page, expect

from libs.ledger.model import LedgerTransaction
from libs.ledger.store import LedgerStore
from libs.platform.auth import Role, mint_token
from libs.platform.db import Database
from libs.platform.localstack import LocalStack
from libs.platform.settings import Settings
from services.points.domain.lapsing import today
from services.points.lapsing import lapse_due
from tests.e2e.conftest import SHOTS, Api
from tests.e2e.test_dispute_pages import the_console
from tests.e2e.test_operator_console import open_tab, shot
from tests.e2e.test_pages import entries_in, pages_url
from tests.lots import lot_credit

pytestmark = pytest.mark.e2e

TODAY = today(datetime.now(UTC))
SOON = date(TODAY.year + 1, 12, 31)  # 31 December of the year after, as a rules version may say
LATER = date(TODAY.year + 2, 6, 30)
GONE = TODAY - timedelta(days=1)  # a lot good until yesterday: the lapse job lapses it today


@pytest.fixture(scope="module")
async def ledger(stack: LocalStack) -> AsyncIterator[Database]:
    """The stack's own database, as the services use it."""
    db = Database(stack.settings)
    await db.open()
    yield db
    await db.close()


def credit(rider_id: str, amount: int, lapses_on: date | None, awarded_on: date = TODAY) -> LedgerTransaction:
    return lot_credit(rider_id, amount, lapses_on, awarded_on, note="有效期测试")


async def append(ledger: Database, *txs: LedgerTransaction) -> None:
    await ledger.run(lambda conn: LedgerStore(conn).append(list(txs)))


async def lots(ledger: Database, settings: Settings, rider: str) -> None:
    """30 points good until SOON and 1 until LATER (appended in the other order: the lines go by day, not
    by entry), and 12 awarded a month ago, good until yesterday, which the lapse job lapses now (or the
    worker's own run did already: a lot lapses once)."""
    await append(ledger, credit(rider, 1, LATER), credit(rider, 30, SOON))
    await append(ledger, credit(rider, 12, GONE, awarded_on=GONE - timedelta(days=30)))
    await lapse_due(ledger, settings)


def chinese(day: date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


def english(day: date) -> str:
    return format_date(day, format="long", locale="en")  # CLDR, as the browser's Intl


async def lines(box: Locator) -> list[str]:
    await expect(box).to_be_visible()
    return [text.strip() for text in await box.get_by_test_id("lapsing-line").all_inner_texts()]


async def fits(page: Page, box: Locator, width: int) -> None:
    """Nothing wider than the screen: no sideways scrolling of the page, every line inside it."""
    assert await page.evaluate("document.documentElement.scrollWidth") <= width
    for line in await box.get_by_test_id("lapsing-line").all():
        bounds = await line.bounding_box()
        assert bounds is not None
        assert 0 <= bounds["x"] <= bounds["x"] + bounds["width"] <= width, bounds


async def open_rider(console: Page, rider: str) -> Locator:
    """The console's 骑手 tab: find the rider by its id and open it."""
    await console.get_by_label("骑手编号开头").fill(rider)
    await console.get_by_role("button", name="查找").click()
    await console.get_by_role("button", name=rider, exact=True).click()
    await expect(console.locator("#rd-id")).to_have_text(rider)
    await expect(console.locator("body[data-ready=true]")).to_have_count(1)
    return console.get_by_test_id("rider-detail")


async def rider_page(browser: Browser, api: Api, rider: str, width: int) -> Page:
    context = await browser.new_context(
        viewport={"width": width, "height": 844}, locale="zh-CN", timezone_id="Asia/Shanghai"
    )
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{pages_url(api)}/rider#token={mint_token(api.settings, Role.RIDER, rider)}")
    await expect(page.locator("body[data-ready=true]")).to_have_count(1)
    assert errors == [], errors
    return page


@pytest.mark.parametrize("width", [1280, 390])
async def test_the_rider_and_the_console_see_what_lapses_next_soonest_first(
    browser: Browser, api: Api, ledger: Database, rider: str, width: int
) -> None:
    await lots(ledger, api.settings, rider)
    assert [(x["on"], x["points"]) for x in (await api.balance(rider))["lapsing"]] == [
        (SOON.isoformat(), 30),
        (LATER.isoformat(), 1),
    ]
    lapse_zh = next(e for e in await entries_in(api, rider, "zh-CN") if e["kind"] == "lapse")
    lapse_en = next(e for e in await entries_in(api, rider, "en") if e["kind"] == "lapse")

    page = await rider_page(browser, api, rider, width)
    await expect(page.get_by_test_id("available")).to_have_text("31")  # 30 + 1 + 12, less the 12 lapsed
    box = page.get_by_test_id("lapsing")
    assert await lines(box) == [f"30 分将于 {chinese(SOON)} 过期", f"1 分将于 {chinese(LATER)} 过期"]
    await fits(page, box, width)
    lapse = page.get_by_test_id("entry").first  # the newest entry
    await expect(lapse.locator("strong")).to_have_text("积分过期")
    await expect(lapse.locator(".amount")).to_have_text("-12 分")
    await expect(lapse.locator(".reason")).to_have_text(lapse_zh["reason"])
    assert "已过期" in lapse_zh["reason"]
    assert chinese(GONE) in lapse_zh["reason"]  # its last good day, as the page writes days
    if width == 390:
        await page.screenshot(path=SHOTS / "rider-lapsing.png", full_page=True)

    await page.get_by_role("link", name="Switch to English").click()
    await expect(page.locator("body[data-ready=true]")).to_have_count(1)
    assert await lines(box) == [
        f"30 points lapse after {english(SOON)}",
        f"1 point lapses after {english(LATER)}",  # one point: the singular
    ]
    await fits(page, box, width)
    await expect(lapse.locator("strong")).to_have_text("Points lapsed")
    await expect(lapse.locator(".reason")).to_have_text(lapse_en["reason"])
    await page.context.close()

    console = await the_console(browser, api, width)
    await open_tab(console, "骑手")
    detail = await open_rider(console, rider)
    await expect(detail.get_by_test_id("rd-available")).to_have_text("31")
    in_console = detail.get_by_test_id("rd-lapsing")
    assert await lines(in_console) == [f"30 分将于 {chinese(SOON)} 过期", f"1 分将于 {chinese(LATER)} 过期"]
    await fits(console, in_console, width)
    await expect(detail.get_by_test_id("rd-entry").first.locator("strong")).to_have_text("积分过期")
    await shot(console, "riders-lapsing")
    await console.context.close()


async def test_nothing_is_said_of_lapsing_when_no_points_lapse(
    browser: Browser, api: Api, ledger: Database, rider: str
) -> None:
    """Points that never lapse: no line on the rider's page; and in the console, none left over from the
    rider shown before."""
    other = f"{rider}-lots"
    await append(ledger, credit(rider, 20, None), credit(other, 30, SOON))  # no lot, whatever the rules say
    assert (await api.balance(rider))["lapsing"] == []
    page = await rider_page(browser, api, rider, 390)
    await expect(page.get_by_test_id("available")).to_have_text("20")
    await expect(page.get_by_test_id("lapsing")).to_be_hidden()
    await expect(page.get_by_test_id("lapsing-line")).to_have_count(0)
    await page.context.close()

    console = await the_console(browser, api, 1280)
    await open_tab(console, "骑手")
    detail = await open_rider(console, other)
    assert await lines(detail.get_by_test_id("rd-lapsing")) == [f"30 分将于 {chinese(SOON)} 过期"]
    await open_rider(console, rider)
    await expect(detail.get_by_test_id("rd-available")).to_have_text("20")
    await expect(detail.get_by_test_id("rd-lapsing")).to_be_hidden()
    await expect(detail.get_by_test_id("lapsing-line")).to_have_count(0)
    await console.context.close()
