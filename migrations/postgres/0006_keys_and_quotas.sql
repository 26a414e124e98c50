-- API keys and per-project quotas (NULL = the server's default).
ALTER TABLE projects ADD COLUMN quota_stored_bytes BIGINT;
ALTER TABLE projects ADD COLUMN quota_files_per_store BIGINT;
ALTER TABLE projects ADD COLUMN quota_stores BIGINT;
-- The project that held everything before keys: `ragstore keys create --project default` gives
-- a key to the data already there.
UPDATE projects SET name = 'default' WHERE id = 'proj_default';
CREATE UNIQUE INDEX projects_by_name ON projects (name);

-- Only the SHA-256 of a key is kept; the key itself is shown once, when it is created.
CREATE TABLE api_keys (
    id          TEXT COLLATE "C" PRIMARY KEY,
    project_id  TEXT COLLATE "C" NOT NULL REFERENCES projects(id),
    name        TEXT,
    hash        BYTEA NOT NULL,
    hint        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX api_keys_live ON api_keys (revoked_at);

-- Quota checks count a project's live files and stores, and a store's files.
CREATE INDEX files_live_by_project ON files (project_id, bytes) WHERE deleted_at IS NULL;
CREATE INDEX vector_stores_live_by_project ON vector_stores (project_id) WHERE deleted_at IS NULL;
