"""Disputes (申诉) in real browsers against the real stack: a rider questions a 0-point shift on the phone
(有疑问), an operator weighs it in the console's 申诉 tab and upholds it through a confirmation step, and
the rider sees the reply and the points on the page. Screenshots: test-artifacts/screenshots/
rider-dispute.png and operator-disputes.png (the docs' copies are in docs/)."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, Page, expect

from libs.platform.auth import Role, mint_token
from tests.e2e.conftest import SHOTS, Api, shift
from tests.e2e.test_operator_console import open_tab
from tests.e2e.test_pages import pages_url, phone

pytestmark = pytest.mark.e2e


async def the_console(browser: Browser, api: Api, width: int) -> Page:
    context = await browser.new_context(
        viewport={"width": width, "height": 900}, locale="zh-CN", timezone_id="Asia/Shanghai"
    )
    page = await context.new_page()
    await page.goto(f"{pages_url(api)}/operator")
    await page.get_by_label("登录令牌").fill(mint_token(api.settings, Role.OPERATOR, "街道-李"))
    await page.locator("#signin-form button").click()
    await expect(page.locator("body[data-ready=true]")).to_have_count(1)
    return page


@pytest.mark.parametrize("width", [1280, 390])
async def test_a_rider_questions_a_shift_an_operator_upholds_it_and_the_rider_sees_the_answer(
    browser: Browser, api: Api, rider: str, width: int
) -> None:
    event = shift(rider, 0.25)  # the organiser recorded a quarter of an hour: 0 points
    assert (await api.publish(event)).status_code == 202
    await api.wait_scored("volunteer-platform", event["id"])

    page = await phone(browser, f"{pages_url(api)}/rider#token={mint_token(api.settings, Role.RIDER, rider)}")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    entry = page.get_by_test_id("entry").first
    await entry.get_by_test_id("dispute-ask").click()
    dialog = page.locator("#dispute")
    await dialog.get_by_role("button", name="提交给街道").click()  # empty: refused next to the field
    await expect(page.locator("#ds-message-error")).to_have_text("请先写明哪里不对。")
    await page.get_by_label("哪里不对？").fill("我做了三个小时，组织方只记了一刻钟")
    await dialog.get_by_role("button", name="提交给街道").click()
    await expect(page.locator("#status")).to_have_text("已提交。街道的答复会显示在这条记录下。")
    await expect(entry.get_by_test_id("dispute")).to_have_attribute("data-status", "open")
    await expect(entry.get_by_test_id("dispute-ask")).to_have_count(0)  # one question at a time
    await page.screenshot(path=SHOTS / "rider-dispute.png", full_page=True)

    console = await the_console(browser, api, width)
    await expect(console.get_by_test_id("ov-disputes")).not_to_have_text("0")
    await open_tab(console, "申诉")
    await console.get_by_test_id("dispute").filter(has_text=rider).get_by_role("button").click()
    detail = console.get_by_test_id("dispute-detail")
    await expect(detail.get_by_test_id("dd-event")).to_contain_text('"hours": 0.25')
    await detail.get_by_label("申诉成立：调整积分").check()
    await detail.get_by_role("button", name="核对").click()
    await expect(console.locator("#rs-amount-error")).not_to_be_hidden()  # upheld needs the points
    await detail.get_by_label("调整积分", exact=True).fill("9")
    await detail.get_by_label("给骑手的答复").fill("已核实三小时")
    await detail.locator("#resolve-form button[type=submit]").click()
    await expect(console.locator("#confirm-text")).to_contain_text("认定")
    await console.locator("#confirm-yes").click()
    await expect(console.locator("#status")).to_have_text(f"已处理 {rider} 的申诉。")
    await expect(detail.get_by_test_id("dd-outcome")).to_contain_text("已核实三小时")
    if width == 1280:
        await console.screenshot(path=SHOTS / "operator-disputes.png", full_page=True)
    await console.context.close()

    await page.reload()
    await expect(page.locator("body[data-ready=true]")).to_have_count(1)
    await expect(page.get_by_test_id("available")).to_have_text("9")
    answered = page.get_by_test_id("dispute").first
    await expect(answered).to_have_attribute("data-outcome", "upheld")
    await expect(answered).to_contain_text("申诉成立：积分 +9。街道答复：已核实三小时")
    await expect(page.get_by_test_id("entry").filter(has_text="已核实三小时").first).to_be_visible()
    assert errors == [], errors
    await page.context.close()
