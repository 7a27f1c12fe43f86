-- depends: 0008.posting_checks
-- Two events whose (source, id) differ are two events, wherever a ':' or '/' falls in them. Whether an
-- event is scored is asked of its award entry's columns (one award per event, enforced here), never of
-- an idempotency key glued from them: ("a", "b:c") and ("a:b", "c") once shared 'award:a:b:c'.
CREATE UNIQUE INDEX ledger_transaction_award_event_unique ON ledger_transaction (source, event_id)
    WHERE kind = 'award';

-- An event accepted over HTTP that the scorer cannot score (a defect, a value the rules cannot handle)
-- becomes a dead letter without a Kafka position. An operator may retry a dead letter once a fix is
-- deployed: retried_at marks it as no longer waiting (the event's status is then what scoring makes it).
ALTER TABLE dead_letter
    ALTER COLUMN topic DROP NOT NULL,
    ALTER COLUMN "partition" DROP NOT NULL,
    ALTER COLUMN "offset" DROP NOT NULL,
    ADD COLUMN retried_at timestamptz;
