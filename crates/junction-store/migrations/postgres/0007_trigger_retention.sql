-- Retention (`[trigger.NAME] keep`): events older than that whose every delivery was made
-- are deleted. What they counted stays counted here, so that the trigger's totals (events,
-- deliveries made, retries) never go down.
ALTER TABLE triggers ADD COLUMN pruned_events BIGINT NOT NULL DEFAULT 0;
ALTER TABLE triggers ADD COLUMN pruned_delivered BIGINT NOT NULL DEFAULT 0;
ALTER TABLE triggers ADD COLUMN pruned_retries BIGINT NOT NULL DEFAULT 0;
