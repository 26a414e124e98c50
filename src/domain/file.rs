use super::error::{Error, Result};
use super::ids::{FileId, ProjectId};
use serde::Serialize;

/// What a file is for. Parsed from the client's `purpose`; the wire spelling is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Purpose {
    #[serde(rename = "assistants")]
    Assistants,
    #[serde(rename = "batch")]
    Batch,
    #[serde(rename = "fine-tune")]
    FineTune,
    #[serde(rename = "vision")]
    Vision,
    #[serde(rename = "user_data")]
    UserData,
    #[serde(rename = "evals")]
    Evals,
}

impl Purpose {
    pub const ALL: [Purpose; 6] = [
        Purpose::Assistants,
        Purpose::Batch,
        Purpose::FineTune,
        Purpose::Vision,
        Purpose::UserData,
        Purpose::Evals,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Assistants => "assistants",
            Purpose::Batch => "batch",
            Purpose::FineTune => "fine-tune",
            Purpose::Vision => "vision",
            Purpose::UserData => "user_data",
            Purpose::Evals => "evals",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Whether a file of this purpose has its bytes checked before it is accepted (`batch`
    /// files must be JSONL).
    pub fn content_checked(self) -> bool {
        self == Purpose::Batch
    }

    /// Parses a client value, with the OpenAI-shaped error naming `param`.
    pub fn from_request(s: &str, param: &'static str) -> Result<Self> {
        Self::parse(s).ok_or_else(|| {
            let allowed: Vec<_> = Self::ALL
                .iter()
                .map(|p| format!("'{}'", p.as_str()))
                .collect();
            Error::invalid(
                format!(
                    "Invalid value for '{param}': '{s}'. Supported values are: {}.",
                    allowed.join(", ")
                ),
                param,
            )
        })
    }
}

/// The deprecated but still returned `status` of a file object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    Uploaded,
    Processed,
    Error,
}

impl FileStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FileStatus::Uploaded => "uploaded",
            FileStatus::Processed => "processed",
            FileStatus::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            FileStatus::Uploaded,
            FileStatus::Processed,
            FileStatus::Error,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }
}

/// A stored file's metadata row.
#[derive(Debug, Clone, PartialEq)]
pub struct FileRecord {
    pub id: FileId,
    pub project_id: ProjectId,
    pub filename: String,
    pub purpose: Purpose,
    pub bytes: i64,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub status: FileStatus,
    pub status_details: Option<String>,
    /// Where the bytes live in `FileStorage`.
    pub storage_key: String,
}

impl FileRecord {
    pub fn storage_key_for(id: &FileId) -> String {
        format!("files/{id}")
    }
}

/// The client's `expires_after` for a file: `{anchor: "created_at", seconds: 3600..=2592000}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileExpiry {
    pub seconds: i64,
}

impl FileExpiry {
    pub const MIN_SECONDS: i64 = 3600;
    pub const MAX_SECONDS: i64 = 2_592_000;

    /// Validates the two halves as the client sent them (either may be missing).
    pub fn from_parts(anchor: Option<&str>, seconds: Option<&str>) -> Result<Option<Self>> {
        match (anchor, seconds) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(Error::missing("expires_after[anchor]")),
            (Some(_), None) => Err(Error::missing("expires_after[seconds]")),
            (Some(anchor), Some(seconds)) => {
                if anchor != "created_at" {
                    return Err(Error::invalid(
                        format!(
                            "Invalid value for 'expires_after.anchor': '{anchor}'. The only supported anchor is 'created_at'."
                        ),
                        "expires_after[anchor]",
                    ));
                }
                let seconds: i64 = seconds.trim().parse().map_err(|_| {
                    Error::invalid(
                        format!("Invalid value for 'expires_after.seconds': '{seconds}' is not an integer."),
                        "expires_after[seconds]",
                    )
                })?;
                if !(Self::MIN_SECONDS..=Self::MAX_SECONDS).contains(&seconds) {
                    return Err(Error::invalid(
                        format!(
                            "Invalid value for 'expires_after.seconds': {seconds}. It must be between {} and {} (1 hour to 30 days).",
                            Self::MIN_SECONDS,
                            Self::MAX_SECONDS
                        ),
                        "expires_after[seconds]",
                    ));
                }
                Ok(Some(Self { seconds }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_round_trip() {
        for p in Purpose::ALL {
            assert_eq!(Purpose::parse(p.as_str()), Some(p));
        }
        assert!(Purpose::parse("fine_tune").is_none());
        assert!(Purpose::from_request("nope", "purpose").is_err());
    }

    #[test]
    fn expiry_bounds() {
        assert_eq!(FileExpiry::from_parts(None, None).ok(), Some(None));
        assert!(FileExpiry::from_parts(Some("created_at"), Some("3599")).is_err());
        assert!(FileExpiry::from_parts(Some("created_at"), Some("2592001")).is_err());
        assert!(FileExpiry::from_parts(Some("last_active_at"), Some("3600")).is_err());
        assert!(FileExpiry::from_parts(Some("created_at"), None).is_err());
        assert_eq!(
            FileExpiry::from_parts(Some("created_at"), Some("3600")).ok(),
            Some(Some(FileExpiry { seconds: 3600 }))
        );
    }
}
