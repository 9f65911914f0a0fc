-- Pictures kept after they were checked, so a job can still be submitted, or animated again,
-- once its Discord attachment URL has expired (signed URLs last about a day). Bounded by age
-- and by total size (PICTURE_KEEP_HOURS, PICTURE_KEEP_MB); the least recently used go first.
-- BYTEA is PostgreSQL's binary type; SQLite keeps bytes as a BLOB under any column type.
CREATE TABLE pictures (
    sha256   TEXT PRIMARY KEY,
    data     BYTEA NOT NULL,
    mime     TEXT NOT NULL,
    size     BIGINT NOT NULL,
    used_at  DOUBLE PRECISION NOT NULL
);
CREATE INDEX pictures_by_use ON pictures (used_at);
ALTER TABLE jobs ADD COLUMN image_sha256 TEXT;
