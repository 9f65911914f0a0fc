-- One row per server: its default plan, its credit pool and the pool's alert settings.
-- The balance always equals the sum of the server's ledger (both change together).
CREATE TABLE guilds (
    guild_id              BIGINT PRIMARY KEY,
    default_plan          TEXT,
    balance               BIGINT NOT NULL DEFAULT 0 CHECK (balance >= 0),
    daily_allowance       BIGINT,
    low_balance_threshold BIGINT,
    alert_channel_id      BIGINT,
    alert_armed           INTEGER NOT NULL DEFAULT 1,
    created_at            DOUBLE PRECISION NOT NULL
);
CREATE TABLE role_plans (guild_id BIGINT NOT NULL, role_id BIGINT NOT NULL, plan TEXT NOT NULL, PRIMARY KEY (guild_id, role_id));
CREATE TABLE member_rules (
    guild_id  BIGINT NOT NULL,
    user_id   BIGINT NOT NULL,
    plan      TEXT,
    blocked   INTEGER NOT NULL DEFAULT 0,
    reason    TEXT,
    reset_at  DOUBLE PRECISION,
    PRIMARY KEY (guild_id, user_id)
);
CREATE TABLE channel_rules (guild_id BIGINT NOT NULL, channel_id BIGINT NOT NULL, allowed INTEGER NOT NULL, PRIMARY KEY (guild_id, channel_id));
CREATE TABLE ledger (
    id          INTEGER PRIMARY KEY,
    guild_id    BIGINT NOT NULL,
    job_id      TEXT REFERENCES jobs (id),
    user_id     BIGINT,
    kind        TEXT NOT NULL,
    amount      BIGINT NOT NULL,
    note        TEXT,
    created_at  DOUBLE PRECISION NOT NULL
);
-- A job is reserved once and settled once, whatever path reports its end.
CREATE UNIQUE INDEX ledger_once ON ledger (job_id, kind) WHERE job_id IS NOT NULL;
CREATE INDEX ledger_by_guild ON ledger (guild_id, created_at);
CREATE INDEX ledger_by_member ON ledger (guild_id, user_id, created_at);
CREATE TABLE audit (
    id          INTEGER PRIMARY KEY,
    guild_id    BIGINT NOT NULL,
    actor_id    BIGINT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT,
    detail      TEXT,
    created_at  DOUBLE PRECISION NOT NULL
);
CREATE INDEX audit_by_guild ON audit (guild_id, created_at);
