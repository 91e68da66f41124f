-- Junction's store on PostgreSQL: connections, gateway clients, the audit log, key bookkeeping.
-- Times are Unix milliseconds; JSON documents are TEXT; sealed (encrypted) values are BYTEAs
-- written by junction-store's crypto module, never plain text.

CREATE TABLE junction_meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE connections (
    id               TEXT PRIMARY KEY NOT NULL,
    connector        TEXT NOT NULL,
    name             TEXT NOT NULL,
    parameter_set    TEXT,
    owner            TEXT,
    public_values    TEXT NOT NULL,
    secrets          BYTEA,
    tokens           BYTEA,
    token_expires_at BIGINT,
    refresh_lease    BIGINT,
    created_by       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE UNIQUE INDEX connections_name ON connections (connector, name);
CREATE INDEX connections_owner ON connections (owner, connector);

CREATE TABLE clients (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL UNIQUE,
    key_hash    TEXT UNIQUE,
    key_prefix  TEXT,
    subject     TEXT UNIQUE,
    grants      TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE audit (
    id      BIGSERIAL PRIMARY KEY,
    at      BIGINT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT,
    outcome TEXT NOT NULL,
    detail  TEXT NOT NULL
);
CREATE INDEX audit_at ON audit (at);
