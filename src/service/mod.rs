//! The use cases. Handlers parse and shape; services decide, in this order: validate, publish the
//! bytes, commit the row. A row is only ever written for bytes that are already durable.

pub mod files;
pub mod jsonl;
pub mod maintenance;
pub mod uploads;
pub mod vector_stores;
pub mod vs_files;
