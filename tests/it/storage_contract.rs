//! The promises of the [`FileStorage`] seam, checked on local disk and on a real S3-compatible
//! store (moto's server, started by `scripts/s3-test-server.sh`; `scripts/test.sh` starts it and
//! exports `RAGSTORE_TEST_S3_URL` and the `AWS_*` variables). Each S3 test works under its own
//! prefix of the bucket, so tests run in parallel.
//!
//! Without `RAGSTORE_TEST_S3_URL` the S3 tests say they skip; with `CI` set they fail instead.

use bytes::Bytes;
use futures_util::StreamExt;
use md5::{Digest, Md5};
use ragstore::storage::local::LocalStorage;
use ragstore::storage::s3::S3Storage;
use ragstore::storage::{FileStorage, StagedFile, Staging};
use std::sync::Arc;
use tempfile::TempDir;

use crate::TestApp;

pub struct Store {
    pub storage: Arc<dyn FileStorage>,
    pub staging: Staging,
    /// Whether the store joins parts itself ([`FileStorage::compose`]): S3 does, by copies.
    pub composes: bool,
    _dir: TempDir,
}

/// `s3://bucket/<unique prefix>` on the test server, or `None` (with a word why) if there is
/// none; CI must have one.
pub fn s3_test_url() -> Option<String> {
    match std::env::var("RAGSTORE_TEST_S3_URL") {
        Ok(base) if !base.is_empty() => Some(format!(
            "{}/t-{}",
            base.trim_end_matches('/'),
            ragstore::domain::FileId::generate()
        )),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "RAGSTORE_TEST_S3_URL is not set: CI must run the S3 storage tests \
                 (scripts/test.sh starts a moto S3 server and sets it)"
            );
            eprintln!(
                "skipped: no S3 server (set RAGSTORE_TEST_S3_URL and AWS_ENDPOINT_URL, or run \
                 scripts/test.sh, which starts moto)"
            );
            None
        }
    }
}

pub async fn local() -> Option<Store> {
    let dir = tempfile::tempdir().unwrap();
    Some(Store {
        storage: Arc::new(LocalStorage::new(dir.path().join("blobs")).unwrap()),
        staging: Staging::new(dir.path().join("tmp")).unwrap(),
        composes: false,
        _dir: dir,
    })
}

pub async fn s3() -> Option<Store> {
    let url = s3_test_url()?;
    let dir = tempfile::tempdir().unwrap();
    Some(Store {
        storage: Arc::new(S3Storage::open(&url).unwrap()),
        staging: Staging::new(dir.path().join("tmp")).unwrap(),
        composes: true,
        _dir: dir,
    })
}

/// Deterministic bytes that differ at every offset, so a misplaced part shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u64)
                .wrapping_mul(2_654_435_761)
                .wrapping_add(seed as u64) as u8
        })
        .map(|b| b ^ seed)
        .collect()
}

