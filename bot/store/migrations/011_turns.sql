-- Turns that processes sharing the store take one at a time, at most one per name per window:
-- Discord's identify buckets (one IDENTIFY per bucket per 5 s for the whole bot, whichever
-- process sends it). free_at is the database's clock (Unix seconds), which every process shares.
CREATE TABLE turns (
    name TEXT PRIMARY KEY,
    free_at DOUBLE PRECISION NOT NULL
);
