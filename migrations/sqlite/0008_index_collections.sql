-- Where the vectors of each embedding model live: the embedded index in the data dir, or a
-- collection of a Qdrant server, with its dimensions. Written at the first start with a model;
-- a later start whose model, collection or dimensions disagree is refused before it writes.
CREATE TABLE index_collections (
    engine TEXT NOT NULL,
    model TEXT NOT NULL,
    collection TEXT NOT NULL,
    dims INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (engine, model)
);
