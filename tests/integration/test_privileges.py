"""Least privilege on real PostgreSQL: the services' role reads and appends the ledger and can do nothing
else to it (no UPDATE, DELETE or TRUNCATE, no ALTER, DROP or replaced trigger function, no switching
triggers off); migrations run as the owner; a database from before the roles existed is adopted."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from yoyo import get_backend, read_migrations

from libs.i18n.reasons import Reason
from libs.ledger.keys import PROGRAMME_ISSUED, rider_available
from libs.ledger.store import LedgerStore
from libs.platform.db import MIGRATIONS_DIR, Database, drop_database
from libs.platform.roles import SERVICE_ROLE, RoleProblem, ensure_roles
from libs.platform.settings import Settings
from services.cli import prepare_database
from tests.integration.test_ledger_store import award, balance, entries, recorded_tx_id

LEDGER = ("ledger_transaction", "ledger_posting")
YOYO = ("_yoyo_log", "_yoyo_migration", "_yoyo_version", "yoyo_lock")


async def refused(settings: Settings, statement: str, *args: object) -> asyncpg.PostgresError:
    """Run ``statement`` as the services' role in a transaction that is always rolled back, and return
    what PostgreSQL raised; fails the test when it was allowed."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        transaction = conn.transaction()
        await transaction.start()
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError) as refusal:
                await conn.execute(statement, *args)
        finally:
            await transaction.rollback()
    finally:
        await conn.close()
    return refusal.value


@pytest.fixture
async def owner(db: Database, settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(settings.owner_database_url)
    yield conn
    await conn.close()


# --- who is who ------------------------------------------------------------------------------------


async def test_the_services_connect_as_a_role_that_neither_owns_nor_bypasses_anything(
    db: Database, settings: Settings
) -> None:
    async with db.read() as conn:
        me = await conn.fetchrow(
            "SELECT current_user AS name, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls"
            " FROM pg_roles WHERE rolname = current_user"
        )
        owners = {
            r["tableowner"] for r in await conn.fetch("SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")
        }
        member_of_owner = await conn.fetchval("SELECT pg_has_role(current_user, $1, 'MEMBER')", settings.owner_role)
        database_owner = await conn.fetchval(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        )

    assert me is not None
    assert me["name"] == settings.app_role == "warmbee_app"
    assert not any((me["rolsuper"], me["rolcreaterole"], me["rolcreatedb"], me["rolbypassrls"]))
    assert owners == {settings.owner_role}
    assert database_owner == settings.owner_role
    assert settings.app_role != settings.owner_role
    assert not member_of_owner


async def test_the_ledger_store_appends_and_reads_as_the_services_role(db: Database, rider: str) -> None:
    tx = award(rider, 25)

    result = await db.run(lambda conn: LedgerStore(conn).append([tx]))

    assert tx.idempotency_key in result.recorded
    assert (await balance(db, rider)).available == 25
    assert [e.amount for e in await entries(db, rider)] == [25]


# --- what the services' role is refused -------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_transaction SET reason = 'rewritten' WHERE tx_id = $1",
        "UPDATE ledger_posting SET amount = amount + 1 WHERE tx_id = $1",
        "DELETE FROM ledger_transaction WHERE tx_id = $1",
        "DELETE FROM ledger_posting WHERE tx_id = $1",
        # the balance projection moves with the ledger, it is never removed
        "DELETE FROM rider_balance WHERE rider_id = (SELECT rider_id FROM ledger_transaction WHERE tx_id = $1)",
    ],
)
async def test_ledger_rows_cannot_be_updated_or_deleted(
    db: Database, settings: Settings, rider: str, statement: str
) -> None:
    tx_id = await recorded_tx_id(db, rider)

    refusal = await refused(settings, statement, tx_id)

    assert "permission denied" in str(refusal)
    assert [e.entry_id for e in await entries(db, rider)] == [tx_id]


