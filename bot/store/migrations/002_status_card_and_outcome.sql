-- Where the status card lives, so it can be edited with the bot's own token after the
-- 15-minute interaction token has expired; and the upload limit of that interaction.
ALTER TABLE jobs ADD COLUMN status_channel_id BIGINT;
ALTER TABLE jobs ADD COLUMN status_message_id BIGINT;
ALTER TABLE jobs ADD COLUMN upload_limit BIGINT;
-- How the job ended (completed, failed, cancelled, expired): kept after 'delivered' so
-- quotas count only what the person was actually served.
ALTER TABLE jobs ADD COLUMN outcome TEXT;
ALTER TABLE jobs ADD COLUMN delivery_note TEXT;
CREATE INDEX jobs_by_api_id ON jobs (api_job_id);
