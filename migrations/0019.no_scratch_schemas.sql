-- depends: 0018.lapsing
-- Replay and what-if score in memory from one read-only snapshot (services/points/replay.py): nothing
-- makes a throw-away schema any more, so the services lose the right to create schemas in the database
-- (0009 granted it for that alone). Least privilege: a service's session can no longer shadow a table.

DO $$
BEGIN
    EXECUTE format('REVOKE CREATE ON DATABASE %I FROM warmbee_service', current_database());
END
$$;
