"""The reader's language: the catalogues are complete and compiled, every reason code's templates name
the parameters scoring gives, every scoring outcome has a code whose sentence reads in Chinese and in
English, and English text recorded before the codes reads back to its code."""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from hypothesis import given
from hypothesis import strategies as st

from libs.i18n.language import DOMAINS, LOCALE_DIR, LOCALES, negotiate
from libs.i18n.problems import Message
from libs.i18n.reasons import BY_CODE, CODES, VOCABULARIES, Param, Reason, ReasonError, from_english, recorded, term
from services.points.domain.hazards import EarlierReport
from services.points.domain.rules import RuleBook, Rules
from tests.unit.rules_factories import DEFAULT_BOOK, default_document, event, score
from tests.unit.test_rules_properties import histories, score_history

ROOT = Path(__file__).resolve().parents[2]
MARKERS = {"N_": None, "Nn_": (1, 2), "Np_": ((1, "c"), 2), "_": None, "gettext": None}
# What `make i18n` extracts for each domain (the Makefile's keywords and inputs).
SOURCES: dict[str, tuple[list[str], dict[str, Any], list[tuple[str, str]]]] = {
    "reasons": (["libs/i18n"], {"N_": None, "Nn_": (1, 2), "Np_": ((1, "c"), 2)}, [("reasons.py", "python")]),
    "problems": (["libs", "services"], {"P_": None}, [("**.py", "python")]),
    "pages": (
        ["services/pages"],
        {**MARKERS, "ngettext": (1, 2), "pgettext": ((1, "c"), 2)},
        [("**.py", "python"), ("**/templates/**.html", "jinja2")],
    ),
    "notices": (["services/notifications/domain"], {"N_": None, "Nn_": (1, 2)}, [("notices.py", "python")]),
}


def _extracted(domain: str) -> set[tuple[str | None, str]]:
    dirs, keywords, mapping = SOURCES[domain]
    found = set()
    for directory in dirs:
        for _, _, message, _, context in extract_from_dir(ROOT / directory, mapping, keywords=keywords):
            found.add((context, message if isinstance(message, str) else message[0]))
    return found


def _po(domain: str, locale: str) -> Catalog:
    with (LOCALE_DIR / locale / "LC_MESSAGES" / f"{domain}.po").open("rb") as f:
        return read_po(f)


def _ids(catalog: Catalog) -> set[tuple[str | None, str]]:
    return {(m.context, m.id if isinstance(m.id, str) else m.id[0]) for m in catalog if m.id}


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_word_of_the_sources_is_in_both_catalogues_and_nothing_else(domain: str) -> None:
    """A word added to the code and not to the catalogues (or left behind there): run `make i18n`."""
    extracted = _extracted(domain)
    assert len(extracted) >= 5
    for locale in LOCALES.values():
        assert _ids(_po(domain, locale)) == extracted, f"{locale}/{domain}.po is stale: run `make i18n-{domain}`"


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_chinese_word_is_translated_and_not_fuzzy(domain: str) -> None:
    untranslated = [
        m.id
        for m in _po(domain, "zh_CN")
        if m.id and (m.fuzzy or not all(m.string if isinstance(m.string, tuple) else (m.string,)))
    ]
    assert untranslated == [], f"translate these in libs/i18n/locale/zh_CN/LC_MESSAGES/{domain}.po"


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("locale", LOCALES.values())
def test_the_compiled_catalogues_are_those_of_the_po_files(domain: str, locale: str) -> None:
    with (LOCALE_DIR / locale / "LC_MESSAGES" / f"{domain}.mo").open("rb") as f:
        compiled = {
            (m.context, m.id if isinstance(m.id, str) else m.id[0]): _forms(m.string) for m in read_mo(f) if m.id
        }
    written = {
        (m.context, m.id if isinstance(m.id, str) else m.id[0]): _forms(m.string)
        for m in _po(domain, locale)
        if m.id and not m.fuzzy and any(m.string if isinstance(m.string, tuple) else (m.string,))
    }
    assert compiled == written, f"{locale}/{domain}.mo is stale: run `make i18n-{domain}`"


