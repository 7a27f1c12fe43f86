-- depends: 0008.posting_checks
-- Least privilege. Migrations run as the owner role, which owns every object here; the services
-- connect as an application login that holds only what is granted below, through its membership of
-- warmbee_service (a NOLOGIN group, so that no migration has to name a login each deployment chooses:
-- libs/platform/roles.py, deploy/postgres/roles.sql). Not being the owner, the services cannot ALTER,
-- DROP or replace a table or function, nor disable a trigger; not being superusers, they cannot set
-- session_replication_role (which skips triggers) or bypass a grant.

-- The ledger is append-only: read and insert, nothing else. UPDATE, DELETE and TRUNCATE are refused
-- twice: by privilege for the services, and by the triggers of 0001 for the owner.
REVOKE ALL ON ledger_transaction, ledger_posting FROM PUBLIC;
GRANT SELECT, INSERT ON ledger_transaction, ledger_posting TO warmbee_service;

-- The balance projection is moved by the ledger writer in the same transaction as the postings (an
-- UPDATE, and SELECT ... FOR UPDATE, which needs UPDATE); a balance row is never deleted.
GRANT SELECT, INSERT, UPDATE ON rider_balance TO warmbee_service;

-- Everything else is ordinary working state: outbox rows are marked and pruned, redemptions change
-- status, counters and usage move, catalogue rows are upserted. Never TRUNCATE, REFERENCES or TRIGGER.
GRANT SELECT, INSERT, UPDATE, DELETE
   ON activity_event, dead_letter, outbox, rules_version, rider_counter, hazard_report,
      partner, reward, redemption, reward_usage, partner_confirm_failure
   TO warmbee_service;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO warmbee_service;

-- Tables and sequences that later migrations create (as the owner, the role these defaults are for)
-- get the same ordinary grants; a later append-only table revokes UPDATE and DELETE as above.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO warmbee_service;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE ON SEQUENCES TO warmbee_service;

-- The ledger's trigger functions look tables up by the session's search_path: pinned, so that a
-- service's session cannot point the posting check at a look-alike table in a schema of its own.
ALTER FUNCTION ledger_refuse_change() SET search_path = pg_catalog, public, pg_temp;
ALTER FUNCTION ledger_check_balanced() SET search_path = pg_catalog, public, pg_temp;

-- The database: only the services (and the owner) connect. The services may create schemas, because
-- replay and what-if score into a throw-away schema inside a transaction that rolls back
-- (services/points/store.py, ScratchStore); no temporary tables, which nothing uses. Without "$user"
-- in the search path, a schema a service names after another role shadows nothing for that role.
DO $$
BEGIN
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CONNECT, CREATE ON DATABASE %I TO warmbee_service', current_database());
    EXECUTE format('ALTER DATABASE %I SET search_path = public', current_database());
END
$$;
