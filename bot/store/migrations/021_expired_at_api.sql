-- A job we stopped waiting for (expired) while the API had it may still finish there and be
-- billed: the poller follows such jobs until their end is seen, so their pool pays the bill.
CREATE INDEX jobs_expired_at_api ON jobs (submitted_at)
    WHERE outcome = 'expired' AND api_job_id IS NOT NULL AND api_ended_at IS NULL;