async fn stage(s: &Store, bytes: &[u8]) -> StagedFile {
    let mut w = s.staging.writer(false);
    for chunk in bytes.chunks(300_000) {
        w.write(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    w.finish().await.unwrap()
}

/// Reads a blob whole, checking that it comes as a stream of bounded chunks.
async fn read(s: &Store, key: &str) -> Option<Vec<u8>> {
    let blob = s.storage.get(key).await.unwrap()?;
    let mut out = Vec::with_capacity(blob.len as usize);
    let mut stream = blob.stream;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        assert!(chunk.len() <= 16 << 20, "a chunk of {} bytes", chunk.len());
        out.extend_from_slice(&chunk);
    }
    assert_eq!(out.len() as u64, blob.len, "declared length of {key}");
    Some(out)
}

async fn blobs_round_trip_and_missing_is_none(s: Store) {
    assert!(s.storage.get("files/file-none").await.unwrap().is_none());
    for (key, len) in [("files/file-empty", 0), ("files/file-small", 1_000)] {
        let bytes = pattern(len, 7);
        s.storage.put(key, stage(&s, &bytes).await).await.unwrap();
        assert_eq!(read(&s, key).await.unwrap(), bytes, "{key}");
    }
}

/// Bigger than one S3 part (8 MiB), so it goes through a multipart upload in order.
async fn a_large_blob_streams_in_and_out_intact(s: Store) {
    let bytes = pattern(21 << 20, 3);
    let want = Md5::digest(&bytes);
    s.storage
        .put("files/file-large", stage(&s, &bytes).await)
        .await
        .unwrap();
    drop(bytes);
    let got = read(&s, "files/file-large").await.unwrap();
    assert_eq!(got.len(), 21 << 20);
    assert_eq!(Md5::digest(&got), want);
}

/// `compose` joins parts in the order given, or declines and writes nothing; S3 joins parts
/// of at least 5 MiB (the last may be smaller) and declines smaller ones.
async fn compose_joins_parts_in_order_or_declines(s: Store) {
    let parts = [
        ("parts/up/a", pattern((5 << 20) + 7, 1)),
        ("parts/up/b", pattern(5 << 20, 2)),
        ("parts/up/c", pattern(4_000, 3)),
    ];
    for (key, bytes) in &parts {
        s.storage.put(key, stage(&s, bytes).await).await.unwrap();
    }
    let sized = |i: usize| (parts[i].0.to_owned(), parts[i].1.len() as u64);

    let joined = s
        .storage
        .compose("files/file-joined", &[sized(1), sized(0), sized(2)])
        .await
        .unwrap();
    assert_eq!(joined, s.composes);
    let got = read(&s, "files/file-joined").await;
    if joined {
        let want = [&parts[1].1[..], &parts[0].1[..], &parts[2].1[..]].concat();
        let got = got.expect("a joined blob");
        assert_eq!(got.len(), want.len());
        assert!(got == want, "the parts joined out of order");
    } else {
        assert!(got.is_none(), "a declined compose wrote something");
    }
    // The parts stay as they were.
    for (key, bytes) in &parts {
        assert!(read(&s, key).await.unwrap() == *bytes, "{key}");
    }

    // A small part before the last: no store can join it by copies.
    let joined = s
        .storage
        .compose("files/file-small", &[sized(2), sized(0)])
        .await
        .unwrap();
    assert!(!joined);
    assert!(read(&s, "files/file-small").await.is_none());
    assert!(!s.storage.compose("files/file-none", &[]).await.unwrap());
}

/// A range streams exactly its bytes (across S3's and the disk's read chunks), cut at the end
/// of the blob; a missing blob is `None`.
async fn ranges_stream_only_their_bytes(s: Store) {
    let bytes = pattern((3 << 20) + 11, 8);
    s.storage
        .put("files/file-ranged", stage(&s, &bytes).await)
        .await
        .unwrap();
    let len = bytes.len() as u64;
    for range in [
        0..1,
        0..len,
        5..(2 << 20) + 3,
        len - 1..len,
        1_000_000..len,
        7..7,
    ] {
        let blob = s
            .storage
            .get_range("files/file-ranged", range.clone())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(blob.len, range.end - range.start, "{range:?}");
        let mut got = Vec::new();
        let mut stream = blob.stream;
        while let Some(chunk) = stream.next().await {
            got.extend_from_slice(&chunk.unwrap());
        }
        assert!(
            got == bytes[range.start as usize..range.end as usize],
            "{range:?}: {} bytes",
            got.len()
        );
    }
    assert!(s
        .storage
        .get_range("files/file-none", 0..10)
        .await
        .unwrap()
        .is_none());
}

async fn deletes_are_idempotent_and_prefix_deletes_stay_inside(s: Store) {
    for key in [
        "parts/upload-a/part-1",
        "parts/upload-a/part-2",
        "parts/upload-ab/part-3",
        "files/file-1",
    ] {
        s.storage
            .put(key, stage(&s, key.as_bytes()).await)
            .await
            .unwrap();
    }
    s.storage.delete("files/file-1").await.unwrap();
    s.storage.delete("files/file-1").await.unwrap();
    s.storage.delete("files/file-never").await.unwrap();
    assert!(read(&s, "files/file-1").await.is_none());

    s.storage.delete_prefix("parts/upload-a/").await.unwrap();
    s.storage.delete_prefix("parts/upload-a/").await.unwrap();
    assert!(read(&s, "parts/upload-a/part-1").await.is_none());
    assert!(read(&s, "parts/upload-a/part-2").await.is_none());
    // A prefix is a directory, not a string prefix: upload-ab is another upload.
    assert_eq!(
        read(&s, "parts/upload-ab/part-3").await.unwrap(),
        b"parts/upload-ab/part-3"
    );
}

async fn list_finds_every_blob_under_a_prefix(s: Store) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for key in ["files/file-1", "files/file-2", "parts/upload-x/part-1"] {
        s.storage.put(key, stage(&s, b"x").await).await.unwrap();
    }
    let mut files = s.storage.list("files/").await.unwrap();
    files.sort_by(|a, b| a.key.cmp(&b.key));
    let keys: Vec<_> = files.iter().map(|l| l.key.as_str()).collect();
    assert_eq!(keys, ["files/file-1", "files/file-2"]);
    for l in &files {
        assert!((l.modified - now).abs() < 120, "{l:?} vs {now}");
    }
    let parts = s.storage.list("parts/").await.unwrap();
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].key, "parts/upload-x/part-1");
    assert!(s.storage.list("texts/").await.unwrap().is_empty());
}

