-- depends: 0006.scoring_indexes
-- Only events accepted over HTTP can wait for scoring: the worker records a Kafka event and scores it in
-- one transaction. The sweep for events whose Kafka copy is late or lost looks at those alone, so its
-- index holds those alone (an event from Kafka costs no entry in it).

DROP INDEX activity_event_received_idx;
CREATE INDEX activity_event_http_received_idx ON activity_event (received_at) WHERE received_via = 'http';
