"""Activity events as the contract defines them (CloudEvents 1.0 + one JSON Schema per type),
and their validation. Pure: the schemas are read once by ``load_schemas`` and passed in."""

from __future__ import annotations

import base64
import hashlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson
from jsonschema import Draft202012Validator, FormatChecker, ValidationError
from referencing import Registry, Resource

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"

CATEGORY_OF_TYPE: Mapping[str, str] = {
    "volunteer.shift.completed": "volunteer_service",
    "civic.action.verified": "civic_practice",
    "activity.attended": "activity_participation",
    "hazard.report.verified": "grassroots_governance",
    "safety.training.completed": "safe_riding",
    "safety.quiz.passed": "safe_riding",
    "safety.month.clean": "safe_riding",
    "skill.course.completed": "skill_development",
    "skill.certificate.obtained": "skill_development",
    "outreach.session.completed": "publicity_outreach",
    "honor.awarded": "honors",
}
CATEGORIES = tuple(dict.fromkeys(CATEGORY_OF_TYPE.values()))

# On an event the events service relays from HTTP to activity-events, and on its dead letter.
RECEIVED_VIA_HEADER = "warmbee-received-via"
# An activity cannot have happened in the future; a little slack absorbs clock skew at the source.
FUTURE_SLACK = timedelta(minutes=5)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
MAX_ID_CHARS = 256
MAX_EVENT_BYTES = 1024 * 1024  # an activity event is a few hundred bytes; a megabyte is a mistake
MAX_DEPTH = 8  # an event nests two levels (envelope, data); orjson refuses to write 255
MAX_REASON_CHARS = 2000
# A lone surrogate is no character at all: no JSON decoder gives one, but a Python caller might.
_UNSTORABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_NO_CONTROL = "no string of an event may hold a control character (U+0000-U+001F, U+007F): remove it"
_LEAP_SECOND = re.compile(r"T\d\d:\d\d:60", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ActivityEvent:
    source: str
    event_id: str
    type: str
    rider_id: str
    time: datetime
    data: Mapping[str, Any]
    document: Mapping[str, Any]  # the event as received

    @property
    def category(self) -> str:
        return CATEGORY_OF_TYPE[self.type]

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.event_id)

    @property
    def content_hash(self) -> str:
        """What the event says, independent of envelope details, to catch a reused id."""
        instant = self.time.astimezone(UTC).isoformat()  # one moment, however its offset was written
        body = {"type": self.type, "subject": self.rider_id, "time": instant, "data": self.data}
        return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True, slots=True)
class Invalid:
    reason: str
    source: str | None = None
    event_id: str | None = None


class EventSchemas:
    """Validators for the envelope and each event type, built once from ``schemas/``."""

    def __init__(self, documents: Mapping[str, Mapping[str, Any]]) -> None:
        resources = [(uri, Resource.from_contents(doc)) for uri, doc in documents.items()]
        registry: Registry[Any] = Registry().with_resources(resources)
        checker = FormatChecker()
        by_title = {doc.get("title"): doc for doc in documents.values()}
        envelope = next(doc for doc in documents.values() if doc["$id"].endswith("/cloudevent.schema.json"))
        self.envelope = Draft202012Validator(envelope, registry=registry, format_checker=checker)
        self.by_type = {
            t: Draft202012Validator(by_title[t], registry=registry, format_checker=checker) for t in CATEGORY_OF_TYPE
        }
        # The fast path: the same schemas compiled to Python by fastjsonschema, about ten times quicker.
        # It only says yes or no; a "no" is explained by the validators above, field by field.
        self.is_valid = {t: _compiled(by_title[t], envelope) for t in CATEGORY_OF_TYPE}


