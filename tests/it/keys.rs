//! API keys, quotas and rate limits, as a client meets them (the cross-project walk is in
//! `isolation.rs`).

use ragstore::db::Metadata;
use ragstore::domain::{ProjectId, QuotaOverrides, Quotas, VectorStoreId};
use ragstore::service::auth::AuthService;
use ragstore::{App, Config};
use serde_json::{json, Value};
use std::sync::Arc;

use crate::{assert_error, client_with_key, files_under, models_dir, TestApp};

async fn set_quotas(meta: &Arc<dyn Metadata>, q: QuotaOverrides) {
    assert!(meta
        .set_project_quotas(&ProjectId::default_project(), &q)
        .await
        .unwrap());
}

#[tokio::test]
async fn a_server_runs_open_until_a_key_exists() {
    let app = TestApp::spawn().await;
    let (status, _) = app.get_json("/v1/files").await;
    assert_eq!(status, 200, "no keys: open");
    let (_, _, key) = &app.auth().create_key("team", None).await.unwrap();
    // The verdict "no keys" is remembered for a few seconds; a restart sees the key at once.
    let dir = app.stop().await;
    let app = TestApp::spawn_in(dir, |_| {}).await;
    let (status, body) = app.get_json("/v1/files").await;
    assert_eq!(status, 401);
    assert_eq!(
        assert_error(&body, "invalid_request_error")["code"],
        "invalid_api_key"
    );
    let res = client_with_key(key.as_str())
        .get(app.url("/v1/files"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // Health and readiness never need a key.
    assert_eq!(
        app.client
            .get(app.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn a_non_loopback_address_needs_keys_or_insecure_no_auth() {
    let dir = tempfile::tempdir().unwrap();
    let config = |insecure: bool| {
        let mut c = Config::for_data_dir(dir.path().join("data"));
        c.models_dir = models_dir();
        c.workers_enabled = false;
        c.addr = "0.0.0.0:0".parse().unwrap();
        c.insecure_no_auth = insecure;
        c
    };
    let refused = App::build(config(false)).await.err().unwrap().to_string();
    assert!(refused.contains("without API keys"), "{refused}");
    assert!(refused.contains("--insecure-no-auth"), "{refused}");
    let app = App::build(config(true)).await.unwrap();
    let auth = AuthService::new(
        app.backends().meta.clone(),
        app.backends().clock.clone(),
        false,
        Quotas::DEFAULT,
    );
    auth.create_key("ops", None).await.unwrap();
    // Not open even though allowed: keys exist. And without the flag it starts now.
    assert!(auth.keys_required().await.unwrap());
    drop(app);
    App::build(config(false)).await.unwrap();
}

#[tokio::test]
async fn a_burst_gets_exactly_the_limit_through_with_openais_headers() {
    let app = TestApp::spawn_with(|c| {
        c.rate_limits.deletions = 10;
        c.rate_limits.retrievals = 0;
    })
    .await;
    let (_, _, key) = &app.auth().create_key("burst", None).await.unwrap();
    let client = client_with_key(key.as_str());
    let url = app.url("/v1/files/file-doesnotexist0000000000");
    let responses =
        futures_util::future::join_all((0..30).map(|_| client.delete(&url).send())).await;
    let mut passed = 0;
    let mut refused = 0;
    for res in responses {
        let res = res.unwrap();
        let h = res.headers().clone();
        assert_eq!(h["x-ratelimit-limit-requests"], "10");
        assert!(h.contains_key("x-ratelimit-remaining-requests"));
        assert!(h.contains_key("x-ratelimit-reset-requests"));
        match res.status().as_u16() {
            404 => passed += 1,
            429 => {
                refused += 1;
                assert_eq!(h["x-ratelimit-remaining-requests"], "0");
                let after: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((1..=6).contains(&after), "{after}");
                assert!(h.contains_key("retry-after-ms"));
                let body: Value = res.json().await.unwrap();
                assert_eq!(
                    assert_error(&body, "requests")["code"],
                    "rate_limit_exceeded"
                );
            }
            s => panic!("unexpected {s}"),
        }
    }
    assert_eq!((passed, refused), (10, 20));
    // A limit off (0) sends no headers; another kind has its own allowance.
    let res = client.get(app.url("/v1/files")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(!res.headers().contains_key("x-ratelimit-limit-requests"));
    // Another key has its own allowance.
    let (_, _, other) = &app.auth().create_key("burst", None).await.unwrap();
    let res = client_with_key(other.as_str())
        .delete(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn replicas_divide_each_limit() {
    let app = TestApp::spawn_with(|c| {
        c.rate_limits.deletions = 10;
        c.rate_limits.replicas = 2;
    })
    .await;
    let (_, _, key) = &app.auth().create_key("half", None).await.unwrap();
    let client = client_with_key(key.as_str());
    let url = app.url("/v1/files/file-doesnotexist0000000000");
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(client.delete(&url).send().await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [404, 404, 404, 404, 404, 429, 429, 429]);
}

#[tokio::test]
async fn the_stored_bytes_quota_refuses_before_anything_is_written() {
    let app = TestApp::spawn().await;
    set_quotas(
        &app.state.meta,
        QuotaOverrides {
            stored_bytes: Some(100),
            ..Default::default()
        },
    )
    .await;
    app.upload("a.txt", vec![b'a'; 60], "assistants").await;
    let blobs = app.blob_keys().await.len();
    let res = app.upload_raw("b.txt", vec![b'b'; 60], "assistants").await;
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    let e = assert_error(&body, "invalid_request_error");
    assert_eq!(e["code"], "quota_exceeded");
    assert!(e["message"].as_str().unwrap().contains("100 bytes"), "{e}");
    let (_, list) = app.get_json("/v1/files").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(app.blob_keys().await.len(), blobs);
    // The Uploads API refuses a declared size that cannot fit, before any part.
    let (status, body) = app
        .post_json(
            "/v1/uploads",
            json!({"filename": "c.txt", "purpose": "assistants", "bytes": 60, "mime_type": "text/plain"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded");
    // Deleting frees the room.
    let (_, list) = app.get_json("/v1/files").await;
    let id = list["data"][0]["id"].as_str().unwrap().to_owned();
    app.client
        .delete(app.url(&format!("/v1/files/{id}")))
        .send()
        .await
        .unwrap();
    app.upload("b.txt", vec![b'b'; 60], "assistants").await;
}

#[tokio::test]
async fn the_database_refuses_a_file_over_quota_even_after_the_early_check() {
    // Two uploads racing past the early check: the insert's own check keeps the quota.
    let app = TestApp::spawn().await;
    let meta = app.state.meta.clone();
    let file = |n: i64| ragstore::domain::FileRecord {
        id: ragstore::domain::FileId::generate(),
        project_id: ProjectId::default_project(),
        filename: format!("f{n}.txt"),
        purpose: ragstore::domain::Purpose::Assistants,
        bytes: 60,
        created_at: 1,
        expires_at: None,
        status: ragstore::domain::FileStatus::Uploaded,
        status_details: None,
        storage_key: format!("k{n}"),
    };
    meta.insert_file(&file(1), None, 100).await.unwrap();
    let err = meta.insert_file(&file(2), None, 100).await.unwrap_err();
    assert!(
        matches!(
            err,
            ragstore::domain::Error::QuotaExceeded { limit: 100, .. }
        ),
        "{err}"
    );
    assert_eq!(
        meta.stored_bytes(&ProjectId::default_project())
            .await
            .unwrap(),
        60
    );
}

#[tokio::test]
async fn store_and_files_per_store_quotas() {
    let app = TestApp::spawn().await;
    set_quotas(
        &app.state.meta,
        QuotaOverrides {
            stores: Some(2),
            files_per_store: Some(1),
            ..Default::default()
        },
    )
    .await;
    let f1 = app.upload("a.txt", b"alpha".to_vec(), "assistants").await["id"].clone();
    let f2 = app.upload("b.txt", b"beta".to_vec(), "assistants").await["id"].clone();
    // Two files in a new store: over, and no store is left behind.
    let (status, body) = app
        .post_json(
            "/v1/vector_stores",
            json!({"name": "two", "file_ids": [f1, f2]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded");
    let (_, stores) = app.get_json("/v1/vector_stores").await;
    assert_eq!(stores["data"].as_array().unwrap().len(), 0);
    let (_, vs) = app
        .post_json(
            "/v1/vector_stores",
            json!({"name": "one", "file_ids": [f1]}),
        )
        .await;
    let vs = vs["id"].as_str().unwrap().to_owned();
    let (status, body) = app
        .post_json(
            &format!("/v1/vector_stores/{vs}/files"),
            json!({"file_id": f2}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded");
    let (status, body) = app
        .post_json(
            &format!("/v1/vector_stores/{vs}/file_batches"),
            json!({"file_ids": [f2]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (_, files) = app.get_json(&format!("/v1/vector_stores/{vs}/files")).await;
    assert_eq!(files["data"].as_array().unwrap().len(), 1);
    // Attaching a file already there changes nothing and is not refused.
    let (status, _) = app
        .post_json(
            &format!("/v1/vector_stores/{vs}/files"),
            json!({"file_id": f1}),
        )
        .await;
    assert_eq!(status, 200);
    // Stores per project.
    let (status, _) = app
        .post_json("/v1/vector_stores", json!({"name": "two"}))
        .await;
    assert_eq!(status, 200);
    let (status, body) = app
        .post_json("/v1/vector_stores", json!({"name": "three"}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded");
    let (_, stores) = app.get_json("/v1/vector_stores").await;
    assert_eq!(stores["data"].as_array().unwrap().len(), 2);
    // Jobs: only the one store's file was queued.
    assert!(app.drain().await >= 1);
}

#[tokio::test]
async fn points_not_marked_with_their_project_are_adopted_at_start() {
    let app = TestApp::spawn().await;
    let f = app
        .upload(
            "rocks.txt",
            b"Basalt forms when lava cools quickly.".to_vec(),
            "assistants",
        )
        .await["id"]
        .clone();
    let (_, vs) = app
        .post_json("/v1/vector_stores", json!({"name": "geo", "file_ids": [f]}))
        .await;
    let vs = vs["id"].as_str().unwrap().to_owned();
    app.drain().await;
    let hits = |app: &TestApp| {
        let (vs, client, url) = (
            vs.clone(),
            app.client.clone(),
            app.url(&format!("/v1/vector_stores/{vs}/search")),
        );
        async move {
            let _ = vs;
            let body: Value = client
                .post(url)
                .json(&json!({"query": "lava"}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            body["data"].as_array().unwrap().len()
        }
    };
    assert_eq!(hits(&app).await, 1);
    // As an index written before projects were recorded: its points carry another mark.
    let store = VectorStoreId::parse(&vs).unwrap();
    let old = ProjectId::parse("proj_before").unwrap();
    assert_eq!(app.state.index.adopt_store(&store, &old).await.unwrap(), 1);
    assert_eq!(hits(&app).await, 0, "the index filter carries the project");
    let dir = app.stop().await;
    let app = TestApp::spawn_in(dir, |_| {}).await;
    assert_eq!(hits(&app).await, 1);
}

// --- request hardening ----------------------------------------------------------------------

#[tokio::test]
async fn json_bodies_are_bounded_in_depth_and_size() {
    let app = TestApp::spawn().await;
    let post = |body: Vec<u8>| {
        app.client
            .post(app.url("/v1/vector_stores"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    // 100,000 nested arrays: refused, not a stack overflow.
    let deep = format!(
        "{{\"name\": {}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let res = post(deep.into_bytes()).await.unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_error(&body, "invalid_request_error");
    // Over the JSON body limit (2 MiB): 413 before it is parsed.
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(3 << 20));
    let res = post(big.into_bytes()).await.unwrap();
    assert_eq!(res.status(), 413);
    // Filters nested beyond 32 levels.
    let (_, vs) = app
        .post_json("/v1/vector_stores", json!({"name": "f"}))
        .await;
    let vs = vs["id"].as_str().unwrap().to_owned();
    let mut filter = json!({"type": "eq", "key": "k", "value": 1});
    for _ in 0..40 {
        filter = json!({"type": "and", "filters": [filter]});
    }
    let (status, body) = app
        .post_json(
            &format!("/v1/vector_stores/{vs}/search"),
            json!({"query": "x", "filters": filter}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "filters");
    // And the server is still serving.
    assert_eq!(app.get_json("/v1/vector_stores").await.0, 200);
}

#[tokio::test]
async fn a_filename_is_never_a_path() {
    let app = TestApp::spawn().await;
    let data = app.data_dir();
    let before: Vec<_> = files_under(&data);
    for name in [
        "../../escape.txt",
        "/etc/passwd",
        "a/../../b.txt",
        "..",
        "C:\\x.txt",
    ] {
        let f = app.upload(name, b"payload".to_vec(), "assistants").await;
        assert_eq!(f["filename"], name);
        let id = f["id"].as_str().unwrap();
        let new: Vec<_> = files_under(&data)
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        // The bytes are stored under the file's id, whatever the storage.
        assert!(app.blob_exists(&format!("files/{id}")).await, "{new:?}");
        assert!(new.iter().all(|p| p.starts_with(&data)), "{new:?}");
    }
    assert!(!app.dir.path().join("escape.txt").exists());
    assert!(!data.parent().unwrap().join("b.txt").exists());
}

/// Log lines written on this thread while the guard lives (the test runtime runs the server on
/// the test's thread): the audit lines, and warnings and errors.
///
/// One subscriber for the whole test process, installed once, writes each line to the buffer of
/// the thread that logged it. (A subscriber per test with `set_default` lost lines now and then
/// when tests ran side by side: tracing caches each call site's interest across all of them.)
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

thread_local! {
    static SINK: std::cell::RefCell<Option<Captured>> = const { std::cell::RefCell::new(None) };
}

/// Writes to this thread's capture, if any.
struct ThreadSink;

impl std::io::Write for ThreadSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        SINK.with(|s| {
            if let Some(c) = &*s.borrow() {
                c.0.lock().unwrap().extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Stops this thread's capture when dropped.
struct CaptureGuard;

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        SINK.with(|s| s.borrow_mut().take());
    }
}

impl Captured {
    fn install() -> (Self, CaptureGuard) {
        static GLOBAL: std::sync::Once = std::sync::Once::new();
        GLOBAL.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_writer(|| ThreadSink)
                .with_ansi(false)
                .with_env_filter("ragstore=warn,ragstore::audit=info")
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in the test process");
        });
        let log = Captured::default();
        SINK.with(|s| *s.borrow_mut() = Some(log.clone()));
        (log, CaptureGuard)
    }

    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[tokio::test]
async fn creates_and_deletes_leave_an_audit_line_without_the_key() {
    let (log, _guard) = Captured::install();
    let app = TestApp::spawn().await;
    let (key_row, project, key) = &app.auth().create_key("audited", None).await.unwrap();
    let dir = app.stop().await;
    let app = TestApp::spawn_in(dir, |_| {}).await;
    let client = client_with_key(key.as_str());
    let form = reqwest::multipart::Form::new()
        .text("purpose", "assistants")
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("a.txt"),
        );
    let f: Value = client
        .post(app.url("/v1/files"))
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = f["id"].as_str().unwrap();
    client
        .delete(app.url(&format!("/v1/files/{id}")))
        .send()
        .await
        .unwrap();
    // Reads are not audited; the embeddings route needs a key like every /v1 route.
    client.get(app.url("/v1/files")).send().await.unwrap();
    let res = app
        .client
        .post(app.url("/v1/embeddings"))
        .json(&json!({"input": "x", "model": "all-MiniLM-L6-v2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let text = log.text();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("audit")).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains("method=POST") && lines[0].contains("path=\"/v1/files\""),
        "{text}"
    );
    assert!(
        lines[1].contains("method=DELETE") && lines[1].contains(id),
        "{text}"
    );
    for l in &lines {
        assert!(
            l.contains(project.id.as_str()) && l.contains(key_row.id.as_str()),
            "{l}"
        );
    }
    assert!(
        !text.contains(key.as_str()),
        "the key itself is never logged"
    );
}

/// `ragstore keys …` and `ragstore projects …` as an operator runs them, against the database
/// `db` names (`--data-dir DIR` or `--database-url URL`).
pub fn admin(db: &[&str], args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ragstore"))
        .args(args)
        .args(db)
        // Only `db` says where the database is.
        .env_remove("RAGSTORE_DATA_DIR")
        .env_remove("RAGSTORE_DATABASE_URL")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_admin_commands_list_keys_and_projects_without_showing_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    the_admin_commands_work_on(&["--data-dir", data.to_str().unwrap()]);
    assert!(data.join("ragstore.db").exists());
}

/// Creates, lists and revokes a key and sets and lists quotas with the real binary on the
/// database `db` names; returns the key, now revoked.
pub fn the_admin_commands_work_on(db: &[&str]) -> String {
    let (ok, key, said) = admin(
        db,
        &["keys", "create", "--project", "research", "--name", "nb"],
    );
    assert!(ok, "{said}");
    let key = key.trim().to_owned();
    assert!(key.starts_with("rsk-"), "{key}");
    let id = said
        .split_whitespace()
        .find(|w| w.starts_with("key_"))
        .unwrap()
        .to_owned();

    let (ok, listed, _) = admin(db, &["keys", "list"]);
    assert!(ok);
    let row = listed.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(row.contains("research") && row.contains("nb"), "{row}");
    assert!(row.ends_with(" -"), "not revoked: {row}");
    assert!(!listed.contains(&key[4..]), "a key is never shown again");

    let (ok, _, said) = admin(db, &["keys", "revoke", &id]);
    assert!(ok, "{said}");
    let (_, listed, _) = admin(db, &["keys", "list"]);
    let row = listed.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(!row.ends_with(" -"), "revoked: {row}");
    let (ok, _, said) = admin(db, &["keys", "revoke", &id]);
    assert!(!ok && said.contains("no live key"), "{said}");

    let (ok, _, said) = admin(
        db,
        &[
            "projects",
            "set-quota",
            "research",
            "--stored-bytes",
            "10MB",
            "--stores",
            "3",
        ],
    );
    assert!(ok, "{said}");
    let (ok, listed, _) = admin(db, &["projects", "list", "--quota-files-per-store", "7"]);
    assert!(ok);
    let row = listed.lines().find(|l| l.contains(" research ")).unwrap();
    assert!(
        row.contains("10000000") && row.contains(" 3"),
        "its own quotas: {row}"
    );
    assert!(row.contains("7 (default)"), "the server's default: {row}");
    assert!(
        listed.lines().any(|l| l.starts_with("proj_default ")),
        "{listed}"
    );
    key
}

#[tokio::test]
async fn a_server_without_keys_says_in_its_log_that_it_runs_open() {
    let (log, _guard) = Captured::install();
    let app = TestApp::spawn().await;
    assert!(
        log.text()
            .contains("no API keys: serving without authentication"),
        "{}",
        log.text()
    );
    app.auth().create_key("team", None).await.unwrap();
    let dir = app.stop().await;
    let (log, _guard) = Captured::install();
    let _app = TestApp::spawn_in(dir, |_| {}).await;
    assert!(!log.text().contains("no API keys"), "{}", log.text());
}

/// A request refused before its body was read (a 429 here) must not leave the client a kept-alive
/// connection the server then drops: the next request on it is answered (the body was drained),
/// or the refusal said `connection: close`. The body arrives a moment after the head, as it does
/// from a client that writes a multipart upload in pieces.
#[tokio::test]
async fn the_request_after_a_refusal_on_the_same_connection_is_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(|c| c.rate_limits.uploads = 1).await;
    let (_, _, key) = &app.auth().create_key("refused", None).await.unwrap();
    let addr = app.base.trim_start_matches("http://").to_owned();
    let client = client_with_key(key.as_str());
    // Spend the key's one upload.
    let res = app
        .upload_raw_as(&client, "a.txt", b"hello".to_vec(), "assistants")
        .await;
    assert_eq!(res.status(), 200);

    let mut body = crate::multipart_head("assistants", "b.txt");
    body.extend_from_slice(&[b'x'; 20_000]);
    body.extend_from_slice(&crate::multipart_tail());
    for round in 0..3 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /v1/files HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
             Content-Type: multipart/form-data; boundary={}\r\nContent-Length: {}\r\n\r\n",
            key.as_str(),
            crate::BOUNDARY,
            body.len()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        // The refusal may already be on its way; the client, like an SDK's, finishes its request.
        let _ = s.write_all(&body).await;
        let second = format!(
            "GET /v1/files HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\r\n",
            key.as_str()
        );
        let sent_second = s.write_all(second.as_bytes()).await.is_ok();
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let text = String::from_utf8_lossy(&got).to_string();
            if text.matches("HTTP/1.1 ").count() >= 2 && text.ends_with("}") {
                break;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match tokio::time::timeout(left, s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            }
        }
        let text = String::from_utf8_lossy(&got).to_lowercase();
        assert!(text.starts_with("http/1.1 429"), "round {round}: {text}");
        let first_head = text.split("\r\n\r\n").next().unwrap();
        let said_close = first_head.contains("\r\nconnection: close");
        let answered = sent_second && text.matches("http/1.1 200").count() == 1;
        assert!(
            said_close || answered,
            "round {round}: the connection was dropped without warning after the refusal: {text}"
        );
    }
    // A body too large to drain (and a 401 alike): refused at once with `connection: close`.
    for auth in [
        format!("Authorization: Bearer {}\r\n", key.as_str()),
        String::new(),
    ] {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /v1/files HTTP/1.1\r\nHost: localhost\r\n{auth}\
             Content-Type: multipart/form-data; boundary={}\r\nContent-Length: 50000000\r\n\r\n",
            crate::BOUNDARY
        );
        s.write_all(head.as_bytes()).await.unwrap();
        // The refusal does not wait for a large body.
        let text = first_answer(&mut s).await;
        let status = if auth.is_empty() { "401" } else { "429" };
        assert!(text.starts_with(&format!("http/1.1 {status}")), "{text}");
        assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
    }
    app.stop().await;
}

/// What the server sends first on `s` (within 5 s), lowercased.
async fn first_answer(s: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 8192];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).to_lowercase()
}

/// Any early answer that leaves the body unread (here a 404 for an unknown route) closes the
/// connection and says so, rather than leaving the client a connection about to drop.
#[tokio::test]
async fn an_answer_that_leaves_the_body_unread_says_connection_close() {
    use tokio::io::AsyncWriteExt;
    let app = TestApp::spawn().await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(
        b"POST /v1/nothing-here HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
          Content-Length: 5000\r\n\r\n",
    )
    .await
    .unwrap();
    let text = first_answer(&mut s).await;
    assert!(text.starts_with("http/1.1 404"), "{text}");
    assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
    // A request whose body is read to the end keeps its connection.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let body = br#"{"name":"kept"}"#;
    let req = format!(
        "POST /v1/vector_stores HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let text = first_answer(&mut s).await;
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(!text.contains("connection: close"), "{text}");
    app.stop().await;
}
