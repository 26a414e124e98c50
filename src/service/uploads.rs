use futures_util::StreamExt;
use std::collections::HashMap;

use super::files::{check_content, check_filename, discard_blob, expires_at, max_bytes};
use crate::app::AppState;
use crate::domain::{
    Error, FileExpiry, FileId, FileRecord, FileStatus, PartId, PartRecord, ProjectId, Purpose,
    Resource, Result, UploadId, UploadRecord, UploadStatus,
};
use crate::storage::StagedFile;

pub struct NewUpload {
    pub filename: String,
    pub purpose: Purpose,
    pub bytes: i64,
    pub mime_type: String,
    pub expiry: Option<FileExpiry>,
}

pub async fn create(st: &AppState, project: &ProjectId, new: NewUpload) -> Result<UploadRecord> {
    check_filename(&new.filename, "filename")?;
    let max = max_bytes(st, new.purpose, true);
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
    let now = st.clock.now();
    let upload = UploadRecord {
        id: UploadId::generate(),
        project_id: project.clone(),
        filename: new.filename,
        purpose: new.purpose,
        bytes: new.bytes,
        mime_type: new.mime_type,
        created_at: now,
        expires_at: now + st.config.upload_ttl_secs,
        status: UploadStatus::Pending,
        file_id: None,
        file_expires_after: new.expiry.map(|e| e.seconds),
    };
    st.meta.insert_upload(&upload).await?;
    tracing::info!(upload_id = %upload.id, bytes = upload.bytes, "upload created");
    Ok(upload)
}

async fn get(st: &AppState, project: &ProjectId, id: &str) -> Result<UploadRecord> {
    let id = UploadId::parse(id).ok_or_else(|| Error::not_found(Resource::Upload, id))?;
    st.meta
        .get_upload(project, &id)
        .await?
        .ok_or_else(|| Error::not_found(Resource::Upload, id.as_str()))
}

fn not_pending(upload: &UploadRecord, status: UploadStatus, doing: &str) -> Error {
    Error::conflict(
        format!("Upload {} is {}; {doing}.", upload.id, status.as_str()),
        None,
    )
}

/// The upload, if it still accepts parts. Called before the part's bytes are read, so a part for
/// a finished upload is refused without receiving it.
pub async fn accepting_parts(st: &AppState, project: &ProjectId, id: &str) -> Result<UploadRecord> {
    let upload = get(st, project, id).await?;
    match upload.effective_status(st.clock.now()) {
        UploadStatus::Pending => Ok(upload),
        s => Err(not_pending(&upload, s, "no more parts can be added")),
    }
}

/// Stored part bytes may exceed the declared size by one part (a retried part), no more.
fn max_stored_part_bytes(st: &AppState, upload: &UploadRecord) -> i64 {
    upload.bytes.saturating_add(st.config.max_part_bytes as i64)
}

