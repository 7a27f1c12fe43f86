#!/bin/bash
# Run once by the postgres image on an empty data directory (/docker-entrypoint-initdb.d): the roles
# and the database of deploy/postgres/roles.sql, with the passwords compose passes in.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v database="$DB_NAME" \
    -v owner="$OWNER_ROLE" -v owner_password="$OWNER_PASSWORD" \
    -v app="$APP_ROLE" -v app_password="$APP_PASSWORD" \
    -f /warmbee/roles.sql