def _forms(string: Any) -> tuple[str, ...]:
    return (string,) if isinstance(string, str) else tuple(string)


def _fields(template: str) -> set[str]:
    return {field.split("!")[0] for _, field, _, _ in string.Formatter().parse(template) if field is not None}


@pytest.mark.parametrize("code", [c.code for c in CODES])
def test_every_template_of_a_code_names_exactly_its_parameters(code: str) -> None:
    known = BY_CODE[code]
    for language in ("zh", "en"):
        for template in known.templates(language):
            assert _fields(template) == known.names, f"{code} ({language}): {template!r}"
    if known.count is not None:
        assert known.count in known.names


@pytest.mark.parametrize("domain", ["problems", "pages"])
def test_a_chinese_sentence_has_the_fields_of_its_english_one(domain: str) -> None:
    for m in _po(domain, "zh_CN"):
        if m.id and isinstance(m.id, str) and isinstance(m.string, str):
            assert _fields(m.string) == _fields(m.id), m.id


@pytest.mark.parametrize("vocabulary", sorted(VOCABULARIES))
def test_every_word_of_a_vocabulary_is_chinese_in_chinese(vocabulary: str) -> None:
    for value in VOCABULARIES[vocabulary]:
        assert re.search(r"[\u4e00-\u9fff]", term(vocabulary, value, "zh")), (vocabulary, value)
        assert term(vocabulary, value, "en") == VOCABULARIES[vocabulary][value]


def test_the_category_words_are_the_programmes_own() -> None:
    assert [term("category", c, "zh") for c in VOCABULARIES["category"]] == [
        "志愿服务",
        "文明实践",
        "活动参与",
        "基层治理",
        "安全骑行",
        "技能提升",
        "宣传引导",
        "荣誉表彰",
    ]


# --- the reasons scoring gives -------------------------------------------------------------------

V, T = "volunteer.shift.completed", "2024-05-01T09:00:00+08:00"


def _outcomes() -> Iterator[tuple[str, Reason]]:
    """One event (and the counters it meets) per outcome the rules produce, with the code it must give."""

    def scored(type_: str, data: dict[str, Any], counters: dict[str, int] | None = None, **kw: Any) -> Reason:
        return score(event(type_, data, **kw), counters or {}, DEFAULT_BOOK, kw.pop("earlier", None)).reason

    yield "award.volunteer_service", scored(V, {"shift_id": "s", "hours": 2.5})
    yield "award.volunteer_service.short", scored(V, {"shift_id": "s", "hours": 0.25})
    yield "award.cap_clipped", scored(V, {"shift_id": "s", "hours": 2}, {"volunteer_service:day:2024-05-01": 30})
    yield "award.cap_reached", scored(V, {"shift_id": "s", "hours": 2}, {"volunteer_service:day:2024-05-01": 40})
    yield "award.civic_practice", scored("civic.action.verified", {"action": "bike_tidy"})
    yield "award.activity_participation", scored("activity.attended", {"activity_id": "a-1"})
    yield (
        "award.already_paid.activity_participation",
        scored("activity.attended", {"activity_id": "a-1"}, {"activity_participation:once:a-1": 1}),
    )
    yield (
        "award.weekly_limit",
        scored("activity.attended", {"activity_id": "a-9"}, {"activity_participation:count:week:2024-W18": 3}),
    )
    hazard = {"report_id": "hz-2", "lat": 31.23, "lon": 121.47, "reported_at": "2024-05-01T08:00:00+08:00"}
    yield "award.grassroots_governance", scored("hazard.report.verified", {**hazard, "severity": "medium"})
    yield "award.grassroots_governance.rejected", scored("hazard.report.verified", {**hazard, "severity": "rejected"})
    first = EarlierReport("hz-1", "rider-2", 31.23, 121.47, datetime.fromisoformat("2024-05-01T07:30:00+08:00"))
    e = event("hazard.report.verified", {**hazard, "severity": "high"})
    yield "award.same_hazard", score(e, {}, DEFAULT_BOOK, first).reason
    units = RuleBook([Rules.model_validate(_tenths_of_hours())])
    yield "award.volunteer_service.units", score(event(V, {"shift_id": "s", "hours": 0.5}), {}, units).reason
    yield "award.volunteer_service.short_units", score(event(V, {"shift_id": "s", "hours": 0.05}), {}, units).reason
    yield "award.safe_riding.training", scored("safety.training.completed", {"training_id": "t"})
    yield "award.safe_riding.quiz", scored("safety.quiz.passed", {"quiz_id": "q-1"})
    yield (
        "award.already_paid.safe_riding.quiz",
        scored("safety.quiz.passed", {"quiz_id": "q-1"}, {"safe_riding:once:quiz:q-1": 1}),
    )
    yield "award.safe_riding.clean_month", scored("safety.month.clean", {"month": "2024-04"})
    yield (
        "award.already_paid.safe_riding.clean_month",
        scored("safety.month.clean", {"month": "2024-04"}, {"safe_riding:once:clean_month:2024-04": 1}),
    )
    yield "award.skill_development.course", scored("skill.course.completed", {"course_id": "c"})
    yield "award.skill_development.certificate", scored("skill.certificate.obtained", {"certificate_id": "c"})
    yield "award.publicity_outreach", scored("outreach.session.completed", {"session_id": "o", "topic": "health"})
    yield "award.honors", scored("honor.awarded", {"honor_id": "h-1", "level": "street"})
    yield (
        "award.already_paid.honors",
        scored("honor.awarded", {"honor_id": "h-1", "level": "street"}, {"honors:once:h-1:2024": 1}),
    )
    yield "award.no_rules", scored(V, {"shift_id": "s", "hours": 1}, time="2001-01-01T09:00:00+08:00")


