-- A server's prompt filter: words and patterns its moderators will not have animated
-- (bot/community/prompt_filter.py matches them). The bot-wide list is a file, not rows.
CREATE TABLE prompt_rules (
    id          INTEGER PRIMARY KEY,
    guild_id    BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    text        TEXT NOT NULL,
    added_by    BIGINT NOT NULL,
    created_at  DOUBLE PRECISION NOT NULL
);
CREATE UNIQUE INDEX prompt_rules_once ON prompt_rules (guild_id, kind, text);
