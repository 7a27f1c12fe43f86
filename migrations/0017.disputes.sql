-- depends: 0016.notifications_retention
-- Disputes (申诉): a rider questions one of its own ledger entries; an operator resolves it once, upheld
-- with an adjustment (a ledger entry of kind 'adjustment', source 'warmbee/disputes', event_id the dispute
-- id, so reconcile finds it by its columns) or rejected with a reply. A dispute's row changes only from
-- 'open', and only once; it is never deleted (the grants below).

CREATE TABLE dispute (
    seq                  bigint      GENERATED ALWAYS AS IDENTITY UNIQUE,  -- the order of opening, for pages
    dispute_id           text        PRIMARY KEY,
    entry_id             bigint      NOT NULL REFERENCES ledger_transaction (tx_id),
    rider_id             text        NOT NULL,
    message              text        NOT NULL,
    status               text        NOT NULL DEFAULT 'open',
    idempotency_key      text        NOT NULL,   -- the rider's Idempotency-Key of the opening
    opening_hash         text        NOT NULL,   -- what that opening said (entry, message): a reused key is caught
    created_at           timestamptz NOT NULL DEFAULT now(),
    outcome              text,
    amount               bigint,
    reply                text,
    resolved_by          text,
    resolve_key          text,                   -- the operator's Idempotency-Key of the resolution
    resolved_at          timestamptz,
    adjustment_entry_id  bigint      REFERENCES ledger_transaction (tx_id),
    CONSTRAINT dispute_status_check CHECK (status IN ('open', 'resolved')),
    CONSTRAINT dispute_outcome_check CHECK (outcome IS NULL OR outcome IN ('upheld', 'rejected')),
    CONSTRAINT dispute_message_length CHECK (char_length(message) BETWEEN 1 AND 1000),
    CONSTRAINT dispute_reply_length CHECK (reply IS NULL OR char_length(reply) BETWEEN 1 AND 1000),
    -- Open: nothing of a resolution. Resolved: an outcome, who and when; upheld: an amount and its entry.
    CONSTRAINT dispute_resolution_whole CHECK (
        (status = 'open' AND outcome IS NULL AND resolved_at IS NULL AND resolved_by IS NULL
             AND adjustment_entry_id IS NULL AND amount IS NULL)
        OR (status = 'resolved' AND outcome IS NOT NULL AND resolved_at IS NOT NULL AND resolved_by IS NOT NULL
             AND resolve_key IS NOT NULL
             AND ((outcome = 'upheld') = (adjustment_entry_id IS NOT NULL))
             AND ((outcome = 'upheld') = (amount IS NOT NULL AND amount <> 0)))),
    CONSTRAINT dispute_idempotency_unique UNIQUE (rider_id, idempotency_key)
);
-- One open dispute per entry; once resolved, the entry may be questioned again.
CREATE UNIQUE INDEX dispute_one_open_per_entry ON dispute (entry_id) WHERE status = 'open';
CREATE UNIQUE INDEX dispute_adjustment_unique ON dispute (adjustment_entry_id) WHERE adjustment_entry_id IS NOT NULL;
CREATE INDEX dispute_open_idx ON dispute (seq) WHERE status = 'open';
CREATE INDEX dispute_rider_idx ON dispute (rider_id, seq);
CREATE INDEX dispute_entry_idx ON dispute (entry_id);

-- The adjustments of upheld disputes, found by their dispute (reconcile): a few rows of a large table.
CREATE INDEX ledger_transaction_dispute_idx ON ledger_transaction (event_id) WHERE source = 'warmbee/disputes';

-- Disputes are resolved (UPDATE), never deleted: what was asked and answered stays.
REVOKE DELETE, TRUNCATE ON dispute FROM warmbee_service;
