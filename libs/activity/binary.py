"""CloudEvents binary content mode: the attributes in headers, ``data`` alone as the body (HTTP) or the
value (Kafka), as the CloudEvents SDKs' ``to_binary`` send them.

A binary event is turned here into the same structured document a structured-mode source sends, and
from then on it takes the one validation path (``validate_event``): the same schema, the same refusals,
the same content hash. What only binary mode can get wrong (a header sent twice, bytes that are not
text, an attribute name that is none, a body that is not JSON) is refused here, naming the header.

Pure: headers come in as ``(name, value)`` pairs exactly as received, duplicates included."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson

from libs.activity.model import (
    FUTURE_SLACK,
    MAX_EVENT_BYTES,
    MAX_ID_CHARS,
    ActivityEvent,
    EventSchemas,
    Invalid,
    printable,
    validate_event,
    validate_message,
)

JSON_MEDIA = "application/json"
# The attributes every warmbee event has (schemas/cloudevent.schema.json), asked for by their header's name.
REQUIRED = ("specversion", "id", "source", "type", "subject", "time")
# CloudEvents 1.0: attribute names are lowercase ASCII letters and digits, at most 20 of them.
_ATTRIBUTE_NAME = re.compile("[a-z0-9]{1,20}")
# The HTTP binding (3.1.3.2) percent-encodes a value's space, '"', '%' and everything outside U+0021-U+007E.
_PERCENT = re.compile(b"%(?![0-9A-Fa-f]{2})")
_CONTROL = re.compile("[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Binding:
    """How one protocol carries binary mode: the header prefix, whether values are percent-encoded, what
    the data is called in a reason, and the header that carries ``datacontenttype``."""

    prefix: str
    percent_encoded: bool
    body: str
    content_type: str = "content-type"


HTTP = Binding(prefix="ce-", percent_encoded=True, body="body")
KAFKA = Binding(prefix="ce_", percent_encoded=False, body="value")

Headers = Iterable[tuple[str | bytes, bytes | str | None]]


def attributes(headers: Headers, binding: Binding) -> dict[str, str] | Invalid | None:
    """The event's attributes from its ``ce-``/``ce_`` headers; None when there is none (the message is in
    structured mode); ``Invalid`` naming the first header that cannot be an attribute, with the event's
    source and id beside it where the other headers give them (a dead letter is found by them)."""
    found: dict[str, str] = {}
    problem: str | None = None
    seen = False
    for raw_name, raw_value in headers:
        name = _text_name(raw_name)
        if name is None or not name.lower().startswith(binding.prefix):
            continue
        seen = True
        attribute = name[len(binding.prefix) :].lower()
        reason = _attribute_problem(attribute, binding) or (
            "sent twice; send each attribute once" if attribute in found else None
        )
        value = _value(raw_value, binding) if reason is None else None
        if isinstance(value, Invalid):
            reason = value.reason
        elif isinstance(value, str) and (control := _CONTROL.search(value)):
            reason = (
                f"holds the control character U+{ord(control.group()):04X}; "
                "no string of an event may hold one: remove it"
            )
        elif isinstance(value, str):
            found[attribute] = value
        if reason is not None and problem is None:
            problem = f"{printable(name, 80)}: {reason}"
    if not seen:
        return None
    return found if problem is None else _named(problem, found)


def _attribute_problem(attribute: str, binding: Binding) -> str | None:
    if not _ATTRIBUTE_NAME.fullmatch(attribute):
        return "is not a CloudEvents attribute (a-z and 0-9, at most 20 characters)"
    if attribute == "data":
        return f"in binary mode data is the {binding.body}; send no such header"
    if attribute == "datacontenttype":
        return f"in binary mode datacontenttype is the {binding.content_type} header; send no such header"
    return None


def document(
    found: dict[str, str], data: bytes | None, content_type: str | None, binding: Binding
) -> dict[str, object] | Invalid:
    """The structured document of a binary event: its attributes, ``datacontenttype`` and ``data``."""
    missing = [a for a in REQUIRED if a not in found]
    if missing:
        headers = ", ".join(binding.prefix + a for a in missing)
        return _named(
            f"{binding.prefix}{missing[0]}: is required; send the header{'s' * (len(missing) > 1)} {headers}", found
        )
    media = (content_type or "").split(";")[0].strip().lower()
    if content_type is not None and media != JSON_MEDIA:
        shown = printable(media, 80) or "empty"
        return _named(
            f"{binding.content_type}: {shown} is not accepted; binary mode carries data as {JSON_MEDIA}", found
        )
    if not data:
        return _named(f"{binding.body}: is empty; in binary mode the {binding.body} is the event's data as JSON", found)
    try:
        decoded = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return _named(f"{binding.body}: is not valid JSON ({exc}); send the event's data as a JSON object", found)
    event: dict[str, object] = dict(found)
    if content_type is not None:
        event["datacontenttype"] = media
    event["data"] = decoded
    return event


KafkaHeaders = Sequence[tuple[str, bytes | None]]


def validate_record(
    value: bytes | None,
    headers: KafkaHeaders,
    schemas: EventSchemas,
    now: datetime,
    future_slack: timedelta = FUTURE_SLACK,
) -> ActivityEvent | Invalid:
    """One Kafka record checked as an event arriving, in either mode: structured (the event is the
    value) or binary (``ce_*`` headers, ``data`` as the value)."""
    found = attributes(headers, KAFKA)
    if found is None:
        return validate_message(value, schemas, now, future_slack)
    if isinstance(found, Invalid):
        return found
    if value is not None and len(value) > MAX_EVENT_BYTES:
        return _named(f"value: is {len(value)} bytes; an event may be at most {MAX_EVENT_BYTES} bytes", found)
    decoded = record_document(value, headers, found)
    return decoded if isinstance(decoded, Invalid) else validate_event(decoded, schemas, now, future_slack)


def record_document(
    value: bytes | None, headers: KafkaHeaders, found: dict[str, str] | Invalid | None = None
) -> dict[str, object] | Invalid | None:
    """The structured document of a binary Kafka record; None for a structured one."""
    attrs = attributes(headers, KAFKA) if found is None else found
    if attrs is None or isinstance(attrs, Invalid):
        return attrs
    types = [v for k, v in headers if k.lower() == KAFKA.content_type]
    if len(types) > 1:
        return _named(f"{KAFKA.content_type}: sent twice; send it once", attrs)
    content_type = _value(types[0], KAFKA) if types else None
    if isinstance(content_type, Invalid):
        return _named(f"{KAFKA.content_type}: {content_type.reason}", attrs)
    return document(attrs, value, content_type, KAFKA)


def kept_payload(value: bytes | None, headers: KafkaHeaders) -> bytes | None:
    """What a dead letter keeps of a record: a binary one as its structured document (so that its
    attributes are kept and a retry validates it as it came), else the value as it came."""
    decoded = record_document(value, headers)
    if not isinstance(decoded, dict):
        return value
    try:
        return orjson.dumps(decoded)
    except orjson.JSONEncodeError:  # nothing orjson read it cannot write, but a dead letter must be kept
        return value


def _value(raw: bytes | str | None, binding: Binding) -> str | Invalid:
    if raw is None:
        return Invalid("has no value")
    octets = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else raw
    if binding.percent_encoded:
        if any(b > 0x7E for b in octets):
            return Invalid("holds a byte outside ASCII; percent-encode it as UTF-8 (CloudEvents HTTP binding)")
        if _PERCENT.search(octets):
            return Invalid("holds a '%' that is not a percent-encoding (%XX); send '%' as %25")
        octets = _percent_decoded(octets)
    try:
        return octets.decode("utf-8")
    except UnicodeDecodeError as bad:
        return Invalid(f"is not valid UTF-8 (byte {bad.start}); send the attribute as UTF-8 text")


def _percent_decoded(octets: bytes) -> bytes:
    return re.sub(b"%([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), octets)


def _text_name(raw: str | bytes) -> str | None:
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return None  # not a ce- header whatever it is: header names are ASCII tokens


def _named(reason: str, found: dict[str, str]) -> Invalid:
    """A refusal with the event's identity kept beside it, as far as it can be."""
    source, event_id = found.get("source"), found.get("id")
    return Invalid(reason, _kept(source), _kept(event_id))


def _kept(value: str | None) -> str | None:
    if value and len(value) <= MAX_ID_CHARS and not _CONTROL.search(value):
        return value
    return None
