-- Chunks are written in batches as the text is chunked and embedded and indexed as they come, so
-- a file's chunking is only complete once this row says how many chunks it has.
CREATE TABLE file_chunkings (
    file_id   TEXT COLLATE "C" NOT NULL,
    chunking  TEXT COLLATE "C" NOT NULL,
    chunks    BIGINT NOT NULL,
    PRIMARY KEY (file_id, chunking)
);

-- Ingestion progress of a file in a store: chunks in the index so far, and how many there will be
-- once chunking has finished.
ALTER TABLE vector_store_files ADD COLUMN chunks_indexed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE vector_store_files ADD COLUMN chunks_total BIGINT;
