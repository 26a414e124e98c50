-- Purges are claimed before other queued work: this finds the oldest due purge without
-- walking the ingestion backlog.
CREATE INDEX jobs_ready_by_kind ON jobs (status, kind, run_after, id);