def _compiled(schema: Mapping[str, Any], envelope: Mapping[str, Any]) -> Callable[[object], bool]:
    """One type's schema with its envelope reference inlined, compiled (draft 7 has every keyword used)."""
    inlined = {k: v for k, v in schema.items() if k not in ("$schema", "$id", "allOf")}
    inlined["allOf"] = [{k: v for k, v in envelope.items() if k not in ("$schema", "$id")}]
    inlined["$schema"] = "http://json-schema.org/draft-07/schema#"
    validate = fastjsonschema.compile(inlined)

    def is_valid(document: object) -> bool:
        try:
            validate(document)
        except fastjsonschema.JsonSchemaException:
            return False
        return True

    return is_valid


def load_schemas(root: Path = SCHEMAS_DIR) -> EventSchemas:
    paths = [root / "cloudevent.schema.json", *sorted((root / "events").glob("*.schema.json"))]
    documents = {}
    for path in paths:
        doc = orjson.loads(path.read_bytes())
        documents[doc["$id"]] = doc
    return EventSchemas(documents)


def validate_event(
    document: object, schemas: EventSchemas, now: datetime, future_slack: timedelta = FUTURE_SLACK
) -> ActivityEvent | Invalid:
    """Check one decoded event; every problem is reported with its field and how to fix it.

    Total: whatever this accepts, planning, scoring and the ledger can handle (a property test holds it
    to that). Where the fast validator and the explaining one disagree, the event is refused."""
    if not isinstance(document, dict):
        return Invalid(f"event: must be a JSON object (a CloudEvent), got {_json_type(document)}")
    source, event_id = event_identity(document)
    problem = text_problem(document)
    if problem:
        return Invalid(problem, source, event_id)
    event_type = document.get("type")
    fast = schemas.is_valid.get(event_type) if isinstance(event_type, str) else None
    if fast is None or not fast(document):
        return _explained(document, schemas, source, event_id)
    assert source is not None
    assert event_id is not None
    time, problem = _event_time(document["time"], now, future_slack)
    if time is None:
        return Invalid(problem, source, event_id)
    problem = _check_data_times(document["data"], time, future_slack)
    if problem:
        return Invalid(problem, source, event_id)
    return ActivityEvent(
        source=source,
        event_id=event_id,
        type=document["type"],
        rider_id=document["subject"],
        time=time,
        data=document["data"],
        document=document,
    )


def _explained(document: Mapping[str, Any], schemas: EventSchemas, source: str | None, event_id: str | None) -> Invalid:
    """Why the fast validator refused: the explaining validator's errors, field by field. Where it finds
    none (the two read a schema differently), the event is still refused: one "no" is enough."""
    event_type = document.get("type")
    validator = schemas.by_type.get(event_type) if isinstance(event_type, str) else None
    errors = sorted((validator or schemas.envelope).iter_errors(document), key=_error_order)
    if not errors:
        return Invalid(
            f"event: does not match the schema of {event_type} (schemas/events/{event_type}.schema.json)",
            source,
            event_id,
        )
    reason = "; ".join(dict.fromkeys(_describe(e) for e in errors))
    return Invalid(
        reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 1] + "…", source, event_id
    )


