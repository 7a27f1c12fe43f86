-- depends: 0017.disputes
-- Points that lapse (积分有效期). A credit (an award, a positive adjustment) recorded under a rules version
-- with a lapse policy is a lot: what it gave, what is left of it, how much of that is held, and the last
-- day it is good for (Asia/Shanghai, fixed at the award by the version then in force). Every debit that
-- takes from lots (a hold, a negative adjustment, a lapse) and every settlement of a hold (a release, an
-- expiry, a confirmation) records the lots it moved in ledger_lot_take, which is append-only like the
-- ledger. Lots live beside the ledger: written only by libs/ledger (lot_store.py) in the transaction of
-- the entry that moves them, and checked against the entries by reconcile. Points of credits without a
-- lapse policy are in no lot: they never lapse, and debits take them after every lot.

ALTER TABLE ledger_transaction DROP CONSTRAINT ledger_transaction_kind_check;
ALTER TABLE ledger_transaction ADD CONSTRAINT ledger_transaction_kind_check
    CHECK (kind IN ('award', 'adjustment', 'hold', 'release', 'redeem', 'expire', 'lapse'));

CREATE TABLE ledger_lot (
    lot_id      bigint      PRIMARY KEY REFERENCES ledger_transaction (tx_id),  -- the credit that made it
    rider_id    text        NOT NULL,
    amount      bigint      NOT NULL,
    remaining   bigint      NOT NULL,   -- still the rider's, free or held
    held        bigint      NOT NULL DEFAULT 0,
    awarded_on  date        NOT NULL,
    lapses_on   date        NOT NULL,   -- the last day it is good for; lapsed once that day has ended
    lapse_tx_id bigint      REFERENCES ledger_transaction (tx_id),
    warned_at   timestamptz,            -- the rider was told, 30 days before (one notice per rider and date)
    CONSTRAINT ledger_lot_amount_positive CHECK (amount > 0),
    CONSTRAINT ledger_lot_within CHECK (0 <= held AND held <= remaining AND remaining <= amount),
    CONSTRAINT ledger_lot_dates CHECK (awarded_on <= lapses_on),
    CONSTRAINT ledger_lot_lapsed_empty CHECK (lapse_tx_id IS NULL OR (remaining = 0 AND held = 0))
);
-- A rider's lots with points left, soonest-lapsing first (what a debit takes), and the due ones (the job).
CREATE INDEX ledger_lot_rider_open_idx ON ledger_lot (rider_id, lapses_on, lot_id) WHERE remaining > 0;
CREATE INDEX ledger_lot_due_idx ON ledger_lot (lapses_on, lot_id) WHERE remaining > 0;
CREATE UNIQUE INDEX ledger_lot_lapse_unique ON ledger_lot (lapse_tx_id) WHERE lapse_tx_id IS NOT NULL;

CREATE TABLE ledger_lot_take (
    tx_id   bigint NOT NULL REFERENCES ledger_transaction (tx_id),
    lot_id  bigint NOT NULL REFERENCES ledger_lot (lot_id),
    amount  bigint NOT NULL,
    PRIMARY KEY (tx_id, lot_id),
    CONSTRAINT ledger_lot_take_amount_positive CHECK (amount > 0)
);
CREATE INDEX ledger_lot_take_lot_idx ON ledger_lot_take (lot_id);

CREATE TRIGGER ledger_lot_take_append_only
    BEFORE UPDATE OR DELETE ON ledger_lot_take
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_lot_take_no_truncate
    BEFORE TRUNCATE ON ledger_lot_take
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- Lots move (UPDATE) and are never deleted; their links are only ever added.
REVOKE DELETE, TRUNCATE ON ledger_lot FROM warmbee_service;
REVOKE UPDATE, DELETE, TRUNCATE ON ledger_lot_take FROM warmbee_service;
