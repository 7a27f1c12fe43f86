-- The ledger: append-only, double-entry, integer points.
-- Written only by libs/ledger/store.py. Corrections are new entries; the database refuses the rest.

CREATE TABLE ledger_transaction (
    tx_id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key  text        NOT NULL,
    input_hash       text        NOT NULL,
    kind             text        NOT NULL,
    rider_id         text        NOT NULL,
    available_delta  bigint      NOT NULL,
    category         text,
    source           text,
    event_id         text,
    rule_id          text,
    rule_version     integer,
    reason           text        NOT NULL,
    occurred_at      timestamptz,
    actor            text,
    details          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ledger_transaction_idempotency_key_unique UNIQUE (idempotency_key),
    CONSTRAINT ledger_transaction_kind_check
        CHECK (kind IN ('award', 'adjustment', 'hold', 'release', 'redeem', 'expire'))
);
CREATE INDEX ledger_transaction_rider_idx ON ledger_transaction (rider_id, tx_id DESC);

CREATE TABLE ledger_posting (
    tx_id      bigint NOT NULL REFERENCES ledger_transaction (tx_id),
    posting_no smallint NOT NULL,
    account    text   NOT NULL,
    amount     bigint NOT NULL,
    PRIMARY KEY (tx_id, posting_no),
    CONSTRAINT ledger_posting_amount_not_zero CHECK (amount <> 0)
);
CREATE INDEX ledger_posting_account_idx ON ledger_posting (account);

-- The balance projection, updated in the same transaction as the postings.
CREATE TABLE rider_balance (
    rider_id        text        PRIMARY KEY,
    available       bigint      NOT NULL DEFAULT 0,
    held            bigint      NOT NULL DEFAULT 0,
    earned_total    bigint      NOT NULL DEFAULT 0,
    redeemed_total  bigint      NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT rider_balance_available_not_negative CHECK (available >= 0),
    CONSTRAINT rider_balance_held_not_negative CHECK (held >= 0)
);

CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: % on % is refused; post a correcting entry instead',
        TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER ledger_transaction_append_only
    BEFORE UPDATE OR DELETE ON ledger_transaction
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_transaction_no_truncate
    BEFORE TRUNCATE ON ledger_transaction
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_posting_append_only
    BEFORE UPDATE OR DELETE ON ledger_posting
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_posting_no_truncate
    BEFORE TRUNCATE ON ledger_posting
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- Every transaction's postings sum to zero. Set-based, so a batch of 1,000 entries costs one query;
-- it requires a transaction's postings to be inserted by one statement, which the store does.
CREATE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unbalanced bigint;
BEGIN
    SELECT n.tx_id INTO unbalanced
      FROM new_postings n
     GROUP BY n.tx_id
    HAVING sum(n.amount) <> 0
     LIMIT 1;
    IF unbalanced IS NOT NULL THEN
        RAISE EXCEPTION 'ledger transaction % does not sum to zero', unbalanced
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_posting_balanced';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER ledger_posting_balanced
    AFTER INSERT ON ledger_posting
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_check_balanced();
