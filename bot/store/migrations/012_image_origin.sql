-- Where a job's picture came from, so Animate again fetches it the same way: 'attachment' (a
-- Discord upload), 'link' (a member's URL: fetched from public addresses only) or 'file' (the
-- CLI's local file).
ALTER TABLE jobs ADD COLUMN image_origin TEXT NOT NULL DEFAULT 'attachment';
UPDATE jobs SET image_origin = 'file' WHERE source = 'cli';
