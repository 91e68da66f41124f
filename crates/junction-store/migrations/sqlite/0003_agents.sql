-- Outbound agents (docs/agent.md): the gateway's own certificate authority (its key sealed
-- like every secret), single-use enrollment tokens (only their SHA-256 is kept) and the
-- agents they enrolled, known by the SHA-256 of their current certificate.
CREATE TABLE agent_ca (
    id         INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    cert       TEXT NOT NULL,
    key        BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE agent_tokens (
    hash       TEXT PRIMARY KEY NOT NULL,
    pool       TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE agents (
    id          TEXT PRIMARY KEY NOT NULL,
    pool        TEXT NOT NULL,
    name        TEXT NOT NULL,
    fingerprint TEXT NOT NULL UNIQUE,
    not_after   INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    renewed_at  INTEGER,
    last_seen   INTEGER,
    revoked_at  INTEGER
);
