//! Vector stores: create, list, retrieve, modify, delete. Their files and batches are in
//! `vs_files` and `file_batches`, on the same [`StoreService`].

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::clock::Clock;
use crate::db::{ListWindow, Metadata, Position, Wakeup};
use crate::domain::{
    Attributes, Cascade, Chunking, ChunkingStrategy, Error, FileBatchId, FileCounts, FileId,
    JobKind, NewJob, Order, Page, ProjectId, Resource, Result, VectorStoreId, VectorStoreRecord,
    VsFileRecord, VsFileStatus,
};
use crate::index::VectorIndex;

/// Vector stores, the files in them and file batches.
#[derive(Clone)]
pub struct StoreService {
    pub(super) meta: Arc<dyn Metadata>,
    pub(super) index: Arc<dyn VectorIndex>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) wakeup: Wakeup,
    /// The chunk size `auto` means: the embedding model's window.
    auto_chunk_tokens: u32,
    /// The model whose vectors a file's content shows (`include_embeddings`).
    pub(super) embedder: Arc<dyn crate::ingest::embed::Embedder>,
    /// Quotas of projects.
    pub(super) auth: super::auth::AuthService,
}

/// A store with what its object shows.
#[derive(Debug, Clone)]
pub struct StoreView {
    pub store: VectorStoreRecord,
    pub counts: FileCounts,
    pub usage_bytes: i64,
    pub expired: bool,
}

impl StoreView {
    pub fn status(&self) -> &'static str {
        if self.expired {
            "expired"
        } else if self.counts.in_progress > 0 {
            "in_progress"
        } else {
            "completed"
        }
    }
}

/// A listing's parsed parameters: `limit` (already checked), `order`, and cursors.
#[derive(Debug, Clone)]
pub struct ListParams<Id> {
    pub limit: u32,
    pub order: Order,
    pub after: Option<Id>,
    pub before: Option<Id>,
}

/// `POST /vector_stores`, parsed.
#[derive(Debug, Clone, Default)]
pub struct CreateStore {
    pub name: Option<String>,
    pub description: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub expires_after_days: Option<i64>,
    pub chunking: ChunkingStrategy,
    pub file_ids: Vec<FileId>,
}

/// `POST /vector_stores/{id}`, parsed: `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ModifyStore {
    pub name: Option<Option<String>>,
    pub metadata: Option<BTreeMap<String, String>>,
    pub expires_after_days: Option<Option<i64>>,
}

pub const MAX_FILE_IDS: usize = 500;

impl StoreService {
    pub fn new(
        meta: Arc<dyn Metadata>,
        index: Arc<dyn VectorIndex>,
        clock: Arc<dyn Clock>,
        wakeup: Wakeup,
        auto_chunk_tokens: u32,
        embedder: Arc<dyn crate::ingest::embed::Embedder>,
        auth: super::auth::AuthService,
    ) -> Self {
        Self {
            meta,
            index,
            clock,
            wakeup,
            auto_chunk_tokens,
            embedder,
            auth,
        }
    }

    /// llama-stack's `embedding_model` / `embedding_dimension` on a new store: this server's
    /// model (and its dimension) or a clear refusal.
    pub fn check_embedding(&self, model: Option<&str>, dims: Option<i64>) -> Result<()> {
        if let Some(m) = model {
            super::embeddings::check_model(self.embedder.model(), m)?;
        }
        match dims {
            Some(d) if d != self.embedder.dims() as i64 => Err(crate::domain::Error::invalid(
                format!(
                    "Invalid value for 'embedding_dimension': {d}. This server's model, {}, makes {}-dimensional vectors.",
                    self.embedder.model(),
                    self.embedder.dims()
                ),
                "embedding_dimension",
            )),
            _ => Ok(()),
        }
    }

    pub(super) fn chunking(&self, strategy: ChunkingStrategy) -> Chunking {
        strategy.resolve(self.auto_chunk_tokens)
    }

    async fn view(&self, store: VectorStoreRecord) -> Result<StoreView> {
        let (counts, usage_bytes) = self.meta.store_stats(&store.id).await?;
        let expired = store.is_expired(self.clock.now());
        Ok(StoreView {
            store,
            counts,
            usage_bytes,
            expired,
        })
    }

    pub(super) async fn record(
        &self,
        project: &ProjectId,
        id: &VectorStoreId,
    ) -> Result<VectorStoreRecord> {
        self.meta
            .get_vector_store(project, id)
            .await?
            .ok_or_else(|| Error::not_found(Resource::VectorStore, id.as_str()))
    }

    pub async fn get(&self, project: &ProjectId, id: &VectorStoreId) -> Result<StoreView> {
        let store = self.record(project, id).await?;
        self.view(store).await
    }

    /// The file must exist (visible) in the project; the attach itself checks again, atomically.
    pub(super) async fn check_attachable(&self, project: &ProjectId, file: &FileId) -> Result<()> {
        self.meta
            .get_file(project, file, self.clock.now())
            .await?
            .map(|_| ())
            .ok_or_else(|| Error::not_found(Resource::File, file.as_str()))
    }

