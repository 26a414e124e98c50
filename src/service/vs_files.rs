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

/// One page of a file's parsed content.
#[derive(Debug, Clone)]
pub struct ContentPage {
    pub texts: Vec<String>,
    pub has_more: bool,
    pub next_page: Option<String>,
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
        match self.meta.attach_file(&row, &job, now).await? {
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

    /// One page of a file's parsed chunks, from chunk `offset`.
    pub async fn content(
        &self,
        project: &ProjectId,
        store_id: &VectorStoreId,
        file_id: &FileId,
        offset: u32,
        limit: u32,
    ) -> Result<ContentPage> {
        let (_, row) = self.row(project, store_id, file_id).await?;
        let rows = self
            .meta
            .get_chunks(&row.file_id, &row.chunking, offset, limit + 1, None)
            .await?;
        let has_more = rows.len() > limit as usize;
        let texts = rows
            .into_iter()
            .take(limit as usize)
            .map(|r| r.text)
            .collect();
        Ok(ContentPage {
            texts,
            has_more,
            next_page: has_more.then(|| (offset + limit).to_string()),
        })
    }
}
