-- Vector stores, the files attached to them, file batches, the ingestion job queue, and the
-- per-file caches (extracted text, chunks with their embeddings) that let a second store reuse a
-- file's work.

CREATE TABLE vector_stores (
    id                  TEXT PRIMARY KEY,
    project_id          TEXT NOT NULL REFERENCES projects(id),
    name                TEXT,
    description         TEXT,
    metadata            TEXT NOT NULL DEFAULT '{}',
    created_at          INTEGER NOT NULL,
    last_active_at      INTEGER NOT NULL,
    expires_after_days  INTEGER,
    deleted_at          INTEGER
);
CREATE INDEX vector_stores_by_project_created ON vector_stores (project_id, created_at, id);

-- A row per (store, file) while the file is in the store; detaching or deleting removes it.
CREATE TABLE vector_store_files (
    vector_store_id       TEXT NOT NULL REFERENCES vector_stores(id),
    file_id               TEXT NOT NULL,
    project_id            TEXT NOT NULL REFERENCES projects(id),
    batch_id              TEXT,
    created_at            INTEGER NOT NULL,
    status                TEXT NOT NULL,
    usage_bytes           INTEGER NOT NULL DEFAULT 0,
    chunk_max_tokens      INTEGER NOT NULL,
    chunk_overlap_tokens  INTEGER NOT NULL,
    attributes            TEXT NOT NULL DEFAULT '{}',
    last_error_code       TEXT,
    last_error_message    TEXT,
    PRIMARY KEY (vector_store_id, file_id)
);
CREATE INDEX vector_store_files_by_file ON vector_store_files (file_id);
CREATE INDEX vector_store_files_by_batch ON vector_store_files (batch_id) WHERE batch_id IS NOT NULL;
CREATE INDEX vector_store_files_list ON vector_store_files (vector_store_id, created_at, file_id);

CREATE TABLE file_batches (
    id               TEXT PRIMARY KEY,
    vector_store_id  TEXT NOT NULL REFERENCES vector_stores(id),
    project_id       TEXT NOT NULL REFERENCES projects(id),
    created_at       INTEGER NOT NULL,
    cancelled        INTEGER NOT NULL DEFAULT 0
);
-- Extracted text, once per file (status 'ok' with the blob key, or 'failed' with the reason).
CREATE TABLE file_texts (
    file_id        TEXT PRIMARY KEY,
    status         TEXT NOT NULL,
    storage_key    TEXT,
    format         TEXT,
    error_code     TEXT,
    error_message  TEXT,
    created_at     INTEGER NOT NULL
);

-- Chunks of a file under one chunking, shared by every store that uses the same chunking.
-- embedding is little-endian f32, written by the embed stage.
CREATE TABLE file_chunks (
    file_id      TEXT NOT NULL,
    chunking     TEXT NOT NULL,
    idx          INTEGER NOT NULL,
    text         TEXT NOT NULL,
    extra        TEXT NOT NULL DEFAULT '{}',
    embed_model  TEXT,
    embedding    BLOB,
    PRIMARY KEY (file_id, chunking, idx)
);

-- The durable job queue. Claimed with a lease (locked_by, locked_until); completion is fenced on
-- locked_by. Times are unix seconds.
CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    kind             TEXT NOT NULL,
    project_id       TEXT NOT NULL,
    file_id          TEXT,
    vector_store_id  TEXT,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    run_after        INTEGER NOT NULL,
    locked_by        TEXT,
    locked_until     INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX jobs_ready ON jobs (status, run_after, id);
CREATE INDEX jobs_by_file ON jobs (file_id, vector_store_id);
