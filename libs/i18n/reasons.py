"""Why every entry of the ledger is what it is, as a stable code and the values of its sentence.

An entry keeps ``reason_code`` (dotted, never renamed) and ``reason_params``; the sentence is written
when it is read, in the reader's language, from the gettext catalogue of the ``reasons`` domain. The
English templates are the catalogue's msgids and say, word for word, what the ledger said in English
before the codes existed, so a client that never sends ``Accept-Language`` reads what it always read.

That also gives the entries recorded before the codes theirs: the ledger is append-only, so no row is
updated; ``recorded`` reads the code back from the stored English text by matching it against the
English templates (each one, turned into a pattern, is the inverse of its rendering). A text that no
template matches is shown as it was, in both languages, under ``legacy.text``.

Pure: no I/O. The templates use ``{name}`` fields; ``N_``, ``Nn_`` and ``Np_`` mark the msgids for
Babel's extraction (``make i18n``) and return them unchanged.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from libs.i18n.language import Language, long_date, translations, year_month

ParamForm = Literal["int", "number", "hours", "text", "term", "month", "week", "year", "date"]


def N_(msgid: str) -> str:
    return msgid


def Nn_(singular: str, plural: str) -> tuple[str, str]:
    return singular, plural


def Np_(context: str, msgid: str) -> tuple[str, str]:
    return context, msgid


# The words a sentence takes from an event's own values, by vocabulary (the gettext context): the
# value as stored -> its English word, the msgid.
VOCABULARIES: Mapping[str, Mapping[str, str]] = {
    "category": {
        "volunteer_service": Np_("category", "volunteer service")[1],
        "civic_practice": Np_("category", "civic practice")[1],
        "activity_participation": Np_("category", "activity participation")[1],
        "grassroots_governance": Np_("category", "grassroots governance")[1],
        "safe_riding": Np_("category", "safe riding")[1],
        "skill_development": Np_("category", "skill development")[1],
        "publicity_outreach": Np_("category", "publicity outreach")[1],
        "honors": Np_("category", "honors")[1],
    },
    "period": {
        "day": Np_("period", "daily")[1],
        "week": Np_("period", "weekly")[1],
        "month": Np_("period", "monthly")[1],
        "year": Np_("period", "yearly")[1],
    },
    "severity": {
        "low": Np_("severity", "low")[1],
        "medium": Np_("severity", "medium")[1],
        "high": Np_("severity", "high")[1],
    },
    "level": {
        "district": Np_("level", "district")[1],
        "street": Np_("level", "street")[1],
        "community": Np_("level", "community")[1],
    },
    "action": {
        "litter_pickup": Np_("action", "litter pickup")[1],
        "bike_tidy": Np_("action", "bike tidy")[1],
        "civility_guidance": Np_("action", "civility guidance")[1],
    },
    "topic": {
        "anti_fraud": Np_("topic", "anti-fraud")[1],
        "health": Np_("topic", "health")[1],
        "other": Np_("topic", "outreach")[1],
    },
}


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    form: ParamForm = "int"
    vocabulary: str | None = None  # for kind "term": the key of VOCABULARIES (the gettext context)

    def __post_init__(self) -> None:
        if (self.form == "term") != (self.vocabulary in VOCABULARIES):
            raise ValueError(f"parameter {self.name}: a term names its vocabulary, nothing else does")


@dataclass(frozen=True, slots=True)
class ReasonCode:
    """One kind of reason: its code, the parameters of its sentence and its English template (the msgid).
    ``plural`` and ``count`` make it a plural message: English chooses by the ``count`` parameter."""

    code: str
    template: str
    params: tuple[Param, ...] = ()
    plural: str | None = None
    count: str | None = None
    when: str = ""  # when the code is used, for GET /v1/reason-codes

    @property
    def names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.params)

    def templates(self, language: Language) -> tuple[str, ...]:
        """The template(s) in ``language``: one, or for a plural message one per plural form."""
        t = translations("reasons", language)
        if self.plural is None:
            return (t.gettext(self.template),)
        if language == "en":
            return (t.ngettext(self.template, self.plural, 1), t.ngettext(self.template, self.plural, 2))
        return (t.ngettext(self.template, self.plural, 1),)  # Chinese has one form


def _code(
    code: str, template: str | tuple[str, str], *params: Param, count: str | None = None, when: str = ""
) -> ReasonCode:
    singular, plural = (template, None) if isinstance(template, str) else template
    return ReasonCode(code, singular, params, plural, count, when)


_I = Param  # an integer, digits
_POINTS, _BASE, _CAP = _I("points"), _I("base"), _I("cap")
_HOURS, _MINUTES, _UNITS, _PER_UNIT = Param("hours", "hours"), _I("minutes"), _I("units"), _I("per_unit")
_TITLE, _PARTNER, _COST = Param("title", "text"), Param("partner_name", "text"), _I("cost")

CODES: tuple[ReasonCode, ...] = (
    # What an event earns, by category.
    _code(
        "award.volunteer_service",
        Nn_(
            "{hours} verified hours = {units} whole half-hour × {per_unit} points = {points} points",
            "{hours} verified hours = {units} whole half-hours × {per_unit} points = {points} points",
        ),
        _HOURS,
        _UNITS,
        _PER_UNIT,
        _POINTS,
        count="units",
        when="a volunteer shift, counted in whole half-hours",
    ),
    _code(
        "award.volunteer_service.units",
        Nn_(
            "{hours} verified hours = {units} whole {minutes}-minute unit × {per_unit} points = {points} points",
            "{hours} verified hours = {units} whole {minutes}-minute units × {per_unit} points = {points} points",
        ),
        _HOURS,
        _UNITS,
        _MINUTES,
        _PER_UNIT,
        _POINTS,
        count="units",
        when="a volunteer shift, where the rules count in units other than half-hours",
    ),
    _code(
        "award.volunteer_service.short",
        N_("{hours} verified hours is less than one whole half-hour: 0 points"),
        _HOURS,
        when="a volunteer shift shorter than one whole half-hour",
    ),
    _code(
        "award.volunteer_service.short_units",
        N_("{hours} verified hours is less than one whole {minutes}-minute unit: 0 points"),
        _HOURS,
        _MINUTES,
        when="a volunteer shift shorter than one whole unit of the rules",
    ),
    _code(
        "award.civic_practice",
        N_("verified civic action ({action}): {points} points"),
        Param("action", "term", "action"),
        _POINTS,
        when="a verified civic action",
    ),
    _code(
        "award.activity_participation",
        N_("activity {activity_id} attended: {points} points"),
        Param("activity_id", "text"),
        _POINTS,
        when="a civic activity attended",
    ),
    _code(
        "award.grassroots_governance",
        N_("hazard report {report_id} verified, severity {severity}: {points} points"),
        Param("report_id", "text"),
        Param("severity", "term", "severity"),
        _POINTS,
        when="a hazard report the grid office verified",
    ),
    _code(
        "award.grassroots_governance.rejected",
        N_("hazard report {report_id} rejected by the grid office: {points} points"),
        Param("report_id", "text"),
        _POINTS,
        when="a hazard report the grid office rejected",
    ),
    _code(
        "award.safe_riding.training",
        N_("safety training completed: {points} points"),
        _POINTS,
        when="a safety training completed",
    ),
    _code(
        "award.safe_riding.quiz",
        N_("safety quiz {quiz_id} passed: {points} points"),
        Param("quiz_id", "text"),
        _POINTS,
        when="a safety quiz passed",
    ),
    _code(
        "award.safe_riding.clean_month",
        N_("no traffic violation in {month}: {points} points"),
        Param("month", "month"),
        _POINTS,
        when="a month without traffic violations",
    ),
    _code(
        "award.skill_development.course",
        N_("course completed: {points} points"),
        _POINTS,
        when="a course completed",
    ),
    _code(
        "award.skill_development.certificate",
        N_("certificate obtained: {points} points"),
        _POINTS,
        when="a certificate obtained",
    ),
    _code(
        "award.publicity_outreach",
        N_("{topic} session given: {points} points"),
        Param("topic", "term", "topic"),
        _POINTS,
        when="an outreach session given",
    ),
    _code(
        "award.honors",
        N_("{level} honour {honor_id}: {points} points"),
        Param("level", "term", "level"),
        Param("honor_id", "text"),
        _POINTS,
        when="an honour awarded",
    ),
    # What keeps an event from earning all of its base.
    _code(
        "award.no_rules",
        N_("no rules were in force at the time of this activity"),
        when="an event from before the first rules version took effect",
    ),
    _code(
        "award.already_paid.safe_riding.quiz",
        N_("safety quiz {quiz_id} was already rewarded: 0 points"),
        Param("quiz_id", "text"),
        when="a quiz pays once",
    ),
    _code(
        "award.already_paid.safe_riding.clean_month",
        N_("the clean month {month} was already rewarded: 0 points"),
        Param("month", "month"),
        when="a clean month pays once",
    ),
    _code(
        "award.already_paid.activity_participation",
        N_("activity {activity_id} was already rewarded: 0 points"),
        Param("activity_id", "text"),
        when="an activity pays once",
    ),
    _code(
        "award.already_paid.honors",
        N_("honour {honor_id} was already rewarded in {year}: 0 points"),
        Param("honor_id", "text"),
        Param("year", "year"),
        when="an honour pays once a year",
    ),
    _code(
        "award.weekly_limit",
        N_("weekly limit of {most} activities reached in {week}: 0 of {base} awarded"),
        _I("most"),
        Param("week", "week"),
        _BASE,
        when="the rider already attended the most activities a week pays for",
    ),
    _code(
        "award.same_hazard",
        Nn_(
            "the same hazard (within {radius_m} m and {window_hours} h) was first reported in report "
            "{first_report_id}, paid in full: this later report earns {points} point",
            "the same hazard (within {radius_m} m and {window_hours} h) was first reported in report "
            "{first_report_id}, paid in full: this later report earns {points} points",
        ),
        Param("radius_m", "number"),
        Param("window_hours", "number"),
        Param("first_report_id", "text"),
        _POINTS,
        count="points",
        when="a later report of a hazard already paid in full",
    ),
    _code(
        "award.cap_clipped",
        N_("{period} cap of {cap} points for {category} reached: {points} of {base} awarded"),
        Param("period", "term", "period"),
        _CAP,
        Param("category", "term", "category"),
        _POINTS,
        _BASE,
        when="the award was cut to what was left below a cap of the period",
    ),
    _code(
        "award.cap_reached",
        N_("{period} cap of {cap} points for {category} already reached: 0 of {base} awarded"),
        Param("period", "term", "period"),
        _CAP,
        Param("category", "term", "category"),
        _BASE,
        when="a cap of the period was already reached",
    ),
    # What people did.
    _code(
        "adjustment",
        N_("{note}"),
        Param("note", "text"),
        when="an operator's adjustment: the operator's own words, in every language",
    ),
    _code(
        "adjustment.dispute_upheld",
        N_("dispute {dispute_id} on entry {entry_id} upheld: {note}"),
        Param("dispute_id", "text"),
        Param("entry_id", "int"),
        Param("note", "text"),
        when="an operator upheld a rider's dispute of an entry: the adjustment, with the operator's reply",
    ),
    _code(
        "redemption.hold",
        N_("{cost} points held for {title} at {partner_name}"),
        _COST,
        _TITLE,
        _PARTNER,
        when="a rider reserved a reward: its points are held",
    ),
    _code(
        "redemption.redeem",
        N_("{title} redeemed at the counter: the {cost} held points were paid"),
        _TITLE,
        _COST,
        when="the partner confirmed the code: the held points are paid",
    ),
    _code(
        "redemption.release",
        N_("redemption of {title} cancelled: {cost} points returned"),
        _TITLE,
        _COST,
        when="the rider cancelled: the held points come back",
    ),
    _code(
        "redemption.expire",
        N_("the hold for {title} expired unconfirmed: {cost} points returned"),
        _TITLE,
        _COST,
        when="nobody confirmed the code in time: the held points come back",
    ),
    _code(
        "lapse",
        Nn_(
            "{points} point of entry {entry_id} (awarded on {awarded_on}) lapsed after {lapses_on}",
            "{points} points of entry {entry_id} (awarded on {awarded_on}) lapsed after {lapses_on}",
        ),
        _POINTS,
        _I("entry_id"),
        Param("awarded_on", "date"),
        Param("lapses_on", "date"),
        count="points",
        when="what was left of a lot lapsed at the end of its last good day (积分有效期)",
    ),
    # What became of an event not scored (GET /v1/events/...).
    _code("event.pending", N_("accepted, waiting to be scored"), when="an event accepted and not scored yet"),
    _code(
        "event.dead_lettered",
        N_("{error}"),
        Param("error", "text"),
        when="an event that could not be scored: what failed, for an operator",
    ),
    _code(
        "legacy.text",
        N_("{text}"),
        Param("text", "text"),
        when="an entry recorded before reason codes whose text no template matches: shown as it was",
    ),
)
BY_CODE: Mapping[str, ReasonCode] = {c.code: c for c in CODES}
# Each code's parameter names, made once: Reason.of checks every reason made (several an event) against them.
_NAMES: Mapping[str, frozenset[str]] = {c.code: c.names for c in CODES}


class ReasonError(ValueError):
    """A reason that its code does not describe: a defect of the caller, never of the input."""


@dataclass(frozen=True, slots=True)
class Reason:
    """A code and the values of its sentence (JSON values: ints, floats and strings)."""

    code: str
    params: Mapping[str, Any]

    @classmethod
    def of(cls, code: str, **params: Any) -> Reason:
        names = _NAMES.get(code)
        if names is None:
            raise ReasonError(f"unknown reason code {code!r}")
        if params.keys() != names:
            raise ReasonError(f"reason {code} takes {sorted(names)}, was given {sorted(params)}")
        return cls(code, params)

    def render(self, language: Language = "en") -> str:
        return render(self.code, self.params, language)


def render(code: str, params: Mapping[str, Any], language: Language = "en") -> str:
    known = BY_CODE[code]
    t = translations("reasons", language)
    if known.plural is None:
        template = t.gettext(known.template)
    else:
        template = t.ngettext(known.template, known.plural, int(params[known.count or ""]))
    return template.format_map({p.name: _word(p, params[p.name], language) for p in known.params})


def term(vocabulary: str, value: str, language: Language) -> str:
    """A value of a vocabulary (``volunteer_service`` of ``category``) as a word of the language."""
    word = VOCABULARIES[vocabulary].get(value)
    if word is None:  # a value the vocabulary does not know yet: shown as it is, readably
        return value.replace("_", " ")
    return str(translations("reasons", language).pgettext(vocabulary, word))


def _word(param: Param, value: Any, language: Language) -> str:
    match param.form:
        case "term":
            return term(param.vocabulary or "", str(value), language)
        case "number":
            return f"{value:g}"
        case "month" if language == "zh" and (m := _MONTH.fullmatch(str(value))):
            return year_month(int(m[1]), int(m[2]), language)
        case "week" if language == "zh" and (m := _WEEK.fullmatch(str(value))):
            return f"{int(m[1])}年第{int(m[2])}周"
        case "date" if language != "en" or isinstance(value, date):
            return long_date(value if isinstance(value, date) else date.fromisoformat(str(value)), language)
        case _:
            return str(value)


_MONTH = re.compile(r"(\d{4})-(\d{2})")
_WEEK = re.compile(r"(\d{4})-W(\d{2})")


def recorded(code: str | None, params: Mapping[str, Any] | None, text: str, kind: str) -> Reason:
    """The reason of a stored entry: its code where it has one; for an entry recorded before the codes,
    the code read back from its English text (an adjustment's text is the operator's own words)."""
    if code is not None and code in BY_CODE:
        return Reason(code, params or {})
    if kind == "adjustment":
        return Reason("adjustment", {"note": text})
    return from_english(text)


def from_english(text: str) -> Reason:
    """The code and values that render to ``text`` in English, or ``legacy.text`` when none does."""
    for reason_code, pattern in _patterns():
        if m := pattern.fullmatch(text):
            params = {p.name: _value(p, m[p.name]) for p in reason_code.params}
            try:
                candidate = Reason(reason_code.code, params)
                if candidate.render("en") == text:
                    return candidate
            except (KeyError, ValueError):
                continue
    return Reason("legacy.text", {"text": text})


@functools.cache
def _patterns() -> tuple[tuple[ReasonCode, re.Pattern[str]], ...]:
    # The catch-all templates ("{note}", "{text}", "{error}") match anything: they are never inferred.
    return tuple(
        (c, _pattern(template, c))
        for c in CODES
        if c.code not in ("adjustment", "legacy.text", "event.dead_lettered", "event.pending")
        for template in ((c.template,) if c.plural is None else (c.template, c.plural))
    )


def _pattern(template: str, reason_code: ReasonCode) -> re.Pattern[str]:
    kinds = {p.name: p for p in reason_code.params}
    parts: list[str] = []
    seen: set[str] = set()
    for literal, field, _, _ in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if field is None:
            continue
        if field in seen:
            parts.append(f"(?P={field})")
            continue
        seen.add(field)
        parts.append(f"(?P<{field}>{_field_pattern(kinds[field])})")
    return re.compile("".join(parts), re.DOTALL)


def _field_pattern(param: Param) -> str:
    match param.form:
        case "int" | "year":
            return r"-?\d+"
        case "number" | "hours":
            return r"-?[0-9.e+]+"
        case "term":  # only the vocabulary's own words: "volunteer service already" is not a category
            words = sorted(VOCABULARIES[param.vocabulary or ""].values(), key=len, reverse=True)
            return "|".join(re.escape(w) for w in words)
        case _:
            return r".+?"


def _value(param: Param, text: str) -> Any:
    match param.form:
        case "int" | "year":
            return int(text)
        case "number":
            number = float(text)
            return int(number) if number.is_integer() else number
        case "term":
            return next(value for value, word in VOCABULARIES[param.vocabulary or ""].items() if word == text)
        case _:
            return text


def fields(template: str) -> Iterator[str]:
    """The ``{name}`` fields a template names."""
    for _, field, _, _ in string.Formatter().parse(template):
        if field is not None:
            yield field
