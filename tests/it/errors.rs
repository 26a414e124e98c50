//! Bad input of every kind gets the OpenAI error shape with the right status; never a 500.

use crate::{assert_error, files_under, TestApp};
use serde_json::{json, Value};

async fn send(app: &TestApp, req: reqwest::RequestBuilder) -> (u16, Value) {
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    let _ = app;
    (status, body)
}

fn form(fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> reqwest::multipart::Form {
    let mut f = reqwest::multipart::Form::new();
    for (k, v) in fields {
        f = f.text(k.to_string(), v.to_string());
    }
    if let Some((name, bytes)) = file {
        f = f.part(
            "file",
            reqwest::multipart::Part::bytes(bytes.to_vec()).file_name(name.to_owned()),
        );
    }
    f
}

#[tokio::test]
async fn file_upload_bad_inputs() {
    let app = TestApp::spawn_with(|c| c.max_file_bytes = 1000).await;
    let url = app.url("/v1/files");
    let cases: Vec<(reqwest::multipart::Form, u16, Option<&str>)> = vec![
        (form(&[("purpose", "assistants")], None), 400, Some("file")),
        (form(&[], Some(("a.txt", b"x"))), 400, Some("purpose")),
        (
            form(&[("purpose", "nonsense")], Some(("a.txt", b"x"))),
            400,
            Some("purpose"),
        ),
        (
            form(&[("purpose", "assistants")], Some(("", b"x"))),
            400,
            Some("file"),
        ),
        (
            form(
                &[
                    ("purpose", "assistants"),
                    ("expires_after[anchor]", "created_at"),
                    ("expires_after[seconds]", "10"),
                ],
                Some(("a.txt", b"x")),
            ),
            400,
            Some("expires_after[seconds]"),
        ),
        (
            form(
                &[
                    ("purpose", "assistants"),
                    ("expires_after[anchor]", "created_at"),
                    ("expires_after[seconds]", "soon"),
                ],
                Some(("a.txt", b"x")),
            ),
            400,
            Some("expires_after[seconds]"),
        ),
        (
            form(
                &[
                    ("purpose", "assistants"),
                    ("expires_after[anchor]", "last_active_at"),
                    ("expires_after[seconds]", "3600"),
                ],
                Some(("a.txt", b"x")),
            ),
            400,
            Some("expires_after[anchor]"),
        ),
        (
            form(
                &[
                    ("purpose", "assistants"),
                    ("expires_after[seconds]", "3600"),
                ],
                Some(("a.txt", b"x")),
            ),
            400,
            Some("expires_after[anchor]"),
        ),
        (
            form(
                &[("purpose", "assistants")],
                Some(("big.bin", &[0u8; 1001])),
            ),
            413,
            Some("file"),
        ),
    ];
    for (i, (f, want_status, want_param)) in cases.into_iter().enumerate() {
        let (status, body) = send(&app, app.client.post(&url).multipart(f)).await;
        assert_eq!(status, want_status, "case {i}: {body}");
        let e = assert_error(&body, "invalid_request_error");
        assert_eq!(e["param"].as_str(), want_param, "case {i}: {body}");
    }
    // A file exactly at the limit is fine.
    let ok = app.upload("edge.bin", vec![7u8; 1000], "assistants").await;
    assert_eq!(ok["bytes"], 1000);

    // Not multipart at all, or multipart that is garbage.
    let (status, body) = send(
        &app,
        app.client
            .post(&url)
            .json(&json!({"purpose": "assistants"})),
    )
    .await;
    assert_eq!(status, 400);
    assert_error(&body, "invalid_request_error");
    let (status, body) = send(
        &app,
        app.client
            .post(&url)
            .header("content-type", "multipart/form-data; boundary=XYZ")
            .body("this is not a multipart body at all"),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_error(&body, "invalid_request_error");
    let (status, body) = send(
        &app,
        app.client
            .post(&url)
            .header("content-type", "multipart/form-data; boundary=XYZ")
            .body("--XYZ\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nassistants\r\n--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\ntruncated"),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    // A body over the route's limit is refused with 413, whatever it claims to be.
    let huge = vec![b'a'; 3 << 20];
    let (status, body) = send(
        &app,
        app.client
            .post(&url)
            .multipart(form(&[("purpose", "assistants")], Some(("h.bin", &huge)))),
    )
    .await;
    assert_eq!(status, 413, "{body}");

    // Nothing was kept from any rejected request.
    let (_, list) = app.get_json("/v1/files").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert!(files_under(&app.data_dir().join("tmp")).is_empty());
    assert_eq!(app.blob_keys().await.len(), 1);
}

#[tokio::test]
async fn list_and_lookup_bad_inputs() {
    let app = TestApp::spawn().await;
    for (query, param) in [
        ("limit=0", "limit"),
        ("limit=10001", "limit"),
        ("limit=ten", "limit"),
        ("order=sideways", "order"),
        ("purpose=everything", "purpose"),
        ("after=file-doesnotexist", "after"),
        ("after=garbage", "after"),
    ] {
        let (status, body) = app.get_json(&format!("/v1/files?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(
            assert_error(&body, "invalid_request_error")["param"],
            param,
            "{query}"
        );
    }
    // Not a file id: a bucket of upload-session files, which does not exist.
    let (status, body) = app.get_json("/v1/files/not-an-id").await;
    assert_eq!(status, 404);
    assert_eq!(
        assert_error(&body, "invalid_request_error")["code"],
        "bucket_not_found"
    );
    for path in [
        "/v1/files/file-doesnotexist",
        "/v1/files/file-doesnotexist/content",
        "/v1/openai/v1/files/file-x",
    ] {
        let (status, body) = app.get_json(path).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(
            assert_error(&body, "invalid_request_error")["code"],
            "file_not_found"
        );
    }
    let (status, body) = app.get_json("/v1/no/such/route").await;
    assert_eq!(status, 404);
    assert_error(&body, "invalid_request_error");

    for (method, path) in [
        (reqwest::Method::PUT, "/v1/files"),
        (reqwest::Method::DELETE, "/v1/files"),
        (reqwest::Method::POST, "/v1/files/file-abc"),
        (reqwest::Method::GET, "/v1/uploads"),
        (reqwest::Method::GET, "/v1/uploads/upload_abc/complete"),
        (reqwest::Method::PATCH, "/v1/openai/v1/files"),
    ] {
        let (status, body) = send(&app, app.client.request(method.clone(), app.url(path))).await;
        assert_eq!(status, 405, "{method} {path}");
        assert_eq!(
            assert_error(&body, "invalid_request_error")["code"],
            "method_not_allowed"
        );
    }
}

/// Error bodies carry RFC 7807's fields beside OpenAI's `error`; a client asking for
/// `application/problem+json` gets the problem alone, with that content type.
#[tokio::test]
async fn errors_are_problem_details_too() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get_json("/v1/files/file-doesnotexist").await;
    assert_eq!(status, 404);
    assert_eq!(body["status"], 404);
    assert_eq!(body["title"], "Not Found");
    assert_eq!(body["detail"], body["error"]["message"]);
    assert_eq!(body["instance"], "/v1/files/file-doesnotexist");

    for path in ["/v1/files/file-doesnotexist", "/v1/no/such/route"] {
        let res = app
            .client
            .get(app.url(path))
            .header("accept", "application/problem+json")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404);
        assert_eq!(
            res.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
        let problem: Value = res.json().await.unwrap();
        assert!(problem.get("error").is_none(), "{problem}");
        assert_eq!(problem["status"], 404);
        assert_eq!(problem["title"], "Not Found");
        assert_eq!(problem["type"], "about:blank");
        assert_eq!(problem["instance"], path);
        assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    // Success is untouched by the header.
    let res = app
        .client
        .get(app.url("/v1/files"))
        .header("accept", "application/problem+json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
}

#[tokio::test]
async fn upload_bad_inputs() {
    let app = TestApp::spawn_with(|c| c.max_upload_bytes = 1 << 20).await;
    let base = json!({"filename": "a.txt", "purpose": "assistants", "bytes": 10, "mime_type": "text/plain"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let without = |k: &str| {
        let mut b = base.clone();
        b.as_object_mut().unwrap().remove(k);
        b
    };
    let cases = vec![
        (without("filename"), "filename"),
        (without("purpose"), "purpose"),
        (without("bytes"), "bytes"),
        (without("mime_type"), "mime_type"),
        (with("purpose", json!("nope")), "purpose"),
        (with("bytes", json!(-1)), "bytes"),
        (with("bytes", json!("ten")), "bytes"),
        (with("bytes", json!((1 << 20) + 1)), "bytes"),
        (with("filename", json!(42)), "filename"),
        (with("mime_type", json!("")), "mime_type"),
        (
            with(
                "expires_after",
                json!({"anchor": "created_at", "seconds": 5}),
            ),
            "expires_after[seconds]",
        ),
        (with("expires_after", json!("tomorrow")), "expires_after"),
    ];
    for (body, param) in cases {
        let (status, res) = app.post_json("/v1/uploads", body.clone()).await;
        assert_eq!(status, 400, "{body}: {res}");
        assert_eq!(
            assert_error(&res, "invalid_request_error")["param"],
            param,
            "{body}"
        );
    }
    let (status, res) = send(
        &app,
        app.client
            .post(app.url("/v1/uploads"))
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(status, 400);
    assert_error(&res, "invalid_request_error");
    let (status, res) = app.post_json("/v1/uploads", json!([1, 2])).await;
    assert_eq!(status, 400);
    assert_error(&res, "invalid_request_error");

    for path in [
        "/v1/uploads/upload_nope/complete",
        "/v1/uploads/upload_nope/cancel",
        "/v1/uploads/bad/cancel",
    ] {
        let (status, res) = app.post_json(path, json!({"part_ids": []})).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(
            assert_error(&res, "invalid_request_error")["code"],
            "upload_not_found"
        );
    }
}
