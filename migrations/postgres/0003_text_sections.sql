-- Where each part of a file's extracted text came from (JSON list of {start, location}), so
-- chunks made later, under any chunking, still know their page, sheet or section.
ALTER TABLE file_texts ADD COLUMN sections JSONB NOT NULL DEFAULT '[]';
