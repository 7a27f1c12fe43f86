-- depends: 0008.posting_checks
-- An outbox row that can never be published as it is (larger than the producer may send, refused by the
-- broker for good, a reference whose rendering fails) is parked with its reason instead of being retried
-- forever: retried forever, it held back every later row of its topics (claims go in outbox_id order).
-- Claims and the backlog skip parked rows; `warmbee outbox parked` lists them, `warmbee outbox retry`
-- puts one back. Only columns and indexes of an existing table: its privileges are unchanged.

ALTER TABLE outbox
    ADD COLUMN parked_at   timestamptz,
    ADD COLUMN park_reason text,
    ADD CONSTRAINT outbox_parked_with_reason_check CHECK ((parked_at IS NULL) = (park_reason IS NULL));

-- The claim reads this index in outbox_id order: parked rows must not be in it, or every claim would
-- step over them again.
DROP INDEX outbox_pending_idx;
CREATE INDEX outbox_pending_idx ON outbox (topic, outbox_id) WHERE relayed_at IS NULL AND parked_at IS NULL;
CREATE INDEX outbox_parked_idx ON outbox (topic, outbox_id) WHERE parked_at IS NOT NULL AND relayed_at IS NULL;
