//! Files in vector stores: attach, list, retrieve, update attributes, detach, parsed content.

use super::vector_stores::{ListParams, StoreService};
use crate::db::Attached;
use crate::domain::{
    Attributes, Cascade, ChunkingStrategy, Error, FileBatchId, FileId, Page, ProjectId, Resource,
    Result, VectorStoreId, VectorStoreRecord, VsFileRecord, VsFileStatus,
};

/// `POST /vector_stores/{id}/files`, parsed.
#[derive(Debug, Clone)]
pub struct AttachFile {
    pub file_id: FileId,
    pub attributes: Attributes,
    pub chunking: ChunkingStrategy,
}

/// One page of a file's parsed content: its chunks in order, from a chunk index on.
#[derive(Debug, Clone)]
pub struct ContentPage {
    pub chunks: Vec<ContentChunk>,
    pub has_more: bool,
    pub next_page: Option<String>,
    /// What `include_metadata` shows: the file's name and its attributes in this store.
    pub filename: String,
    pub attributes: Attributes,
    /// The model and dimensions of `embedding` (and of the chunks in the index).
    pub model: String,
    pub dims: usize,
}

/// One chunk of a file's content.
#[derive(Debug, Clone)]
pub struct ContentChunk {
    pub index: u32,
    pub text: String,
    /// Where it is in the document (page, section), when known.
    pub location: serde_json::Map<String, serde_json::Value>,
    /// Its vector from the server's model, when asked for and embedded.
    pub embedding: Option<Vec<f32>>,
}

/// What a content page holds at most, by default: this much text (and vectors, when asked for,
/// counted as their JSON). An ordinary document fits in one page, which is all the SDKs read.
pub const CONTENT_PAGE_BYTES: usize = 8 << 20;
/// Chunks read from the database at a time while filling a page.
const CONTENT_READ_BATCH: u32 = 256;

/// A content page being filled: chunks are taken while they fit in the byte budget (the first
/// always fits) and the chunk limit.
struct PageFill {
    budget: usize,
    max: usize,
    /// Bytes each chunk's vector adds.
    per_chunk: usize,
    bytes: usize,
    chunks: Vec<ContentChunk>,
}

impl PageFill {
    fn new(budget: usize, limit: Option<u32>, per_chunk: usize) -> Self {
        Self {
            budget,
            max: limit.map_or(usize::MAX, |l| l as usize),
            per_chunk,
            bytes: 0,
            chunks: Vec::new(),
        }
    }

    /// Takes the chunk if the page has room for it; `false` (not taken) once it is full.
    fn offer(&mut self, r: crate::db::ChunkRow) -> bool {
        let size = r.text.len() + self.per_chunk;
        let full = self.chunks.len() >= self.max
            || (!self.chunks.is_empty() && self.bytes + size > self.budget);
        if full {
            return false;
        }
        self.bytes += size;
        self.chunks.push(ContentChunk {
            index: r.idx,
            text: r.text,
            location: r.extra,
            embedding: r.embedding,
        });
        true
    }
}

impl StoreService {
    pub async fn attach(
        &self,
        project: &ProjectId,
        store_id: &VectorStoreId,
        req: AttachFile,
    ) -> Result<VsFileRecord> {
        let store = self.record(project, store_id).await?;
        let now = self.clock.now();
        let (row, job) = Self::new_attachment(
            &store,
            &req.file_id,
            None,
            self.chunking(req.chunking),
            req.attributes,
            now,
        );
        let max_files = self.auth.quotas(project).await?.files_per_store;
        match self.meta.attach_file(&row, &job, now, max_files).await? {
            Attached::New(r) => {
                self.wakeup.wake();
                Ok(r)
            }
            Attached::Existing(r) => Ok(r),
            // Deleted (or never there): whichever of the two is gone answers 404.
            Attached::Gone => {
                self.record(project, store_id).await?;
                Err(Error::not_found(Resource::File, req.file_id.as_str()))
            }
        }
    }

    async fn row(
        &self,
        project: &ProjectId,
        store_id: &VectorStoreId,
        file_id: &FileId,
    ) -> Result<(VectorStoreRecord, VsFileRecord)> {
        let store = self.record(project, store_id).await?;
        let row = self
            .meta
            .get_vs_file(&store.id, file_id)
            .await?
            .ok_or_else(|| Error::not_found(Resource::VectorStoreFile, file_id.as_str()))?;
        Ok((store, row))
    }

    pub async fn get_file(
        &self,
        project: &ProjectId,
        store_id: &VectorStoreId,
        file_id: &FileId,
    ) -> Result<VsFileRecord> {
        Ok(self.row(project, store_id, file_id).await?.1)
    }

