"""CloudEvents binary content mode (libs/activity/binary.py): the attributes as ce-* (HTTP) or ce_* (Kafka)
headers, data as the body or value, as the CloudEvents Python SDK's to_binary sends them. A binary event
becomes the very document a structured source sends, and is refused for the same reasons; what only
binary mode can get wrong is refused naming the header."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from cloudevents.v1.conversion import to_binary, to_structured
from cloudevents.v1.http import CloudEvent
from cloudevents.v1.kafka import to_binary as to_kafka_binary

from libs.activity.binary import kept_payload, validate_record
from libs.activity.model import ActivityEvent, Invalid, load_schemas, validate_event
from libs.platform.errors import DomainError
from services.events.domain import intake

SCHEMAS = load_schemas()
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
SLACK = timedelta(minutes=5)
ATTRIBUTES = {
    "specversion": "1.0",
    "id": "evt-1",
    "source": "volunteer-platform",
    "type": "volunteer.shift.completed",
    "subject": "rider-1",
    "time": "2024-05-01T09:00:00+08:00",
    "datacontenttype": "application/json",
}
DATA = {"shift_id": "s-1", "hours": 2.5}


def sdk_event(**attributes: Any) -> CloudEvent:
    return CloudEvent({**ATTRIBUTES, **attributes}, DATA)


def http_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """Headers as the server reads them (request.headers.raw): lowercase names, bytes."""
    return [(k.lower().encode(), v.encode()) for k, v in headers.items()]


def http_documents(headers: list[tuple[bytes, bytes]], body: bytes) -> list[object]:
    content_type = next((v.decode() for k, v in headers if k == b"content-type"), None)
    return intake.documents(body, content_type, 10, headers)


def http_refusal(headers: list[tuple[bytes, bytes]], body: bytes) -> str:
    with pytest.raises(DomainError) as caught:
        http_documents(headers, body)
    assert caught.value.kind == "invalid-event"
    return str(caught.value.extra["errors"][0]["reason"])


def kafka(headers: list[tuple[str, bytes | None]], value: bytes | None) -> ActivityEvent | Invalid:
    return validate_record(value, headers, SCHEMAS, NOW, SLACK)


def sdk_kafka(event: CloudEvent) -> tuple[list[tuple[str, bytes | None]], bytes]:
    message = to_kafka_binary(event)
    assert isinstance(message.value, bytes)
    return list(message.headers.items()), message.value


# --- HTTP ------------------------------------------------------------------------------------------


def test_an_sdk_binary_request_is_the_document_of_its_structured_twin() -> None:
    headers, body = to_binary(sdk_event())
    _, structured = to_structured(sdk_event())
    assert http_documents(http_headers(headers), body) == [orjson.loads(structured)]


def test_percent_encoded_header_values_are_decoded_as_utf8() -> None:
    headers = http_headers({**dict(to_binary(sdk_event())[0]), "ce-id": "evt%201%C3%A9%25"})
    (document,) = http_documents(headers, orjson.dumps(DATA))
    assert isinstance(document, dict)
    assert document["id"] == "evt 1é%"


def test_a_missing_ce_id_is_refused_naming_the_header() -> None:
    headers = [(k, v) for k, v in http_headers(to_binary(sdk_event())[0]) if k not in (b"ce-id", b"ce-time")]
    assert http_refusal(headers, orjson.dumps(DATA)) == "ce-id: is required; send the headers ce-id, ce-time"


def test_specversion_0_3_is_refused_by_the_one_schema() -> None:
    headers = http_headers({**to_binary(sdk_event())[0], "ce-specversion": "0.3"})
    (document,) = http_documents(headers, orjson.dumps(DATA))
    result = validate_event(document, SCHEMAS, NOW, SLACK)
    assert isinstance(result, Invalid)
    assert result.reason == "specversion: must be '1.0', got '0.3'"


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ([(b"ce-id", b"evt-2")], "ce-id: sent twice; send each attribute once"),
        ([(b"ce-ID", b"evt-2")], "ce-ID: sent twice; send each attribute once"),
        ([(b"ce-note", "caf\u00e9".encode())], "ce-note: holds a byte outside ASCII; percent-encode it"),
        ([(b"ce-note", b"%FF")], "ce-note: is not valid UTF-8 (byte 0)"),
        ([(b"ce-note", b"50%")], "ce-note: holds a '%' that is not a percent-encoding (%XX)"),
        ([(b"ce-note", b"line%0A")], "ce-note: holds the control character U+000A"),
        ([(b"ce-not_a_name", b"x")], "ce-not_a_name: is not a CloudEvents attribute"),
        ([(b"ce-data", b"{}")], "ce-data: in binary mode data is the body"),
        ([(b"ce-datacontenttype", b"application/json")], "ce-datacontenttype: in binary mode datacontenttype"),
    ],
)
def test_what_only_binary_mode_can_get_wrong_is_refused_naming_the_header(
    extra: list[tuple[bytes, bytes]], reason: str
) -> None:
    headers = http_headers(to_binary(sdk_event())[0]) + extra
    assert http_refusal(headers, orjson.dumps(DATA)).startswith(reason)


def test_a_control_character_in_ce_id_is_refused_with_the_event_unnamed() -> None:
    headers = http_headers({**to_binary(sdk_event())[0], "ce-id": "evt-1%0A"})
    with pytest.raises(DomainError) as caught:
        http_documents(headers, orjson.dumps(DATA))
    assert caught.value.extra["errors"] == [
        {
            "index": 0,
            "id": None,
            "reason": "ce-id: holds the control character U+000A; no string of an event may hold one: remove it",
        }
    ]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"shift_id": ', "body: is not valid JSON"),
        (b"", "body: is empty"),
        (b"\xff\xfe", "body: is not valid JSON"),
    ],
)
def test_a_body_that_is_not_json_data_is_refused(body: bytes, reason: str) -> None:
    assert http_refusal(http_headers(to_binary(sdk_event())[0]), body).startswith(reason)


@pytest.mark.parametrize("media", ["text/plain", "application/cloudevents+json", intake.BATCH_TYPE])
def test_binary_data_is_application_json_only(media: str) -> None:
    headers = http_headers({**to_binary(sdk_event())[0], "content-type": media})
    assert http_refusal(headers, orjson.dumps(DATA)).startswith("Content-Type" if "cloudevents" in media else "content")


def test_a_data_that_is_not_an_object_is_refused_by_the_schema() -> None:
    (document,) = http_documents(http_headers(to_binary(sdk_event())[0]), b"[1, 2]")
    result = validate_event(document, SCHEMAS, NOW, SLACK)
    assert isinstance(result, Invalid)
    assert result.reason == "data: must be an object, got an array"


def test_without_ce_headers_a_request_is_structured_as_before() -> None:
    _, body = to_structured(sdk_event())
    documents = intake.documents(body, "application/cloudevents+json", 10, [(b"x-trace", b"1")])
    assert documents == [orjson.loads(body)]


# --- Kafka -----------------------------------------------------------------------------------------


def test_an_sdk_binary_kafka_record_is_the_structured_event() -> None:
    headers, value = sdk_kafka(sdk_event())
    binary = kafka(headers, value)
    structured = kafka([], to_structured(sdk_event())[1])
    assert isinstance(binary, ActivityEvent)
    assert isinstance(structured, ActivityEvent)
    assert binary.document == structured.document
    assert binary.content_hash == structured.content_hash


def test_kafka_header_values_are_utf8_not_percent_encoded() -> None:
    headers, value = sdk_kafka(sdk_event(id="evt 1é%"))
    result = kafka(headers, value)
    assert isinstance(result, ActivityEvent)
    assert result.event_id == "evt 1é%"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda h: [x for x in h if x[0] != "ce_id"], "ce_id: is required; send the header ce_id"),
        (lambda h: [*h, ("ce_id", b"evt-2")], "ce_id: sent twice; send each attribute once"),
        (lambda h: [*h, ("ce_note", b"\xff")], "ce_note: is not valid UTF-8 (byte 0)"),
        (lambda h: [*h, ("ce_note", None)], "ce_note: has no value"),
        (lambda h: [*h, ("ce_note", b"a\nb")], "ce_note: holds the control character U+000A"),
        (lambda h: [*h, ("content-type", b"application/json")], "content-type: sent twice"),
        (lambda h: [(k, b"0.3" if k == "ce_specversion" else v) for k, v in h], "specversion: must be '1.0'"),
        (lambda h: [(k, b"text/plain" if k == "content-type" else v) for k, v in h], "content-type: text/plain"),
    ],
)
def test_a_kafka_record_is_refused_with_its_reason(change: Any, reason: str) -> None:
    headers, value = sdk_kafka(sdk_event())
    result = kafka(change(headers), value)
    assert isinstance(result, Invalid)
    assert result.reason.startswith(reason)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"not json", "value: is not valid JSON"),
        (None, "value: is empty"),
        (b" " * (1024 * 1024 + 1), "value: is 1048577 bytes; an event may be at most 1048576 bytes"),
    ],
)
def test_a_kafka_value_that_is_no_data_is_refused(value: bytes | None, reason: str) -> None:
    headers, _ = sdk_kafka(sdk_event())
    result = kafka(headers, value)
    assert isinstance(result, Invalid)
    assert result.reason.startswith(reason)
    assert (result.source, result.event_id) == ("volunteer-platform", "evt-1")


def test_a_dead_letter_keeps_a_binary_record_as_its_structured_document() -> None:
    headers, value = sdk_kafka(sdk_event(time="2999-01-01T00:00:00+08:00"))
    kept = kept_payload(value, headers)
    assert kept is not None
    assert orjson.loads(kept) == {**ATTRIBUTES, "time": "2999-01-01T00:00:00+08:00", "data": DATA}
    assert kept_payload(b"not json", headers) == b"not json"  # nothing to assemble: the value as it came
    assert kept_payload(b"{}", []) == b"{}"  # structured: as it came