def _tenths_of_hours() -> dict[str, Any]:
    document = default_document()
    document["categories"]["volunteer_service"]["counted_in_minutes"] = 6
    return document


OUTCOMES = list(_outcomes())


@pytest.mark.parametrize(("code", "reason"), OUTCOMES, ids=[c for c, _ in OUTCOMES])
def test_each_scoring_outcome_gives_its_code_and_reads_in_both_languages(code: str, reason: Reason) -> None:
    assert reason.code == code
    assert reason.params.keys() == BY_CODE[code].names
    chinese, english = reason.render("zh"), reason.render("en")
    assert re.search(r"[\u4e00-\u9fff]", chinese), chinese
    # Chinese words only, besides the values (ids) the sentence quotes.
    quoted = [str(v) for v in reason.params.values() if isinstance(v, str)]
    assert not re.search(r"[A-Za-z]{2,}", _without(chinese, quoted)), chinese
    assert english != chinese
    assert from_english(english) == reason  # text stored in English reads back to the same code


def _without(text: str, values: list[str]) -> str:
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, "")
    return text


def test_every_award_code_is_an_outcome_of_some_event() -> None:
    """A code that no event gives is dead; one that scoring gives and this table lacks is untested."""
    produced = {code for code, _ in OUTCOMES}
    award_codes = {c.code for c in CODES if c.code.startswith("award.")}
    assert produced == award_codes


def test_the_sentences_the_issue_asked_for() -> None:
    clipped = Reason.of("award.cap_clipped", period="day", cap=40, category="volunteer_service", points=10, base=20)
    assert clipped.render("zh") == "今日志愿服务已达上限 40 分，本次获得 10 分（应得 20 分）"
    assert clipped.render("en") == "daily cap of 40 points for volunteer service reached: 10 of 20 awarded"
    later = Reason.of("award.same_hazard", radius_m=50, window_hours=24, first_report_id="hz-1", points=1)
    assert later.render("zh") == "同一隐患（50 米、24 小时内）已由报告 hz-1 首报并全额计分，本次计 1 分"
    assert later.render("en").endswith("this later report earns 1 point")
    clean = Reason.of("award.safe_riding.clean_month", month="2026-10", points=20)
    assert clean.render("zh") == "2026年10月无交通违法，计 20 分"


