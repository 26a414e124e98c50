//! Uploads: large files in parts, assembled in order and checked by md5.

use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;

use super::files::{check_filename, FileService};
use crate::clock::Clock;
use crate::db::Metadata;
use crate::domain::{
    Error, FileExpiry, FileId, FileRecord, FileStatus, PartId, PartRecord, ProjectId, Purpose,
    Resource, Result, UploadId, UploadRecord, UploadStatus,
};
use crate::storage::{FileStorage, StagedFile, Staging};

pub struct NewUpload {
    pub filename: String,
    pub purpose: Purpose,
    pub bytes: i64,
    pub mime_type: String,
    pub expiry: Option<FileExpiry>,
}

#[derive(Clone)]
pub struct UploadService {
    meta: Arc<dyn Metadata>,
    storage: Arc<dyn FileStorage>,
    staging: Staging,
    clock: Arc<dyn Clock>,
    /// Completing an upload creates a file the way `POST /files` does.
    files: FileService,
}

impl UploadService {
    pub fn new(
        meta: Arc<dyn Metadata>,
        storage: Arc<dyn FileStorage>,
        staging: Staging,
        clock: Arc<dyn Clock>,
        files: FileService,
    ) -> Self {
        Self {
            meta,
            storage,
            staging,
            clock,
            files,
        }
    }

    pub async fn create(&self, project: &ProjectId, new: NewUpload) -> Result<UploadRecord> {
        check_filename(&new.filename, "filename")?;
        let limits = self.files.limits();
        let max = limits.max_bytes(new.purpose, true);
        if new.bytes < 0 || new.bytes as u64 > max {
            return Err(Error::invalid(
                format!(
                    "Invalid value for 'bytes': {}. An upload with purpose '{}' may hold 0 to {max} bytes.",
                    new.bytes,
                    new.purpose.as_str()
                ),
                "bytes",
            ));
        }
        if new.mime_type.trim().is_empty() || new.mime_type.len() > 255 {
            return Err(Error::invalid(
                "Invalid value for 'mime_type': it must be a MIME type such as 'text/plain'.",
                "mime_type",
            ));
        }
        let now = self.clock.now();
        let upload = UploadRecord {
            id: UploadId::generate(),
            project_id: project.clone(),
            filename: new.filename,
            purpose: new.purpose,
            bytes: new.bytes,
            mime_type: new.mime_type,
            created_at: now,
            expires_at: now + limits.upload_ttl_secs,
            status: UploadStatus::Pending,
            file_id: None,
            file_expires_after: new.expiry.map(|e| e.seconds),
        };
        self.meta.insert_upload(&upload).await?;
        tracing::info!(upload_id = %upload.id, bytes = upload.bytes, "upload created");
        Ok(upload)
    }

    /// The service's clock (an upload's status depends on it).
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub fn max_part_bytes(&self) -> u64 {
        self.files.limits().max_part_bytes
    }

    /// Where parts are staged before they are published.
    pub fn staging(&self) -> &Staging {
        &self.staging
    }

    async fn get(&self, project: &ProjectId, id: &UploadId) -> Result<UploadRecord> {
        self.meta
            .get_upload(project, id)
            .await?
            .ok_or_else(|| Error::not_found(Resource::Upload, id.as_str()))
    }

    /// The upload, if it still accepts parts. Called before the part's bytes are read, so a
    /// part for a finished upload is refused without receiving it.
    pub async fn accepting_parts(
        &self,
        project: &ProjectId,
        id: &UploadId,
    ) -> Result<UploadRecord> {
        let upload = self.get(project, id).await?;
        match upload.effective_status(self.clock.now()) {
            UploadStatus::Pending => Ok(upload),
            s => Err(not_pending(&upload, s, "no more parts can be added")),
        }
    }

    /// Stored part bytes may exceed the declared size by one part (a retried part), no more.
    fn max_stored_part_bytes(&self, upload: &UploadRecord) -> i64 {
        upload
            .bytes
            .saturating_add(self.files.limits().max_part_bytes as i64)
    }

    pub async fn add_part(&self, upload: &UploadRecord, staged: StagedFile) -> Result<PartRecord> {
        let id = PartId::generate();
        let part = PartRecord {
            storage_key: PartRecord::storage_key_for(&upload.id, &id),
            id,
            upload_id: upload.id.clone(),
            project_id: upload.project_id.clone(),
            created_at: self.clock.now(),
            bytes: staged.len as i64,
        };
        self.storage.put(&part.storage_key, staged).await?;
        let max_total = self.max_stored_part_bytes(upload);
        let inserted = self
            .meta
            .insert_part(&part, self.clock.now(), max_total)
            .await;
        if !matches!(inserted, Ok(true)) {
            self.files.discard_blob(&part.storage_key).await;
        }
        if inserted? {
            return Ok(part);
        }
        // Refused: say why, from the upload as it is now.
        let now_upload = self.get(&upload.project_id, &upload.id).await?;
        match now_upload.effective_status(self.clock.now()) {
            UploadStatus::Pending => Err(Error::invalid(
                format!(
                    "The parts of upload {} would hold more than {max_total} bytes; it was created for {} bytes.",
                    upload.id, upload.bytes
                ),
                "data",
            )),
            s => Err(not_pending(&now_upload, s, "no more parts can be added")),
        }
    }

