//! ragstore: a self-hosted, OpenAI-compatible Files, Uploads and Vector Stores server.

pub mod admin;
pub mod api;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod domain;
pub mod http;
pub mod index;
pub mod ingest;
pub mod metrics;
pub mod service;
pub mod storage;

pub use app::{App, Backends};
pub use config::Config;
