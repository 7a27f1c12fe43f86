"""The HTTP layer every service shares: request ids in the response and the logs, every answer counted,
an unexpected failure (500) included, a body over the limit refused before it is read, 405 with Allow."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import structlog
from fastapi import FastAPI, Request
from prometheus_client import REGISTRY
from starlette.types import Receive, Scope, Send

from libs.platform.errors import DomainError
from libs.platform.http import REQUEST_ID_HEADER, create_app, decode_cursor
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


def limited_app(settings: Settings) -> tuple[FastAPI, list[int]]:
    """An app whose one route reads the body, and records how much of it reached the route."""
    application = create_app(settings, "obs-test", "test", "0", ready, nothing, max_body_bytes=2048)
    reached: list[int] = []

    @application.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        reached.append(len(await request.body()))
        return {"bytes": reached[-1]}

    @application.get("/echo")
    async def echo_get() -> dict[str, str]:
        return {}

    return application, reached


async def post(application: FastAPI, content: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.post("/echo", content=content, headers=headers)


async def test_a_body_over_the_limit_is_a_413_without_reaching_the_route(settings: Settings) -> None:
    application, reached = limited_app(settings)

    within = await post(application, b"x" * 2048)
    over = await post(application, b"x" * 2049)

    assert within.status_code == 200
    assert over.status_code == 413
    assert over.headers["content-type"] == "application/problem+json"
    assert over.headers[REQUEST_ID_HEADER]  # answered inside the request metrics like any answer
    assert "larger than 2048 bytes" in over.json()["detail"]
    assert reached == [2048]


async def test_a_chunked_body_is_refused_once_it_passes_the_limit(settings: Settings) -> None:
    application, reached = limited_app(settings)
    pulled = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(100):
            pulled += 1
            yield b"x" * 1000

    r = await post(application, chunks())

    assert r.status_code == 413
    assert r.json()["type"] == "https://warmbee.dev/problems/body-too-large"
    assert reached == []
    assert pulled <= 4  # refused at the third chunk, not after all 100


@pytest.mark.parametrize("declared", ["9" * 10_000, "99999999999999999999"])
async def test_an_absurd_content_length_is_a_413_not_a_500(settings: Settings, declared: str) -> None:
    application, _ = limited_app(settings)

    async def app_with_header(scope: Scope, receive: Receive, send: Send) -> None:
        # httpx would write the true length; the header is replaced as a client could send it.
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
        scope["headers"].append((b"content-length", declared.encode()))
        await application(scope, receive, send)

    r = await post(app_with_header, b"{}")  # type: ignore[arg-type]

    assert r.status_code == 413


async def test_a_405_carries_allow_with_every_method_of_the_path(settings: Settings) -> None:
    application, _ = limited_app(settings)
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        r = await client.delete("/echo")

    assert r.status_code == 405
    assert r.headers["allow"] == "GET, POST"
    assert r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(("cursor", "value"), [("0", 0), ("ff", 255), ("7fffffffffffffff", 2**63 - 1), (None, None)])
def test_a_cursor_we_wrote_is_read_back(cursor: str | None, value: int | None) -> None:
    assert decode_cursor(cursor) == value


@pytest.mark.parametrize("cursor", ["", "-1", " 1f", "0x1f", "1_f", "FF", "8000000000000000", "f" * 5000, "a\x00"])
def test_any_other_cursor_is_a_422(cursor: str) -> None:
    with pytest.raises(DomainError) as refused:
        decode_cursor(cursor)

    assert refused.value.status == 422
