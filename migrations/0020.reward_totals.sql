-- depends: 0019.no_scratch_schemas
-- A reward with no stock limit keeps no monthly total any more (issue 22: every reserve of it upserted that one
-- row and held its lock to commit, so a burst of reserves queued on it). The total is made from the holds when a
-- stock is set (RedemptionStore.count_stock), which this index serves; the totals of rewards without a stock go.
CREATE INDEX redemption_counted_idx ON redemption (reward_id, month) WHERE status IN ('held', 'confirmed');

DELETE FROM reward_usage u
 USING reward r
 WHERE u.reward_id = r.reward_id AND u.rider_id = '' AND r.stock_per_month IS NULL;
