use crate::{assert_error, files_under, TestApp};
use md5::{Digest, Md5};
use serde_json::{json, Value};

async fn create(app: &TestApp, bytes: usize, purpose: &str) -> String {
    let (status, u) = app
        .post_json(
            "/v1/uploads",
            json!({"filename": "big.bin", "purpose": purpose, "bytes": bytes, "mime_type": "application/octet-stream"}),
        )
        .await;
    assert_eq!(status, 200, "{u}");
    assert_eq!(u["object"], "upload");
    assert_eq!(u["status"], "pending");
    assert_eq!(u["file"], Value::Null);
    assert_eq!(
        u["expires_at"].as_i64(),
        Some(u["created_at"].as_i64().unwrap() + 3600)
    );
    u["id"].as_str().unwrap().to_owned()
}

async fn add_part(app: &TestApp, upload: &str, data: Vec<u8>) -> (u16, Value) {
    let form = reqwest::multipart::Form::new().part(
        "data",
        reqwest::multipart::Part::bytes(data).file_name("blob"),
    );
    let res = app
        .client
        .post(app.url(&format!("/v1/uploads/{upload}/parts")))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

fn md5_hex(b: &[u8]) -> String {
    Md5::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn parallel_parts_complete_in_the_requested_order() {
    let app = TestApp::spawn().await;
    let chunks: Vec<Vec<u8>> = (0..4u8)
        .map(|i| vec![b'a' + i; 100_000 + i as usize])
        .collect();
    let total: usize = chunks.iter().map(Vec::len).sum();
    let upload = create(&app, total, "assistants").await;

    // Parts arrive in parallel, in any order.
    let results =
        futures_util::future::join_all(chunks.iter().map(|c| add_part(&app, &upload, c.clone())))
            .await;
    let mut part_ids = Vec::new();
    for (status, p) in &results {
        assert_eq!(*status, 200, "{p}");
        assert_eq!(p["object"], "upload.part");
        assert_eq!(p["upload_id"], upload.as_str());
        assert!(p["id"].as_str().unwrap().starts_with("part_"));
        part_ids.push(p["id"].as_str().unwrap().to_owned());
    }
    // Completed in reverse: the file must follow part_ids, not arrival order.
    part_ids.reverse();
    let expected: Vec<u8> = chunks.iter().rev().flatten().copied().collect();
    let (status, done) = app
        .post_json(
            &format!("/v1/uploads/{upload}/complete"),
            json!({"part_ids": part_ids, "md5": md5_hex(&expected)}),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "completed");
    assert_eq!(done["file"]["object"], "file");
    assert_eq!(done["file"]["bytes"], total);
    assert_eq!(done["file"]["filename"], "big.bin");
    let file_id = done["file"]["id"].as_str().unwrap();
    let res = app
        .client
        .get(app.url(&format!("/v1/files/{file_id}/content")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.bytes().await.unwrap().to_vec(), expected);

    // The parts are freed once the file exists.
    assert!(app.state.storage.list("parts/").await.unwrap().is_empty());
    assert!(app
        .state
        .meta
        .parts_of(&ragstore::domain::UploadId::parse(&upload).unwrap())
        .await
        .unwrap()
        .is_empty());

    // A completed upload takes nothing more.
    let (status, body) = app
        .post_json(
            &format!("/v1/uploads/{upload}/complete"),
            json!({"part_ids": part_ids}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_error(&body, "invalid_request_error");
    let (status, _) = add_part(&app, &upload, b"late".to_vec()).await;
    assert_eq!(status, 409);
    let (status, _) = app
        .post_json(&format!("/v1/uploads/{upload}/cancel"), json!({}))
        .await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn completion_checks_md5_sizes_and_part_ids() {
    let app = TestApp::spawn().await;
    let upload = create(&app, 10, "assistants").await;
    let (_, p1) = add_part(&app, &upload, b"01234".to_vec()).await;
    let (_, p2) = add_part(&app, &upload, b"56789".to_vec()).await;
    let (_, p3) = add_part(&app, &upload, b"x".to_vec()).await;
    let (p1, p2, p3) = (p1["id"].clone(), p2["id"].clone(), p3["id"].clone());
    let path = format!("/v1/uploads/{upload}/complete");

    let cases = vec![
        (
            json!({"part_ids": [p1, p2], "md5": md5_hex(b"wrong")}),
            "md5",
        ),
        (json!({"part_ids": [p1, p2], "md5": "xyz"}), "md5"),
        (json!({"part_ids": [p1]}), "part_ids"),
        (json!({"part_ids": [p1, p2, p3]}), "part_ids"),
        (json!({"part_ids": [p1, p1]}), "part_ids"),
        (json!({"part_ids": [p1, "part_unknown"]}), "part_ids"),
        (json!({"part_ids": "p1"}), "part_ids"),
        (json!({}), "part_ids"),
    ];
    for (body, param) in cases {
        let (status, res) = app.post_json(&path, body.clone()).await;
        assert_eq!(status, 400, "{body}: {res}");
        assert_eq!(
            assert_error(&res, "invalid_request_error")["param"],
            param,
            "{body}"
        );
    }
    // After all those refusals the upload is still pending and completes correctly.
    let (status, done) = app
        .post_json(
            &path,
            json!({"part_ids": [p1, p2], "md5": md5_hex(b"0123456789")}),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    let file_id = done["file"]["id"].as_str().unwrap();
    let res = app
        .client
        .get(app.url(&format!("/v1/files/{file_id}/content")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"0123456789");
    // Only the finished file is left on disk: the unused part p3 was freed with the others.
    assert_eq!(app.blob_keys().await.len(), 1);
    assert!(files_under(&app.data_dir().join("tmp")).is_empty());
}

#[tokio::test]
async fn cancel_frees_parts_and_refuses_more() {
    let app = TestApp::spawn().await;
    let upload = create(&app, 8, "user_data").await;
    let (status, p) = add_part(&app, &upload, b"abcd".to_vec()).await;
    assert_eq!(status, 200);
    assert_eq!(app.state.storage.list("parts/").await.unwrap().len(), 1);
    let (status, u) = app
        .post_json(&format!("/v1/uploads/{upload}/cancel"), json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(u["status"], "cancelled");
    assert_eq!(u["file"], Value::Null);
    assert!(app.state.storage.list("parts/").await.unwrap().is_empty());
    // Cancelling again is harmless; anything else is a conflict.
    let (status, u) = app
        .post_json(&format!("/v1/uploads/{upload}/cancel"), json!({}))
        .await;
    assert_eq!((status, u["status"].as_str()), (200, Some("cancelled")));
    let (status, body) = add_part(&app, &upload, b"efgh".to_vec()).await;
    assert_eq!(status, 409);
    assert!(assert_error(&body, "invalid_request_error")["message"]
        .as_str()
        .unwrap()
        .contains("cancelled"));
    let (status, _) = app
        .post_json(
            &format!("/v1/uploads/{upload}/complete"),
            json!({"part_ids": [p["id"]]}),
        )
        .await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn uploads_expire_after_an_hour_and_their_parts_are_freed() {
    let app = TestApp::spawn_with(|c| c.reaper_interval_secs = 0.05).await;
    let upload = create(&app, 8, "assistants").await;
    let (status, p) = add_part(&app, &upload, b"abcd".to_vec()).await;
    assert_eq!(status, 200);
    app.clock.advance(3600);
    let (status, body) = add_part(&app, &upload, b"efgh".to_vec()).await;
    assert_eq!(status, 409);
    assert!(assert_error(&body, "invalid_request_error")["message"]
        .as_str()
        .unwrap()
        .contains("expired"));
    let (status, _) = app
        .post_json(
            &format!("/v1/uploads/{upload}/complete"),
            json!({"part_ids": [p["id"]]}),
        )
        .await;
    assert_eq!(status, 409);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !app.state.storage.list("parts/").await.unwrap().is_empty()
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        app.state.storage.list("parts/").await.unwrap().is_empty(),
        "reaper did not free the parts"
    );
    let id = ragstore::domain::UploadId::parse(&upload).unwrap();
    let row = app
        .state
        .meta
        .get_upload(&ragstore::domain::ProjectId::default_project(), &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, ragstore::domain::UploadStatus::Expired);
}

#[tokio::test]
async fn parts_are_bounded() {
    let app = TestApp::spawn_with(|c| c.max_part_bytes = 1000).await;
    let upload = create(&app, 1500, "assistants").await;
    let (status, body) = add_part(&app, &upload, vec![0; 1001]).await;
    assert_eq!(status, 413, "{body}");
    assert_error(&body, "invalid_request_error");
    // Declared 1500 bytes: stored parts may run one part (1000 bytes) past that, not further.
    for _ in 0..2 {
        assert_eq!(add_part(&app, &upload, vec![1; 1000]).await.0, 200);
    }
    let (status, body) = add_part(&app, &upload, vec![1; 1000]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        assert_error(&body, "invalid_request_error")["param"],
        "data"
    );
    // A part without `data` is refused.
    let form = reqwest::multipart::Form::new().text("other", "x");
    let res = app
        .client
        .post(app.url(&format!("/v1/uploads/{upload}/parts")))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(files_under(&app.data_dir().join("tmp")).is_empty());
}

#[tokio::test]
async fn batch_uploads_are_validated_and_keep_expires_after() {
    let app = TestApp::spawn().await;
    let bad = b"{\"a\":1}\nnope\n".to_vec();
    let upload = create(&app, bad.len(), "batch").await;
    let (_, p) = add_part(&app, &upload, bad).await;
    let (status, body) = app
        .post_json(
            &format!("/v1/uploads/{upload}/complete"),
            json!({"part_ids": [p["id"]]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("JSONL"));

    let good = b"{\"a\":1}\n".to_vec();
    let (status, u) = app
        .post_json(
            "/v1/uploads",
            json!({"filename": "b.jsonl", "purpose": "batch", "bytes": good.len(), "mime_type": "text/jsonl",
                   "expires_after": {"anchor": "created_at", "seconds": 7200}}),
        )
        .await;
    assert_eq!(status, 200);
    let upload = u["id"].as_str().unwrap();
    let (_, p) = add_part(&app, upload, good).await;
    let (status, done) = app
        .post_json(
            &format!("/v1/uploads/{upload}/complete"),
            json!({"part_ids": [p["id"]]}),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    let f = &done["file"];
    assert_eq!(f["purpose"], "batch");
    assert_eq!(
        f["expires_at"].as_i64(),
        Some(f["created_at"].as_i64().unwrap() + 7200)
    );
}

#[tokio::test]
async fn an_empty_upload_makes_an_empty_file() {
    let app = TestApp::spawn().await;
    let upload = create(&app, 0, "assistants").await;
    let (status, done) = app
        .post_json(
            &format!("/v1/uploads/{upload}/complete"),
            json!({"part_ids": []}),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["file"]["bytes"], 0);
}

/// llama-stack's upload sessions: open with a JSON `POST /files`, append bodies at the offset
/// (asking for it to resume), and the finished file is named by its bucket and key, is an
/// ordinary file too (attachable to vector stores), and can be deleted by its key.
#[tokio::test]
async fn upload_sessions_append_resume_and_name_files_by_bucket_and_key() {
    let app = TestApp::spawn().await;
    let text = "Basalt forms when lava cools quickly at the surface. ".repeat(40);
    let bytes = text.as_bytes().to_vec();
    let half = bytes.len() / 2;
    let (status, s) = app
        .post_json(
            "/v1/files",
            json!({"bucket": "docs", "key": "geology/basalt.txt", "mime_type": "text/plain", "size": bytes.len()}),
        )
        .await;
    assert_eq!(status, 200, "{s}");
    let id = s["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (s["offset"].as_i64(), s["size"].as_u64()),
        (Some(0), Some(bytes.len() as u64))
    );
    let url = s["url"].as_str().unwrap().to_owned();
    assert_eq!(url, format!("{}/v1/files/session:{id}", app.base));
    let post = |body: Vec<u8>| {
        let (app, url) = (&app, url.clone());
        async move {
            let res = app.client.post(&url).body(body).send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap())
        }
    };
    let (status, done) = post(bytes[..half].to_vec()).await;
    assert_eq!((status, &done), (200, &Value::Null), "not complete yet");
    // A client that lost its connection asks where to go on.
    let (_, info) = app.get_json(&format!("/v1/files/session:{id}")).await;
    assert_eq!(info["offset"].as_u64(), Some(half as u64));
    // A body that would overrun the size is refused whole.
    let mut over = bytes[half..].to_vec();
    over.push(b'!');
    let (status, err) = post(over).await;
    assert_eq!(status, 400, "{err}");
    assert!(assert_error(&err, "invalid_request_error")["message"]
        .as_str()
        .unwrap()
        .contains("overrun"));
    let (_, info) = app.get_json(&format!("/v1/files/session:{id}")).await;
    assert_eq!(
        info["offset"].as_u64(),
        Some(half as u64),
        "nothing of it was kept"
    );

    let (status, file) = post(bytes[half..].to_vec()).await;
    assert_eq!(status, 200, "{file}");
    assert_eq!(file["bucket"], "docs");
    assert_eq!(file["key"], "geology/basalt.txt");
    assert_eq!(file["mime_type"], "text/plain");
    assert_eq!(file["bytes"].as_u64(), Some(bytes.len() as u64));
    let fid = file["id"].as_str().unwrap().to_owned();
    assert!(fid.starts_with("file-"));
    assert_eq!(file["url"], format!("{}/v1/files/{fid}/content", app.base));
    let got = app
        .client
        .get(file["url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), bytes.as_slice());
    let (status, more) = post(b"x".to_vec()).await;
    assert_eq!(status, 409, "the session is complete: {more}");

    // Named by bucket and key; listed; an ordinary file too.
    let (_, by_key) = app.get_json("/v1/files/docs/geology/basalt.txt").await;
    assert_eq!(by_key["id"], fid.as_str());
    let (_, bucket) = app.get_json("/v1/files/docs").await;
    assert_eq!(bucket["data"].as_array().unwrap().len(), 1);
    assert_eq!(bucket["data"][0]["key"], "geology/basalt.txt");
    let (_, buckets) = app.get_json("/v1/buckets").await;
    assert_eq!(buckets, json!({"data": [{"name": "docs"}]}));
    let (_, f) = app.get_json(&format!("/v1/files/{fid}")).await;
    assert_eq!(
        (f["filename"].as_str(), f["purpose"].as_str()),
        (Some("basalt.txt"), Some("assistants"))
    );
    let (status, vs) = app
        .post_json("/v1/vector_stores", json!({"file_ids": [fid]}))
        .await;
    assert_eq!(status, 200, "{vs}");
    app.drain().await;
    let (_, res) = app
        .post_json(
            &format!("/v1/vector_stores/{}/search", vs["id"].as_str().unwrap()),
            json!({"query": "how does basalt form"}),
        )
        .await;
    assert_eq!(res["data"][0]["file_id"], fid.as_str(), "{res}");

    // The key is taken while it holds a file.
    let (status, err) = app
        .post_json(
            "/v1/files",
            json!({"bucket": "docs", "key": "geology/basalt.txt", "mime_type": "text/plain", "size": 3}),
        )
        .await;
    assert_eq!(status, 409, "{err}");
    // Deleting by key deletes the file everywhere and frees the key.
    let res = app
        .client
        .delete(app.url("/v1/files/docs/geology/basalt.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (status, _) = app.get_json("/v1/files/docs/geology/basalt.txt").await;
    assert_eq!(status, 404);
    let (status, _) = app.get_json(&format!("/v1/files/{fid}")).await;
    assert_eq!(status, 404);
    let (status, _) = app.get_json("/v1/files/docs").await;
    assert_eq!(status, 404, "an empty bucket does not exist");
    let (_, buckets) = app.get_json("/v1/buckets").await;
    assert_eq!(buckets, json!({"data": []}));
    let (status, s) = app
        .post_json(
            "/v1/openai/v1/files",
            json!({"bucket": "docs", "key": "geology/basalt.txt", "mime_type": "text/plain", "size": 3}),
        )
        .await;
    assert_eq!(status, 200, "{s}");
    assert!(
        s["url"]
            .as_str()
            .unwrap()
            .contains("/v1/openai/v1/files/session:"),
        "{s}"
    );
}

#[tokio::test]
async fn upload_sessions_refuse_bad_names_and_expire() {
    let app = TestApp::spawn().await;
    for (body, param) in [
        (
            json!({"bucket": "file-abc", "key": "k", "mime_type": "text/plain", "size": 1}),
            "bucket",
        ),
        (
            json!({"bucket": "a b", "key": "k", "mime_type": "text/plain", "size": 1}),
            "bucket",
        ),
        (
            json!({"bucket": "b", "key": "../etc/passwd", "mime_type": "text/plain", "size": 1}),
            "key",
        ),
        (
            json!({"bucket": "b", "key": "a//b", "mime_type": "text/plain", "size": 1}),
            "key",
        ),
        (
            json!({"bucket": "b", "key": "k", "mime_type": "text/plain"}),
            "size",
        ),
        (
            json!({"bucket": "b", "key": "k", "mime_type": "text/plain", "size": -1}),
            "size",
        ),
    ] {
        let (status, err) = app.post_json("/v1/files", body.clone()).await;
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(
            assert_error(&err, "invalid_request_error")["param"],
            param,
            "{body}"
        );
    }
    let (status, _) = app.get_json("/v1/files/session:upload_doesnotexist").await;
    assert_eq!(status, 404);
    let (_, s) = app
        .post_json(
            "/v1/files",
            json!({"bucket": "b", "key": "k.txt", "mime_type": "text/plain", "size": 10}),
        )
        .await;
    let url = s["url"].as_str().unwrap().to_owned();
    // Sessions expire like uploads, after an hour; the key is free again then.
    app.clock.advance(3601);
    let res = app
        .client
        .post(&url)
        .body("0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    let (status, s) = app
        .post_json(
            "/v1/files",
            json!({"bucket": "b", "key": "k.txt", "mime_type": "text/plain", "size": 10}),
        )
        .await;
    assert_eq!(status, 200, "{s}");
}
