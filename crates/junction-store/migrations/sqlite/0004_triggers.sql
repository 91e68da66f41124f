-- Triggers the gateway runs (docs/triggers.md): each one's cursor (the Location to poll
-- next), when it polls next, whether it is paused and which replica holds it (a lease);
-- and the events its polls found, each stored once (unique per trigger by its
-- deduplication key), numbered in the order they were stored.
CREATE TABLE triggers (
    name         TEXT PRIMARY KEY NOT NULL,
    location     TEXT,
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
