-- depends: 0001.ledger
-- Activity events known to warmbee (the inbox), dead letters, and the transactional outbox.

CREATE TABLE activity_event (
    source        text        NOT NULL,
    event_id      text        NOT NULL,
    type          text        NOT NULL,
    category      text        NOT NULL,
    rider_id      text        NOT NULL,
    occurred_at   timestamptz NOT NULL,
    content_hash  text        NOT NULL,
    event         jsonb       NOT NULL,
    received_via  text        NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, event_id),
    CONSTRAINT activity_event_received_via_check CHECK (received_via IN ('http', 'kafka'))
);
CREATE INDEX activity_event_rider_idx ON activity_event (rider_id, occurred_at);

CREATE TABLE dead_letter (
    dead_letter_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at      timestamptz NOT NULL DEFAULT now(),
    reason           text        NOT NULL,
    topic            text        NOT NULL,
    "partition"      integer     NOT NULL,
    "offset"         bigint      NOT NULL,
    key              text,
    source           text,
    event_id         text,
    payload          text        NOT NULL,
    payload_encoding text        NOT NULL,
    payload_sha256   text        NOT NULL,
    -- A redelivered message is one dead letter; the hash keeps a broker that restarts its offsets honest.
    CONSTRAINT dead_letter_message_unique UNIQUE (topic, "partition", "offset", payload_sha256),
    CONSTRAINT dead_letter_payload_encoding_check CHECK (payload_encoding IN ('utf-8', 'base64'))
);
CREATE INDEX dead_letter_event_idx ON dead_letter (source, event_id);

CREATE TABLE outbox (
    outbox_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic       text        NOT NULL,
    key         bytea,
    value       bytea       NOT NULL,
    headers     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    relayed_at  timestamptz
);
CREATE INDEX outbox_pending_idx ON outbox (topic, outbox_id) WHERE relayed_at IS NULL;
