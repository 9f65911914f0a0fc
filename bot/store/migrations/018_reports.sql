-- Where a job's result was posted (to delete it later from the mod log), and members' reports
-- of results: one per member and result.
ALTER TABLE jobs ADD COLUMN result_channel_id BIGINT;
ALTER TABLE jobs ADD COLUMN result_message_id BIGINT;
CREATE TABLE reports (
    job_id       TEXT NOT NULL REFERENCES jobs (id),
    reporter_id  BIGINT NOT NULL,
    created_at   DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (job_id, reporter_id)
);
