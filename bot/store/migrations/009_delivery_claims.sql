-- Which process delivers a finished job, and until when its claim holds (the database's
-- clock, Unix seconds). Any process may deliver; a claim whose owner died runs out and the
-- job is claimed again (delivery_started_at then makes the next owner look before resending).
ALTER TABLE jobs ADD COLUMN delivery_owner TEXT;
ALTER TABLE jobs ADD COLUMN delivery_lease_until DOUBLE PRECISION;
