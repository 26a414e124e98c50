//! The ingestion pipeline: extract -> chunk -> embed -> index.

pub mod embed;