async fn unsafe_keys_are_refused(s: Store) {
    for key in ["", "../escape", "files/../../x", "files//x", "/abs"] {
        let staged = stage(&s, b"x").await;
        assert!(
            s.storage.put(key, staged).await.is_err(),
            "key {key:?} was accepted"
        );
    }
}

macro_rules! storage_tests {
    ($backend:ident, $open:ident, [$($check:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    if let Some(store) = super::$open().await {
                        super::$check(store).await
                    }
                }
            )*
        }
    };
}

macro_rules! all_storage_tests {
    ($backend:ident, $open:ident) => {
        storage_tests!(
            $backend,
            $open,
            [
                blobs_round_trip_and_missing_is_none,
                a_large_blob_streams_in_and_out_intact,
                compose_joins_parts_in_order_or_declines,
                ranges_stream_only_their_bytes,
                deletes_are_idempotent_and_prefix_deletes_stay_inside,
                list_finds_every_blob_under_a_prefix,
                unsafe_keys_are_refused,
            ]
        );
    };
}

all_storage_tests!(local_storage, local);
all_storage_tests!(s3_storage, s3);

/// Creates an Upload of `parts`' total size and adds them in this order; its id and the
/// parts' ids.
async fn upload_parts(app: &TestApp, filename: &str, parts: &[&[u8]]) -> (String, Vec<String>) {
    let bytes: usize = parts.iter().map(|p| p.len()).sum();
    let (s, up) = app
        .post_json(
            "/v1/uploads",
            serde_json::json!({"purpose": "assistants", "filename": filename,
                "bytes": bytes, "mime_type": "text/plain"}),
        )
        .await;
    assert_eq!(s, 200, "{up}");
    let up_id = up["id"].as_str().unwrap().to_owned();
    let mut ids = Vec::new();
    for bytes in parts {
        let form = reqwest::multipart::Form::new().part(
            "data",
            reqwest::multipart::Part::bytes(bytes.to_vec()).file_name("part"),
        );
        let res = app
            .client
            .post(app.url(&format!("/v1/uploads/{up_id}/parts")))
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let part: serde_json::Value = res.json().await.unwrap();
        ids.push(part["id"].as_str().unwrap().to_owned());
    }
    (up_id, ids)
}

