"""Who connects as what: the owner role that migrations run as, the application login the services use,
and the group role that holds the services' privileges. Local and test only: production provisions
roles and the database outside warmbee (deploy/postgres/roles.sql), and this module is not called there.

Why a group role: migrations are plain SQL applied once, so they cannot name a login that each
deployment chooses (``WARMBEE_PG_SERVER``'s user). They grant to ``warmbee_service`` instead, a fixed
NOLOGIN role; whatever the application login is called, it receives the privileges by being a member.
A renamed or second login needs one ``GRANT warmbee_service TO ...``, not a migration.
"""

from __future__ import annotations

import asyncpg
import structlog

from libs.platform.db import ensure_database
from libs.platform.settings import Settings

log = structlog.get_logger(__name__)

# Named in migrations/0009.privileges.sql and deploy/postgres/roles.sql; never a login.
SERVICE_ROLE = "warmbee_service"

# Serialises provisioning between test sessions and `make run` on one server: roles are shared by every
# database of the cluster, and concurrent CREATE ROLE / GRANT on one role fail instead of waiting.
_PROVISION_LOCK = 0x77617262  # "warb"

_ROLE = "SELECT rolsuper FROM pg_roles WHERE rolname = $1"

# What the application role must never be: the owner, a member of the owner (it would inherit ALTER and
# DROP), or a superuser (it would bypass every grant and could switch triggers off for a session).
_APP_ROLE_PROBLEM = """
SELECT CASE
         WHEN a.rolsuper THEN 'is a superuser'
         WHEN a.rolname = $2 THEN 'is the owner role'
         WHEN pg_has_role(a.oid, o.oid, 'MEMBER') THEN 'is a member of the owner role ' || $2
       END
  FROM pg_roles a, pg_roles o
 WHERE a.rolname = $1 AND o.rolname = $2
"""

# Objects of the public schema that another role owns: a database from before the owner role existed
# (everything created by `postgres`). Sequences that belong to a column (identity, serial) follow their
# table and cannot be altered on their own; indexes and row types follow their table too.
_FOREIGN_OWNED = """
SELECT format('ALTER %s %s OWNER TO %I', kind, name, $1::text)
  FROM (SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                              WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END AS kind,
               c.oid::regclass::text AS name
          FROM pg_class c
         WHERE c.relnamespace = 'public'::regnamespace
           AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
           AND c.relowner <> to_regrole($1)
           AND NOT (c.relkind = 'S' AND EXISTS (
                   SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
        UNION ALL
        SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END,
               p.oid::regprocedure::text
          FROM pg_proc p
         WHERE p.pronamespace = 'public'::regnamespace AND p.proowner <> to_regrole($1)) AS o
 ORDER BY kind DESC, name
"""


class RoleProblem(RuntimeError):
    """The configured roles would defeat least privilege; nothing was changed."""


def _admin_url(settings: Settings, database: str) -> str:
    if not settings.pg_admin_server:
        raise RuntimeError(
            "creating roles and databases needs WARMBEE_PG_ADMIN_SERVER (local and test only); in production "
            "they are provisioned beforehand (deploy/postgres/roles.sql)"
        )
    return f"{settings.pg_admin_server.rstrip('/')}/{database}"


async def _ensure_login(conn: asyncpg.Connection, name: str, password: str | None) -> None:
    if await conn.fetchrow(_ROLE, name) is None:
        # Identifiers and the password quoted by PostgreSQL itself: role names come from configuration.
        statement = await conn.fetchval("SELECT format('CREATE ROLE %I LOGIN', $1::text)", name)
        await conn.execute(statement)
        log.info("role.created", role=name)
    if password is not None:
        statement = await conn.fetchval(
            "SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text)", name, password
        )
        await conn.execute(statement)


async def ensure_roles(settings: Settings) -> None:
    """The owner and application logins and the service group, created when missing (idempotent), the
    application login made a member of the group. Refuses an application role that is a superuser, the
    owner or a member of it: the services would be able to alter the ledger's tables and triggers."""
    owner, app = settings.owner_role, settings.app_role
    conn = await asyncpg.connect(_admin_url(settings, "postgres"))
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _PROVISION_LOCK)
            await _ensure_login(conn, owner, settings.owner_password)
            await _ensure_login(conn, app, settings.app_password)
            problem = await conn.fetchval(_APP_ROLE_PROBLEM, app, owner)
            if problem:
                raise RoleProblem(
                    f"the services' role {app} (WARMBEE_PG_SERVER) {problem}: it could alter or disable the "
                    f"ledger's tables and triggers. Use a role of its own (the default is warmbee_app)."
                )
            if await conn.fetchrow(_ROLE, SERVICE_ROLE) is None:
                await conn.execute(f"CREATE ROLE {SERVICE_ROLE} NOLOGIN")
                log.info("role.created", role=SERVICE_ROLE)
            member = await conn.fetchval("SELECT pg_has_role($1, $2, 'MEMBER')", app, SERVICE_ROLE)
            if not member:
                statement = await conn.fetchval(
                    "SELECT format('GRANT %I TO %I', $1::text, $2::text)", SERVICE_ROLE, app
                )
                await conn.execute(statement)
    finally:
        await conn.close()


async def adopt_database(settings: Settings) -> list[str]:
    """Give a database created before the owner role existed to the owner: the database itself and every
    table, sequence, view and function of its public schema (yoyo's bookkeeping tables too, which the
    owner writes when it migrates). Returns the statements run; none on a database the owner has owned
    from the start. Ownership moves rather than grants are added, because migrations alter and replace
    these objects, which only their owner may do."""
    owner = settings.owner_role
    conn = await asyncpg.connect(_admin_url(settings, settings.pg_database))
    try:
        async with conn.transaction():
            statements = []
            dba = await conn.fetchval(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
            )
            if dba != owner:
                statements.append(
                    await conn.fetchval(
                        "SELECT format('ALTER DATABASE %I OWNER TO %I', current_database(), $1::text)", owner
                    )
                )
            statements += [r[0] for r in await conn.fetch(_FOREIGN_OWNED, owner)]
            for statement in statements:
                await conn.execute(statement)
    finally:
        await conn.close()
    if statements:
        log.info("database.adopted", database=settings.pg_database, owner=owner, statements=len(statements))
    return statements


async def provision(settings: Settings) -> None:
    """Roles, then the database owned by the owner role (created, or adopted from an earlier run)."""
    await ensure_roles(settings)
    await ensure_database(settings)
    await adopt_database(settings)
