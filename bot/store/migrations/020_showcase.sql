-- The showcase: a result that reaches a server's threshold of stars (distinct members, not its
-- requester) is reposted once to the server's showcase channel. Stars are kept per member, so
-- removing one counts down and a restart counts on; showcased_at makes the repost happen once.
ALTER TABLE guilds ADD COLUMN showcase_channel_id BIGINT;
ALTER TABLE guilds ADD COLUMN showcase_threshold INTEGER;
ALTER TABLE jobs ADD COLUMN showcased_at DOUBLE PRECISION;
CREATE TABLE stars (
    job_id   TEXT NOT NULL REFERENCES jobs (id),
    user_id  BIGINT NOT NULL,
    PRIMARY KEY (job_id, user_id)
);
CREATE INDEX jobs_by_result_message ON jobs (result_message_id);