/// The whole app on S3: a file and an Upload land in the bucket (nothing under the data dir's
/// blobs), download intact, and a delete removes the object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_keeps_files_and_uploads_in_s3() {
    let Some(url) = s3_test_url() else { return };
    let app = TestApp::spawn_with(|c| c.storage_url = Some(url.clone())).await;
    let bucket = S3Storage::open(&url).unwrap();

    let body = pattern(300_000, 9);
    let file = app.upload("notes.txt", body.clone(), "assistants").await;
    let id = file["id"].as_str().unwrap().to_owned();
    let res = app
        .client
        .get(app.url(&format!("/v1/files/{id}/content")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap().as_ref(), body.as_slice());
    assert_eq!(bucket.list("files/").await.unwrap().len(), 1);
    assert!(
        !app.data_dir().join("blobs/files").exists()
            || std::fs::read_dir(app.data_dir().join("blobs/files"))
                .unwrap()
                .next()
                .is_none(),
        "a blob was written to local disk"
    );

    // An Upload in two parts, assembled in the client's order.
    let (a, b) = (pattern(70_000, 1), pattern(50_000, 2));
    let (up_id, parts) = upload_parts(&app, "two.txt", &[&b, &a]).await;
    assert_eq!(bucket.list("parts/").await.unwrap().len(), 2);
    let (s, done) = app
        .post_json(
            &format!("/v1/uploads/{up_id}/complete"),
            serde_json::json!({"part_ids": [parts[1], parts[0]]}),
        )
        .await;
    assert_eq!(s, 200, "{done}");
    let assembled = done["file"]["id"].as_str().unwrap().to_owned();
    let res = app
        .client
        .get(app.url(&format!("/v1/files/{assembled}/content")))
        .send()
        .await
        .unwrap();
    let mut want = a.clone();
    want.extend_from_slice(&b);
    assert_eq!(res.bytes().await.unwrap().as_ref(), want.as_slice());

    // Deleting removes the object (the purge runs as a job).
    let res = app
        .client
        .delete(app.url(&format!("/v1/files/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    app.drain().await;
    let left: Vec<_> = bucket
        .list("files/")
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.key)
        .collect();
    assert_eq!(left, [format!("files/{assembled}")]);
    app.stop().await;
}

/// An Upload whose parts S3 can join is assembled inside the bucket by part copies (the file is
/// a multipart object of as many parts as the Upload had); with an md5 to check, the parts are
/// read back and the file written from them (8 MiB parts). Both give the same bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_of_large_parts_is_joined_inside_s3() {
    let Some(url) = s3_test_url() else { return };
    let app = TestApp::spawn_with(|c| c.storage_url = Some(url.clone())).await;
    let bucket = S3Storage::open(&url).unwrap();
    let chunks = [
        pattern((5 << 20) + 7, 4),
        pattern(5 << 20, 5),
        pattern(4_000, 6),
    ];
    // Given in the order b, a, c: not the order they were added.
    let want = [&chunks[1][..], &chunks[0][..], &chunks[2][..]].concat();
    for md5 in [None, Some(format!("{:x}", Md5::digest(&want)))] {
        let added: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        let (up_id, parts) = upload_parts(&app, "big.txt", &added).await;
        let mut complete = serde_json::json!({"part_ids": [parts[1], parts[0], parts[2]]});
        if let Some(md5) = &md5 {
            complete["md5"] = md5.clone().into();
        }
        let (s, done) = app
            .post_json(&format!("/v1/uploads/{up_id}/complete"), complete)
            .await;
        assert_eq!(s, 200, "{done}");
        assert_eq!(done["file"]["bytes"], want.len());
        let file = done["file"]["id"].as_str().unwrap().to_owned();
        let res = app
            .client
            .get(app.url(&format!("/v1/files/{file}/content")))
            .send()
            .await
            .unwrap();
        assert!(res.bytes().await.unwrap().as_ref() == want.as_slice());
        // S3 names a multipart object's parts in its ETag: `"<md5 of md5s>-<parts>"`.
        let etag = bucket
            .etag(&format!("files/{file}"))
            .await
            .unwrap()
            .unwrap();
        let joined_parts = if md5.is_none() { "-3" } else { "-2" };
        assert!(
            etag.trim_matches('"').ends_with(joined_parts),
            "md5 {md5:?}: ETag {etag}"
        );
    }
    app.drain().await;
    assert!(bucket.list("parts/").await.unwrap().is_empty());
    app.stop().await;
}
