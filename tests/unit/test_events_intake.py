"""What a source may send, checked without HTTP or a database (services/events/domain/intake.py): the
same refusals, kinds and details the API answers, now a pure function of the body."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from libs.activity.model import load_schemas
from libs.platform.errors import DomainError
from services.events.domain import intake

SCHEMAS = load_schemas()
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
SLACK = timedelta(minutes=5)
BATCH = intake.BATCH_TYPE


def shift(event_id: str = "evt-1", source: str = "volunteer-platform") -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": "volunteer.shift.completed",
        "subject": "rider-1",
        "time": "2024-05-01T09:00:00+08:00",
        "data": {"shift_id": "s-1", "hours": 2.5},
    }


def refusal(call: Any) -> DomainError:
    with pytest.raises(DomainError) as caught:
        call()
    return caught.value


def test_one_event_or_a_batch_by_media_type() -> None:
    assert intake.documents(orjson.dumps(shift()), "application/cloudevents+json; charset=utf-8", 10) == [shift()]
    assert intake.documents(orjson.dumps([shift(), shift("evt-2")]), BATCH, 10) == [shift(), shift("evt-2")]


@pytest.mark.parametrize(
    ("body", "content_type", "kind", "detail"),
    [
        (b"{}", "text/plain", "unsupported-media-type", "Content-Type: text/plain is not accepted"),
        (b"{}", None, "unsupported-media-type", "Content-Type: missing is not accepted"),
        (b"{", "application/json", "malformed-json", "body: is not valid JSON"),
        (b"{}", BATCH, "invalid-batch", "body: a batch must be a JSON array of events"),
        (b"[]", BATCH, "invalid-batch", "body: a batch holds 1 to 2 events, got 0; split it"),
        (b"[1, 2, 3]", BATCH, "invalid-batch", "body: a batch holds 1 to 2 events, got 3; split it"),
        (b"[]", "application/json", "invalid-event", "body: a JSON array needs Content-Type"),
    ],
)
def test_a_body_of_the_wrong_shape_is_refused(body: bytes, content_type: str | None, kind: str, detail: str) -> None:
    problem = refusal(lambda: intake.documents(body, content_type, 2))
    assert (problem.kind, problem.detail.startswith(detail)) == (kind, True)


def test_an_invalid_event_refuses_the_batch_naming_each() -> None:
    bad = shift("evt-2") | {"data": {"shift_id": "s-2", "hours": -1}}
    problem = refusal(lambda: intake.admit([shift(), bad], "volunteer-platform", SCHEMAS, NOW, SLACK, False))
    assert problem.kind == "invalid-event"
    assert problem.detail.startswith("nothing was accepted: event 1: ")
    assert [(e["index"], e["id"]) for e in problem.extra["errors"]] == [(1, "evt-2")]


def test_a_source_posts_only_its_own_events() -> None:
    events = [shift(), shift("evt-2", source="grid-office")]
    problem = refusal(lambda: intake.admit(events, "volunteer-platform", SCHEMAS, NOW, SLACK, False))
    assert problem.kind == "source-mismatch"
    assert problem.status == 403
    assert problem.extra["errors"] == [
        {"index": 1, "id": "evt-2", "reason": "source: 'grid-office' is not 'volunteer-platform'"}
    ]


def test_valid_events_of_the_source_are_admitted() -> None:
    events = intake.admit([shift(), shift("evt-2")], "volunteer-platform", SCHEMAS, NOW, SLACK, True)
    assert [e.event_id for e in events] == ["evt-1", "evt-2"]


def test_the_use_case_errors_keep_their_kinds() -> None:
    events = intake.admit([shift(), shift("evt-2")], "volunteer-platform", SCHEMAS, NOW, SLACK, False)
    reused = intake.ReusedEventId(events[1:], events)
    assert (reused.kind, reused.status, reused.extra["errors"][0]["index"]) == ("event-id-reused", 409, 1)
    unknown = intake.DeadLetterUnknown(7)
    assert (unknown.kind, unknown.status, unknown.title) == ("not-found", 404, "Not found")
    assert unknown.detail == "dead_letter_id: no dead letter 7; see GET /v1/dead-letters"
