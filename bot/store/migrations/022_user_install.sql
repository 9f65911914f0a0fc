-- A job asked where the bot is not (a server that did not install it, or a group DM): the
-- member's own install of the app authorized it. It is paid and counted like a DM job
-- (guild_id stays NULL: no server's pool, rules or windows), answered through the interaction
-- token while it lives, then by DM (never in the channel: the bot cannot post there).
-- asked_in_guild_id is the server it was used in, for display only.
ALTER TABLE jobs ADD COLUMN user_install INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN asked_in_guild_id BIGINT;
