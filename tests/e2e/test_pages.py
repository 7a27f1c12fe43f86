"""The rider's phone page and the partner's counter page in a real browser (Debian's chromium, headless,
driven by Playwright): a rider earns points, sees them with their reasons, redeems; the partner confirms
the code at the counter; the rider sees it confirmed. Error paths: not enough points, a wrong code, a code
used twice. Each page asks the APIs in its own language (Accept-Language), whatever the browser's: the
history's reasons and the dates read Chinese on the Chinese page and English on the English one.
Screenshots go to test-artifacts/screenshots/ (at 360 px wide, as on a phone); docs/rider-page.png and
docs/partner-page.png are copies of rider-page.png and partner-page.png."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from playwright.async_api import Browser, Page, Request, ViewportSize, expect

from libs.platform.auth import Role, mint_token
from tests.e2e.conftest import SHOTS, Api, shift

pytestmark = pytest.mark.e2e

PHONE: ViewportSize = {"width": 360, "height": 780}


async def phone(browser: Browser, url: str, locale: str = "zh-CN") -> Page:
    """A fresh phone-sized tab (its own sessionStorage) at ``url``, once its data has loaded; ``locale`` is
    the browser's language (its own Accept-Language)."""
    context = await browser.new_context(viewport=PHONE, locale=locale, timezone_id="Asia/Shanghai")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(url)
    await expect(page.locator("body[data-ready=true]")).to_have_count(1)
    assert errors == [], errors
    return page


def pages_url(api: Api) -> str:
    return f"http://{api.settings.host}:{api.settings.pages_port}"


def masked(rider: str) -> str:
    return rider[:2] + "******" + rider[-2:]


async def partner_with_rewards(api: Api, *rewards: tuple[str, int]) -> tuple[str, list[str]]:
    """A noodle shop of its own with the given (title, cost) rewards: (partner_id, reward ids)."""
    operator = api.token(Role.OPERATOR, "ops-test")
    partner = f"p-{uuid.uuid4().hex[:8]}"
    r = await api.http.post(
        f"{api.redemption_url}/v1/partners",
        headers=operator,
        json={"partner_id": partner, "name": "老王面馆", "kind": "merchant"},
    )
    assert r.status_code == 201, r.text
    ids = []
    for title, cost in rewards:
        reward = f"rw-{uuid.uuid4().hex[:8]}"
        body = {"reward_id": reward, "partner_id": partner, "title": title, "cost": cost, "stock_per_month": 50}
        r = await api.http.post(f"{api.redemption_url}/v1/rewards", headers=operator, json={**body, "active": True})
        assert r.status_code == 201, r.text
        ids.append(reward)
    return partner, ids


async def earn(api: Api, rider: str) -> list[dict[str, Any]]:
    """4 hours of volunteering (40 points, the day's cap), then 1 more hour the same day (0: at the cap);
    the rider's entries as a Chinese reader reads them."""
    first, second = shift(rider, 4), shift(rider, 1, time="2024-05-01T15:00:00+08:00")
    for event in (first, second):
        assert (await api.publish(event)).status_code == 202
        await api.wait_scored("volunteer-platform", str(event["id"]))
    return await entries_in(api, rider, "zh-CN")


async def entries_in(api: Api, rider: str, accept_language: str) -> list[dict[str, Any]]:
    r = await api.http.get(
        f"{api.points_url}/v1/riders/{rider}/entries?limit=500",
        headers={**api.token(Role.RIDER, rider), "accept-language": accept_language},
    )
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def expect_chinese_reasons(page: Page) -> None:
    """Every reason of the volunteering awards in Chinese: the category named, no English word (ids and
    numbers aside)."""
    reasons = page.get_by_test_id("entry").filter(has_text="志愿服务类").locator(".reason")
    await expect(reasons.first).to_contain_text("志愿服务")
    for text in await reasons.all_inner_texts():
        assert "志愿服务" in text, text
        assert not re.search(r"[A-Za-z]{3,}", text), text


