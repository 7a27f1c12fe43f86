-- depends: 0012.reason_codes
-- Webhooks (services/notifications): who asked to hear of what, and each delivery of one points-ledger
-- event to one subscription. A delivery row is written before its Kafka message is acknowledged, so an
-- event is never lost between the topic and the receiver; (webhook_id, event_id) is unique, so a
-- message read twice is delivered once more at most (receivers de-duplicate by webhook-id).

CREATE TABLE webhook_subscription (
    webhook_id       text        PRIMARY KEY,
    owner_role       text        NOT NULL,
    owner_id         text        NOT NULL,
    url              text        NOT NULL,
    kinds            text[]      NOT NULL,
    description      text        NOT NULL DEFAULT '',
    secret_sealed    bytea       NOT NULL,  -- the signing secret, encrypted with WARMBEE_NOTIFY_SECRET_KEY
    created_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz,
    CONSTRAINT webhook_subscription_owner_role_check CHECK (owner_role IN ('operator', 'partner', 'source')),
    CONSTRAINT webhook_subscription_kinds_not_empty CHECK (cardinality(kinds) > 0)
);
CREATE INDEX webhook_subscription_owner_idx ON webhook_subscription (owner_role, owner_id) WHERE deleted_at IS NULL;

CREATE TABLE webhook_delivery (
    delivery_id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id       text        NOT NULL REFERENCES webhook_subscription (webhook_id),
    event_id         text        NOT NULL,  -- the CloudEvent's id: the webhook-id of every attempt
    kind             text        NOT NULL,
    body             text        NOT NULL,  -- the CloudEvent as JSON, exactly as signed and sent
    status           text        NOT NULL DEFAULT 'pending',
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_status      integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    CONSTRAINT webhook_delivery_once UNIQUE (webhook_id, event_id),
    CONSTRAINT webhook_delivery_status_check CHECK (status IN ('pending', 'delivered', 'failed'))
);
CREATE INDEX webhook_delivery_due_idx ON webhook_delivery (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_delivery_by_webhook_idx ON webhook_delivery (webhook_id, delivery_id DESC);
