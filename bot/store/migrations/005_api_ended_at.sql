-- The API has no cancel call: a job cancelled while it ran keeps one of the account's
-- slots until the API ends it. This records when it did, so the scheduler counts it.
ALTER TABLE jobs ADD COLUMN api_ended_at DOUBLE PRECISION;
CREATE INDEX jobs_cancelled_at_api ON jobs (submitted_at)
    WHERE state = 'cancelled' AND api_job_id IS NOT NULL AND api_ended_at IS NULL;