    pub(super) fn new_attachment(
        store: &VectorStoreRecord,
        file: &FileId,
        batch: Option<&FileBatchId>,
        chunking: Chunking,
        attributes: Attributes,
        now: i64,
    ) -> (VsFileRecord, NewJob) {
        (
            VsFileRecord {
                vector_store_id: store.id.clone(),
                file_id: file.clone(),
                project_id: store.project_id.clone(),
                batch_id: batch.cloned(),
                created_at: now,
                status: VsFileStatus::InProgress,
                usage_bytes: 0,
                chunking,
                attributes,
                last_error: None,
                chunks_indexed: 0,
                chunks_total: None,
            },
            NewJob {
                kind: JobKind::Ingest,
                project_id: store.project_id.clone(),
                file_id: Some(file.clone()),
                vector_store_id: Some(store.id.clone()),
            },
        )
    }

    pub async fn create(&self, project: &ProjectId, req: CreateStore) -> Result<StoreView> {
        let chunking = self.chunking(req.chunking);
        let now = self.clock.now();
        let store = VectorStoreRecord {
            id: VectorStoreId::generate(),
            project_id: project.clone(),
            name: req.name,
            description: req.description,
            metadata: req.metadata,
            created_at: now,
            last_active_at: now,
            expires_after_days: req.expires_after_days,
        };
        let mut files = Vec::with_capacity(req.file_ids.len());
        for file_id in &req.file_ids {
            self.check_attachable(project, file_id).await?;
            files.push(Self::new_attachment(
                &store,
                file_id,
                None,
                chunking,
                Attributes::new(),
                now,
            ));
        }
        let quotas = self.auth.quotas(project).await?;
        let gone = self
            .meta
            .create_vector_store(&store, &files, now, &quotas)
            .await?;
        if !gone.is_empty() {
            tracing::info!(vector_store_id = %store.id, ?gone, "files deleted while the store was created were left out");
        }
        if files.len() > gone.len() {
            self.wakeup.wake();
        }
        tracing::info!(vector_store_id = %store.id, files = files.len() - gone.len(), "vector store created");
        self.view(store).await
    }

    /// Resolves a listing's cursors to positions; an unknown cursor is a 400 naming it.
    pub(super) async fn window<Id, F, Fut>(
        &self,
        p: &ListParams<Id>,
        position: F,
    ) -> Result<ListWindow>
    where
        Id: Clone,
        F: Fn(Id) -> Fut,
        Fut: std::future::Future<Output = Result<Option<Position>>>,
    {
        let mut resolved = [None, None];
        for (slot, (param, id)) in resolved
            .iter_mut()
            .zip([("after", &p.after), ("before", &p.before)])
        {
            if let Some(id) = id {
                *slot = Some(
                    position(id.clone())
                        .await?
                        .ok_or_else(|| no_such_cursor(param))?,
                );
            }
        }
        let [after, before] = resolved;
        Ok(ListWindow {
            order: p.order,
            after,
            before,
            limit: p.limit + 1,
        })
    }

    pub async fn list(
        &self,
        project: &ProjectId,
        p: ListParams<VectorStoreId>,
    ) -> Result<Page<StoreView>> {
        let w = self
            .window(&p, |id| async move {
                self.meta.vector_store_position(project, &id).await
            })
            .await?;
        let rows = self.meta.list_vector_stores(project, &w).await?;
        let page = Page::from_overfetch(rows, p.limit);
        let mut items = Vec::with_capacity(page.items.len());
        for s in page.items {
            items.push(self.view(s).await?);
        }
        Ok(Page {
            items,
            has_more: page.has_more,
        })
    }

    pub async fn modify(
        &self,
        project: &ProjectId,
        id: &VectorStoreId,
        m: ModifyStore,
    ) -> Result<StoreView> {
        let mut store = self.record(project, id).await?;
        if let Some(name) = m.name {
            store.name = name;
        }
        if let Some(metadata) = m.metadata {
            store.metadata = metadata;
        }
        if let Some(expiry) = m.expires_after_days {
            store.expires_after_days = expiry;
        }
        store.last_active_at = self.clock.now();
        self.meta.update_vector_store(&store).await?;
        self.view(store).await
    }

    pub async fn delete(&self, project: &ProjectId, id: &VectorStoreId) -> Result<VectorStoreId> {
        let cascade = Cascade::store_deleted(project, id);
        if !self
            .meta
            .delete_vector_store(project, id, &cascade, self.clock.now())
            .await?
        {
            return Err(Error::not_found(Resource::VectorStore, id.as_str()));
        }
        self.wakeup.wake();
        tracing::info!(vector_store_id = %id, "vector store deleted");
        Ok(id.clone())
    }
}

/// A cursor (`after`/`before`) that names no object of the listing.
pub fn no_such_cursor(param: &'static str) -> Error {
    Error::invalid(
        format!("Invalid value for '{param}': no such object."),
        param,
    )
}
