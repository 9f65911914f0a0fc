-- Default /animate options: a channel's (set by its moderators) and a member's own (/settings).
-- A NULL option is not set at that level: the next level down decides.
CREATE TABLE option_defaults (
    scope        TEXT NOT NULL,
    scope_id     BIGINT NOT NULL,
    duration     INTEGER,
    aspect_ratio TEXT,
    motion       TEXT,
    version      TEXT,
    updated_by   BIGINT NOT NULL,
    updated_at   DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (scope, scope_id)
);