async def test_a_rider_redeems_on_the_phone_and_the_partner_confirms_at_the_counter(
    browser: Browser, api: Api, rider: str
) -> None:
    tag = uuid.uuid4().hex[:4]
    lunch, feast = f"牛肉面套餐 {tag}", f"年夜饭礼盒 {tag}"
    partner, _ = await partner_with_rewards(api, (lunch, 30), (feast, 500))
    entries = await earn(api, rider)
    zero = next(e for e in entries if e["amount"] == 0)

    # The rider opens the link `make run` prints: the token in the fragment.
    page = await phone(browser, f"{pages_url(api)}/rider#token={mint_token(api.settings, Role.RIDER, rider)}")
    assert await page.locator("html").get_attribute("lang") == "zh-CN"
    assert "#token" not in page.url  # the token left the address bar for the tab's storage
    await expect(page.get_by_test_id("available")).to_have_text("40")
    history = page.get_by_test_id("entry")
    await expect(history).to_have_count(2)
    await expect(history.filter(has_text="+40 分")).to_contain_text("志愿服务类")
    zero_entry = history.filter(has_text="本次未得分")
    await expect(zero_entry).to_contain_text(zero["reason"])
    await expect(zero_entry).to_contain_text("0 分")
    await expect(zero_entry).to_contain_text(f"规则 {zero['rule_id']} v{zero['rule_version']}")
    await expect_chinese_reasons(page)
    await expect(zero_entry.locator(".meta")).to_contain_text("2024年5月1日 15:00")
    await expect(page.locator("#catalogue h3").first).to_have_text("暖“新”商家")
    await page.screenshot(path=SHOTS / "rider-earned.png", full_page=True)

    # Not enough points: the page says so in plain words and holds nothing.
    await page.get_by_role("button", name=f"兑换 {feast}").click()
    await expect(page.locator("#confirm")).to_contain_text("500")
    await page.locator("#confirm-yes").click()
    await expect(page.locator("#error")).to_have_text("积分不足，暂时不能兑换这项奖励。")
    await expect(page.get_by_test_id("held")).to_have_text("0")

    # Redeem with a confirmation step: the code, large, with its QR code and a countdown.
    await page.get_by_role("button", name=f"兑换 {lunch}").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_contain_text(lunch)
    await dialog.get_by_role("button", name="确认兑换").click()
    await expect(page.locator("#status")).to_have_text("兑换成功，请到店出示兑换码。")
    code_box = page.get_by_test_id("code")
    await expect(code_box).to_have_text(re.compile(r"^[2-9A-Z]{4} [2-9A-Z]{4}$"))
    code = (await code_box.inner_text()).replace(" ", "")
    await expect(page.get_by_test_id("countdown")).to_have_text(re.compile(r"^(23:59:\d\d|24:00:00)$"))
    qr = page.locator("img.qr")
    await expect(qr).to_have_attribute("src", f"/qr/WARMBEE1%3A{code}.svg")
    assert await qr.evaluate("img => img.complete && img.naturalWidth > 0")
    await expect(page.get_by_test_id("available")).to_have_text("10")
    await expect(page.get_by_test_id("held")).to_have_text("30")
    await code_box.scroll_into_view_if_needed()
    await page.screenshot(path=SHOTS / "rider-code.png")
    await page.screenshot(path=SHOTS / "rider-page.png", full_page=True)

    # The partner's counter: a wrong code first, then the rider's code as scanned (the QR payload).
    counter = await phone(browser, f"{pages_url(api)}/partner#token={mint_token(api.settings, Role.PARTNER, partner)}")
    code_input = counter.get_by_label("兑换码")
    await code_input.fill("ZZZZ0000")  # never issued: codes have no 0
    await counter.get_by_role("button", name="查询").click()
    await expect(counter.locator("#error")).to_contain_text("没有找到这个兑换码")
    await code_input.fill(f"WARMBEE1:{code}")
    await counter.get_by_role("button", name="查询").click()
    await expect(counter.locator("#found-title")).to_have_text(lunch)
    await expect(counter.locator("#found-cost")).to_have_text("30 分")
    await expect(counter.locator("#found-rider")).to_have_text(masked(rider))
    await expect(counter.locator("#found-expires")).to_have_text(re.compile(r"^\d{4}年\d{1,2}月\d{1,2}日 \d\d:\d\d$"))
    await counter.get_by_role("button", name="确认核销").click()
    await expect(counter.locator("#status")).to_have_text(f"核销成功：{lunch}，30 分。")
    confirmed = counter.get_by_test_id("recent").filter(has_text=lunch)
    await expect(confirmed).to_have_attribute("data-status", "confirmed")
    await expect(confirmed).to_contain_text("已核销")
    await expect(counter.get_by_test_id("settlement")).to_contain_text("核销 1 笔，共 30 分")
    assert rider not in await counter.locator("main").inner_text()  # only the masked id is shown
    await counter.screenshot(path=SHOTS / "partner-page.png", full_page=True)

    # The same code again is explained, not debited twice.
    await code_input.fill(code)
    await counter.get_by_role("button", name="查询").click()
    await expect(counter.locator("#error")).to_have_text("这个兑换码已经核销过了，不能重复使用。")
    await counter.screenshot(path=SHOTS / "partner-code-used.png", full_page=True)

    # Back on the phone: confirmed, the points spent.
    await page.reload()
    await expect(page.locator("body[data-ready=true]")).to_have_count(1)
    mine = page.get_by_test_id("redemption").filter(has_text=lunch)
    await expect(mine).to_have_attribute("data-status", "confirmed")
    await expect(mine).to_contain_text("已核销")
    await expect(page.get_by_test_id("available")).to_have_text("10")
    await expect(page.get_by_test_id("held")).to_have_text("0")
    assert (await api.balance(rider))["redeemed_total"] == 30

    # The English switch keeps the rider signed in (the token stays in the tab).
    await page.get_by_role("link", name="Switch to English").click()
    await expect(page.locator("h1")).to_have_text("My points")
    assert await page.locator("html").get_attribute("lang") == "en"
    await expect(page.get_by_test_id("redemption").filter(has_text=lunch)).to_contain_text("Confirmed")
    english = await entries_in(api, rider, "en")
    zero_en = next(e for e in english if e["amount"] == 0 and e["kind"] == "award")
    await expect(page.get_by_test_id("entry").filter(has_text="no points this time")).to_contain_text(zero_en["reason"])
    await expect(page.get_by_test_id("entry").filter(has_text="+40 pts")).to_contain_text("verified hours")
    await page.screenshot(path=SHOTS / "rider-page-en.png", full_page=True)
    await page.context.close()
    await counter.context.close()


