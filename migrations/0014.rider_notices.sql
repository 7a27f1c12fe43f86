-- depends: 0013.notifications
-- Rider notices (services/notifications): short messages to the sub-district's SMS/WeChat gateway. They
-- are written in the same transaction that records a batch of points-ledger events, before the batch is
-- acknowledged, so a crash loses none and a batch read twice adds none (every key below is unique).

-- Awards heard of and not yet told: the gatherer sums a rider's into one notice a few minutes after the
-- first of them (notice_id then names it).
CREATE TABLE notice_award (
    event_id         text        PRIMARY KEY,  -- the points-ledger CloudEvent's id
    rider_id         text        NOT NULL,
    category         text,
    points           bigint      NOT NULL,
    heard_at         timestamptz NOT NULL DEFAULT now(),
    notice_id        bigint,
    CONSTRAINT notice_award_points_positive CHECK (points > 0)
);
-- The gatherer finds the oldest untold awards by the first index and a rider's untold ones by the second.
CREATE INDEX notice_award_untold_idx ON notice_award (heard_at) WHERE notice_id IS NULL;
CREATE INDEX notice_award_untold_by_rider_idx ON notice_award (rider_id) WHERE notice_id IS NULL;

-- Holds with a code still open: a timer warns the rider once, an hour before the code expires.
CREATE TABLE notice_hold (
    redemption_id    text        PRIMARY KEY,
    rider_id         text        NOT NULL,
    expires_at       timestamptz NOT NULL,
    warn_at          timestamptz NOT NULL,
    state            text        NOT NULL DEFAULT 'held',
    CONSTRAINT notice_hold_state_check CHECK (state IN ('held', 'warned', 'ended'))
);
CREATE INDEX notice_hold_due_idx ON notice_hold (warn_at) WHERE state = 'held';

CREATE TABLE rider_notice (
    notice_id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notice_key       text        NOT NULL,  -- the webhook-id of every attempt: the gateway de-duplicates by it
    rider_id         text        NOT NULL,
    kind             text        NOT NULL,
    body             text        NOT NULL,  -- the notice as JSON, exactly as signed and sent
    status           text        NOT NULL DEFAULT 'pending',
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_status      integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    CONSTRAINT rider_notice_once UNIQUE (notice_key),
    CONSTRAINT rider_notice_status_check CHECK (status IN ('pending', 'delivered', 'failed'))
);
CREATE INDEX rider_notice_due_idx ON rider_notice (next_attempt_at) WHERE status = 'pending';
CREATE INDEX rider_notice_by_rider_idx ON rider_notice (rider_id, notice_id DESC);
