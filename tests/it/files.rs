use crate::{assert_error, files_under, TestApp};
use serde_json::Value;
use std::collections::HashSet;

#[tokio::test]
async fn upload_retrieve_content_delete_round_trip() {
    let app = TestApp::spawn().await;
    let bytes: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let f = app.upload("data.bin", bytes.clone(), "assistants").await;
    let id = f["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("file-"));
    assert_eq!(f["object"], "file");
    assert_eq!(f["bytes"], 300_000);
    assert_eq!(f["filename"], "data.bin");
    assert_eq!(f["purpose"], "assistants");
    assert_eq!(f["status"], "uploaded");
    assert_eq!(f["expires_at"], Value::Null);
    assert!(f["created_at"].as_i64().unwrap() > 1_700_000_000);

    let (status, got) = app.get_json(&format!("/v1/files/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(got, f);

    let res = app
        .client
        .get(app.url(&format!("/v1/files/{id}/content")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/octet-stream");
    assert_eq!(
        res.headers()["content-disposition"],
        "attachment; filename=\"data.bin\""
    );
    assert_eq!(res.bytes().await.unwrap().to_vec(), bytes);

    let blob = format!("files/{id}");
    assert!(app.blob_exists(&blob).await);
    let res = app
        .client
        .delete(app.url(&format!("/v1/files/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"id": id, "object": "file", "deleted": true})
    );
    // Gone for clients at once; the purge job removes the bytes.
    app.drain().await;
    assert!(
        !app.blob_exists(&blob).await,
        "blob must be removed on delete"
    );

    for path in [format!("/v1/files/{id}"), format!("/v1/files/{id}/content")] {
        let (status, body) = app.get_json(&path).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(
            assert_error(&body, "invalid_request_error")["code"],
            "file_not_found"
        );
    }
    let res = app
        .client
        .delete(app.url(&format!("/v1/files/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let (_, list) = app.get_json("/v1/files").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn llama_stack_prefix_serves_the_same_routes() {
    let app = TestApp::spawn().await;
    let form = reqwest::multipart::Form::new()
        .text("purpose", "user_data")
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"hi".to_vec()).file_name("hi.txt"),
        );
    let res = app
        .client
        .post(app.url("/v1/openai/v1/files"))
        .bearer_auth("any-key-at-all")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let f: Value = res.json().await.unwrap();
    let id = f["id"].as_str().unwrap();
    let (status, got) = app.get_json(&format!("/v1/files/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(got["id"], id);
    let (status, list) = app.get_json("/v1/openai/v1/files").await;
    assert_eq!(status, 200);
    assert_eq!(list["data"][0]["id"], id);
    // The `openai` segment in any case, as llama-stack's Files docs spell it; queries kept.
    for prefix in ["/v1/openAi/v1", "/v1/OpenAI/v1", "/v1/OPENAI/v1"] {
        let (status, got) = app.get_json(&format!("{prefix}/files/{id}")).await;
        assert_eq!((status, got["id"].as_str()), (200, Some(id)), "{prefix}");
        let (status, list) = app
            .get_json(&format!("{prefix}/files?purpose=assistants"))
            .await;
        assert_eq!(status, 200, "{prefix}");
        assert_eq!(
            list["data"].as_array().unwrap().len(),
            0,
            "{prefix}: {list}"
        );
    }
    // Only that segment: other spellings of the rest stay unknown.
    for path in [
        "/v1/openaix/v1/files",
        "/V1/openai/v1/files",
        "/v1/openAi/V1/files",
    ] {
        let (status, err) = app.get_json(path).await;
        assert_eq!(status, 404, "{path}: {err}");
    }
    let (status, health) = app.get_json("/health").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
}

#[tokio::test]
async fn purpose_may_come_after_the_file() {
    let app = TestApp::spawn().await;
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"abc".to_vec()).file_name("late.txt"),
        )
        .text("purpose", "vision");
    let res = app
        .client
        .post(app.url("/v1/files"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let f: Value = res.json().await.unwrap();
    assert_eq!(f["purpose"], "vision");
    assert_eq!(f["bytes"], 3);
}

/// Every file shares one `created_at` second (the test clock does not move), so only the
/// (created_at, id) cursor keeps pages from skipping or repeating.
#[tokio::test]
async fn pagination_with_ties_never_skips_or_repeats() {
    let app = TestApp::spawn().await;
    let mut all = HashSet::new();
    for i in 0..23 {
        let purpose = if i % 3 == 0 { "vision" } else { "assistants" };
        let f = app
            .upload(&format!("f{i}.txt"), vec![b'x'; i], purpose)
            .await;
        all.insert(f["id"].as_str().unwrap().to_owned());
    }
    let created: HashSet<i64> = {
        let (_, list) = app.get_json("/v1/files").await;
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["created_at"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(created.len(), 1, "the test wants ties");

    for order in ["asc", "desc"] {
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut path = format!("/v1/files?limit=4&order={order}");
            if let Some(a) = &after {
                path.push_str(&format!("&after={a}"));
            }
            let (status, page) = app.get_json(&path).await;
            assert_eq!(status, 200);
            let data = page["data"].as_array().unwrap();
            assert!(data.len() <= 4);
            let ids: Vec<String> = data
                .iter()
                .map(|f| f["id"].as_str().unwrap().to_owned())
                .collect();
            if let (Some(first), Some(last)) = (ids.first(), ids.last()) {
                assert_eq!(page["first_id"], first.as_str());
                assert_eq!(page["last_id"], last.as_str());
            }
            seen.extend(ids);
            if !page["has_more"].as_bool().unwrap() {
                break;
            }
            after = page["last_id"].as_str().map(str::to_owned);
        }
        assert_eq!(seen.len(), 23, "{order}: every file exactly once");
        assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), all);
        let mut sorted = seen.clone();
        sorted.sort();
        if order == "desc" {
            sorted.reverse();
        }
        assert_eq!(seen, sorted, "{order}: ties are ordered by id");
    }

    let (_, vision) = app.get_json("/v1/files?purpose=vision").await;
    let vision = vision["data"].as_array().unwrap();
    assert_eq!(vision.len(), 8);
    assert!(vision.iter().all(|f| f["purpose"] == "vision"));

    let (_, empty) = app.get_json("/v1/files?purpose=batch").await;
    assert_eq!(empty["first_id"], Value::Null);
    assert_eq!(empty["has_more"], false);
}

#[tokio::test]
async fn listing_orders_by_time_then_id() {
    let app = TestApp::spawn().await;
    let a = app.upload("a", vec![], "assistants").await;
    app.clock.advance(5);
    let b = app.upload("b", vec![], "assistants").await;
    let (_, desc) = app.get_json("/v1/files").await;
    assert_eq!(desc["data"][0]["id"], b["id"]);
    assert_eq!(desc["data"][1]["id"], a["id"]);
    let (_, asc) = app.get_json("/v1/files?order=asc&limit=1").await;
    assert_eq!(asc["data"][0]["id"], a["id"]);
    assert_eq!(asc["has_more"], true);
}

#[tokio::test]
async fn content_disposition_escapes_names() {
    let app = TestApp::spawn().await;
    // (Backslashes are covered by the unit test: multipart clients disagree on escaping them.)
    let f = app
        .upload("quote\"d résumé.txt", b"x".to_vec(), "assistants")
        .await;
    assert_eq!(f["filename"], "quote\"d résumé.txt");
    let res = app
        .client
        .get(app.url(&format!("/v1/files/{}/content", f["id"].as_str().unwrap())))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["content-disposition"],
        "attachment; filename=\"quote\\\"d r_sum_.txt\"; filename*=UTF-8''quote%22d%20r%C3%A9sum%C3%A9.txt"
    );
}

#[tokio::test]
async fn batch_files_must_be_jsonl_and_expire_in_30_days() {
    let app = TestApp::spawn().await;
    let ok = app
        .upload(
            "b.jsonl",
            b"{\"custom_id\":\"1\"}\n{\"custom_id\":\"2\"}\n".to_vec(),
            "batch",
        )
        .await;
    let created = ok["created_at"].as_i64().unwrap();
    assert_eq!(ok["expires_at"].as_i64(), Some(created + 30 * 24 * 3600));

    for bad in [
        &b"not json\n"[..],
        b"{\"a\":1}\n[1]\n",
        b"",
        b"{\"a\":1}{\"b\":2}\n",
    ] {
        let res = app.upload_raw("b.jsonl", bad.to_vec(), "batch").await;
        assert_eq!(res.status(), 400);
        let body: Value = res.json().await.unwrap();
        assert_eq!(
            assert_error(&body, "invalid_request_error")["param"],
            "file"
        );
    }
    // Nothing from the rejected uploads remains.
    let (_, list) = app.get_json("/v1/files").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert!(files_under(&app.data_dir().join("tmp")).is_empty());
    assert_eq!(app.blob_keys().await.len(), 1);
}

#[tokio::test]
async fn expired_files_disappear_with_their_content() {
    let app = TestApp::spawn_with(|c| c.reaper_interval_secs = 0.05).await;
    let form = reqwest::multipart::Form::new()
        .text("purpose", "assistants")
        .text("expires_after[anchor]", "created_at")
        .text("expires_after[seconds]", "3600")
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"temp".to_vec()).file_name("t.txt"),
        );
    let res = app
        .client
        .post(app.url("/v1/files"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let f: Value = res.json().await.unwrap();
    let id = f["id"].as_str().unwrap().to_owned();
    assert_eq!(
        f["expires_at"].as_i64(),
        Some(f["created_at"].as_i64().unwrap() + 3600)
    );
    let keep = app.upload("keep.txt", b"keep".to_vec(), "assistants").await;

    let blob = format!("files/{id}");
    app.clock.advance(3599);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(app.blob_exists(&blob).await, "not expired yet");
    assert_eq!(app.get_json(&format!("/v1/files/{id}")).await.0, 200);

    app.clock.advance(1);
    assert_eq!(
        app.get_json(&format!("/v1/files/{id}")).await.0,
        404,
        "hidden at once"
    );
    // The background reaper deletes it without being asked; its purge job removes the bytes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while app.blob_exists(&blob).await && std::time::Instant::now() < deadline {
        app.drain().await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        !app.blob_exists(&blob).await,
        "reaper did not remove the blob"
    );
    let (_, list) = app.get_json("/v1/files").await;
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![keep["id"].as_str().unwrap()]);
}

#[tokio::test]
async fn files_survive_a_restart() {
    let app = TestApp::spawn().await;
    let f = app
        .upload("persist.txt", b"still here".to_vec(), "user_data")
        .await;
    let dir = app.stop().await;
    let app = TestApp::spawn_in(dir, |_| {}).await;
    let id = f["id"].as_str().unwrap();
    let res = app
        .client
        .get(app.url(&format!("/v1/files/{id}/content")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"still here");
}

#[tokio::test]
async fn one_server_per_data_dir() {
    let app = TestApp::spawn().await;
    let config = ragstore::Config::for_data_dir(app.data_dir());
    let second = ragstore::App::build(config).await;
    let err = second
        .err()
        .expect("a second server on the same data dir must be refused");
    assert!(err.to_string().contains("in use"), "{err}");
}

/// Fine-tuning files are checked after upload as OpenAI does: `processed`, or `error` naming
/// the first bad line and why.
#[tokio::test]
async fn fine_tuning_files_are_validated_after_upload() {
    let app = TestApp::spawn().await;
    let good = "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":\"assistant\",\"content\":\"Hello\"}]}\n"
        .repeat(3);
    let bad = format!(
        "{good}{{\"messages\":[{{\"role\":\"user\",\"content\":\"Hi\"}},{{\"role\":\"bot\",\"content\":\"x\"}}]}}\n"
    );
    let mut ids = Vec::new();
    for (name, body) in [
        ("good.jsonl", good),
        ("bad.jsonl", bad),
        ("text.jsonl", "just some text".to_owned()),
    ] {
        let f = app.upload(name, body.into_bytes(), "fine-tune").await;
        assert_eq!(f["status"], "uploaded", "{f}");
        ids.push(f["id"].as_str().unwrap().to_owned());
    }
    app.drain().await;
    let status = |i: usize| {
        let (app, id) = (&app, ids[i].clone());
        async move { app.get_json(&format!("/v1/files/{id}")).await.1 }
    };
    let good = status(0).await;
    assert_eq!(
        (good["status"].as_str(), &good["status_details"]),
        (Some("processed"), &Value::Null),
        "{good}"
    );
    let bad = status(1).await;
    assert_eq!(bad["status"], "error", "{bad}");
    let why = bad["status_details"].as_str().unwrap();
    assert!(
        why.contains("line 4") && why.contains("'messages[1].role'"),
        "{why}"
    );
    let text = status(2).await;
    assert_eq!(text["status"], "error");
    assert!(text["status_details"]
        .as_str()
        .unwrap()
        .contains("line 1 is not valid JSON"));
    // The bytes are kept as uploaded either way.
    let res = app
        .client
        .get(app.url(&format!("/v1/files/{}/content", ids[2])))
        .send()
        .await
        .unwrap();
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"just some text");
}

/// `Range: bytes=…` on a file's content: one range is answered `206` with exactly its bytes and
/// `Content-Range`; a range past the end `416` with `Content-Range: bytes */size`; several
/// ranges or a malformed header are ignored (the whole file, `200`). Every answer says
/// `Accept-Ranges: bytes`.
#[tokio::test]
async fn content_answers_one_byte_range() {
    let app = TestApp::spawn().await;
    let body: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let file = app.upload("big.bin", body.clone(), "user_data").await;
    let id = file["id"].as_str().unwrap().to_owned();
    let get = |range: Option<&'static str>| {
        let mut req = app.client.get(app.url(&format!("/v1/files/{id}/content")));
        if let Some(r) = range {
            req = req.header("range", r);
        }
        req.send()
    };
    let size = body.len();
    for (range, want, content_range) in [
        ("bytes=0-99", 0..100, format!("bytes 0-99/{size}")),
        (
            "bytes=299990-",
            299_990..size,
            format!("bytes 299990-299999/{size}"),
        ),
        (
            "bytes=-10",
            size - 10..size,
            format!("bytes 299990-299999/{size}"),
        ),
        (
            "bytes=100000-999999",
            100_000..size,
            format!("bytes 100000-299999/{size}"),
        ),
    ] {
        let res = get(Some(range)).await.unwrap();
        assert_eq!(res.status(), 206, "{range}");
        let h = res.headers();
        assert_eq!(h["content-range"], content_range.as_str(), "{range}");
        assert_eq!(h["accept-ranges"], "bytes");
        assert_eq!(
            h["content-length"],
            (want.end - want.start).to_string().as_str()
        );
        let got = res.bytes().await.unwrap();
        assert!(
            got.as_ref() == &body[want.clone()],
            "{range}: {} bytes",
            got.len()
        );
    }

    let res = get(Some("bytes=300000-")).await.unwrap();
    assert_eq!(res.status(), 416);
    assert_eq!(
        res.headers()["content-range"],
        format!("bytes */{size}").as_str()
    );
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["error"]["code"], "range_not_satisfiable");

    for ignored in [
        None,
        Some("bytes=0-1,5-9"),
        Some("lines=1-2"),
        Some("bytes=9-1"),
    ] {
        let res = get(ignored).await.unwrap();
        assert_eq!(res.status(), 200, "{ignored:?}");
        assert_eq!(res.headers()["accept-ranges"], "bytes");
        assert!(res.headers().get("content-range").is_none());
        assert!(res.bytes().await.unwrap().as_ref() == body.as_slice());
    }
    // Another project's file, or a deleted one, is a 404 whatever the range.
    let res = app
        .client
        .get(app.url("/v1/files/file-00000000000000000000000000/content"))
        .header("range", "bytes=0-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    app.stop().await;
}
