//! A fresh PostgreSQL database per test, in the cluster `RAGSTORE_TEST_DATABASE_URL` names (a
//! superuser's URL; `scripts/test.sh` starts a throwaway cluster with
//! `scripts/pg-test-cluster.sh` and sets it). Tests run in parallel, each in its own database.
//!
//! Without the variable a PostgreSQL test says it is skipped, and why, and passes; with `CI`
//! set it fails instead, so CI cannot silently skip PostgreSQL.

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection;

pub const URL_VAR: &str = "RAGSTORE_TEST_DATABASE_URL";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The cluster's URL, or `None` (the test skips) when it is not set outside CI.
pub fn cluster_url(test: &str) -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                !in_ci(),
                "{test}: CI is set but {URL_VAR} is not, so this PostgreSQL test cannot run. \
                 scripts/test.sh starts a cluster and sets it; to run by hand: \
                 eval \"$(scripts/pg-test-cluster.sh start)\""
            );
            eprintln!(
                "SKIPPED {test}: {URL_VAR} is not set, so there is no PostgreSQL to test \
                 against. Start one with: eval \"$(scripts/pg-test-cluster.sh start)\" \
                 (scripts/test.sh does this for the whole suite)"
            );
            None
        }
    }
}

/// Creates a new, empty database in the cluster and returns its URL; `None` when the test
/// skips (see [`cluster_url`]). Databases are left behind (a throwaway cluster goes with them).
pub async fn fresh_database(test: &str) -> Option<String> {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let admin = cluster_url(test)?;
    let name = format!(
        "ragstore_t{}_{}_{:08x}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    );
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("{test}: cannot connect to {URL_VAR}: {e}"));
    sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let mut url = reqwest::Url::parse(&admin).unwrap();
    url.set_path(&format!("/{name}"));
    Some(url.to_string())
}
