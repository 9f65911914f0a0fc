-- Where the bot posts a server's moderation events (refused prompts, deletions, blocks, top-ups,
-- quota changes): /modlog channel. NULL: nowhere (the audit table keeps them either way).
ALTER TABLE guilds ADD COLUMN modlog_channel_id BIGINT;
