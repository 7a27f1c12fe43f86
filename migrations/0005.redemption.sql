-- depends: 0004.hazards
-- Partners, rewards and redemptions. The points move in the ledger (hold, redeem, release, expire);
-- these tables hold the catalogue and each redemption's state, which changes only from 'held'.

CREATE TABLE partner (
    partner_id  text        PRIMARY KEY,
    name        text        NOT NULL,
    kind        text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT partner_kind_check CHECK (kind IN ('merchant', 'hospital', 'barber'))
);

CREATE TABLE reward (
    reward_id                text        PRIMARY KEY,
    partner_id               text        NOT NULL REFERENCES partner (partner_id),
    title                    text        NOT NULL,
    cost                     integer     NOT NULL,
    stock_per_month          integer,
    per_rider_monthly_limit  integer,
    active                   boolean     NOT NULL,
    updated_at               timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT reward_cost_positive CHECK (cost > 0),
    CONSTRAINT reward_stock_positive CHECK (stock_per_month IS NULL OR stock_per_month >= 0),
    CONSTRAINT reward_limit_positive CHECK (per_rider_monthly_limit IS NULL OR per_rider_monthly_limit > 0)
);

CREATE TABLE redemption (
    redemption_id    text        PRIMARY KEY,
    reward_id        text        NOT NULL REFERENCES reward (reward_id),
    partner_id       text        NOT NULL REFERENCES partner (partner_id),
    rider_id         text        NOT NULL,
    title            text        NOT NULL,
    cost             integer     NOT NULL,
    status           text        NOT NULL,
    code             text        NOT NULL,
    month            text        NOT NULL,   -- YYYY-MM (Asia/Shanghai) of the reserve: stock and limits
    idempotency_key  text        NOT NULL,
    request_hash     text        NOT NULL,
    notice           text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    resolved_at      timestamptz,
    resolved_by      text,
    CONSTRAINT redemption_status_check CHECK (status IN ('held', 'confirmed', 'cancelled', 'expired')),
    CONSTRAINT redemption_idempotency_unique UNIQUE (rider_id, idempotency_key)
);
-- A code is unique among live holds; once resolved it may come round again.
CREATE UNIQUE INDEX redemption_live_code_unique ON redemption (code) WHERE status = 'held';
CREATE INDEX redemption_expiry_idx ON redemption (expires_at) WHERE status = 'held';
CREATE INDEX redemption_partner_idx ON redemption (partner_id, created_at DESC);
CREATE INDEX redemption_rider_idx ON redemption (rider_id, created_at DESC);

-- Holds and confirmed redemptions per reward and month, and per rider: the counters the stock and
-- the monthly limit are checked against with one conditional UPDATE, whatever the interleaving.
CREATE TABLE reward_usage (
    reward_id  text    NOT NULL,
    month      text    NOT NULL,
    rider_id   text    NOT NULL,   -- '' for the reward's total
    used       integer NOT NULL,
    PRIMARY KEY (reward_id, month, rider_id),
    CONSTRAINT reward_usage_not_negative CHECK (used >= 0)
);

-- Failed confirmations per partner in a window: guessing codes must not pay.
CREATE TABLE partner_confirm_failure (
    partner_id        text        PRIMARY KEY,
    failures          integer     NOT NULL,
    window_started_at timestamptz NOT NULL
);