    /// Assembles the named parts, in order, into a file; the upload becomes `completed`.
    pub async fn complete(
        &self,
        project: &ProjectId,
        id: &UploadId,
        part_ids: &[PartId],
        md5: Option<[u8; 16]>,
    ) -> Result<(UploadRecord, FileRecord)> {
        let upload = self.get(project, id).await?;
        let status = upload.effective_status(self.clock.now());
        if status != UploadStatus::Pending {
            return Err(not_pending(
                &upload,
                status,
                "it can no longer be completed",
            ));
        }
        let stored: HashMap<PartId, PartRecord> = self
            .meta
            .parts_of(&upload.id)
            .await?
            .into_iter()
            .map(|p| (p.id.clone(), p))
            .collect();
        let mut ordered = Vec::with_capacity(part_ids.len());
        let mut seen = std::collections::HashSet::new();
        for pid in part_ids {
            let part = stored
                .get(pid)
                .ok_or_else(|| not_a_part(pid.as_str(), &upload.id))?;
            if !seen.insert(pid) {
                return Err(Error::invalid(
                    format!("Invalid value for 'part_ids': '{pid}' is listed more than once."),
                    "part_ids",
                ));
            }
            ordered.push(part);
        }
        let total: i64 = ordered.iter().map(|p| p.bytes).sum();
        if total != upload.bytes {
            return Err(Error::invalid(
                format!(
                    "The parts add up to {total} bytes, but the upload was created for {} bytes.",
                    upload.bytes
                ),
                "part_ids",
            ));
        }

        let mut writer = self.staging.writer(md5.is_some());
        for part in &ordered {
            let blob = self.storage.get(&part.storage_key).await?.ok_or_else(|| {
                // The parts went away under us: a concurrent cancel or expiry.
                Error::conflict(
                    format!("Upload {} changed while completing; try again.", upload.id),
                    None,
                )
            })?;
            let mut stream = blob.stream;
            while let Some(chunk) = stream.next().await {
                writer.write(chunk?).await?;
            }
        }
        let staged = writer.finish().await?;
        if let (Some(want), Some(got)) = (md5, staged.md5) {
            if want != got {
                return Err(Error::invalid(
                    format!(
                        "The md5 of the assembled file is {}, not the {} given.",
                        hex(&got),
                        hex(&want)
                    ),
                    "md5",
                ));
            }
        }
        self.files
            .check_content(upload.purpose, &staged, true, "part_ids")
            .await?;

        let now = self.clock.now();
        let file_id = FileId::generate();
        let file = FileRecord {
            storage_key: FileRecord::storage_key_for(&file_id),
            id: file_id,
            project_id: upload.project_id.clone(),
            filename: upload.filename.clone(),
            purpose: upload.purpose,
            bytes: staged.len as i64,
            created_at: now,
            expires_at: self.files.limits().expires_at(
                upload.purpose,
                upload
                    .file_expires_after
                    .map(|seconds| FileExpiry { seconds }),
                now,
            ),
            status: FileStatus::Uploaded,
            status_details: None,
        };
        let (meta, row, upload_id) = (&self.meta, &file, &upload.id);
        let completed = self
            .files
            .publish(row, staged, |job| async move {
                meta.complete_upload(upload_id, row, job.as_ref(), now)
                    .await
            })
            .await?;
        if !completed {
            let now_upload = self.get(project, id).await?;
            let s = now_upload.effective_status(self.clock.now());
            return Err(not_pending(&now_upload, s, "it can no longer be completed"));
        }
        self.drop_parts(&upload.id).await;
        tracing::info!(upload_id = %upload.id, file_id = %file.id, bytes = file.bytes, "upload completed");
        let upload = UploadRecord {
            status: UploadStatus::Completed,
            file_id: Some(file.id.clone()),
            ..upload
        };
        Ok((upload, file))
    }

    pub async fn cancel(&self, project: &ProjectId, id: &UploadId) -> Result<UploadRecord> {
        let upload = self.get(project, id).await?;
        if upload.status == UploadStatus::Cancelled {
            return Ok(upload);
        }
        if !self
            .meta
            .finish_pending_upload(&upload.id, UploadStatus::Cancelled)
            .await?
        {
            let now_upload = self.get(project, id).await?;
            let s = now_upload.effective_status(self.clock.now());
            return Err(not_pending(&now_upload, s, "it can no longer be cancelled"));
        }
        self.drop_parts(&upload.id).await;
        tracing::info!(upload_id = %upload.id, "upload cancelled");
        Ok(UploadRecord {
            status: UploadStatus::Cancelled,
            ..upload
        })
    }

    /// Frees the parts of an upload that is no longer pending. Failures are logged; the reaper
    /// retries.
    async fn drop_parts(&self, upload: &UploadId) {
        let result = async {
            self.storage
                .delete_prefix(&PartRecord::storage_prefix(upload))
                .await?;
            self.meta.delete_parts(upload).await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(upload_id = %upload, error = %e, "could not free upload parts; the reaper will retry");
        }
    }
}

fn not_pending(upload: &UploadRecord, status: UploadStatus, doing: &str) -> Error {
    Error::conflict(
        format!("Upload {} is {}; {doing}.", upload.id, status.as_str()),
        None,
    )
}

/// `part_ids` names something that is not a part of this upload.
pub fn not_a_part(part: &str, upload: &UploadId) -> Error {
    Error::invalid(
        format!("Invalid value for 'part_ids': '{part}' is not a part of upload {upload}."),
        "part_ids",
    )
}

/// Parses a hex md5 as sent by clients.
pub fn parse_md5(s: &str) -> Result<[u8; 16]> {
    let bad = || {
        Error::invalid(
            "Invalid value for 'md5': expected 32 hexadecimal digits.",
            "md5",
        )
    };
    if s.len() != 32 {
        return Err(bad());
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte =
            u8::from_str_radix(s.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
