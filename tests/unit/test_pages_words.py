"""The pages' words through the gettext ``pages`` domain: the Chinese and the English they had as a
dictionary, a Chinese word for every msgid, the placeholders the scripts fill on both sides, and no key a
template or a script names that the words lack (a missing key renders as nothing in Jinja2 and as the key
itself in the page's ``t()``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from libs.activity.model import CATEGORIES
from libs.i18n.language import LANGUAGES, Language
from libs.ledger.model import EntryKind
from services.pages.i18n import WORDS, page_keys, words

PAGES = Path(__file__).resolve().parents[2] / "services" / "pages"
PLACEHOLDER = re.compile(r"\{(\w+)\}")
CJK = re.compile(r"[\u3400-\u9fff]")
KEYS = sorted(k for key in WORDS for k in page_keys(key))  # a sentence with a number: one key per form


@pytest.mark.parametrize(
    ("key", "zh", "en"),
    [
        ("brand", "暖蜂积分", "Warm Bee points"),
        ("points", "分", "pts"),
        ("status_held", "待核销", "Waiting for the counter"),
        ("kind_merchant", "暖“新”商家", "Warm merchants"),
        ("cat_volunteer_service", "志愿服务类", "Volunteer service"),
        ("short_by", "还差 {n} 分", "{n} points short"),
        ("err_insufficient-points", "积分不足，暂时不能兑换这项奖励。", "Not enough points for this reward yet."),
        ("settlement_sum", "{month}：核销 {n} 笔，共 {points} 分", "{month}: {n} confirmed, {points} points in all"),
        # One English word, two Chinese ones: told apart by a gettext context.
        ("redeem", "兑换", "Redeem"),
        ("confirm_yes", "确认兑换", "Redeem"),
        ("redeemed_total", "已兑换", "Redeemed"),
        ("kind_redeem", "兑换核销", "Redeemed"),
        ("kind_lapse", "积分过期", "Points lapsed"),
        # A sentence with a number: English has two forms, Chinese one.
        ("lapsing_one", "{points} 分将于 {on} 过期", "{points} point lapses after {on}"),
        ("lapsing_other", "{points} 分将于 {on} 过期", "{points} points lapse after {on}"),
        # The switch names the other language in that language.
        ("switch_lang", "English", "中文"),
        ("switch_lang_label", "Switch to English", "切换到中文"),
    ],
)
def test_the_words_are_the_chinese_and_the_english_of_the_pages(key: str, zh: str, en: str) -> None:
    assert words("zh")[key] == zh
    assert words("en")[key] == en


def test_both_languages_have_the_same_keys() -> None:
    assert words("zh").keys() == words("en").keys() == set(KEYS) | {"switch_lang", "switch_lang_label"}


@pytest.mark.parametrize("key", KEYS)
def test_every_msgid_has_a_chinese_word(key: str) -> None:
    """A msgid the zh_CN catalogue lacks (or has empty or fuzzy, which compile leaves out) comes back as the
    English msgid: every Chinese word is written in Chinese."""
    zh, en = words("zh")[key], words("en")[key]
    assert zh != en, f"{key}: no Chinese in libs/i18n/locale/zh_CN/LC_MESSAGES/pages.po"
    assert CJK.search(zh), f"{key}: {zh!r} is not Chinese"


@pytest.mark.parametrize("key", KEYS)
def test_the_chinese_word_has_the_placeholders_of_the_english_one(key: str) -> None:
    en = set(PLACEHOLDER.findall(words("en")[key]))
    zh = set(PLACEHOLDER.findall(words("zh")[key]))
    assert en == zh, f"{key}: English fills {sorted(en)}, Chinese {sorted(zh)}"


def test_every_word_a_template_or_a_script_names_exists() -> None:
    known = words("zh").keys()
    named: dict[str, set[str]] = {}
    for template in (PAGES / "templates").glob("*.html"):
        named[template.name] = set(re.findall(r"\bt\.(\w+)", template.read_text()))
    for script in (PAGES / "static").glob("*.js"):
        text = script.read_text()
        named[script.name] = set(re.findall(r"\bt\(\"([\w-]+)\"(?!\s*\+)", text))
        # tn("lapsing", n): the script picks lapsing_one or lapsing_other by the number.
        plural = re.findall(r"\btn\(\"(\w+)\"", text)
        named[script.name] |= {f"{key}_{form}" for key in plural for form in ("one", "other")}
    assert all(named.values()), named  # the patterns still find the words
    missing = {name: sorted(keys - known) for name, keys in named.items() if keys - known}
    assert missing == {}


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_words_the_scripts_build_from_api_values_exist(language: Language) -> None:
    """rider.js: t("cat_" + category), t("kind_" + entry kind or partner kind); common.js: t("status_" + status).
    Every kind of ledger entry has its word: a kind added to the ledger and not to the pages fails here."""
    known = words(language)
    for key in [f"cat_{c}" for c in CATEGORIES] + [
        *(f"kind_{k}" for k in EntryKind),
        *(f"kind_{k}" for k in ("merchant", "hospital", "barber")),
        *(f"status_{s}" for s in ("held", "confirmed", "cancelled", "expired")),
    ]:
        assert known.get(key), key
