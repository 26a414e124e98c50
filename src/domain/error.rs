use std::fmt;

/// Which kind of object a lookup did not find; names the `*_not_found` error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    File,
    Upload,
    Part,
    VectorStore,
    VectorStoreFile,
    FileBatch,
    Model,
    /// A bucket of upload-session files (llama-stack's early Files design).
    Bucket,
}

impl Resource {
    pub fn object_name(self) -> &'static str {
        match self {
            Resource::File => "File",
            Resource::Upload => "Upload",
            Resource::Part => "Part",
            Resource::VectorStore => "VectorStore",
            Resource::VectorStoreFile => "VectorStoreFile",
            Resource::FileBatch => "VectorStoreFileBatch",
            Resource::Model => "Model",
            Resource::Bucket => "Bucket",
        }
    }
}

/// The one error type of the domain and services. No HTTP in it: `api::error` maps each variant
/// to a status and the OpenAI error shape.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or breaks a documented limit (HTTP 400).
    #[error("{message}")]
    Invalid {
        message: String,
        param: Option<String>,
        code: Option<&'static str>,
    },
    /// Unknown id, or an id of another project (HTTP 404).
    #[error("{}", not_found_message(*kind, id))]
    NotFound { kind: Resource, id: String },
    /// The object exists but its state forbids the operation (HTTP 409).
    #[error("{message}")]
    Conflict {
        message: String,
        param: Option<String>,
    },
    /// A body or a declared size is over a configured limit (HTTP 413).
    #[error("{message}")]
    TooLarge {
        message: String,
        param: Option<String>,
    },
    /// Creating this would break a quota of the project (HTTP 400, `quota_exceeded`).
    #[error("{}", quota.describe(*limit))]
    QuotaExceeded { quota: super::Quota, limit: i64 },
    /// A failure that will happen again (a bug, corrupt data, a backend refusing what it was
    /// given): logged once, reported as a bare 500; a job that meets it fails at once.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
    /// A backend failed in a way that may pass (I/O, a busy database, a timeout, an unreachable
    /// endpoint): reported like [`Error::Internal`]; a job that meets it is retried later.
    #[error(transparent)]
    Unavailable(anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// OpenAI's wording: `No such File object: file-…`, and for models `The model `…` does not
/// exist or you do not have access to it.`
fn not_found_message(kind: Resource, id: &str) -> String {
    match kind {
        Resource::Model => {
            format!("The model `{id}` does not exist or you do not have access to it.")
        }
        _ => format!("No such {} object: {id}", kind.object_name()),
    }
}

impl Error {
    pub fn invalid(message: impl fmt::Display, param: impl Into<Option<&'static str>>) -> Self {
        Error::Invalid {
            message: message.to_string(),
            param: param.into().map(str::to_owned),
            code: None,
        }
    }

    pub fn not_found(kind: Resource, id: impl Into<String>) -> Self {
        Error::NotFound {
            kind,
            id: id.into(),
        }
    }

    pub fn conflict(message: impl fmt::Display, param: impl Into<Option<&'static str>>) -> Self {
        Error::Conflict {
            message: message.to_string(),
            param: param.into().map(str::to_owned),
        }
    }

    pub fn too_large(message: impl fmt::Display, param: impl Into<Option<&'static str>>) -> Self {
        Error::TooLarge {
            message: message.to_string(),
            param: param.into().map(str::to_owned),
        }
    }

    /// A backend failure that may pass if tried again.
    pub fn unavailable(e: impl Into<anyhow::Error>) -> Self {
        Error::Unavailable(e.into())
    }

    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }

    /// A disk is full: transient, and reported as such to clients and jobs.
    pub fn out_of_space(what: impl std::fmt::Display) -> Self {
        Error::Unavailable(anyhow::Error::new(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            what.to_string(),
        )))
    }

    /// Whether a disk (the data dir's, the database's or the index's) is full: an I/O error
    /// of that kind anywhere in the chain (backends that report it otherwise say so with
    /// [`Error::out_of_space`]).
    pub fn is_out_of_space(&self) -> bool {
        let (Error::Internal(e) | Error::Unavailable(e)) = self else {
            return false;
        };
        e.chain().any(|cause| {
            cause.downcast_ref::<std::io::Error>().is_some_and(|io| {
                io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(28)
            })
        })
    }

    pub fn missing(param: &'static str) -> Self {
        Error::Invalid {
            message: format!("Missing required parameter: '{param}'."),
            param: Some(param.to_owned()),
            code: Some("missing_required_parameter"),
        }
    }
}

/// Disks fill up, files are briefly locked, connections drop: I/O is worth retrying.
impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Unavailable(e.into())
    }
}

/// A panic (or a task cancelled at shutdown) in blocking work: the same input panics again.
impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Self {
        Error::Internal(e.into())
    }
}
