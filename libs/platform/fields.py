"""Field types of request models: what a service takes is what its OpenAPI document promises.

Text (names, titles, reasons, ids, headers) holds no control character (U+0000-U+001F, U+007F). API.md
sets this rule for every string of an event; the services hold every other string they take to the same
rule, a newline included, rather than storing some of them "safely": PostgreSQL refuses U+0000 in text
and jsonb (a 500 when it gets there), and a newline or an escape sequence in a name, a title or a reason
forges lines in logs and exports and is shown to riders and partners. A trailing newline in an id is a
different id. One rule everywhere is also one rule for clients to learn.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, GetCoreSchemaHandler, GetJsonSchemaHandler, StrictBool
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
# The same rule in the OpenAPI document (JSON Schema patterns are ECMA-262: `$` is the end of the text),
# so clients, and the fuzzers that hold us to the document, know it.
NO_CONTROL_CHARACTERS = "^[^\\u0000-\\u001f\\u007f]*$"


def control_character_in(value: str) -> str | None:
    """The first control character of ``value`` as ``U+XXXX at position N``, or None."""
    found = CONTROL_CHARACTER.search(value)
    if found is None:
        return None
    return f"U+{ord(found.group()):04X} at position {found.start()}"


def refuse_control_characters(value: Any) -> Any:
    # Before any other check of the field (a pattern, a length), so the answer says what is wrong.
    if isinstance(value, str) and (found := control_character_in(value)) is not None:
        raise PydanticCustomError(
            "control_character",
            "must not contain control characters (U+0000-U+001F, U+007F, newlines and tabs too); "
            "found {found}; remove it",
            {"found": found},
        )
    return value


class NoControlCharacters:
    """A pydantic annotation: the string refuses control characters, and its JSON Schema says so
    (unless the field has a pattern of its own, which then must already exclude them)."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_before_validator_function(refuse_control_characters, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        if json_schema.get("type") == "string" and "pattern" not in json_schema:
            json_schema["pattern"] = NO_CONTROL_CHARACTERS
        return json_schema


# Every string field, path, query and header parameter a service takes is Text (with its own limits).
Text = Annotated[str, NoControlCharacters()]


def _json_integer(value: Any) -> Any:
    # Pydantic's lax mode reads "5" and true as integers, which the document's `type: integer` refuses;
    # its strict mode refuses 5.0, which JSON Schema calls an integer. JSON numbers only, then lax.
    if isinstance(value, (str, bool)):
        raise PydanticCustomError(
            "int_type", "must be an integer (a JSON number), got {kind}", {"kind": type(value).__name__}
        )
    return value


# Marks an int field as a JSON number without a fraction (5 or 5.0), never a string or a boolean. Put it
# after the bounds, `Annotated[int, Field(gt=0), NUMBER_ONLY]`: pydantic cannot carry bounds given
# outside a validator (or through `| None`) into the document, and writes them there as stray keywords.
NUMBER_ONLY = BeforeValidator(_json_integer)
JsonInt = Annotated[int, NUMBER_ONLY]
# A boolean field: true or false, never 0, 1 or "yes" (which lax pydantic reads as booleans).
JsonBool = StrictBool

# RFC 3339 as the document's `format: date-time` means it: a date, a time and an offset. Pydantic alone
# also reads "0.5" as a Unix time and takes a time without an offset.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _rfc3339(value: Any) -> Any:
    if isinstance(value, str) and not _RFC3339.fullmatch(value):
        raise PydanticCustomError(
            "datetime_format", "must be an RFC 3339 date-time with an offset, e.g. 2024-05-01T09:00:00+08:00"
        )
    return value


DateTime = Annotated[datetime, BeforeValidator(_rfc3339)]


def _has_a_word(value: str) -> str:
    # A reason is for a reader: 「补发」 is a reason, "..." or three spaces are not. Lengths are counted in
    # characters (code points), as a reader counts Chinese: 「补发」 is 2, not 6 bytes.
    if not any(ch.isalnum() for ch in value):
        raise PydanticCustomError("no_word", "must say something: at least one letter, character or digit")
    return value.strip()


# Words for a person to read (an adjustment's reason, a dispute's message): Text with at least one word.
Words = Annotated[str, NoControlCharacters(), AfterValidator(_has_a_word)]
