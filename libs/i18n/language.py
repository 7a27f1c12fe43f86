"""The reader's language: which one a request asks for, and the compiled gettext catalogues of each.

Two languages: Chinese (``zh``, the programme's own) and English (``en``). ``Accept-Language`` picks:
any ``zh`` tag (``zh``, ``zh-CN``, ``zh-Hans``, also ``zh-TW``: simplified Chinese is still Chinese to
its reader) Chinese, anything else or no header English, so a client that never asked reads what it
always read. The catalogues are gettext ``.mo`` files compiled by Babel from the ``.po`` files beside
them (``make i18n``), one domain per reader: ``reasons``, ``problems``, ``pages``, ``notices``.
"""

from __future__ import annotations

import functools
from datetime import date
from pathlib import Path
from typing import Literal

from babel import Locale
from babel.dates import format_date, format_skeleton
from babel.support import NullTranslations, Translations

Language = Literal["zh", "en"]
LANGUAGES: tuple[Language, ...] = ("zh", "en")
LOCALES: dict[Language, str] = {"zh": "zh_CN", "en": "en"}  # the catalogues' directories, Babel's locales
TAGS: dict[Language, str] = {"zh": "zh-CN", "en": "en"}  # BCP 47, for Content-Language and <html lang>
DOMAINS = ("reasons", "problems", "pages", "notices")
LOCALE_DIR = Path(__file__).resolve().parent / "locale"


def negotiate(accept_language: str | None) -> Language:
    """The language of an ``Accept-Language`` header (RFC 9110 §12.5.4): the most preferred of ours,
    weights honoured (``en;q=0.9, zh;q=0.8`` is English), ``*`` and unknown tags passed over."""
    best: tuple[float, int, Language] | None = None
    for position, item in enumerate((accept_language or "")[:1000].split(",")):
        tag, _, params = item.strip().partition(";")
        language = _ours(tag.strip())
        if language is None:
            continue
        weight = _weight(params)
        if weight > 0 and (best is None or (weight, -position) > (best[0], best[1])):
            best = (weight, -position, language)
    return best[2] if best else "en"


def _ours(tag: str) -> Language | None:
    primary = tag.lower().replace("_", "-").split("-", 1)[0]
    return "zh" if primary == "zh" else "en" if primary == "en" else None


def _weight(params: str) -> float:
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value)
            except ValueError:
                return 0.0
            return q if 0.0 <= q <= 1.0 else 0.0
    return 1.0


@functools.cache
def translations(domain: str, language: Language) -> NullTranslations:
    """The compiled catalogue of ``domain`` in ``language``; a missing one is a defect of the build, not
    something to paper over with English."""
    if domain not in DOMAINS:
        raise KeyError(f"no gettext domain {domain!r}; the domains are {DOMAINS}")
    mo = LOCALE_DIR / LOCALES[language] / "LC_MESSAGES" / f"{domain}.mo"
    if not mo.is_file():
        raise FileNotFoundError(f"{mo} is missing: run `make i18n` to compile the catalogues")
    with mo.open("rb") as f:
        return Translations(f, domain=domain)


@functools.cache
def locale(language: Language) -> Locale:
    return Locale.parse(LOCALES[language])


def long_date(day: date, language: Language) -> str:
    """2026年10月14日 / October 14, 2026."""
    return format_date(day, "long", locale=locale(language))


def year_month(year: int, month: int, language: Language) -> str:
    """2026年10月 / October 2026."""
    return format_skeleton("yMMMM", date(year, month, 1), locale=locale(language))
