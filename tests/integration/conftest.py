"""Integration tests: real PostgreSQL, a freshly migrated test database per session, used as the services
use it (the application role)."""

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


@pytest.fixture(scope="session")
async def owner_db(db: Database, settings: Settings) -> AsyncIterator[Database]:
    """The same database as the owner role, which migrations run as: for what only the ledger's triggers
    refuse (the services' role is refused by privilege first, tests/integration/test_privileges.py)."""
    database = Database(settings.as_owner())
    await database.open()
    yield database
    await database.close()
