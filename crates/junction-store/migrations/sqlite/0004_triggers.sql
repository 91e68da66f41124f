-- Triggers the gateway runs (docs/triggers.md): each one's cursor (the Location to poll
-- next, the query parameters a `pollingtrigger` template made, or a webhook subscription
-- and what made it), when it polls (or renews) next, whether it is paused and which
-- replica holds it (a lease); and the events its polls found, each stored once (unique
-- per trigger by its deduplication key), numbered in the order they were stored.
CREATE TABLE triggers (
    name         TEXT PRIMARY KEY NOT NULL,
    location     TEXT,
    query        TEXT,
    subscription TEXT,
    next_poll_at INTEGER NOT NULL,
    paused       INTEGER NOT NULL DEFAULT 0,
    polls        INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    lease_owner  TEXT,
    lease_until  INTEGER,
    updated_at   INTEGER NOT NULL
);
CREATE TABLE trigger_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    trigger_name TEXT NOT NULL,
    dedup_key    TEXT NOT NULL,
    payload      TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    UNIQUE (trigger_name, dedup_key)
);
-- Each event's delivery to each webhook of its trigger: pending until the webhook accepts
-- it (delivered) or it is given up (dead: the dead-letter list, redelivered on request).
CREATE TABLE trigger_deliveries (
    trigger_name    TEXT NOT NULL,
    subscriber      TEXT NOT NULL,
    event_id        INTEGER NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    first_failed_at INTEGER,
    last_status     INTEGER,
    last_error      TEXT,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (trigger_name, subscriber, event_id)
);
CREATE INDEX trigger_deliveries_due ON trigger_deliveries (trigger_name, state, next_attempt_at);
-- Webhooks disabled after failing for their `disable_after`: new events for them go
-- straight to the dead-letter list until a redelivery enables them again.
CREATE TABLE trigger_subscribers (
    trigger_name TEXT NOT NULL,
    name         TEXT NOT NULL,
    disabled_at  INTEGER,
    PRIMARY KEY (trigger_name, name)
);
