-- depends: 0003.scoring
-- Hazard reports paid in full: a later report of the same hazard (near in space and time) pays less.

CREATE TABLE hazard_report (
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source       text             NOT NULL,
    event_id     text             NOT NULL,
    report_id    text             NOT NULL,
    rider_id     text             NOT NULL,
    lat          double precision NOT NULL,
    lon          double precision NOT NULL,
    reported_at  timestamptz      NOT NULL,
    recorded_at  timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT hazard_report_event_unique UNIQUE (source, event_id)
);
CREATE INDEX hazard_report_when_idx ON hazard_report (reported_at);

-- The worker's sweep for stored events without an award looks at recent arrivals first.
CREATE INDEX activity_event_received_idx ON activity_event (received_at);
