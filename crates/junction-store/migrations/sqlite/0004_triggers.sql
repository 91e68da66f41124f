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
    next_poll_at INTEGER NOT NULL,
    paused       INTEGER NOT NULL DEFAULT 0,
    polls        INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    lease_owner  TEXT,
    lease_until  INTEGER,
    updated_at   INTEGER NOT NULL,
    pruned_events    INTEGER NOT NULL DEFAULT 0,
    pruned_delivered INTEGER NOT NULL DEFAULT 0,
    pruned_retries   INTEGER NOT NULL DEFAULT 0
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
-- The webhooks of a trigger that have a state of their own. A configured one has a row
-- only once disabled (failing for its `disable_after`: new events for it go straight to
-- the dead-letter list until a redelivery enables it again). One a client registered
-- (POST /triggers/NAME/webhooks, named `wh_…`) has its url, its signing secret (sealed
-- under the master key) and the client that registered it.
CREATE TABLE trigger_subscribers (
    trigger_name TEXT NOT NULL,
    name         TEXT NOT NULL,
    disabled_at  INTEGER,
    url          TEXT,
    secret       BLOB,
    client_id    TEXT,
    created_at   INTEGER,
    PRIMARY KEY (trigger_name, name)
);
-- Triggers declared through the admin API (PUT /api/v1/triggers/NAME) rather than in
-- junction.toml: the section as JSON, without its webhooks' secrets, which are sealed
-- under the master key (a JSON object: webhook name to secret). Every replica runs them.
CREATE TABLE trigger_definitions (
    name       TEXT PRIMARY KEY NOT NULL,
    definition TEXT NOT NULL,
    secrets    BLOB,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
