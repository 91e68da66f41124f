-- Triggers the gateway runs (docs/triggers.md): each one's cursor (the Location to poll
-- next, the query parameters a `pollingtrigger` template made, or a webhook subscription
-- and what made it), when it polls (or renews) next, whether it is paused and which
-- replica holds it (a lease), and what retention (`keep`) deleted of it, still counted so
-- that its totals never go down; and the events its polls found, each stored once (unique
-- per trigger by its deduplication key), numbered in the order they were stored.
CREATE TABLE triggers (
    name         TEXT PRIMARY KEY NOT NULL,
    location     TEXT,
    query        TEXT,
    subscription TEXT,
    next_poll_at BIGINT NOT NULL,
    paused       BIGINT NOT NULL DEFAULT 0,
    polls        BIGINT NOT NULL DEFAULT 0,
    last_error   TEXT,
    lease_owner  TEXT,
    lease_until  BIGINT,
    updated_at   BIGINT NOT NULL,
    pruned_events    BIGINT NOT NULL DEFAULT 0,
    pruned_delivered BIGINT NOT NULL DEFAULT 0,
    pruned_retries   BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE trigger_events (
    id           BIGSERIAL PRIMARY KEY,
    trigger_name TEXT NOT NULL,
    dedup_key    TEXT NOT NULL,
    payload      TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    UNIQUE (trigger_name, dedup_key)
);
-- Each event's delivery to each webhook of its trigger: pending until the webhook accepts
-- it (delivered) or it is given up (dead: the dead-letter list, redelivered on request).
CREATE TABLE trigger_deliveries (
    trigger_name    TEXT NOT NULL,
    subscriber      TEXT NOT NULL,
    event_id        BIGINT NOT NULL,
    state           TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    first_failed_at BIGINT,
    last_status     BIGINT,
    last_error      TEXT,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (trigger_name, subscriber, event_id)
);
CREATE INDEX trigger_deliveries_due ON trigger_deliveries (trigger_name, state, next_attempt_at);
-- The webhooks of a trigger that have a state of their own. A configured one has a row
-- only once disabled (failing for its `disable_after`: new events for it go straight to
-- the dead-letter list until a redelivery enables it again). One a client registered
-- (POST /triggers/NAME/webhooks, named `wh_…`) has its url, its signing secret (sealed
-- under the master key) and the client that registered it.
CREATE TABLE trigger_subscribers (
    trigger_name TEXT NOT NULL,
    name         TEXT NOT NULL,
    disabled_at  BIGINT,
    url          TEXT,
    secret       BYTEA,
    client_id    TEXT,
    created_at   BIGINT,
    PRIMARY KEY (trigger_name, name)
);
-- Triggers declared through the admin API (PUT /api/v1/triggers/NAME) rather than in
-- junction.toml: the section as JSON, without its webhooks' secrets, which are sealed
-- under the master key (a JSON object: webhook name to secret). Every replica runs them.
CREATE TABLE trigger_definitions (
    name       TEXT PRIMARY KEY NOT NULL,
    definition TEXT NOT NULL,
    secrets    BYTEA,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
