-- depends: 0002.events
-- Versioned rules and the per-rider counters that caps and once-only limits read.

CREATE TABLE rules_version (
    rules_id        text        NOT NULL,
    version         integer     NOT NULL,
    effective_from  timestamptz NOT NULL,
    body            jsonb       NOT NULL,
    published_at    timestamptz NOT NULL DEFAULT now(),
    published_by    text,
    PRIMARY KEY (rules_id, version),
    CONSTRAINT rules_version_positive CHECK (version > 0)
);

-- One row per rider and counter, e.g. ('rider-42', 'volunteer_service:day:2024-05-01') = 35 points.
CREATE TABLE rider_counter (
    rider_id  text   NOT NULL,
    counter   text   NOT NULL,
    value     bigint NOT NULL,
    PRIMARY KEY (rider_id, counter)
);
