"""Integration tests: real PostgreSQL, a freshly migrated test database per session."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from libs.platform.db import Database, drop_database
from libs.platform.settings import Settings
from services.cli import prepare_database


@pytest.fixture(scope="session")
async def db(settings: Settings) -> AsyncIterator[Database]:
    await drop_database(settings)
    await prepare_database(settings)
    database = Database(settings)
    await database.open()
    yield database
    await database.close()