@given(histories())
def test_every_reason_of_any_history_renders_in_both_languages_and_reads_back(events: list[Any]) -> None:
    for s in score_history(events):
        reason = s.score.reason
        assert reason.params.keys() == BY_CODE[reason.code].names
        assert reason.render("zh")
        assert reason.render("en")
        assert from_english(reason.render("en")) == reason


def test_a_reason_that_its_code_does_not_describe_is_a_defect() -> None:
    with pytest.raises(ReasonError, match="unknown reason code"):
        Reason.of("award.nothing")
    with pytest.raises(ReasonError, match="takes"):
        Reason.of("award.safe_riding.training", points=10, extra=1)
    with pytest.raises(ValueError, match="vocabulary"):
        Param("x", "term")


# --- entries from before the codes ------------------------------------------------------------------

_TEXT = st.text(st.characters(codec="utf-8", categories=("L", "N")), min_size=1, max_size=12)


@given(
    title=_TEXT,
    partner=_TEXT,
    cost=st.integers(0, 10**6),
    code=st.sampled_from(["redemption.redeem", "redemption.release", "redemption.expire"]),
)
def test_a_redemption_entry_recorded_in_english_reads_back_to_its_code(
    title: str, partner: str, cost: int, code: str
) -> None:
    reason = Reason.of(code, title=title, cost=cost)
    assert recorded(None, None, reason.render("en"), "release") == reason
    hold = Reason.of("redemption.hold", cost=cost, title=title, partner_name=partner)
    assert recorded(None, None, hold.render("en"), "hold").render("en") == hold.render("en")


def test_an_old_adjustment_keeps_the_operators_words_in_both_languages() -> None:
    old = recorded(None, None, "补发 5 月志愿服务", "adjustment")
    assert old == Reason("adjustment", {"note": "补发 5 月志愿服务"})
    assert old.render("zh") == old.render("en") == "补发 5 月志愿服务"


def test_an_old_text_no_template_matches_is_shown_as_it_was() -> None:
    old = recorded(None, None, "points for something long gone", "award")
    assert old.code == "legacy.text"
    assert old.render("zh") == old.render("en") == "points for something long gone"


def test_a_recorded_code_is_taken_as_it_is() -> None:
    params = {"points": 10}
    assert recorded("award.safe_riding.training", params, "ignored", "award") == Reason(
        "award.safe_riding.training", params
    )


# --- the language of a request ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "language"),
    [
        (None, "en"),
        ("", "en"),
        ("zh", "zh"),
        ("zh-CN", "zh"),
        ("zh-cn,zh;q=0.9,en;q=0.8", "zh"),
        ("zh-Hans-CN", "zh"),
        ("zh_TW", "zh"),
        ("en-US,en;q=0.9", "en"),
        ("en;q=0.9, zh;q=0.8", "en"),
        ("zh;q=0.5, en;q=0.9", "en"),
        ("fr-FR, zh;q=0.1", "zh"),
        ("fr", "en"),
        ("*", "en"),
        ("zh;q=0", "en"),
        ("zh;q=abc", "en"),
        ("zh;q=2", "en"),
        ("," * 10_000 + "zh", "en"),  # a header past 1,000 characters is read no further
        ("\x00zh", "en"),
    ],
)
def test_accept_language_picks_chinese_or_english(header: str | None, language: str) -> None:
    assert negotiate(header) == language


def test_a_problem_detail_is_written_in_the_readers_language() -> None:
    from services.redemption.domain.errors import OutOfStock, TooManyWrongCodes

    error = OutOfStock("理发", 10, "2026-10")
    assert error.detail.startswith("reward_id: all 10 of 理发 for 2026-10 are taken")
    assert error.words("zh") == ("本月已兑完", "reward_id：「理发」2026-10 的 10 份已兑完，请下月再来或选择其他奖励")
    assert error.words("en") == ("Out of stock", error.detail)
    wrong = TooManyWrongCodes(5, 900, 61)
    assert wrong.words("zh")[1] == "code：15 分钟内输错 5 次，请 61 秒后再试，并与骑手核对兑换码"
    assert isinstance(wrong.says, Message)
