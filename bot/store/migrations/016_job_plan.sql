-- The plan that admitted the job, and why it applied ("role <id>", "server default", ...), as
-- admission decided: the result's Info shows it, and a later change of plans does not rewrite it.
ALTER TABLE jobs ADD COLUMN plan TEXT;
ALTER TABLE jobs ADD COLUMN plan_why TEXT;
