use super::file::Purpose;
use super::ids::{FileId, PartId, ProjectId, UploadId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadStatus {
    Pending,
    Completed,
    Cancelled,
    Expired,
}

impl UploadStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UploadStatus::Pending => "pending",
            UploadStatus::Completed => "completed",
            UploadStatus::Cancelled => "cancelled",
            UploadStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            UploadStatus::Pending,
            UploadStatus::Completed,
            UploadStatus::Cancelled,
            UploadStatus::Expired,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UploadRecord {
    pub id: UploadId,
    pub project_id: ProjectId,
    pub filename: String,
    pub purpose: Purpose,
    /// The size the client declared; the parts named at completion must add up to it.
    pub bytes: i64,
    pub mime_type: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub status: UploadStatus,
    pub file_id: Option<FileId>,
    /// `expires_after.seconds` for the file the upload becomes.
    pub file_expires_after: Option<i64>,
}

impl UploadRecord {
    /// The status a client sees: a pending upload past its deadline is expired even before the
    /// reaper has written that down.
    pub fn effective_status(&self, now: i64) -> UploadStatus {
        if self.status == UploadStatus::Pending && self.expires_at <= now {
            UploadStatus::Expired
        } else {
            self.status
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PartRecord {
    pub id: PartId,
    pub upload_id: UploadId,
    pub project_id: ProjectId,
    pub created_at: i64,
    pub bytes: i64,
    pub storage_key: String,
}

impl PartRecord {
    pub fn storage_prefix(upload: &UploadId) -> String {
        format!("parts/{upload}/")
    }

    pub fn storage_key_for(upload: &UploadId, part: &PartId) -> String {
        format!("parts/{upload}/{part}")
    }
}

/// A file named by a bucket and a key (llama-stack's upload sessions), written through the
/// upload `upload_id`: it exists once that upload is completed, as that upload's file.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketObject {
    pub bucket: String,
    pub key: String,
    pub upload_id: UploadId,
    pub mime_type: String,
    pub created_at: i64,
}
