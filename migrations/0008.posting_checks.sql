-- depends: 0007.pending_sweep_index
-- Every posting belongs to a transaction, checked once per statement instead of once per row.
-- The foreign key checked each posting by locking its transaction row (SELECT ... FOR KEY SHARE), a
-- seventh of PostgreSQL's time per event. What it guards is kept: transactions can never be deleted
-- or truncated (the append-only triggers), and the statement-level check below refuses a posting
-- whose transaction does not exist, for a whole batch in one query.

ALTER TABLE ledger_posting DROP CONSTRAINT ledger_posting_tx_id_fkey;

CREATE OR REPLACE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    offending bigint;
BEGIN
    SELECT n.tx_id INTO offending
      FROM new_postings n
     WHERE NOT EXISTS (SELECT 1 FROM ledger_transaction t WHERE t.tx_id = n.tx_id)
     LIMIT 1;
    IF offending IS NOT NULL THEN
        RAISE EXCEPTION 'ledger posting for transaction %, which does not exist', offending
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'ledger_posting_transaction';
    END IF;
    SELECT n.tx_id INTO offending
      FROM new_postings n
     GROUP BY n.tx_id
    HAVING sum(n.amount) <> 0
     LIMIT 1;
    IF offending IS NOT NULL THEN
        RAISE EXCEPTION 'ledger transaction % does not sum to zero', offending
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_posting_balanced';
    END IF;
    RETURN NULL;
END
$$;