async def test_each_page_asks_the_apis_in_its_own_language_whatever_the_browsers(
    browser: Browser, api: Api, rider: str
) -> None:
    """The Chinese page in an English browser reads Chinese; the English page in a Chinese browser English:
    every call to the APIs carries the page's Accept-Language, and the dates are the page's too."""
    await earn(api, rider)
    token = mint_token(api.settings, Role.RIDER, rider)
    apis = (api.points_url, api.redemption_url)

    asked: dict[str, list[str]] = {"zh": [], "en": []}
    for lang, browser_locale in (("zh", "en-US"), ("en", "zh-CN")):
        context = await browser.new_context(viewport=PHONE, locale=browser_locale, timezone_id="Asia/Shanghai")
        page = await context.new_page()

        async def record(request: Request, lang: str = lang) -> None:
            if request.url.startswith(apis) and request.method != "OPTIONS":
                asked[lang].append(await request.header_value("accept-language") or "")

        page.on("request", record)
        await page.goto(f"{pages_url(api)}/rider?lang={lang}#token={token}")
        await expect(page.locator("body[data-ready=true]")).to_have_count(1)
        history = page.get_by_test_id("entry")
        await expect(history).to_have_count(2)
        if lang == "zh":
            await expect_chinese_reasons(page)
            await expect(history.first.locator(".meta")).to_contain_text("2024年5月1日")
        else:
            await expect(history.filter(has_text="+40 pts")).to_contain_text("verified hours")
            await expect(history.first.locator(".meta")).to_contain_text("May 1, 2024")
        await context.close()
    for lang, tag in (("zh", "zh-CN"), ("en", "en")):
        assert len(asked[lang]) >= 4, asked  # balance, entries, rewards, redemptions
        assert set(asked[lang]) == {tag}, asked


async def test_a_rider_cancels_and_gets_the_points_back(browser: Browser, api: Api, rider: str) -> None:
    title = f"快剪 {uuid.uuid4().hex[:4]}"
    await partner_with_rewards(api, (title, 25))
    await earn(api, rider)
    page = await phone(browser, f"{pages_url(api)}/rider#token={mint_token(api.settings, Role.RIDER, rider)}")
    await page.get_by_role("button", name=f"兑换 {title}").click()
    await page.locator("#confirm-yes").click()
    await expect(page.get_by_test_id("held")).to_have_text("25")
    await page.get_by_role("button", name="取消兑换").click()
    await expect(page.locator("#status")).to_have_text("已取消，积分已退回。")
    await expect(page.get_by_test_id("redemption").filter(has_text=title)).to_have_attribute("data-status", "cancelled")
    await expect(page.get_by_test_id("available")).to_have_text("40")
    await expect(page.get_by_test_id("held")).to_have_text("0")
    await page.context.close()


async def test_a_token_of_another_role_is_refused_and_the_sign_in_form_shown(browser: Browser, api: Api) -> None:
    token = mint_token(api.settings, Role.RIDER, "rider-1001")
    context = await browser.new_context(viewport=PHONE)
    page = await context.new_page()
    await page.goto(f"{pages_url(api)}/partner#token={token}")
    await expect(page.locator("#error")).to_have_text("这个令牌不能做这件事。")
    await expect(page.get_by_label("登录令牌")).to_be_focused()
    await expect(page.locator("#app")).to_be_hidden()
    await context.close()


