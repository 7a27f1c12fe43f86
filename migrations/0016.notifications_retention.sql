-- depends: 0014.rider_notices
-- Retention of the notifications' working tables (services/notifications/retention.py): rows that are done
-- (a delivery delivered or failed, a notice told of, an award summed, a hold ended) go once older than
-- WARMBEE_NOTIFICATIONS_RETENTION_DAYS. BRIN indexes find the old rows: these tables are appended in time
-- order, so a BRIN index is a few pages and costs the hot insert path almost nothing (a B-tree on each
-- timestamp would be one more index to maintain per delivery).

CREATE INDEX webhook_delivery_created_brin ON webhook_delivery USING brin (created_at);
CREATE INDEX rider_notice_created_brin ON rider_notice USING brin (created_at);
CREATE INDEX notice_award_heard_brin ON notice_award USING brin (heard_at);
CREATE INDEX notice_hold_expires_brin ON notice_hold USING brin (expires_at);

-- Rows are updated (attempts, status) and deleted in bulk: vacuum and analyse them sooner than the
-- default 20 % of the table, so dead rows do not pile up between runs and the due-index plans stay right.
ALTER TABLE webhook_delivery SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
ALTER TABLE rider_notice SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
ALTER TABLE notice_award SET (autovacuum_vacuum_scale_factor = 0.05, autovacuum_analyze_scale_factor = 0.05);
ALTER TABLE notice_hold SET (autovacuum_vacuum_scale_factor = 0.05, autovacuum_analyze_scale_factor = 0.05);
