-- The PostgreSQL schema means what migrations/sqlite/ means, file for file (same names, same
-- versions): a change lands in both directories under the same name. Times are unix seconds and
-- sizes bytes, both BIGINT; ids and names that listings order by are COLLATE "C", so pages sort
-- byte-wise as on SQLite whatever the database's locale.

-- Projects own everything. One default project exists until API keys and projects land.
CREATE TABLE projects (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
INSERT INTO projects (id, name, created_at) VALUES ('proj_default', 'Default project', 0);

-- A row exists only once its blob is durable (the blob is published first, then the row commits).
-- deleted_at marks a file that is gone for clients; its blob and row are purged afterwards.
CREATE TABLE files (
    id              TEXT COLLATE "C" PRIMARY KEY,
    project_id      TEXT COLLATE "C" NOT NULL REFERENCES projects(id),
    filename        TEXT NOT NULL,
    purpose         TEXT NOT NULL,
    bytes           BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT,
    status          TEXT NOT NULL,
    status_details  TEXT,
    storage_key     TEXT NOT NULL,
    deleted_at      BIGINT
);
-- Listing pages on (created_at, id): a total order, so ties within a second never skip or repeat.
CREATE INDEX files_by_project_created ON files (project_id, created_at, id);
CREATE INDEX files_by_expiry ON files (expires_at) WHERE expires_at IS NOT NULL AND deleted_at IS NULL;
CREATE INDEX files_deleted ON files (deleted_at) WHERE deleted_at IS NOT NULL;

CREATE TABLE uploads (
    id                  TEXT COLLATE "C" PRIMARY KEY,
    project_id          TEXT COLLATE "C" NOT NULL REFERENCES projects(id),
    filename            TEXT NOT NULL,
    purpose             TEXT NOT NULL,
    bytes               BIGINT NOT NULL,
    mime_type           TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    expires_at          BIGINT NOT NULL,
    status              TEXT NOT NULL,
    file_id             TEXT COLLATE "C",
    file_expires_after  BIGINT
);
CREATE INDEX uploads_pending_expiry ON uploads (expires_at) WHERE status = 'pending';
-- The reaper looks for finished uploads that still have parts.
CREATE INDEX uploads_finished ON uploads (id) WHERE status <> 'pending';

CREATE TABLE upload_parts (
    id           TEXT COLLATE "C" PRIMARY KEY,
    upload_id    TEXT COLLATE "C" NOT NULL REFERENCES uploads(id),
    project_id   TEXT COLLATE "C" NOT NULL REFERENCES projects(id),
    created_at   BIGINT NOT NULL,
    bytes        BIGINT NOT NULL,
    storage_key  TEXT NOT NULL
);
CREATE INDEX upload_parts_by_upload ON upload_parts (upload_id);
