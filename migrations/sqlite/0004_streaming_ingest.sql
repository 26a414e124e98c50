-- Chunks are written in batches as the text is chunked and embedded and indexed as they come, so
-- a file's chunking is only complete once this row says how many chunks it has.
CREATE TABLE file_chunkings (
    file_id   TEXT NOT NULL,
    chunking  TEXT NOT NULL,
    chunks    INTEGER NOT NULL,
    PRIMARY KEY (file_id, chunking)
);
-- Chunkings cached before this migration are complete (they were written in one transaction).
INSERT INTO file_chunkings (file_id, chunking, chunks)
    SELECT file_id, chunking, COUNT(*) FROM file_chunks GROUP BY file_id, chunking;

-- Ingestion progress of a file in a store: chunks in the index so far, and how many there will be
-- once chunking has finished.
ALTER TABLE vector_store_files ADD COLUMN chunks_indexed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE vector_store_files ADD COLUMN chunks_total INTEGER;
