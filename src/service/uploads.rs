//! Uploads: large files in parts, assembled in order and checked by md5.

use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;

use super::files::{check_filename, FileService};
use crate::clock::Clock;
use crate::db::Metadata;
use crate::domain::{
    BucketObject, Error, FileExpiry, FileId, FileRecord, FileStatus, NewJob, PartId, PartRecord,
    ProjectId, Purpose, Resource, Result, UploadId, UploadRecord, UploadStatus,
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
        let upload = self.new_upload(project, new, "bytes")?;
        self.files
            .auth
            .check_room(project, upload.bytes.max(0) as u64)
            .await?;
        self.meta.insert_upload(&upload).await?;
        tracing::info!(upload_id = %upload.id, bytes = upload.bytes, "upload created");
        Ok(upload)
    }

    /// A pending upload for `new`, checked (`size_param` names its size in the request).
    fn new_upload(
        &self,
        project: &ProjectId,
        new: NewUpload,
        size_param: &'static str,
    ) -> Result<UploadRecord> {
        check_filename(&new.filename, "filename")?;
        let limits = self.files.limits();
        let max = limits.max_bytes(new.purpose, true);
        if new.bytes < 0 || new.bytes as u64 > max {
            return Err(Error::invalid(
                format!(
                    "Invalid value for '{size_param}': {}. An upload with purpose '{}' may hold 0 to {max} bytes.",
                    new.bytes,
                    new.purpose.as_str()
                ),
                size_param,
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
        let max_total = self.max_stored_part_bytes(upload);
        if let Some(part) = self.store_part(upload, staged, max_total).await? {
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

    /// Stores `staged` as a part of `upload` if the upload is still pending and its parts stay
    /// within `max_total` bytes (atomically against other parts); `None`, with nothing kept,
    /// if refused.
    async fn store_part(
        &self,
        upload: &UploadRecord,
        staged: StagedFile,
        max_total: i64,
    ) -> Result<Option<PartRecord>> {
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
        let inserted = self
            .meta
            .insert_part(&part, self.clock.now(), max_total)
            .await;
        if !matches!(inserted, Ok(true)) {
            self.files.discard_blob(&part.storage_key).await;
        }
        Ok(inserted?.then_some(part))
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

        let file_id = FileId::generate();
        let storage_key = FileRecord::storage_key_for(&file_id);
        // The storage joins the parts itself where it can (S3: server-side part copies), or they
        // are read back into a staged file; either way the room is checked before the commit.
        let (staged, len, max_bytes) = match self
            .join_in_storage(project, &upload, &ordered, md5, &storage_key)
            .await?
        {
            Some(max_bytes) => (None, upload.bytes as u64, max_bytes),
            None => {
                let staged = self.assemble(&upload, &ordered, md5).await?;
                let len = staged.len;
                let max_bytes = self.files.auth.check_room(project, len).await?;
                (Some(staged), len, max_bytes)
            }
        };
        let assembled = if staged.is_some() {
            "streamed"
        } else {
            "by the storage"
        };

        let now = self.clock.now();
        let file = FileRecord {
            storage_key,
            id: file_id,
            project_id: upload.project_id.clone(),
            filename: upload.filename.clone(),
            purpose: upload.purpose,
            bytes: len as i64,
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
        let commit = |job: Option<NewJob>| async move {
            meta.complete_upload(upload_id, row, job.as_ref(), now, max_bytes)
                .await
        };
        let completed = match staged {
            Some(staged) => self.files.publish(row, staged, commit).await?,
            None => self.files.publish_stored(row, commit).await?,
        };
        if !completed {
            let now_upload = self.get(project, id).await?;
            let s = now_upload.effective_status(self.clock.now());
            return Err(not_pending(&now_upload, s, "it can no longer be completed"));
        }
        self.drop_parts(&upload.id).await;
        tracing::info!(upload_id = %upload.id, file_id = %file.id, bytes = file.bytes, assembled, "upload completed");
        let upload = UploadRecord {
            status: UploadStatus::Completed,
            file_id: Some(file.id.clone()),
            ..upload
        };
        Ok((upload, file))
    }

    /// Has the storage join the parts under `key` when their bytes need no reading (no md5 to
    /// check, no content check) and the storage can; then the file's room in the project, as
    /// [`AuthService::check_room`](super::auth::AuthService::check_room) answers it, checked
    /// before the copy. `None`: nothing was written, the parts are to be streamed.
    async fn join_in_storage(
        &self,
        project: &ProjectId,
        upload: &UploadRecord,
        ordered: &[&PartRecord],
        md5: Option<[u8; 16]>,
        key: &str,
    ) -> Result<Option<i64>> {
        if md5.is_some() || upload.purpose.content_checked() {
            return Ok(None);
        }
        let len = upload.bytes as u64;
        self.files
            .check_size(upload.purpose, len, true, "part_ids")?;
        let max_bytes = self.files.auth.check_room(project, len).await?;
        let parts: Vec<(String, u64)> = ordered
            .iter()
            .map(|p| (p.storage_key.clone(), p.bytes as u64))
            .collect();
        Ok(self
            .storage
            .compose(key, &parts)
            .await?
            .then_some(max_bytes))
    }

    /// Reads the parts back in order into a staged file, checking the md5 and the content.
    async fn assemble(
        &self,
        upload: &UploadRecord,
        ordered: &[&PartRecord],
        md5: Option<[u8; 16]>,
    ) -> Result<StagedFile> {
        let mut writer = self.staging.writer(md5.is_some());
        for part in ordered {
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
        Ok(staged)
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

/// An upload session (llama-stack's early Files design): an upload named by a bucket and a key,
/// written by appending request bodies at its offset; complete once `size` bytes are in.
#[derive(Debug, Clone)]
pub struct Session {
    pub upload: UploadRecord,
    pub object: BucketObject,
    /// Bytes received so far (where the next body is appended).
    pub offset: i64,
}

/// Bucket names: letters, digits, `_` and `-` (as that design says), and never like a file id.
pub fn check_bucket(bucket: &str) -> Result<()> {
    let ok = !bucket.is_empty()
        && bucket.len() <= 63
        && bucket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !bucket.starts_with("file-");
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("Invalid value for 'bucket': '{bucket}'. A bucket name is 1 to 63 letters, digits, '_' or '-', and does not start with 'file-'."),
            "bucket",
        ))
    }
}

/// Keys: letters, digits, `_`, `-`, `/` and `.`, as path segments (none empty, `.` or `..`).
pub fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 1024
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'/' | b'.'))
        && key
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..");
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("Invalid value for 'key': '{key}'. A key is up to 1024 letters, digits, '_', '-', '.' and '/', in path segments that are not empty, '.' or '..'."),
            "key",
        ))
    }
}

