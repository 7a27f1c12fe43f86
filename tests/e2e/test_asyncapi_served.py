"""The events service serves the topics' AsyncAPI document beside its OpenAPI, without a token, as YAML
and JSON, and every JSON Schema it refers to at the path it names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import Api

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def refs(value: object) -> list[str]:
    if isinstance(value, dict):
        here = [value["$ref"]] if isinstance(value.get("$ref"), str) and not value["$ref"].startswith("#") else []
        return here + [r for v in value.values() for r in refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in refs(v)]
    return []


async def test_the_asyncapi_document_is_served_without_a_token_as_yaml_and_json(api: Api) -> None:
    as_yaml = await api.http.get(f"{api.events_url}/asyncapi.yaml")
    as_json = await api.http.get(f"{api.events_url}/asyncapi.json")
    assert (as_yaml.status_code, as_json.status_code) == (200, 200)
    assert as_yaml.headers["content-type"].startswith("application/yaml")
    document: dict[str, Any] = as_json.json()
    assert yaml.safe_load(as_yaml.text) == document
    assert document["asyncapi"] == "3.0.0"
    assert document["channels"] == yaml.safe_load((ROOT / "schemas" / "asyncapi.yaml").read_text())["channels"]


async def test_every_reference_of_the_served_document_can_be_followed(api: Api) -> None:
    document = (await api.http.get(f"{api.events_url}/asyncapi.json")).json()
    found = refs(document)
    assert len(found) == 6  # the CloudEvent, the entry, the redemption, the dispute, the lapse warning, the dead letter
    for ref in found:
        assert ref.startswith("/schemas/")
        r = await api.http.get(f"{api.events_url}{ref}")
        assert r.status_code == 200, ref
        assert r.json()["$id"] == f"https://warmbee.dev{ref}"
    missing = await api.http.get(f"{api.events_url}/schemas/no-such.schema.json")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
