-- Why submitting to the API is paused when only the operator can fix it (the account is out
-- of credits, the key was refused). The leader writes it; /pool resume, run in ANY process,
-- clears it and wakes the leader, which finds it gone and resumes. One row at most.
-- paused_at is the database's clock (Unix seconds).
CREATE TABLE submit_pause (
    name TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    paused_at DOUBLE PRECISION NOT NULL
);