@pytest.mark.parametrize(
    "statement",
    [
        "TRUNCATE ledger_posting",
        "TRUNCATE ledger_transaction",
        "TRUNCATE ledger_transaction, ledger_posting CASCADE",
        "TRUNCATE rider_balance",
        "TRUNCATE outbox",
    ],
)
async def test_no_table_can_be_truncated(db: Database, settings: Settings, rider: str, statement: str) -> None:
    await recorded_tx_id(db, rider)

    refusal = await refused(settings, statement)

    assert "permission denied" in str(refusal)


@pytest.mark.parametrize(
    ("statement", "reason"),
    [
        ("ALTER TABLE ledger_posting DISABLE TRIGGER ledger_posting_append_only", "must be owner"),
        ("ALTER TABLE ledger_transaction DISABLE TRIGGER ALL", "must be owner"),
        ("ALTER TABLE ledger_posting DROP CONSTRAINT ledger_posting_amount_not_zero", "must be owner"),
        ("ALTER TABLE ledger_transaction OWNER TO CURRENT_USER", "must be owner"),
        ("DROP TRIGGER ledger_posting_append_only ON ledger_posting", "must be owner"),
        ("DROP TABLE ledger_posting", "must be owner"),
        ("DROP TABLE ledger_transaction CASCADE", "must be owner"),
        # replacing the trigger function would switch the refusal off for every role
        (
            "CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql"
            " AS $$ BEGIN RETURN NEW; END $$",
            "permission denied for schema public",  # refused before ownership is even asked
        ),
        ("ALTER FUNCTION ledger_check_balanced() RESET search_path", "must be owner"),
        # a trigger of one's own on a ledger table (e.g. one that rewrites rows) needs TRIGGER
        (
            "CREATE TRIGGER sneak BEFORE INSERT ON ledger_posting FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()",
            "permission denied",
        ),
        # replica mode skips ordinary triggers for the session: superusers only
        ("SET session_replication_role = replica", "permission denied"),
        # no new tables beside the ledger, and no temporary look-alikes in front of it
        ("CREATE TABLE public.ledger_shadow (tx_id bigint)", "permission denied"),
        ("CREATE TEMP TABLE ledger_transaction (tx_id bigint)", "permission denied"),
    ],
)
async def test_the_ledger_tables_and_triggers_cannot_be_altered_dropped_or_switched_off(
    db: Database, settings: Settings, statement: str, reason: str
) -> None:
    refusal = await refused(settings, statement)

    assert reason in str(refusal)
    async with db.read() as conn:
        triggers = await conn.fetch(
            "SELECT tgname, tgenabled::text FROM pg_trigger WHERE tgrelid = ANY($1::regclass[]) AND NOT tgisinternal",
            list(LEDGER),
        )
    assert {t["tgname"]: t["tgenabled"] for t in triggers} == {
        "ledger_transaction_append_only": "O",
        "ledger_transaction_no_truncate": "O",
        "ledger_posting_append_only": "O",
        "ledger_posting_no_truncate": "O",
        "ledger_posting_balanced": "O",
    }


# --- the grants as a whole ----------------------------------------------------------------------------


