"""schemas/asyncapi.yaml: valid AsyncAPI 3.0 by the specification's own JSON Schema (the npm package
@asyncapi/specs, installed into tests/asyncapi/ by `make install`), every payload it refers to an existing
JSON Schema of schemas/, and its topics and headers the ones the code uses."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
import yaml
from jsonschema import Draft7Validator, Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from libs.activity import binary
from libs.activity.model import RECEIVED_VIA_HEADER
from libs.ledger.lot_store import Warning
from libs.ledger.model import EntryKind
from libs.platform.settings import Settings
from services.points.domain.disputes import Dispute, public_fields
from services.points.domain.disputes import Status as DisputeStatus
from services.points.domain.lapsing import warning_event
from services.points.handlers import DLQ_HEADERS, DLQ_REASON_HEADER
from services.redemption.domain.holds import Status

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "schemas" / "asyncapi.yaml"
SPEC = ROOT / "tests" / "asyncapi" / "node_modules" / "@asyncapi" / "specs" / "schemas" / "3.0.0.json"


def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text())
    return loaded


def messages(channel: str) -> dict[str, Any]:
    doc = document()
    refs = doc["channels"][channel]["messages"].values()
    return {r["$ref"].rsplit("/", 1)[-1]: doc["components"]["messages"][r["$ref"].rsplit("/", 1)[-1]] for r in refs}


def specification() -> Draft7Validator:
    """The AsyncAPI 3.0.0 schema (draft 7), its definitions resolved by their own ids, offline."""
    assert SPEC.exists(), "run `make install`: it installs @asyncapi/specs into tests/asyncapi/node_modules"
    spec = orjson.loads(SPEC.read_bytes())
    resources = [(uri, Resource.from_contents(d, DRAFT7)) for uri, d in spec["definitions"].items()]
    return Draft7Validator(spec, registry=Registry().with_resources(resources))


def file_refs(value: object) -> list[str]:
    if isinstance(value, dict):
        here = [value["$ref"]] if isinstance(value.get("$ref"), str) and not value["$ref"].startswith("#") else []
        return here + [r for v in value.values() for r in file_refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in file_refs(v)]
    return []


def test_the_document_is_valid_asyncapi_3_by_the_specification_schema() -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in specification().iter_errors(document())]
    assert errors == []


def test_the_specification_schema_refuses_what_is_not_asyncapi_3() -> None:
    broken = document()
    broken["operations"]["receiveActivityEvent"]["action"] = "consume"  # AsyncAPI 3 knows send and receive
    assert not specification().is_valid(broken)
    numbered = document()
    numbered["components"]["messages"]["deadLetter"]["headers"]["type"] = "list"  # not a JSON Schema type
    assert not specification().is_valid(numbered)


def test_every_payload_refers_to_a_json_schema_of_schemas() -> None:
    refs = file_refs(document())
    assert sorted(refs) == sorted(
        [
            "./cloudevent.schema.json",
            "./ledger/points-entry.schema.json",
            "./ledger/redemption-state.schema.json",
            "./ledger/event-dead-lettered.schema.json",
            "./ledger/dispute.schema.json",
            "./ledger/points-lapsing.schema.json",
        ]
    )
    for ref in refs:
        schema = orjson.loads((DOCUMENT.parent / ref).read_bytes())
        Draft202012Validator.check_schema(schema)
        assert schema["$id"] == f"https://warmbee.dev/schemas/{ref.removeprefix('./')}"


def test_the_channels_are_the_topics_of_the_settings() -> None:
    defaults = Settings.model_fields
    addresses = {name: c["address"] for name, c in document()["channels"].items()}
    assert addresses == {
        "activityEvents": defaults["topic_activity_events"].default,
        "activityEventsDlq": defaults["topic_activity_events_dlq"].default,
        "pointsLedger": defaults["topic_points_ledger"].default,
    }


def test_the_dead_letter_headers_are_the_ones_the_worker_writes() -> None:
    headers = messages("activityEventsDlq")["deadLetter"]["headers"]
    assert headers["required"] == [DLQ_REASON_HEADER]
    assert set(headers["properties"]) == {DLQ_REASON_HEADER, RECEIVED_VIA_HEADER, *DLQ_HEADERS.values()}


def test_the_binary_headers_are_the_ones_the_worker_reads() -> None:
    headers = messages("activityEvents")["activityEventBinary"]["headers"]["properties"]
    attributes = [h for h in headers if h.startswith(binary.KAFKA.prefix)]
    assert attributes == [
        f"{binary.KAFKA.prefix}{a}" for a in ("specversion", "id", "source", "type", "subject", "time")
    ]
    assert binary.KAFKA.content_type in headers


def test_the_ledger_schemas_name_every_kind_and_state_the_code_publishes() -> None:
    entry = orjson.loads((ROOT / "schemas" / "ledger" / "points-entry.schema.json").read_bytes())
    assert entry["properties"]["type"]["enum"] == [f"points.{k.value}.recorded" for k in EntryKind]
    redemption = orjson.loads((ROOT / "schemas" / "ledger" / "redemption-state.schema.json").read_bytes())
    assert redemption["properties"]["type"]["enum"] == [f"redemption.{s.value}" for s in Status]
    dispute = orjson.loads((ROOT / "schemas" / "ledger" / "dispute.schema.json").read_bytes())
    assert dispute["properties"]["data"]["properties"]["status"]["enum"] == [s.value for s in DisputeStatus]
    assert set(dispute["properties"]["data"]["required"]) == set(public_fields(_a_dispute()))


def _a_dispute() -> Dispute:
    at = datetime(2026, 12, 3, tzinfo=UTC)
    return Dispute("d-1", 1, "rider-1", "why 0?", DisputeStatus.OPEN, at, "key-1")


def test_a_lapse_warning_is_what_its_schema_says() -> None:
    schema = orjson.loads((ROOT / "schemas" / "ledger" / "points-lapsing.schema.json").read_bytes())
    event = warning_event(Warning("rider:7", date(2027, 12, 31), 30, (11, 12)), datetime(2027, 12, 1, tzinfo=UTC))
    Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(
        orjson.loads(orjson.dumps(event))
    )
    assert Draft202012Validator(schema).is_valid({**event, "type": "points.lapsed"}) is False
