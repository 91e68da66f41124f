-- Webhooks that clients register with a trigger (POST /triggers/NAME/webhooks): where
-- its events go (url), the signing secret (sealed under the master key) and the client
-- that registered it. A configured webhook has no url here: its row only records that
-- it is disabled.
ALTER TABLE trigger_subscribers ADD COLUMN url TEXT;
ALTER TABLE trigger_subscribers ADD COLUMN secret BLOB;
ALTER TABLE trigger_subscribers ADD COLUMN client_id TEXT;
ALTER TABLE trigger_subscribers ADD COLUMN created_at INTEGER;
