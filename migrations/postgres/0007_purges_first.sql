-- Purges are claimed before other queued work: this finds the oldest due purge without
-- walking the ingestion backlog.
CREATE INDEX jobs_ready_purges ON jobs (run_after, id)
    WHERE status = 'queued' AND kind IN ('purge_file', 'purge_vs_file', 'purge_store');
-- Every search excludes the files whose points await a purge in its store.
CREATE INDEX jobs_pending_purges ON jobs (vector_store_id)
    WHERE status IN ('queued', 'running') AND kind IN ('purge_file', 'purge_vs_file');
-- At most one live keyword-indexing job per store, however many replicas start at once and
-- queue one (`enqueue_keyword_index` inserts with ON CONFLICT DO NOTHING).
CREATE UNIQUE INDEX jobs_one_keyword_index_per_store ON jobs (vector_store_id)
    WHERE kind = 'index_keywords' AND status IN ('queued', 'running', 'stopping');