def event_identity(document: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The event's ``(source, id)`` as far as they can be kept beside a refusal (see ``_identity``)."""
    return _identity(document.get("source")), _identity(document.get("id"))


def _identity(value: object) -> str | None:
    """The event's source or id as far as it can be kept beside a refusal: a plain string of at most
    ``MAX_ID_CHARS`` characters, or nothing (a NUL, for one, cannot be stored as text)."""
    if isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS and not _UNSTORABLE.search(value):
        return value
    return None


def printable(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """``text`` safe to keep and show: control characters and lone surrogates written as ``\\uNNNN``, at
    most ``limit`` characters."""
    shown = _UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


# I-JSON (RFC 7493): beyond 2**53 - 1 a number is not kept exactly by every reader, and the content hash
# (orjson) refuses integers beyond 64 bits, so such a value is refused rather than stored.
MAX_SAFE_INT = 2**53 - 1
_NO_BIG_INT = f"an integer beyond ±{MAX_SAFE_INT} (2^53 - 1) is not kept exactly by JSON readers; send it as a string"


def text_problem(document: object) -> str | None:
    """The first place where a string (a value or a key) holds a control character, or the event nests
    deeper than ``MAX_DEPTH``; None when there is none. A trailing newline makes a different id, so it
    is refused rather than trimmed. Nearly every event has none: a quick pass says so without naming
    places, and only an event that fails it is walked again to name the first."""
    if _clean(document, 0):
        return None
    return _first_text_problem(document)


def _clean(value: object, depth: int) -> bool:
    """Whether ``value`` holds nothing ``text_problem`` refuses (the same tests, without the paths)."""
    if depth > MAX_DEPTH:
        return False
    if isinstance(value, str):
        return _UNSTORABLE.search(value) is None
    if isinstance(value, dict):
        return all(
            isinstance(key, str) and _UNSTORABLE.search(key) is None and _clean(item, depth + 1)
            for key, item in value.items()
        )
    if isinstance(value, list):
        return all(_clean(item, depth + 1) for item in value)
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -MAX_SAFE_INT <= value <= MAX_SAFE_INT
    if isinstance(value, float):
        return math.isfinite(value)
    return True


def _first_text_problem(document: object) -> str | None:
    stack: list[tuple[object, str, int]] = [(document, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"{path or 'event'}: nests deeper than {MAX_DEPTH} levels; an activity event is flat"
        if isinstance(value, str):
            found = _UNSTORABLE.search(value)
            if found:
                return f"{path or 'event'}: holds {_character(found.group())}"
        elif isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    return f"{path or 'event'}: a field name must be a string"
                found = _UNSTORABLE.search(key)
                if found:
                    return f"{path or 'event'}: a field name holds {_character(found.group())}"
                name = key if len(key) <= 64 else key[:63] + "…"
                stack.append((item, f"{path}.{name}" if path else name, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool) and not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            return f"{path or 'event'}: {_NO_BIG_INT}"
        elif isinstance(value, float) and not math.isfinite(value):
            return f"{path or 'event'}: is {value}, which JSON cannot carry; send a finite number"
    return None


def _character(found: str) -> str:
    code = ord(found)
    if 0xD800 <= code <= 0xDFFF:
        return f"a lone surrogate U+{code:04X}; send valid Unicode text (UTF-8)"
    return f"the control character U+{code:04X}; {_NO_CONTROL}"


def _event_time(text: str, now: datetime, future_slack: timedelta) -> tuple[datetime | None, str]:
    time = _parse_time(text)
    if time is None:
        return None, _time_problem("time", text)
    if time > now + future_slack:
        return None, f"time: {text} is in the future; send the time the activity happened"
    if time < EARLIEST:
        return None, f"time: {text} is before 2000-01-01; send the real time"
    return time, ""


def _time_problem(field: str, text: str) -> str:
    if _LEAP_SECOND.search(text):
        return f"{field}: {text} is a leap second (:60), which warmbee cannot score; send :59 of that minute"
    return f"{field}: must be RFC 3339 with an offset, e.g. 2024-05-01T09:30:00+08:00"


def validate_message(
    value: bytes | None, schemas: EventSchemas, now: datetime, future_slack: timedelta = FUTURE_SLACK
) -> ActivityEvent | Invalid:
    """One Kafka value (or a dead letter's payload) checked as an event arriving: its size, its JSON, then
    ``validate_event``."""
    if value is not None and len(value) > MAX_EVENT_BYTES:
        return Invalid(f"value: is {len(value)} bytes; an event may be at most {MAX_EVENT_BYTES} bytes")
    decoded = decode_message(value)
    return decoded if isinstance(decoded, Invalid) else validate_event(decoded, schemas, now, future_slack)


def decode_message(value: bytes | None) -> object | Invalid:
    """Decode a Kafka value into JSON, or say why it cannot be."""
    if value is None:
        return Invalid("value: is empty (a tombstone); publish the event as a JSON object")
    try:
        decoded: object = orjson.loads(value)  # checks UTF-8 itself; the text is decoded only to explain
        return decoded
    except orjson.JSONDecodeError as exc:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as bad:
            return Invalid(f"value: is not valid UTF-8 (byte {bad.start}); publish the event as UTF-8 JSON")
        return Invalid(f"value: is not valid JSON ({exc}); publish one CloudEvent as a JSON object")


def payload_text(value: bytes | None) -> tuple[str, str]:
    """The raw value as text for people to read: UTF-8 when it is, base64 otherwise (also when it holds a
    NUL, which PostgreSQL cannot keep in text)."""
    raw = value or b""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"
    if "\x00" in text:
        return base64.b64encode(raw).decode("ascii"), "base64"
    return text, "utf-8"


def _parse_time(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text.upper())  # RFC 3339 allows a lowercase "t" and "z"
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _check_data_times(data: Mapping[str, Any], time: datetime, future_slack: timedelta) -> str | None:
    """A hazard is reported before it is verified: ``reported_at`` lies between 2000-01-01 and the event's
    time (with the same skew allowed as for ``time``); the year 9999 cannot be scored."""
    text = data.get("reported_at")
    if not isinstance(text, str):
        return None
    reported_at = _parse_time(text)
    if reported_at is None:
        return _time_problem("data.reported_at", text)
    if reported_at < EARLIEST:
        return f"data.reported_at: {text} is before 2000-01-01; send when the hazard was reported"
    if reported_at > time + future_slack:
        return f"data.reported_at: {text} is after the event's time; a hazard is reported before it is verified"
    return None


def _error_order(error: ValidationError) -> tuple[str, str]:
    return (_path(error), error.message)


def _path(error: ValidationError) -> str:
    parts = [str(p) if not isinstance(p, int) else f"[{p}]" for p in error.absolute_path]
    return ".".join(parts).replace(".[", "[") or "event"


def _describe(error: ValidationError) -> str:
    path = _path(error)
    schema = error.schema if isinstance(error.schema, dict) else {}
    match error.validator:
        case "required":
            missing = error.message.split("'")[1] if "'" in error.message else "a field"
            where = f"{path}." if path != "event" else ""
            return f"{where}{missing}: is required"
        case "type":
            return f"{path}: must be {_article(str(error.validator_value))}, got {_json_type(error.instance)}"
        case "enum":
            options = ", ".join(str(v) for v in schema.get("enum", []))
            return f"{path}: {_shown(error.instance)} is not one of: {options}"
        case "const":
            return f"{path}: must be {schema.get('const')!r}, got {_shown(error.instance)}"
        case "exclusiveMinimum":
            return f"{path}: must be greater than {error.validator_value}, got {error.instance}"
        case "minimum":
            return f"{path}: must be at least {error.validator_value}, got {error.instance}"
        case "maximum":
            return f"{path}: must be at most {error.validator_value}, got {error.instance}"
        case "format":
            return f"{path}: must be an RFC 3339 date-time with offset, e.g. 2024-05-01T09:30:00+08:00"
        case "pattern":
            return f"{path}: {_shown(error.instance)} does not match {error.validator_value}"
        case "minLength":
            return f"{path}: must not be empty"
        case "maxLength":
            return f"{path}: is longer than {error.validator_value} characters"
        case _:
            return f"{path}: {error.message}"


def _shown(value: object) -> str:
    """A value as a reason quotes it: a 1 MiB string is not repeated back in full."""
    text = repr(value)
    return text if len(text) <= 80 else text[:79] + "…"


def _article(json_type: str) -> str:
    return {"object": "an object", "array": "an array", "integer": "an integer"}.get(json_type, f"a {json_type}")


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