async def test_the_services_role_has_exactly_the_ordinary_grants_and_the_ledger_only_read_and_insert(
    db: Database, settings: Settings
) -> None:
    async with db.read() as conn:
        rows = await conn.fetch(
            "SELECT tablename, p.privilege,"
            "       has_table_privilege(current_user, format('public.%I', tablename), p.privilege) AS held"
            " FROM pg_tables, unnest(ARRAY['SELECT','INSERT','UPDATE','DELETE','TRUNCATE','REFERENCES','TRIGGER'])"
            "      AS p(privilege)"
            " WHERE schemaname = 'public' AND tablename <> ALL($1::text[])",
            list(YOYO),
        )
    held: dict[str, set[str]] = {}
    for r in rows:
        held.setdefault(r["tablename"], set())
        if r["held"]:
            held[r["tablename"]].add(r["privilege"])

    ordinary = {"SELECT", "INSERT", "UPDATE", "DELETE"}
    assert {t: held[t] for t in LEDGER} == {t: {"SELECT", "INSERT"} for t in LEDGER}
    assert held["rider_balance"] == {"SELECT", "INSERT", "UPDATE"}
    assert held["dispute"] == {"SELECT", "INSERT", "UPDATE"}  # resolved, never deleted (0017)
    assert held["ledger_lot"] == {"SELECT", "INSERT", "UPDATE"}  # lots move, never deleted (0018)
    assert held["ledger_lot_take"] == {"SELECT", "INSERT"}  # append-only like the ledger (0018)
    others = {
        t: p for t, p in held.items() if t not in (*LEDGER, "rider_balance", "dispute", "ledger_lot", "ledger_lot_take")
    }
    assert others
    assert all(p == ordinary for p in others.values()), others


async def test_the_services_cannot_create_a_schema(db: Database, settings: Settings) -> None:
    """Replay and what-if score in memory: no service makes a schema (0019 took the right back), so no
    service's session can put a look-alike table in front of a live one."""
    await refused(settings, "CREATE SCHEMA warmbee_shadow")
    async with db.read() as conn:
        assert await conn.fetchval("SELECT has_database_privilege(current_user, current_database(), 'CREATE')") is False


async def test_yoyo_bookkeeping_is_out_of_the_services_reach(db: Database) -> None:
    async with db.read() as conn:
        writable = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename = ANY($1::text[])"
            " AND (has_table_privilege(current_user, format('public.%I', tablename), 'INSERT')"
            "   OR has_table_privilege(current_user, format('public.%I', tablename), 'DELETE'))",
            list(YOYO),
        )
    assert writable == []


async def test_a_table_a_later_migration_creates_gets_the_ordinary_grants(
    owner: asyncpg.Connection, settings: Settings
) -> None:
    transaction = owner.transaction()
    await transaction.start()
    try:
        await owner.execute("CREATE TABLE later_migration_table (id bigint GENERATED ALWAYS AS IDENTITY, note text)")
        granted = await owner.fetchval(
            "SELECT array_agg(p ORDER BY p) FROM unnest(ARRAY['SELECT','INSERT','UPDATE','DELETE','TRUNCATE']) AS p"
            " WHERE has_table_privilege($1, 'later_migration_table', p)",
            settings.app_role,
        )
    finally:
        await transaction.rollback()
    assert granted == ["DELETE", "INSERT", "SELECT", "UPDATE"]


async def test_the_ledger_trigger_functions_keep_a_pinned_search_path(db: Database) -> None:
    """A later CREATE OR REPLACE of these functions drops the setting unless it repeats it: this says so."""
    async with db.read() as conn:
        configs = await conn.fetch(
            "SELECT proname, proconfig FROM pg_proc WHERE proname = ANY($1::text[])"
            " AND pronamespace = 'public'::regnamespace",
            ["ledger_refuse_change", "ledger_check_balanced"],
        )
    assert {r["proname"]: r["proconfig"] for r in configs} == {
        "ledger_refuse_change": ["search_path=pg_catalog, public, pg_temp"],
        "ledger_check_balanced": ["search_path=pg_catalog, public, pg_temp"],
    }


async def test_the_owner_is_still_refused_by_the_ledger_triggers(
    db: Database, owner: asyncpg.Connection, rider: str
) -> None:
    tx_id = await recorded_tx_id(db, rider)
    for statement in (
        "UPDATE ledger_posting SET amount = amount WHERE tx_id = $1",
        "DELETE FROM ledger_transaction WHERE tx_id = $1",
    ):
        transaction = owner.transaction()
        await transaction.start()
        try:
            with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
                await owner.execute(statement, tx_id)
        finally:
            await transaction.rollback()


# --- provisioning -------------------------------------------------------------------------------------


