-- depends: 0014.rider_notices
-- The operators' points report (services/points/reports.py) sums a range of Asia/Shanghai days by the
-- entries' recorded time: without this index every report reads the whole ledger. An index and not a
-- daily projection, because the month's report of 200,000 entries answers within the second with it
-- (bench/reports.py) and the ledger writer stays as it is. Owned by the owner like the table; the
-- services read through it with the SELECT they hold (0009), so no grant is needed.
CREATE INDEX ledger_transaction_recorded_idx ON ledger_transaction (recorded_at);
