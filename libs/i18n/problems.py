"""The words of problems (RFC 9457) in the reader's language: titles, and the details riders and partners
meet, from the ``problems`` gettext catalogue. The English msgids are the words the problems said before,
so a client that asks for no language reads what it always read; the problem ``type`` never changes.

A domain module raises ``DomainError(says(P_("... {name} ..."), name=value), kind=...)``: ``P_`` marks
the template for Babel's extraction (``make i18n-problems``); the detail is written when the problem is
answered, in the language of the request. Problems only operators and developers meet keep an English
detail; their titles are translated all the same. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from libs.i18n.language import Language, translations


def P_(msgid: str) -> str:
    return msgid


@dataclass(frozen=True, slots=True)
class Message:
    """A sentence for a person: its English template (the msgid) and the values of its fields."""

    msgid: str
    params: Mapping[str, Any]

    def render(self, language: Language = "en") -> str:
        return translations("problems", language).gettext(self.msgid).format_map(self.params)


def says(msgid: str, **params: Any) -> Message:
    return Message(msgid, params)


def title(msgid: str, language: Language) -> str:
    """A problem's title in ``language`` (a title the catalogue lacks stays as it is)."""
    return translations("problems", language).gettext(msgid)
