"""The topics' contract, served beside the OpenAPI document and like it without a token: the AsyncAPI
document (``schemas/asyncapi.yaml``) as YAML or JSON, and the JSON Schemas it refers to. Its payload
references are relative to ``schemas/``; as served they point at ``/schemas/...`` here, so a reader that
fetched the document can follow every one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml
from fastapi import APIRouter, Request, Response

from libs.activity.model import SCHEMAS_DIR
from libs.platform.errors import DomainError

router = APIRouter(tags=["contract"])
SERVED_AT = "/schemas/"


@dataclass(frozen=True, slots=True)
class Contract:
    """The AsyncAPI document as served, in both forms, and each JSON Schema of ``schemas/`` by its path."""

    yaml_text: bytes
    json_text: bytes
    schemas: dict[str, bytes]


def load_contract(root: Path = SCHEMAS_DIR) -> Contract:
    document = _served(yaml.safe_load((root / "asyncapi.yaml").read_text()))
    schemas = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.schema.json"))}
    return Contract(
        yaml.safe_dump(document, sort_keys=False, allow_unicode=True).encode(),
        orjson.dumps(document),
        schemas,
    )


def _served(value: Any) -> Any:
    """``$ref: ./x.schema.json`` as ``/schemas/x.schema.json``; references inside the document stay."""
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str) and ref.startswith("./"):
            return {**value, "$ref": SERVED_AT + ref.removeprefix("./")}
        return {k: _served(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_served(v) for v in value]
    return value


def _contract(request: Request) -> Contract:
    return request.app.state.contract  # type: ignore[no-any-return]


@router.get("/asyncapi.yaml", include_in_schema=False)
async def asyncapi_yaml(request: Request) -> Response:
    return Response(_contract(request).yaml_text, media_type="application/yaml")


@router.get("/asyncapi.json", include_in_schema=False)
async def asyncapi_json(request: Request) -> Response:
    return Response(_contract(request).json_text, media_type="application/json")


@router.get("/schemas/{path:path}", include_in_schema=False)
async def json_schema(request: Request, path: str) -> Response:
    schema = _contract(request).schemas.get(path)
    if schema is None:
        raise DomainError(f"path: no JSON Schema {path!r}; see the references of /asyncapi.json", kind="not-found")
    return Response(schema, media_type="application/schema+json")