impl UploadService {
    /// Opens a session for `bucket`/`key`. The file it becomes has purpose `assistants` (so it
    /// can be attached to vector stores) and the key's last segment as its name.
    pub async fn open_session(
        &self,
        project: &ProjectId,
        bucket: &str,
        key: &str,
        mime_type: String,
        size: i64,
    ) -> Result<Session> {
        check_bucket(bucket)?;
        check_key(key)?;
        let filename = key.rsplit('/').next().unwrap_or(key).to_owned();
        let upload = self.new_upload(
            project,
            NewUpload {
                filename,
                purpose: Purpose::Assistants,
                bytes: size,
                mime_type,
                expiry: None,
            },
            "size",
        )?;
        self.files
            .auth
            .check_room(project, size.max(0) as u64)
            .await?;
        if !self
            .meta
            .insert_session(&upload, bucket, key, self.clock.now())
            .await?
        {
            return Err(Error::conflict(
                format!("'{bucket}/{key}' already holds a file or an open upload session; delete the file or let the session expire first."),
                "key",
            ));
        }
        tracing::info!(upload_id = %upload.id, bucket, key, bytes = upload.bytes, "upload session opened");
        let object = BucketObject {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            upload_id: upload.id.clone(),
            mime_type: upload.mime_type.clone(),
            created_at: upload.created_at,
        };
        Ok(Session {
            upload,
            object,
            offset: 0,
        })
    }

