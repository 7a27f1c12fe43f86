-- depends: 0005.redemption
-- Indexes for the scoring path at volume.

-- The same-hazard search looks for earlier reports inside a box: a GiST index on the report's point
-- answers that without reading every report of the time window (all of them, on a busy day).
CREATE INDEX hazard_report_where_idx ON hazard_report USING gist (point(lon, lat));

-- Postings are read by transaction (the primary key); only partner accounts are looked up by name
-- (settlement). Indexing every rider and programme posting by account cost each award two index
-- entries that no query used.
DROP INDEX ledger_posting_account_idx;
CREATE INDEX ledger_posting_partner_idx ON ledger_posting (account, tx_id) WHERE account LIKE 'partner:%';

-- No query looks up activity events by rider; the index cost every event an entry.
DROP INDEX activity_event_rider_idx;
