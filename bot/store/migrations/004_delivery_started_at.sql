-- When a result was first sent toward Discord: a restart that finds it set looks for
-- the message before sending again, so a crash between sending and recording the
-- delivery does not post the result twice.
ALTER TABLE jobs ADD COLUMN delivery_started_at DOUBLE PRECISION;