pub async fn add_part(
    st: &AppState,
    upload: &UploadRecord,
    staged: StagedFile,
) -> Result<PartRecord> {
    let id = PartId::generate();
    let part = PartRecord {
        storage_key: PartRecord::storage_key_for(&upload.id, &id),
        id,
        upload_id: upload.id.clone(),
        project_id: upload.project_id.clone(),
        created_at: st.clock.now(),
        bytes: staged.len as i64,
    };
    st.storage.put(&part.storage_key, staged).await?;
    let max_total = max_stored_part_bytes(st, upload);
    let inserted = st.meta.insert_part(&part, st.clock.now(), max_total).await;
    if !matches!(inserted, Ok(true)) {
        discard_blob(st, &part.storage_key).await;
    }
    if inserted? {
        return Ok(part);
    }
    // Refused: say why, from the upload as it is now.
    let now_upload = get(st, &upload.project_id, upload.id.as_str()).await?;
    match now_upload.effective_status(st.clock.now()) {
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

/// Parses a hex md5 as sent by clients.
fn parse_md5(s: &str) -> Result<[u8; 16]> {
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
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Assembles the named parts, in order, into a file; the upload becomes `completed`.
pub async fn complete(
    st: &AppState,
    project: &ProjectId,
    id: &str,
    part_ids: &[String],
    md5: Option<&str>,
) -> Result<(UploadRecord, FileRecord)> {
    let upload = get(st, project, id).await?;
    let status = upload.effective_status(st.clock.now());
    if status != UploadStatus::Pending {
        return Err(not_pending(
            &upload,
            status,
            "it can no longer be completed",
        ));
    }
    let expected_md5 = md5.map(parse_md5).transpose()?;

    let stored: HashMap<String, PartRecord> = st
        .meta
        .parts_of(&upload.id)
        .await?
        .into_iter()
        .map(|p| (p.id.as_str().to_owned(), p))
        .collect();
    let mut ordered = Vec::with_capacity(part_ids.len());
    let mut seen = std::collections::HashSet::new();
    for pid in part_ids {
        let part = stored.get(pid).ok_or_else(|| {
            Error::invalid(
                format!(
                    "Invalid value for 'part_ids': '{pid}' is not a part of upload {}.",
                    upload.id
                ),
                "part_ids",
            )
        })?;
        if !seen.insert(pid.as_str()) {
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

    let mut writer = st.staging.writer(expected_md5.is_some());
    for part in &ordered {
        let blob = st.storage.get(&part.storage_key).await?.ok_or_else(|| {
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
    if let (Some(want), Some(got)) = (expected_md5, staged.md5) {
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
    check_content(st, upload.purpose, &staged, true, "part_ids").await?;

    let now = st.clock.now();
    let file_id = FileId::generate();
    let file = FileRecord {
        storage_key: FileRecord::storage_key_for(&file_id),
        id: file_id,
        project_id: upload.project_id.clone(),
        filename: upload.filename.clone(),
        purpose: upload.purpose,
        bytes: staged.len as i64,
        created_at: now,
        expires_at: expires_at(
            st,
            upload.purpose,
            upload
                .file_expires_after
                .map(|seconds| FileExpiry { seconds }),
            now,
        ),
        status: FileStatus::Uploaded,
        status_details: None,
    };
    st.storage.put(&file.storage_key, staged).await?;
    let job = super::files::extract_job(&file);
    let completed = st
        .meta
        .complete_upload(&upload.id, &file, job.as_ref(), now)
        .await;
    if !matches!(completed, Ok(true)) {
        discard_blob(st, &file.storage_key).await;
    }
    if !completed? {
        let now_upload = get(st, project, id).await?;
        let s = now_upload.effective_status(st.clock.now());
        return Err(not_pending(&now_upload, s, "it can no longer be completed"));
    }
    if job.is_some() {
        st.jobs_notify.notify_one();
    }
    drop_parts(st, &upload.id).await;
    tracing::info!(upload_id = %upload.id, file_id = %file.id, bytes = file.bytes, "upload completed");
    let upload = UploadRecord {
        status: UploadStatus::Completed,
        file_id: Some(file.id.clone()),
        ..upload
    };
    Ok((upload, file))
}

pub async fn cancel(st: &AppState, project: &ProjectId, id: &str) -> Result<UploadRecord> {
    let upload = get(st, project, id).await?;
    if upload.status == UploadStatus::Cancelled {
        return Ok(upload);
    }
    if !st
        .meta
        .finish_pending_upload(&upload.id, UploadStatus::Cancelled)
        .await?
    {
        let now_upload = get(st, project, id).await?;
        let s = now_upload.effective_status(st.clock.now());
        return Err(not_pending(&now_upload, s, "it can no longer be cancelled"));
    }
    drop_parts(st, &upload.id).await;
    tracing::info!(upload_id = %upload.id, "upload cancelled");
    Ok(UploadRecord {
        status: UploadStatus::Cancelled,
        ..upload
    })
}

/// Frees the parts of an upload that is no longer pending. Failures are logged; the reaper
/// retries.
pub(crate) async fn drop_parts(st: &AppState, upload: &UploadId) {
    let result = async {
        st.storage
            .delete_prefix(&PartRecord::storage_prefix(upload))
            .await?;
        st.meta.delete_parts(upload).await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(upload_id = %upload, error = %e, "could not free upload parts; the reaper will retry");
    }
}
