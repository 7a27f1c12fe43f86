-- The roles and the database warmbee expects, created by whoever administers PostgreSQL (a superuser or
-- a role with CREATEROLE and CREATEDB), once, before the first `warmbee migrate`. Idempotent: a rerun
-- creates only what is missing and sets the passwords again.
--
--   psql "$ADMIN_URL" -v ON_ERROR_STOP=1 -v database=warmbee \
--        -v owner=warmbee_owner -v owner_password="$OWNER_PASSWORD" \
--        -v app=warmbee_app -v app_password="$APP_PASSWORD" -f deploy/postgres/roles.sql
--
-- owner: runs the migrations (WARMBEE_PG_OWNER_SERVER) and owns the database and every table in it.
-- app:   what the services connect as (WARMBEE_PG_SERVER). It holds no privilege of its own: it is a
--        member of warmbee_service, to which migrations/0009.privileges.sql grants reading and appending
--        the ledger and ordinary work on the other tables. Never the owner, never a superuser.
-- Locally and in tests, libs/platform/roles.py does the same through WARMBEE_PG_ADMIN_SERVER.

SELECT format('CREATE ROLE %I LOGIN', :'owner')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'owner') \gexec
SELECT format('CREATE ROLE %I LOGIN', :'app')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app') \gexec
SELECT 'CREATE ROLE warmbee_service NOLOGIN'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'warmbee_service') \gexec

ALTER ROLE :"owner" PASSWORD :'owner_password';
ALTER ROLE :"app" PASSWORD :'app_password';
GRANT warmbee_service TO :"app";

SELECT format('CREATE DATABASE %I OWNER %I', :'database', :'owner')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'database') \gexec