    /// The session and how many bytes it holds.
    pub async fn session(&self, project: &ProjectId, id: &UploadId) -> Result<Session> {
        let object = self
            .meta
            .get_session(project, id)
            .await?
            .ok_or_else(|| Error::not_found(Resource::Upload, id.as_str()))?;
        let upload = self.get(project, id).await?;
        let offset = if upload.status == UploadStatus::Completed {
            upload.bytes
        } else {
            self.meta.parts_of(id).await?.iter().map(|p| p.bytes).sum()
        };
        Ok(Session {
            upload,
            object,
            offset,
        })
    }

    /// The session, if it still takes bytes; refused before its body is read otherwise.
    pub async fn open_for_append(&self, project: &ProjectId, id: &UploadId) -> Result<Session> {
        let session = self.session(project, id).await?;
        match session.upload.effective_status(self.clock.now()) {
            UploadStatus::Pending => Ok(session),
            s => Err(not_pending(
                &session.upload,
                s,
                "no more bytes can be appended",
            )),
        }
    }

    /// Appends `staged` at the offset of `session` (as [`UploadService::open_for_append`]
    /// found it, before its body was read). Once its size is reached the session becomes a
    /// file, returned with the session. A body that would overrun the size is refused and
    /// nothing of it is kept.
    pub async fn append(
        &self,
        session: Session,
        staged: StagedFile,
    ) -> Result<(Session, Option<FileRecord>)> {
        let upload = &session.upload;
        let (project, id) = (&upload.project_id, &upload.id);
        let len = staged.len;
        // The parts may add up to the declared size and no more: a body that would overrun it
        // (or race another past it) is refused whole.
        if self
            .store_part(upload, staged, upload.bytes)
            .await?
            .is_none()
        {
            let now = self.session(project, id).await?;
            return match now.upload.effective_status(self.clock.now()) {
                UploadStatus::Pending => Err(Error::invalid(
                    format!(
                        "The body is {len} bytes, but session {id} holds {} of its {} bytes: it would overrun the size.",
                        now.offset, upload.bytes
                    ),
                    None,
                )),
                s => Err(not_pending(&now.upload, s, "no more bytes can be appended")),
            };
        }
        let parts = self.meta.parts_of(id).await?;
        let offset: i64 = parts.iter().map(|p| p.bytes).sum();
        if offset < upload.bytes {
            return Ok((Session { offset, ..session }, None));
        }
        let ids: Vec<PartId> = parts.into_iter().map(|p| p.id).collect();
        let (upload, file) = self.complete(project, id, &ids, None).await?;
        Ok((
            Session {
                upload,
                offset,
                ..session
            },
            Some(file),
        ))
    }

    /// The file under `bucket`/`key`.
    pub async fn bucket_object(
        &self,
        project: &ProjectId,
        bucket: &str,
        key: &str,
    ) -> Result<(BucketObject, FileRecord)> {
        check_bucket(bucket).map_err(|_| Error::not_found(Resource::File, bucket))?;
        self.meta
            .get_bucket_object(project, bucket, key, self.clock.now())
            .await?
            .ok_or_else(|| Error::not_found(Resource::File, format!("{bucket}/{key}")))
    }

    /// The files of a bucket, by key. A bucket exists while it holds a file.
    pub async fn list_bucket(
        &self,
        project: &ProjectId,
        bucket: &str,
    ) -> Result<Vec<(BucketObject, FileRecord)>> {
        check_bucket(bucket).map_err(|_| Error::not_found(Resource::Bucket, bucket))?;
        let objects = self
            .meta
            .list_bucket(project, bucket, self.clock.now())
            .await?;
        if objects.is_empty() {
            return Err(Error::not_found(Resource::Bucket, bucket));
        }
        Ok(objects)
    }

    pub async fn list_buckets(&self, project: &ProjectId) -> Result<Vec<String>> {
        self.meta.list_buckets(project, self.clock.now()).await
    }

    /// Deletes the file under `bucket`/`key` (from every vector store too) and frees the key.
    pub async fn delete_object(
        &self,
        project: &ProjectId,
        bucket: &str,
        key: &str,
    ) -> Result<(BucketObject, FileRecord)> {
        let (object, file) = self.bucket_object(project, bucket, key).await?;
        self.files.delete(project, &file.id).await?;
        self.meta.delete_bucket_object(&object.upload_id).await?;
        Ok((object, file))
    }
}
