-- The UNIQUE constraint on api_job_id already indexes it; the copy only cost every
-- insert and every submit one more page write.
DROP INDEX jobs_by_api_id;
