-- Pending OAuth logins (authorization code + PKCE): one row per login URL handed out, taken
-- (deleted) by the callback. The PKCE verifier is sealed like every secret.
CREATE TABLE oauth_states (
    state      TEXT PRIMARY KEY NOT NULL,
    connection TEXT NOT NULL,
    verifier   BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