async def test_a_superuser_or_the_owner_as_the_services_role_is_refused(settings: Settings) -> None:
    assert settings.pg_admin_server
    as_superuser = settings.model_copy(update={"pg_server": settings.pg_admin_server})
    with pytest.raises(RoleProblem, match="is a superuser"):
        await ensure_roles(as_superuser)
    as_owner = settings.model_copy(update={"pg_server": settings.pg_owner_server})
    with pytest.raises(RoleProblem, match="is the owner role"):
        await ensure_roles(as_owner)


async def test_a_database_from_before_the_roles_is_adopted_by_the_owner_and_keeps_its_ledger(
    db: Database, settings: Settings, rider: str
) -> None:
    """As `make run` left it before 0009: created, migrated and written by the superuser."""
    legacy = settings.model_copy(update={"pg_database": f"{settings.pg_database}_legacy"})
    await drop_database(legacy)
    admin = await asyncpg.connect(legacy.admin_url())
    await admin.execute(f'CREATE DATABASE "{legacy.pg_database}"')
    await admin.close()
    try:
        backend = get_backend(legacy.admin_url(legacy.pg_database).replace("postgresql://", "postgresql+psycopg://", 1))
        old = read_migrations(str(MIGRATIONS_DIR)).filter(lambda m: m.id <= "0008.posting_checks")
        with backend.lock():
            backend.apply_migrations(backend.to_apply(old))
        backend.connection.close()
        before = await asyncpg.connect(legacy.admin_url(legacy.pg_database))
        try:  # as the store wrote an award then (no reason code: its columns came with 0012)
            async with before.transaction():
                tx_id = await before.fetchval(
                    "INSERT INTO ledger_transaction (idempotency_key, input_hash, kind, rider_id, available_delta,"
                    " reason) VALUES ($1, 'h', 'award', $2, 30, 'course completed: 30 points') RETURNING tx_id",
                    f"award:old:{rider}",
                    rider,
                )
                await before.execute(  # one statement: the balance check runs at its end
                    "INSERT INTO ledger_posting (tx_id, posting_no, account, amount)"
                    " VALUES ($1, 1, $2, -30), ($1, 2, $3, 30)",
                    tx_id,
                    PROGRAMME_ISSUED,
                    rider_available(rider),
                )
                await before.execute(
                    "INSERT INTO rider_balance (rider_id, available, earned_total) VALUES ($1, 30, 30)", rider
                )
        finally:
            await before.close()

        await prepare_database(legacy)

        after = Database(legacy)
        await after.open()
        try:
            async with after.read() as conn:
                owners = {
                    r["owner"]
                    for r in await conn.fetch(
                        "SELECT pg_get_userbyid(relowner) AS owner FROM pg_class"
                        " WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'S', 'i')"
                        " UNION SELECT pg_get_userbyid(proowner) FROM pg_proc"
                        "        WHERE pronamespace = 'public'::regnamespace"
                        " UNION SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
                    )
                }
            assert owners == {legacy.owner_role}
            assert (await balance(after, rider)).available == 30
            async with after.read() as conn:  # no reason code: read back from the English text
                (old_entry,) = await LedgerStore(conn).entries(rider, 10)
            assert old_entry.reason == Reason("award.skill_development.course", {"points": 30})
            assert old_entry.reason.render("zh") == "完成技能课程，计 30 分"
            await after.run(lambda conn: LedgerStore(conn).append([award(rider, 5)]))
            assert (await balance(after, rider)).available == 35
            await refused(legacy, "DELETE FROM ledger_transaction WHERE rider_id = $1", rider)
            await refused(legacy, "ALTER TABLE ledger_posting DISABLE TRIGGER ALL")
        finally:
            await after.close()

        await prepare_database(legacy)  # a second run changes nothing and does not fail
    finally:
        await drop_database(legacy)


async def test_the_service_group_is_not_a_login(db: Database) -> None:
    async with db.read() as conn:
        can_login = await conn.fetchval("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", SERVICE_ROLE)
    assert can_login is False
