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
