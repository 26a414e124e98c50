-- llama-stack's upload sessions: a file written by appending to an upload under a bucket and key.
-- The object exists once its upload is completed (uploads.file_id) and while that file is.
CREATE TABLE bucket_objects (
    project_id  TEXT COLLATE "C" NOT NULL REFERENCES projects(id),
    bucket      TEXT COLLATE "C" NOT NULL,
    key         TEXT COLLATE "C" NOT NULL,
    upload_id   TEXT COLLATE "C" NOT NULL REFERENCES uploads(id),
    mime_type   TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (project_id, bucket, key)
);
CREATE UNIQUE INDEX bucket_objects_by_upload ON bucket_objects (upload_id);

-- Where each part starts in its upload: a session's parts are assembled in this order.
ALTER TABLE upload_parts ADD COLUMN position BIGINT;
