"""PostgreSQL: the database the project owns, its migrations, a pool, and the unit of work.

The unit of work is the only place that commits: it rolls back unless the block finishes,
and it retries the whole block on deadlocks and serialization failures.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar, cast

import asyncpg
import orjson
import structlog

from libs.platform.settings import Settings

log = structlog.get_logger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
RETRYABLE = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)
# What a database restart or failover looks like to a client: background loops log these and retry.
# InternalClientError too: a connection cut mid-query can come back from the pool in a broken state
# (MagicStack/asyncpg#784).
TRANSIENT = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)

# SQLSTATE classes of a value PostgreSQL refuses (22: data exception, e.g. a NUL in text; 23: integrity).
_DATA_ERROR_CLASSES = ("22", "23")


def caused_by_data(exc: BaseException) -> bool:
    """Whether ``exc`` may come from the data being written, so that the same input fails the same way
    again: a value PostgreSQL refuses, or an error in warmbee's own code meeting that value. A lost
    connection, a deadlock, a timeout, a server restarting or a missing table or privilege (a deployment
    fault, not one event's) are not: those pass, or fail for every input alike."""
    if isinstance(exc, asyncpg.PostgresError):
        return str(getattr(exc, "sqlstate", "") or "")[:2] in _DATA_ERROR_CLASSES
    return not isinstance(exc, (*TRANSIENT, *RETRYABLE))


T = TypeVar("T")
Connection = asyncpg.Connection  # re-exported so handlers need not import asyncpg


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb", encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads, schema="pg_catalog"
    )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to reset when a connection returns to the pool: warmbee keeps no session state (only
    SET LOCAL and transaction-scoped locks), and asyncpg itself rolls back an unfinished transaction.
    The default reset costs every checkout a round trip (advisory unlock, CLOSE ALL, RESET ALL)."""


async def create_pool(settings: Settings) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=settings.pg_pool_min,
        max_size=settings.pg_pool_max,
        init=_init_connection,
        reset=_keep_session,
        command_timeout=60,
    )
    assert pool is not None
    return pool


async def ensure_database(settings: Settings) -> bool:
    """Create the project's database, owned by the owner role, if it is missing (with the admin
    credential: local and test only). True when it was created."""
    conn = await asyncpg.connect(settings.admin_url())
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", settings.pg_database)
        if exists:
            return False
        await conn.execute(f'CREATE DATABASE "{settings.pg_database}" OWNER "{settings.owner_role}"')
        log.info("database.created", database=settings.pg_database)
        return True
    finally:
        await conn.close()


async def drop_database(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.admin_url())
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{settings.pg_database}" WITH (FORCE)')
    finally:
        await conn.close()


def apply_migrations(settings: Settings) -> list[str]:
    """Apply pending SQL migrations with yoyo, as the owner role; returns the ids applied now."""
    from yoyo import get_backend, read_migrations

    url = settings.owner_database_url.replace("postgresql://", "postgresql+psycopg://", 1)
    backend = get_backend(url)
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    applied = [m.id for m in pending]
    if applied:
        log.info("database.migrated", applied=applied)
    return applied


async def wait_for_database(settings: Settings, timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            # The roles may not exist yet: asked as the admin where there is one, else as the owner.
            server = settings.pg_admin_server or settings.pg_owner_server
            conn = await asyncpg.connect(f"{server.rstrip('/')}/postgres", timeout=2)
            await conn.close()
            return
        except (OSError, asyncpg.PostgresError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)


def _unproxied(proxy: object) -> asyncpg.Connection:
    # A pool hands out a proxy that forwards every Connection method; stores are typed on Connection.
    return cast(asyncpg.Connection, proxy)


class Database:
    """The pool, opened by the service's lifespan, and units of work on it.

    ``run(work)`` is the unit of work: ``work`` gets a connection inside one transaction, which
    commits when ``work`` returns and rolls back when it raises; deadlocks and serialization
    failures rerun the whole ``work``. Nothing else in warmbee commits.
    """

    def __init__(self, settings: Settings, max_attempts: int = 5) -> None:
        self._settings = settings
        self._pool: asyncpg.Pool | None = None
        self._max_attempts = max_attempts

    async def open(self) -> None:
        self._pool = await create_pool(self._settings)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the database is not open yet")
        return self._pool

    async def run(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        for attempt in range(1, self._max_attempts + 1):
            try:
                async with self.pool.acquire() as proxy, proxy.transaction():
                    return await work(_unproxied(proxy))
            except RETRYABLE as exc:
                if attempt == self._max_attempts:
                    raise
                log.warning("db.retry", attempt=attempt, error=type(exc).__name__)
                await asyncio.sleep(0.01 * 2**attempt)
        raise AssertionError("unreachable")

    @asynccontextmanager
    async def read(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as proxy:
            yield _unproxied(proxy)

    async def ping(self) -> bool:
        try:
            async with self.read() as conn:
                return bool(await conn.fetchval("SELECT true", timeout=2))
        except (RuntimeError, *TRANSIENT):
            return False
