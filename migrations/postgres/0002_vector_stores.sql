-- Vector stores, the files attached to them, file batches, the ingestion job queue, and the
-- per-file caches (extracted text, chunks with their embeddings) that let a second store reuse a
-- file's work.

CREATE TABLE vector_stores (
    id                  TEXT COLLATE "C" PRIMARY KEY,
    project_id          TEXT COLLATE "C" NOT NULL REFERENCES projects(id),
    name                TEXT,
    description         TEXT,
    metadata            JSONB NOT NULL DEFAULT '{}',
    created_at          BIGINT NOT NULL,
    last_active_at      BIGINT NOT NULL,
    expires_after_days  BIGINT,
    deleted_at          BIGINT
);
CREATE INDEX vector_stores_by_project_created ON vector_stores (project_id, created_at, id);

-- A row per (store, file) while the file is in the store; detaching or deleting removes it.
CREATE TABLE vector_store_files (
    vector_store_id       TEXT COLLATE "C" NOT NULL REFERENCES vector_stores(id),
    file_id               TEXT COLLATE "C" NOT NULL,
    project_id            TEXT COLLATE "C" NOT NULL REFERENCES projects(id),
    batch_id              TEXT COLLATE "C",
    created_at            BIGINT NOT NULL,
    status                TEXT NOT NULL,
    usage_bytes           BIGINT NOT NULL DEFAULT 0,
    chunk_max_tokens      BIGINT NOT NULL,
    chunk_overlap_tokens  BIGINT NOT NULL,
    attributes            JSONB NOT NULL DEFAULT '{}',
    last_error_code       TEXT,
    last_error_message    TEXT,
    PRIMARY KEY (vector_store_id, file_id)
);
CREATE INDEX vector_store_files_by_file ON vector_store_files (file_id);
CREATE INDEX vector_store_files_by_batch ON vector_store_files (batch_id) WHERE batch_id IS NOT NULL;
CREATE INDEX vector_store_files_list ON vector_store_files (vector_store_id, created_at, file_id);

CREATE TABLE file_batches (
    id               TEXT COLLATE "C" PRIMARY KEY,
    vector_store_id  TEXT COLLATE "C" NOT NULL REFERENCES vector_stores(id),
    project_id       TEXT COLLATE "C" NOT NULL REFERENCES projects(id),
    created_at       BIGINT NOT NULL,
    cancelled        BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX file_batches_by_store ON file_batches (vector_store_id);

-- Extracted text, once per file (status 'ok' with the blob key, or 'failed' with the reason).
CREATE TABLE file_texts (
    file_id        TEXT COLLATE "C" PRIMARY KEY,
    status         TEXT NOT NULL,
    storage_key    TEXT,
    format         TEXT,
    error_code     TEXT,
    error_message  TEXT,
    created_at     BIGINT NOT NULL
);

-- Chunks of a file under one chunking, shared by every store that uses the same chunking.
-- embedding is little-endian f32 as on SQLite (BYTEA rather than REAL[]: a batch of vectors
-- goes in as one BYTEA[] parameter, which UNNEST spreads over rows; REAL[][] would flatten).
CREATE TABLE file_chunks (
    file_id      TEXT COLLATE "C" NOT NULL,
    chunking     TEXT COLLATE "C" NOT NULL,
    idx          BIGINT NOT NULL,
    text         TEXT NOT NULL,
    extra        JSONB NOT NULL DEFAULT '{}',
    embed_model  TEXT,
    embedding    BYTEA,
    PRIMARY KEY (file_id, chunking, idx)
);

-- The durable job queue. Claimed with a lease (locked_by, locked_until) by
-- `FOR UPDATE SKIP LOCKED`; completion is fenced on locked_by. Times are unix seconds.
CREATE TABLE jobs (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind             TEXT COLLATE "C" NOT NULL,
    project_id       TEXT COLLATE "C" NOT NULL,
    file_id          TEXT COLLATE "C",
    vector_store_id  TEXT COLLATE "C",
    status           TEXT COLLATE "C" NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    run_after        BIGINT NOT NULL,
    locked_by        TEXT,
    locked_until     BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
-- The claim: the oldest due queued job, found without walking finished ones.
CREATE INDEX jobs_ready ON jobs (run_after, id) WHERE status = 'queued';
CREATE INDEX jobs_by_file ON jobs (file_id, vector_store_id);
CREATE INDEX jobs_by_store ON jobs (vector_store_id) WHERE vector_store_id IS NOT NULL;
-- What a claim's wait check and the lease reaper read: the few leased jobs.
CREATE INDEX jobs_leased ON jobs (locked_until) WHERE status IN ('running', 'stopping');

-- Every job that becomes runnable (written queued, or put back in the queue) wakes idle workers
-- in every process: a notification on 'ragstore_jobs', sent when (and only if) the transaction
-- that wrote the job commits. Each process LISTENs on one connection (src/db/postgres/listen.rs).
CREATE FUNCTION ragstore_notify_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ragstore_jobs', NEW.id::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_queued_notify AFTER INSERT ON jobs
    FOR EACH ROW WHEN (NEW.status = 'queued') EXECUTE FUNCTION ragstore_notify_job();
CREATE TRIGGER jobs_requeued_notify AFTER UPDATE OF status ON jobs
    FOR EACH ROW WHEN (NEW.status = 'queued' AND OLD.status <> 'queued')
    EXECUTE FUNCTION ragstore_notify_job();