async def test_the_partner_looks_up_a_code_before_confirming_and_guesses_count(api: Api, rider: str) -> None:
    """GET /v1/partner/codes/{code}: the partner's own live hold; another partner's code is unknown (404) and
    counts as a wrong code like a confirmation; a used code is explained (409); looking debits nothing."""
    partner, (reward,) = await partner_with_rewards(api, ("午餐", 10))
    other, _ = await partner_with_rewards(api, ("另一家", 10))
    await earn(api, rider)
    r = await api.http.post(
        f"{api.redemption_url}/v1/redemptions",
        json={"reward_id": reward},
        headers={**api.token(Role.RIDER, rider), "idempotency-key": uuid.uuid4().hex},
    )
    assert r.status_code == 201, r.text
    code = r.json()["code"]
    mine = r.json()["redemption_id"]

    look = await api.http.get(f"{api.redemption_url}/v1/partner/codes/{code}", headers=api.token(Role.PARTNER, partner))
    assert look.status_code == 200, look.text
    assert look.json()["redemption_id"] == mine
    assert look.json()["status"] == "held"
    assert look.json()["code"] is None  # the partner never reads a code back from the API

    scanned = await api.http.get(
        f"{api.redemption_url}/v1/partner/codes/WARMBEE1:{code}", headers=api.token(Role.PARTNER, partner)
    )
    assert scanned.status_code == 200

    for _ in range(api.settings.confirm_failure_limit):
        wrong = await api.http.get(
            f"{api.redemption_url}/v1/partner/codes/{code}", headers=api.token(Role.PARTNER, other)
        )
        assert wrong.status_code == 404
        assert wrong.json()["type"].endswith("/code-unknown")
    blocked = await api.http.get(
        f"{api.redemption_url}/v1/partner/codes/{code}", headers=api.token(Role.PARTNER, other)
    )
    assert blocked.status_code == 429
    assert blocked.json()["retry_after_s"] > 0
    # The look-ups debited nothing: the hold is still there for its own partner.
    assert (await api.balance(rider))["held"] == 10

    r = await api.http.post(
        f"{api.redemption_url}/v1/partner/confirmations", json={"code": code}, headers=api.token(Role.PARTNER, partner)
    )
    assert r.status_code == 200, r.text
    used = await api.http.get(f"{api.redemption_url}/v1/partner/codes/{code}", headers=api.token(Role.PARTNER, partner))
    assert used.status_code == 409
    assert used.json()["type"].endswith("/already-confirmed")

    invalid = await api.http.get(f"{api.redemption_url}/v1/partner/codes/abc", headers=api.token(Role.PARTNER, partner))
    assert invalid.status_code == 422


async def test_a_rider_lists_its_own_redemptions(api: Api, rider: str) -> None:
    """GET /v1/redemptions: the rider's own, newest first, with the code of a live hold."""
    _, (reward,) = await partner_with_rewards(api, ("午餐", 10))
    await earn(api, rider)
    made = []
    for _ in range(2):
        r = await api.http.post(
            f"{api.redemption_url}/v1/redemptions",
            json={"reward_id": reward},
            headers={**api.token(Role.RIDER, rider), "idempotency-key": uuid.uuid4().hex},
        )
        assert r.status_code == 201, r.text
        made.append(r.json())
    listed = await api.http.get(f"{api.redemption_url}/v1/redemptions?limit=1", headers=api.token(Role.RIDER, rider))
    assert listed.status_code == 200, listed.text
    first = listed.json()
    assert [i["redemption_id"] for i in first["items"]] == [made[1]["redemption_id"]]
    assert first["items"][0]["code"] == made[1]["code"]
    rest = await api.http.get(
        f"{api.redemption_url}/v1/redemptions?limit=1&cursor={first['next_cursor']}",
        headers=api.token(Role.RIDER, rider),
    )
    assert [i["redemption_id"] for i in rest.json()["items"]] == [made[0]["redemption_id"]]
    elsewhere = await api.http.get(
        f"{api.redemption_url}/v1/redemptions", headers=api.token(Role.RIDER, "rider-somebody-else")
    )
    assert elsewhere.json()["items"] == []
    partner = await api.http.get(f"{api.redemption_url}/v1/redemptions", headers=api.token(Role.PARTNER, "p-x"))
    assert partner.status_code == 403


async def test_the_apis_allow_the_pages_origin_and_no_other(api: Api) -> None:
    preflight = {
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization,idempotency-key,accept-language",
    }
    ok = await api.http.options(f"{api.redemption_url}/v1/redemptions", headers={"origin": pages_url(api), **preflight})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == pages_url(api)
    assert "accept-language" in ok.headers["access-control-allow-headers"].lower()  # the pages' language
    refused = await api.http.options(
        f"{api.redemption_url}/v1/redemptions", headers={"origin": "http://evil.example", **preflight}
    )
    assert "access-control-allow-origin" not in refused.headers
