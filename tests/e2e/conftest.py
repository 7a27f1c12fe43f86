"""End-to-end: the broker, PostgreSQL and the service processes, started the way `make run` does."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from playwright.async_api import Browser, async_playwright, expect

from libs.platform.auth import Role, mint_token
from libs.platform.db import drop_database
from libs.platform.kafka import make_producer
from libs.platform.localstack import LocalStack
from libs.platform.settings import Settings
from services.cli import SERVICES as ALL_SERVICES
from services.cli import prepare_database
from tests.conftest import DB_SUFFIX

SERVICES = list(ALL_SERVICES)
LOG_DIR = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e-logs"
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"  # Debian's package, installed by `make install`; Playwright downloads nothing
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
expect.set_options(timeout=15_000)
T = TypeVar("T")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``after_all`` check the state the whole suite left behind: they run last."""
    items.sort(key=lambda item: item.get_closest_marker("after_all") is not None)


@pytest.fixture(scope="session")
def e2e_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"pg_database": f"warmbee_e2e{DB_SUFFIX}"})


@pytest.fixture(scope="session")
async def stack(e2e_settings: Settings) -> AsyncIterator[LocalStack]:
    local = LocalStack(e2e_settings, LOG_DIR)
    local.check_ports_free()  # before touching the database another run may be using
    await drop_database(e2e_settings)
    try:
        await local.start_infrastructure(prepare_database)
        for name in SERVICES:
            local.start_service(name)
        await local.wait_healthy(SERVICES)
        yield local
    finally:
        await asyncio.to_thread(local.stop_all)


@pytest.fixture(scope="module")
async def browser(stack: LocalStack) -> AsyncIterator[Browser]:
    """Debian's chromium, headless, for the pages' tests of one module."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


class Api:
    """HTTP calls as each role makes them."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self.http = http
        self.events_url = f"http://{settings.host}:{settings.events_port}"
        self.points_url = f"http://{settings.host}:{settings.points_port}"
        self.redemption_url = f"http://{settings.host}:{settings.redemption_port}"

    def token(self, role: Role, sub: str) -> dict[str, str]:
        return {"authorization": f"Bearer {mint_token(self.settings, role, sub)}"}

    def token_for_operator(self) -> dict[str, str]:
        return self.token(Role.OPERATOR, "ops-test")

    async def publish(self, body: Any, source: str = "volunteer-platform", batch: bool = False) -> httpx.Response:
        media = "application/cloudevents-batch+json" if batch else "application/cloudevents+json"
        return await self.http.post(
            f"{self.events_url}/v1/events",
            content=orjson.dumps(body),
            headers={**self.token(Role.SOURCE, source), "content-type": media},
        )

    async def balance(self, rider: str) -> dict[str, Any]:
        r = await self.http.get(f"{self.points_url}/v1/riders/{rider}/balance", headers=self.token(Role.RIDER, rider))
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def entries(self, rider: str) -> list[dict[str, Any]]:
        r = await self.http.get(
            f"{self.points_url}/v1/riders/{rider}/entries?limit=500", headers=self.token(Role.RIDER, rider)
        )
        assert r.status_code == 200, r.text
        return list(r.json()["items"])

    async def status(self, source: str, event_id: str) -> httpx.Response:
        return await self.http.get(
            f"{self.points_url}/v1/events/{source}/{event_id}", headers=self.token(Role.OPERATOR, "ops-test")
        )

    async def wait_scored(self, source: str, event_id: str, timeout_s: float = 30) -> dict[str, Any]:
        async def scored() -> dict[str, Any] | None:
            r = await self.status(source, event_id)
            return dict(r.json()) if r.status_code == 200 and r.json()["status"] == "scored" else None

        return await eventually(scored, timeout_s, f"event {source}/{event_id} scored")


async def eventually(check: Callable[[], Awaitable[T | None]], timeout_s: float, what: str) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for: {what}")
        await asyncio.sleep(0.1)


@pytest.fixture
async def api(stack: LocalStack) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(timeout=15) as http:
        yield Api(stack.settings, http)


@pytest.fixture
async def kafka(stack: LocalStack) -> AsyncIterator[AIOKafkaProducer]:
    producer = make_producer(stack.settings)
    await producer.start()
    yield producer
    await producer.stop()


def shift(rider: str, hours: Any, time: str = "2024-05-01T09:00:00+08:00", **overrides: Any) -> dict[str, Any]:
    """A volunteer shift as the volunteer platform publishes it; a fresh id unless given."""
    event = {
        "specversion": "1.0",
        "id": f"shift-{uuid.uuid4().hex[:12]}",
        "source": "volunteer-platform",
        "type": "volunteer.shift.completed",
        "subject": rider,
        "time": time,
        "datacontenttype": "application/json",
        "data": {"shift_id": f"s-{uuid.uuid4().hex[:8]}", "hours": hours},
    }
    event.update(overrides)
    return event


async def to_kafka(producer: AIOKafkaProducer, settings: Settings, value: bytes, key: str) -> None:
    await producer.send_and_wait(settings.topic_activity_events, value, key=key.encode())


def wait_for_log(path: Path, text: str, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in (path.read_text(errors="replace") if path.exists() else ""):
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not in {path} after {timeout_s}s")
        time.sleep(0.2)


def shanghai(day: str, hour: int = 9) -> str:
    return datetime.fromisoformat(f"{day}T{hour:02d}:00:00+08:00").isoformat()
