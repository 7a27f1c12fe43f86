"""The HTTP layer every service shares: request ids in the response and the logs, and every answer
counted, an unexpected failure (500) included."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import structlog
from fastapi import FastAPI
from prometheus_client import REGISTRY

from libs.platform.http import REQUEST_ID_HEADER, create_app
from libs.platform.settings import Settings


@asynccontextmanager
async def nothing(_: FastAPI) -> AsyncIterator[None]:
    yield


async def ready() -> dict[str, bool]:
    return {"database": True}


def app(settings: Settings) -> FastAPI:
    application = create_app(settings, "obs-test", "test", "0", ready, nothing)
    seen: dict[str, object] = {}

    @application.get("/bound")
    async def bound() -> dict[str, object]:
        seen.update(structlog.contextvars.get_contextvars())
        return dict(seen)

    @application.get("/fails")
    async def fails() -> None:
        raise RuntimeError("a bug")

    return application


async def get(settings: Settings, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(path, headers=headers)


def requests_counted(route: str, status: str) -> float:
    value = REGISTRY.get_sample_value(
        "warmbee_http_requests_total", {"service": "obs-test", "route": route, "method": "GET", "status": status}
    )
    return value or 0.0


async def test_the_callers_request_id_is_bound_for_the_logs_and_returned(settings: Settings) -> None:
    r = await get(settings, "/bound", {REQUEST_ID_HEADER: "caller-42.a:b"})

    assert r.headers[REQUEST_ID_HEADER] == "caller-42.a:b"
    assert r.json()["request_id"] == "caller-42.a:b"


async def test_without_a_request_id_one_is_issued(settings: Settings) -> None:
    r = await get(settings, "/bound")

    assert re.fullmatch(r"[0-9a-f]{32}", r.headers[REQUEST_ID_HEADER])
    assert r.json()["request_id"] == r.headers[REQUEST_ID_HEADER]


async def test_a_request_id_that_could_forge_log_lines_is_replaced(settings: Settings) -> None:
    r = await get(settings, "/bound", {REQUEST_ID_HEADER: 'x" , "level": "critical'})
    long = await get(settings, "/bound", {REQUEST_ID_HEADER: "a" * 500})

    assert re.fullmatch(r"[0-9a-f]{32}", r.headers[REQUEST_ID_HEADER])
    assert re.fullmatch(r"[0-9a-f]{32}", long.headers[REQUEST_ID_HEADER])


async def test_an_unexpected_failure_is_a_counted_500_with_its_request_id(settings: Settings) -> None:
    before = requests_counted("/fails", "500")

    r = await get(settings, "/fails", {REQUEST_ID_HEADER: "req-500"})

    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers[REQUEST_ID_HEADER] == "req-500"
    assert requests_counted("/fails", "500") == before + 1


async def test_routes_are_counted_by_template_not_by_path(settings: Settings) -> None:
    before = requests_counted("unmatched", "404")

    r = await get(settings, "/v1/riders/rider-12345/nothing-here")

    assert r.status_code == 404
    assert requests_counted("unmatched", "404") == before + 1
