-- Results as spoilers: in the channels a server's moderators chose, and, when the server says so,
-- in every channel Discord marks age-restricted. Decided at admission and kept on the job.
CREATE TABLE channel_spoilers (
    guild_id    BIGINT NOT NULL,
    channel_id  BIGINT PRIMARY KEY
);
ALTER TABLE guilds ADD COLUMN spoil_age_restricted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN spoiler INTEGER NOT NULL DEFAULT 0;
