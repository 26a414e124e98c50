use crate::{assert_error, eventually, files_under, TestApp};
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
    assert!(files_under(&app.data_dir().join("blobs/parts")).is_empty());
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
    assert_eq!(files_under(&app.data_dir().join("blobs")).len(), 1);
    assert!(files_under(&app.data_dir().join("tmp")).is_empty());
}

#[tokio::test]
async fn cancel_frees_parts_and_refuses_more() {
    let app = TestApp::spawn().await;
    let upload = create(&app, 8, "user_data").await;
    let (status, p) = add_part(&app, &upload, b"abcd".to_vec()).await;
    assert_eq!(status, 200);
    assert_eq!(files_under(&app.data_dir().join("blobs/parts")).len(), 1);
    let (status, u) = app
        .post_json(&format!("/v1/uploads/{upload}/cancel"), json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(u["status"], "cancelled");
    assert_eq!(u["file"], Value::Null);
    assert!(files_under(&app.data_dir().join("blobs/parts")).is_empty());
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
    let parts_dir = app.data_dir().join("blobs/parts");
    assert!(
        eventually(5, || files_under(&parts_dir).is_empty()).await,
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