    /// A page of a store's files, or of one batch's.
    pub async fn list_files(
        &self,
        project: &ProjectId,
        store_id: &VectorStoreId,
        batch: Option<&FileBatchId>,
        status: Option<VsFileStatus>,
        p: ListParams<FileId>,
    ) -> Result<Page<VsFileRecord>> {
        let store = self.record(project, store_id).await?;
        if let Some(b) = batch {
            self.batch_record(&store, b).await?;
        }
        let w = self
            .window(&p, |id| {
                let store = &store.id;
                async move { self.meta.vs_file_position(store, &id).await }
            })
            .await?;
        let rows = self
            .meta
            .list_vs_files(&store.id, batch, status, &w)
            .await?;
        Ok(Page::from_overfetch(rows, p.limit))
    }

    /// Replaces the attributes: visible to filters at once, no re-embedding.
    pub async fn update_file(
        &self,
        project: &ProjectId,
        store_id: &VectorStoreId,
        file_id: &FileId,
        attributes: Attributes,
    ) -> Result<VsFileRecord> {
        let (store, mut row) = self.row(project, store_id, file_id).await?;
        self.meta
            .set_vs_file_attributes(&store.id, &row.file_id, &attributes)
            .await?;
        self.index
            .set_attributes(&store.id, &row.file_id, &attributes)
            .await?;
        row.attributes = attributes;
        Ok(row)
    }

    pub async fn detach(
        &self,
        project: &ProjectId,
        store_id: &VectorStoreId,
        file_id: &FileId,
    ) -> Result<FileId> {
        let (store, row) = self.row(project, store_id, file_id).await?;
        let cascade = Cascade::file_detached(project, &store.id, &row.file_id);
        self.meta
            .detach_file(&store.id, &row.file_id, &cascade, self.clock.now())
            .await?
            .ok_or_else(|| Error::not_found(Resource::VectorStoreFile, file_id.as_str()))?;
        self.wakeup.wake();
        Ok(row.file_id)
    }

    /// One page of a file's parsed chunks, from chunk `offset`: as many as fit in
    /// [`CONTENT_PAGE_BYTES`] (at least one), and at most `limit` when one is given.
    pub async fn content(
        &self,
        project: &ProjectId,
        store_id: &VectorStoreId,
        file_id: &FileId,
        offset: u32,
        limit: Option<u32>,
        embeddings: bool,
    ) -> Result<ContentPage> {
        let (_, row) = self.row(project, store_id, file_id).await?;
        let file = self
            .meta
            .get_file(project, file_id, self.clock.now())
            .await?
            .ok_or_else(|| Error::not_found(Resource::VectorStoreFile, file_id.as_str()))?;
        let vectors_id = crate::ingest::chunk_vectors_id(&*self.embedder);
        let vectors_of = embeddings.then_some(vectors_id.as_str());
        // A vector costs about 12 bytes of JSON a dimension.
        let vector_bytes = if embeddings {
            self.embedder.dims() * 12
        } else {
            0
        };
        let mut fill = PageFill::new(CONTENT_PAGE_BYTES, limit, vector_bytes);
        let mut next = offset;
        let has_more = 'fill: loop {
            let rows = self
                .meta
                .get_chunks(
                    &row.file_id,
                    &row.chunking,
                    next,
                    CONTENT_READ_BATCH,
                    vectors_of,
                )
                .await?;
            let last_batch = rows.len() < CONTENT_READ_BATCH as usize;
            for r in rows {
                next = r.idx;
                if !fill.offer(r) {
                    break 'fill true;
                }
                next += 1;
            }
            if last_batch {
                break false;
            }
        };
        let chunks = fill.chunks;
        Ok(ContentPage {
            chunks,
            has_more,
            next_page: has_more.then(|| next.to_string()),
            filename: file.filename,
            attributes: row.attributes,
            model: self.embedder.model().to_owned(),
            dims: self.embedder.dims(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::ChunkRow;

    fn row(idx: u32, len: usize) -> ChunkRow {
        ChunkRow {
            idx,
            text: "x".repeat(len),
            extra: serde_json::Map::new(),
            embedding: None,
        }
    }

    #[test]
    fn a_page_holds_what_fits_in_its_bytes_and_limit() {
        let mut fill = PageFill::new(100, None, 0);
        assert!(fill.offer(row(0, 60)));
        assert!(fill.offer(row(1, 40)));
        assert!(!fill.offer(row(2, 1)), "100 bytes are full");
        assert_eq!(fill.chunks.len(), 2);

        // The first chunk is taken whatever its size, so paging always moves on.
        let mut fill = PageFill::new(100, None, 0);
        assert!(fill.offer(row(0, 500)));
        assert!(!fill.offer(row(1, 1)));

        // Vectors count towards the page.
        let mut fill = PageFill::new(100, None, 30);
        assert!(fill.offer(row(0, 10)));
        assert!(fill.offer(row(1, 10)));
        assert!(!fill.offer(row(2, 10)), "3 x 40 bytes is over 100");

        let mut fill = PageFill::new(1 << 20, Some(2), 0);
        assert!(fill.offer(row(0, 1)));
        assert!(fill.offer(row(1, 1)));
        assert!(!fill.offer(row(2, 1)), "the limit is 2 chunks");
    }
}
