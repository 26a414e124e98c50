//! Types and rules with no I/O: ids, purposes, statuses, records, limits.

pub mod error;
pub mod file;
pub mod ids;
pub mod page;
pub mod upload;

pub use error::{Error, Resource, Result};
pub use file::{FileExpiry, FileRecord, FileStatus, Purpose};
pub use ids::{FileId, PartId, ProjectId, UploadId};
pub use page::{Order, Page};
pub use upload::{PartRecord, UploadRecord, UploadStatus};
