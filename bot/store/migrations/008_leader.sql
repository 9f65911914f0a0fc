-- The leader's lease: one row, renewed by the process holding the leader's advisory lock
-- (PostgreSQL). term grows by one at each takeover: leader-only writes check it in their
-- own transaction, so a frozen leader that wakes after a takeover changes nothing.
-- renewed_at is the database's clock (Unix seconds), which every process shares.
-- backend_pid is the leader's lock connection, which a follower ends once the lease is out.
CREATE TABLE leader (
    name TEXT PRIMARY KEY,
    term BIGINT NOT NULL,
    holder TEXT NOT NULL,
    backend_pid INTEGER,
    renewed_at DOUBLE PRECISION NOT NULL
);
