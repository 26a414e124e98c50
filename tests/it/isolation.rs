//! Projects are walls. Every object belongs to one project, and a key sees only its own: another
//! project's id answers exactly as an id that never existed (same status, same body once the id
//! is blanked out, same headers), on every route and under both prefixes, and nothing the other
//! project tries leaves a trace. Search never returns another project's chunks, even when both
//! projects hold the same document.

use crate::{assert_error, client_with_key, TestApp};
use ragstore::clock::Clock;
use ragstore::domain::{FileBatchId, FileId, KeyId, PartId, ProjectId, UploadId, VectorStoreId};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// One project with one key, and a client that sends it.
struct Tenant {
    client: reqwest::Client,
    project: ProjectId,
    key_id: KeyId,
    secret: String,
}

/// A key for project `name`. Keys must exist before the server's first request (it remembers
/// "no key exists" for a few seconds).
async fn tenant(app: &TestApp, name: &str) -> Tenant {
    let (key, project, secret) = app.auth().create_key(name, None).await.unwrap();
    Tenant {
        client: client_with_key(secret.as_str()),
        project: project.id,
        key_id: key.id,
        secret: secret.as_str().to_owned(),
    }
}

/// A request body.
#[derive(Debug, Clone)]
enum Body {
    None,
    /// JSON text (a template: ids are filled in before sending).
    Json(String),
    /// A multipart form with one `data` file field (an upload part).
    Part(Vec<u8>),
    /// Raw bytes (an upload session's append).
    Raw(Vec<u8>),
}

/// A response as the client sees it.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    status: u16,
    headers: BTreeMap<String, Vec<String>>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

async fn send(
    app: &TestApp,
    client: &reqwest::Client,
    method: Method,
    path: &str,
    body: &Body,
) -> Answer {
    let mut req = client.request(method, app.url(path));
    req = match body {
        Body::None => req,
        Body::Json(text) => req
            .header(CONTENT_TYPE, "application/json")
            .body(text.clone()),
        Body::Part(bytes) => req.multipart(reqwest::multipart::Form::new().part(
            "data",
            reqwest::multipart::Part::bytes(bytes.clone()).file_name("blob"),
        )),
        Body::Raw(bytes) => req.body(bytes.clone()),
    };
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in res.headers() {
        headers
            .entry(name.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let body = res.text().await.unwrap();
    Answer {
        status,
        headers,
        body,
    }
}

async fn get(app: &TestApp, who: &Tenant, path: &str) -> (u16, Value) {
    let a = send(app, &who.client, Method::GET, path, &Body::None).await;
    (a.status, a.json())
}

async fn post(app: &TestApp, who: &Tenant, path: &str, body: Value) -> (u16, Value) {
    let a = send(
        app,
        &who.client,
        Method::POST,
        path,
        &Body::Json(body.to_string()),
    )
    .await;
    (a.status, a.json())
}

async fn upload(app: &TestApp, who: &Tenant, filename: &str, text: &str) -> String {
    let form = reqwest::multipart::Form::new()
        .text("purpose", "assistants")
        .part(
            "file",
            reqwest::multipart::Part::bytes(text.as_bytes().to_vec())
                .file_name(filename.to_owned()),
        );
    let res = who
        .client
        .post(app.url("/v1/files"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let f: Value = res.json().await.unwrap();
    f["id"].as_str().unwrap().to_owned()
}

async fn create_store(app: &TestApp, who: &Tenant, body: Value) -> String {
    let (status, vs) = post(app, who, "/v1/vector_stores", body).await;
    assert_eq!(status, 200, "{vs}");
    vs["id"].as_str().unwrap().to_owned()
}

/// Named ids to fill into templates: `{file}` becomes the value named `file`.
type Ids = Vec<(&'static str, String)>;

fn fill(template: &str, ids: &Ids) -> String {
    ids.iter().fold(template.to_owned(), |t, (name, value)| {
        t.replace(&format!("{{{name}}}"), value)
    })
}

/// The answer with every id of `ids` put back as its placeholder, and the values of headers
/// that change from one request to the next (the date, the rate limit's countdown) blanked.
fn blank(a: &Answer, ids: &Ids) -> Answer {
    let put_back = |s: &str| {
        ids.iter().fold(s.to_owned(), |s, (name, value)| {
            s.replace(value.as_str(), &format!("{{{name}}}"))
        })
    };
    let headers = a
        .headers
        .iter()
        .map(|(name, values)| {
            let values = if name == "date" || name.starts_with("x-ratelimit-") {
                vec!["*".to_owned(); values.len()]
            } else {
                values.iter().map(|v| put_back(v)).collect()
            };
            (name.clone(), values)
        })
        .collect();
    Answer {
        status: a.status,
        headers,
        body: put_back(&a.body),
    }
}

/// One probe: a request template sent once with the other project's ids and once with ids of
/// the same kinds and lengths that name nothing.
struct Probe {
    method: Method,
    path: String,
    body: Body,
    /// Whether both must be a 404 (a listing's cursor is a 400 either way instead).
    not_found: bool,
}

fn probe(method: Method, path: impl Into<String>, body: Body) -> Probe {
    Probe {
        method,
        path: path.into(),
        body,
        not_found: true,
    }
}

fn json_body(template: &str) -> Body {
    Body::Json(template.to_owned())
}

/// Sends `p` with `theirs` and with `unknown` and asserts the two answers are the same once
/// the ids are blanked out.
async fn same_as_unknown(
    app: &TestApp,
    who: &Tenant,
    prefix: &str,
    p: &Probe,
    theirs: &Ids,
    unknown: &Ids,
) {
    let render = |ids: &Ids| {
        let path = format!("{prefix}{}", fill(&p.path, ids));
        let body = match &p.body {
            Body::Json(t) => Body::Json(fill(t, ids)),
            other => other.clone(),
        };
        (path, body)
    };
    let (path_t, body_t) = render(theirs);
    let (path_u, body_u) = render(unknown);
    let got_t = send(app, &who.client, p.method.clone(), &path_t, &body_t).await;
    let got_u = send(app, &who.client, p.method.clone(), &path_u, &body_u).await;
    let what = format!("{} {prefix}{}", p.method, p.path);
    if p.not_found {
        assert_eq!(
            got_t.status, 404,
            "{what} with another project's ids: {got_t:?}"
        );
        assert_eq!(got_u.status, 404, "{what} with unknown ids: {got_u:?}");
        let e = assert_error(&got_t.json(), "invalid_request_error");
        // A handler's answer about the object, not the router's "no such route".
        let code = e["code"].as_str().unwrap_or_default();
        assert!(
            code.ends_with("_not_found") && code != "not_found",
            "{what}: {}",
            got_t.body
        );
    }
    let (bt, bu) = (blank(&got_t, theirs), blank(&got_u, unknown));
    assert_eq!(
        bt.status, bu.status,
        "{what}: another project's ids answer {} but unknown ids {}",
        got_t.body, got_u.body
    );
    assert_eq!(
        bt.body, bu.body,
        "{what}: another project's ids and unknown ids answer different bodies"
    );
    assert_eq!(
        bt.headers.keys().collect::<Vec<_>>(),
        bu.headers.keys().collect::<Vec<_>>(),
        "{what}: different header names"
    );
    assert_eq!(bt.headers, bu.headers, "{what}: different header values");
}

/// A bucket name of `len` characters that no project uses.
fn unknown_bucket(len: usize) -> String {
    let s = format!("nobody{}", "x".repeat(len));
    s[..len].to_owned()
}

const ALPHA_DOC: &str = "Photosynthesis is the process by which green plants use sunlight, water \
    and carbon dioxide to make glucose and release oxygen. Chlorophyll in the chloroplasts absorbs \
    light energy, which drives the light-dependent reactions and the Calvin cycle.";
const ALPHA_DOC_2: &str = "The Roman Empire was ruled by emperors after Augustus became the \
    first emperor in 27 BC, and the western empire fell in 476 AD.";
const BETA_DOC: &str = "To bake sourdough bread, mix flour, water and salt with an active \
    starter, let the dough rise slowly, shape it into a loaf, and bake it in a very hot oven.";
const SESSION_DOC: &[u8] = b"Volcanoes erupt when magma rises through the crust.";
const BUCKET: &str = "bkt-alpha-7q";
const KEY: &str = "notes/k.txt";

/// Everything alpha made.
struct AlphaObjects {
    file: String,
    file2: String,
    vs: String,
    batch: String,
    upload: String,
    part: String,
    session: String,
    session_file: String,
}

/// Alpha's view of everything it owns, as alpha reads it.
async fn snapshot(app: &TestApp, alpha: &Tenant, a: &AlphaObjects) -> Vec<(String, u16, String)> {
    let paths = [
        "/v1/files".to_owned(),
        format!("/v1/files/{}", a.file),
        format!("/v1/files/{}", a.file2),
        format!("/v1/files/{}", a.session_file),
        format!("/v1/files/{}/content", a.file),
        format!("/v1/files/{}/content", a.session_file),
        "/v1/vector_stores".to_owned(),
        format!("/v1/vector_stores/{}", a.vs),
        format!("/v1/vector_stores/{}/files", a.vs),
        format!("/v1/vector_stores/{}/files/{}", a.vs, a.file),
        format!("/v1/vector_stores/{}/files/{}", a.vs, a.file2),
        format!(
            "/v1/vector_stores/{}/files/{}/content?include_metadata=true",
            a.vs, a.file
        ),
        format!("/v1/vector_stores/{}/file_batches/{}", a.vs, a.batch),
        format!("/v1/vector_stores/{}/file_batches/{}/files", a.vs, a.batch),
        format!("/v1/files/session:{}", a.session),
        "/v1/buckets".to_owned(),
        format!("/v1/files/{BUCKET}"),
        format!("/v1/files/{BUCKET}/{KEY}"),
    ];
    let mut out = Vec::new();
    for path in paths {
        let got = send(app, &alpha.client, Method::GET, &path, &Body::None).await;
        assert_eq!(got.status, 200, "{path}: {}", got.body);
        out.push((path, got.status, got.body));
    }
    // Search hits (scores aside): which files, which text.
    let (status, res) = post(
        app,
        alpha,
        &format!("/v1/vector_stores/{}/search", a.vs),
        json!({"query": "How do plants turn sunlight into food?"}),
    )
    .await;
    assert_eq!(status, 200, "{res}");
    let hits: Vec<(Value, Value)> = res["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["file_id"].clone(), h["content"].clone()))
        .collect();
    out.push(("search".into(), status, format!("{hits:?}")));
    // What has no route: the pending upload and its parts, and the store's index points.
    let upload = UploadId::parse(&a.upload).unwrap();
    let record = app
        .state
        .meta
        .get_upload(&alpha.project, &upload)
        .await
        .unwrap();
    let parts = app.state.meta.parts_of(&upload).await.unwrap();
    out.push(("upload".into(), 0, format!("{record:?} {parts:?}")));
    let vs = VectorStoreId::parse(&a.vs).unwrap();
    let points = app.state.index.count(Some(&vs), None).await.unwrap();
    out.push(("points".into(), 0, points.to_string()));
    out
}

fn ids_in(listing: &Value) -> Vec<String> {
    listing["data"]
        .as_array()
        .unwrap_or_else(|| panic!("not a listing: {listing}"))
        .iter()
        .map(|o| {
            o.get("id")
                .or_else(|| o.get("name"))
                .and_then(Value::as_str)
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn another_projects_ids_answer_exactly_as_unknown_ids_do() {
    let app = TestApp::spawn().await;
    let alpha = tenant(&app, "alpha").await;
    let beta = tenant(&app, "beta").await;
    assert_ne!(alpha.project, beta.project);

    // --- alpha's objects -------------------------------------------------------------------
    let file = upload(&app, &alpha, "alpha-notes.txt", ALPHA_DOC).await;
    let file2 = upload(&app, &alpha, "alpha-rome.txt", ALPHA_DOC_2).await;
    let vs = create_store(
        &app,
        &alpha,
        json!({"name": "alpha kb", "file_ids": [file]}),
    )
    .await;
    app.drain().await;
    let (status, b) = post(
        &app,
        &alpha,
        &format!("/v1/vector_stores/{vs}/file_batches"),
        json!({"file_ids": [file2]}),
    )
    .await;
    assert_eq!(status, 200, "{b}");
    let batch = b["id"].as_str().unwrap().to_owned();
    app.drain().await;
    let (_, v) = get(&app, &alpha, &format!("/v1/vector_stores/{vs}")).await;
    assert_eq!(v["status"], "completed", "{v}");
    assert_eq!(v["file_counts"]["completed"], 2, "{v}");

    // A pending upload with one part.
    let (status, u) = post(
        &app,
        &alpha,
        "/v1/uploads",
        json!({"filename": "pending.txt", "purpose": "assistants", "bytes": 10, "mime_type": "text/plain"}),
    )
    .await;
    assert_eq!(status, 200, "{u}");
    let upload_id = u["id"].as_str().unwrap().to_owned();
    let part = send(
        &app,
        &alpha.client,
        Method::POST,
        &format!("/v1/uploads/{upload_id}/parts"),
        &Body::Part(b"01234".to_vec()),
    )
    .await;
    assert_eq!(part.status, 200, "{}", part.body);
    let part_id = part.json()["id"].as_str().unwrap().to_owned();

    // An upload session completed into a file under a bucket and key.
    let (status, s) = post(
        &app,
        &alpha,
        "/v1/files",
        json!({"bucket": BUCKET, "key": KEY, "mime_type": "text/plain", "size": SESSION_DOC.len()}),
    )
    .await;
    assert_eq!(status, 200, "{s}");
    let session = s["id"].as_str().unwrap().to_owned();
    let done = send(
        &app,
        &alpha.client,
        Method::POST,
        &format!("/v1/files/session:{session}"),
        &Body::Raw(SESSION_DOC.to_vec()),
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let session_file = done.json()["id"].as_str().unwrap().to_owned();

    // Rows that stay behind once deleted or cancelled: a deleted file, a deleted store, a
    // cancelled upload.
    let gone_file = upload(&app, &alpha, "alpha-gone.txt", ALPHA_DOC_2).await;
    let gone_vs = create_store(&app, &alpha, json!({"name": "gone"})).await;
    for path in [
        format!("/v1/files/{gone_file}"),
        format!("/v1/vector_stores/{gone_vs}"),
    ] {
        let res = send(&app, &alpha.client, Method::DELETE, &path, &Body::None).await;
        assert_eq!(res.status, 200, "{path}: {}", res.body);
    }
    let (status, u) = post(
        &app,
        &alpha,
        "/v1/uploads",
        json!({"filename": "c.txt", "purpose": "assistants", "bytes": 10, "mime_type": "text/plain"}),
    )
    .await;
    assert_eq!(status, 200, "{u}");
    let cancelled = u["id"].as_str().unwrap().to_owned();
    let (status, c) = post(
        &app,
        &alpha,
        &format!("/v1/uploads/{cancelled}/cancel"),
        json!({}),
    )
    .await;
    assert_eq!((status, &c["status"]), (200, &json!("cancelled")), "{c}");
    app.drain().await;

    let a = AlphaObjects {
        file,
        file2,
        vs,
        batch,
        upload: upload_id,
        part: part_id,
        session,
        session_file,
    };

    // --- beta's own objects ----------------------------------------------------------------
    let bfile = upload(&app, &beta, "beta-bread.txt", BETA_DOC).await;
    let bvs = create_store(&app, &beta, json!({"name": "beta kb", "file_ids": [bfile]})).await;
    let (status, u) = post(
        &app,
        &beta,
        "/v1/uploads",
        json!({"filename": "b.txt", "purpose": "assistants", "bytes": 10, "mime_type": "text/plain"}),
    )
    .await;
    assert_eq!(status, 200, "{u}");
    let bupload = u["id"].as_str().unwrap().to_owned();
    app.drain().await;

    let before = snapshot(&app, &alpha, &a).await;
    // Time moves on, so anything beta's attempts touched (a store's last_active_at) shows.
    app.clock.advance(60);

    // --- the walk: beta names alpha's objects, and objects that never existed -------------
    let theirs: Ids = vec![
        ("file2", a.file2.clone()),
        ("file", a.file.clone()),
        ("sfile", a.session_file.clone()),
        ("vs", a.vs.clone()),
        ("batch", a.batch.clone()),
        ("upload", a.upload.clone()),
        ("part", a.part.clone()),
        ("session", a.session.clone()),
        ("bucket", BUCKET.to_owned()),
        ("gone_file", gone_file.clone()),
        ("gone_vs", gone_vs.clone()),
        ("cancelled", cancelled.clone()),
    ];
    let unknown: Ids = vec![
        ("file2", FileId::generate().to_string()),
        ("file", FileId::generate().to_string()),
        ("sfile", FileId::generate().to_string()),
        ("vs", VectorStoreId::generate().to_string()),
        ("batch", FileBatchId::generate().to_string()),
        ("upload", UploadId::generate().to_string()),
        ("part", PartId::generate().to_string()),
        ("session", UploadId::generate().to_string()),
        ("bucket", unknown_bucket(BUCKET.len())),
        ("gone_file", FileId::generate().to_string()),
        ("gone_vs", VectorStoreId::generate().to_string()),
        ("cancelled", UploadId::generate().to_string()),
    ];
    for ((n1, v1), (n2, v2)) in theirs.iter().zip(&unknown) {
        assert_eq!((n1, v1.len()), (n2, v2.len()), "same kinds, same lengths");
        assert_ne!(v1, v2);
    }
    // Beta's own ids are the same in both requests of a probe.
    let own = |t: &'static str| {
        t.replace("{bvs}", &bvs)
            .replace("{bfile}", &bfile)
            .replace("{bupload}", &bupload)
    };
    let key_path = format!("/files/{{bucket}}/{KEY}");
    let search = json_body(r#"{"query": "How do plants turn sunlight into food?"}"#);
    let probes = vec![
        // Files.
        probe(Method::GET, "/files/{file}", Body::None),
        probe(Method::GET, "/files/{file}/content", Body::None),
        probe(Method::GET, "/files/{sfile}", Body::None),
        probe(Method::GET, "/files/{sfile}/content", Body::None),
        probe(Method::DELETE, "/files/{file2}", Body::None),
        probe(Method::DELETE, "/files/{sfile}", Body::None),
        Probe {
            not_found: false,
            ..probe(Method::GET, "/files?after={file}", Body::None)
        },
        // Uploads.
        probe(
            Method::POST,
            "/uploads/{upload}/parts",
            Body::Part(b"56789".to_vec()),
        ),
        probe(
            Method::POST,
            "/uploads/{upload}/complete",
            json_body(r#"{"part_ids": ["{part}"]}"#),
        ),
        probe(Method::POST, "/uploads/{upload}/cancel", json_body("{}")),
        Probe {
            not_found: false,
            ..probe(
                Method::POST,
                own("/uploads/{bupload}/complete"),
                json_body(r#"{"part_ids": ["{part}"]}"#),
            )
        },
        // Upload sessions and buckets.
        probe(Method::GET, "/files/session:{session}", Body::None),
        probe(
            Method::POST,
            "/files/session:{session}",
            Body::Raw(b"more".to_vec()),
        ),
        probe(Method::GET, "/files/session:{upload}", Body::None),
        probe(
            Method::POST,
            "/files/session:{upload}",
            Body::Raw(b"56789".to_vec()),
        ),
        probe(Method::GET, "/files/{bucket}", Body::None),
        probe(Method::GET, key_path.clone(), Body::None),
        probe(Method::DELETE, key_path.clone(), Body::None),
        // What alpha deleted or cancelled.
        probe(Method::GET, "/files/{gone_file}", Body::None),
        probe(Method::DELETE, "/files/{gone_file}", Body::None),
        Probe {
            not_found: false,
            ..probe(Method::GET, "/files?after={gone_file}", Body::None)
        },
        probe(Method::GET, "/vector_stores/{gone_vs}", Body::None),
        probe(Method::DELETE, "/vector_stores/{gone_vs}", Body::None),
        Probe {
            not_found: false,
            ..probe(Method::GET, "/vector_stores?after={gone_vs}", Body::None)
        },
        probe(Method::POST, "/uploads/{cancelled}/cancel", json_body("{}")),
        probe(
            Method::POST,
            "/uploads/{cancelled}/parts",
            Body::Part(b"x".to_vec()),
        ),
        probe(
            Method::POST,
            "/uploads/{cancelled}/complete",
            json_body(r#"{"part_ids": []}"#),
        ),
        probe(Method::GET, "/files/session:{cancelled}", Body::None),
        // Vector stores.
        probe(Method::GET, "/vector_stores/{vs}", Body::None),
        probe(
            Method::POST,
            "/vector_stores/{vs}",
            json_body(r#"{"name": "taken", "metadata": {"owner": "beta"}}"#),
        ),
        probe(Method::DELETE, "/vector_stores/{vs}", Body::None),
        probe(Method::POST, "/vector_stores/{vs}/search", search.clone()),
        Probe {
            not_found: false,
            ..probe(Method::GET, "/vector_stores?after={vs}", Body::None)
        },
        probe(
            Method::POST,
            "/vector_stores",
            json_body(r#"{"name": "stolen", "file_ids": ["{file}"]}"#),
        ),
        // Beta's own file beside alpha's: refused whole, nothing made.
        probe(
            Method::POST,
            "/vector_stores",
            Body::Json(own(
                r#"{"name": "mixed", "file_ids": ["{bfile}", "{file}"]}"#,
            )),
        ),
        // Vector-store files, in alpha's store...
        probe(Method::GET, "/vector_stores/{vs}/files", Body::None),
        probe(
            Method::POST,
            "/vector_stores/{vs}/files",
            json_body(r#"{"file_id": "{file}"}"#),
        ),
        probe(
            Method::POST,
            own("/vector_stores/{vs}/files"),
            Body::Json(own(r#"{"file_id": "{bfile}"}"#)),
        ),
        probe(Method::GET, "/vector_stores/{vs}/files/{file}", Body::None),
        probe(
            Method::POST,
            "/vector_stores/{vs}/files/{file}",
            json_body(r#"{"attributes": {"owner": "beta"}}"#),
        ),
        probe(
            Method::DELETE,
            "/vector_stores/{vs}/files/{file}",
            Body::None,
        ),
        probe(
            Method::GET,
            "/vector_stores/{vs}/files/{file}/content",
            Body::None,
        ),
        // ...and alpha's file in beta's own store.
        probe(
            Method::POST,
            own("/vector_stores/{bvs}/files"),
            json_body(r#"{"file_id": "{file}"}"#),
        ),
        probe(
            Method::GET,
            own("/vector_stores/{bvs}/files/{file}"),
            Body::None,
        ),
        probe(
            Method::POST,
            own("/vector_stores/{bvs}/files/{file}"),
            json_body(r#"{"attributes": {"owner": "beta"}}"#),
        ),
        probe(
            Method::DELETE,
            own("/vector_stores/{bvs}/files/{file}"),
            Body::None,
        ),
        probe(
            Method::GET,
            own("/vector_stores/{bvs}/files/{file}/content"),
            Body::None,
        ),
        Probe {
            not_found: false,
            ..probe(
                Method::GET,
                own("/vector_stores/{bvs}/files?after={file}"),
                Body::None,
            )
        },
        // File batches.
        probe(
            Method::POST,
            "/vector_stores/{vs}/file_batches",
            json_body(r#"{"file_ids": ["{file2}"]}"#),
        ),
        probe(
            Method::POST,
            own("/vector_stores/{bvs}/file_batches"),
            json_body(r#"{"file_ids": ["{file2}"]}"#),
        ),
        probe(
            Method::POST,
            own("/vector_stores/{bvs}/file_batches"),
            json_body(r#"{"files": [{"file_id": "{file}", "attributes": {"k": "v"}}]}"#),
        ),
        probe(
            Method::POST,
            own("/vector_stores/{bvs}/file_batches"),
            Body::Json(own(r#"{"file_ids": ["{bfile}", "{file2}"]}"#)),
        ),
        probe(
            Method::GET,
            "/vector_stores/{vs}/file_batches/{batch}",
            Body::None,
        ),
        probe(
            Method::POST,
            "/vector_stores/{vs}/file_batches/{batch}/cancel",
            json_body("{}"),
        ),
        probe(
            Method::GET,
            "/vector_stores/{vs}/file_batches/{batch}/files",
            Body::None,
        ),
        probe(
            Method::GET,
            own("/vector_stores/{bvs}/file_batches/{batch}"),
            Body::None,
        ),
        probe(
            Method::POST,
            own("/vector_stores/{bvs}/file_batches/{batch}/cancel"),
            json_body("{}"),
        ),
        probe(
            Method::GET,
            own("/vector_stores/{bvs}/file_batches/{batch}/files"),
            Body::None,
        ),
    ];
    for prefix in ["/v1", "/v1/openai/v1"] {
        for p in &probes {
            same_as_unknown(&app, &beta, prefix, p, &theirs, &unknown).await;
        }
    }

    // --- nothing changed for alpha ---------------------------------------------------------
    let after = snapshot(&app, &alpha, &a).await;
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b, a, "alpha's view changed after beta's attempts");
    }
    assert_eq!(before.len(), after.len());
    let (_, files) = get(&app, &alpha, &format!("/v1/vector_stores/{}/files", a.vs)).await;
    let mut in_store = ids_in(&files);
    in_store.sort();
    let mut expected = vec![a.file.clone(), a.file2.clone()];
    expected.sort();
    assert_eq!(in_store, expected, "alpha's store holds exactly its files");
    // Nothing beta tried was queued.
    assert_eq!(app.drain().await, 0, "beta's attempts queued jobs");

    // --- beta sees only its own ------------------------------------------------------------
    let alpha_ids = [
        &a.file,
        &a.file2,
        &a.session_file,
        &a.vs,
        &a.batch,
        &a.upload,
        &a.session,
    ];
    let (status, files) = get(&app, &beta, "/v1/files").await;
    assert_eq!(status, 200, "{files}");
    assert_eq!(ids_in(&files), vec![bfile.clone()]);
    let (status, stores) = get(&app, &beta, "/v1/vector_stores").await;
    assert_eq!(status, 200, "{stores}");
    assert_eq!(
        ids_in(&stores),
        vec![bvs.clone()],
        "no store was made for beta"
    );
    let (_, bstore_files) = get(&app, &beta, &format!("/v1/vector_stores/{bvs}/files")).await;
    assert_eq!(ids_in(&bstore_files), vec![bfile.clone()]);
    let (status, buckets) = get(&app, &beta, "/v1/buckets").await;
    assert_eq!(status, 200, "{buckets}");
    assert_eq!(buckets["data"], json!([]), "{buckets}");
    for listing in [&files, &stores, &bstore_files, &buckets] {
        let text = listing.to_string();
        for id in alpha_ids {
            assert!(!text.contains(id.as_str()), "{id} in {text}");
        }
        assert!(!text.contains(BUCKET), "{text}");
    }
    let (_, bv) = get(&app, &beta, &format!("/v1/vector_stores/{bvs}")).await;
    assert_eq!(bv["file_counts"]["total"], 1, "{bv}");
    assert_eq!(bv["metadata"], json!({}), "{bv}");
    let bvs_id = VectorStoreId::parse(&bvs).unwrap();
    for f in [&a.file, &a.file2] {
        let f = FileId::parse(f).unwrap();
        assert_eq!(
            app.state
                .index
                .count(Some(&bvs_id), Some(&f))
                .await
                .unwrap(),
            0,
            "alpha's file has points in beta's store"
        );
    }

    // A bucket and key taken in alpha's project are free in beta's: no conflict tells beta
    // they exist elsewhere.
    let (status, s) = post(
        &app,
        &beta,
        "/v1/files",
        json!({"bucket": BUCKET, "key": KEY, "mime_type": "text/plain", "size": 3}),
    )
    .await;
    assert_eq!(status, 200, "{s}");
    assert_ne!(s["id"], json!(a.session));
}

/// Both projects hold the same document (same bytes, same name).
const SHARED_NAME: &str = "handbook.txt";
const SHARED_DOC: &str = "TCP slows its sending rate when the network is congested. Slow start \
    grows the congestion window exponentially, and after packet loss the sender halves the \
    window and grows it additively (AIMD). Retransmission timeouts detect lost segments.";
const QUESTION: &str = "What happens to the sending rate when packets are lost on a busy network?";

async fn search_hits(app: &TestApp, who: &Tenant, vs: &str) -> Vec<Value> {
    let (status, res) = post(
        app,
        who,
        &format!("/v1/vector_stores/{vs}/search"),
        json!({"query": QUESTION, "max_num_results": 50}),
    )
    .await;
    assert_eq!(status, 200, "{res}");
    res["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn search_never_crosses_projects() {
    let app = TestApp::spawn().await;
    let alpha = tenant(&app, "alpha").await;
    let beta = tenant(&app, "beta").await;

    let mut sides = Vec::new();
    for who in [&alpha, &beta] {
        let file = upload(&app, who, SHARED_NAME, SHARED_DOC).await;
        let vs = create_store(&app, who, json!({"name": "kb", "file_ids": [file]})).await;
        sides.push((file, vs));
    }
    app.drain().await;
    let [(afile, avs), (bfile, bvs)] = [sides[0].clone(), sides[1].clone()];
    assert_ne!(afile, bfile);
    for (who, vs) in [(&alpha, &avs), (&beta, &bvs)] {
        let (_, v) = get(&app, who, &format!("/v1/vector_stores/{vs}")).await;
        assert_eq!(v["status"], "completed", "{v}");
    }

    // Each store's points are its own file's.
    let point_count = |vs: &str, file: Option<&str>| {
        let vs = VectorStoreId::parse(vs).unwrap();
        let file = file.map(|f| FileId::parse(f).unwrap());
        let index = app.state.index.clone();
        async move { index.count(Some(&vs), file.as_ref()).await.unwrap() }
    };
    let n = point_count(&avs, None).await;
    assert!(n > 0);
    assert_eq!(point_count(&avs, Some(&afile)).await, n);
    assert_eq!(point_count(&bvs, None).await, n);
    assert_eq!(point_count(&bvs, Some(&bfile)).await, n);
    assert_eq!(point_count(&avs, Some(&bfile)).await, 0);
    assert_eq!(point_count(&bvs, Some(&afile)).await, 0);

    // Each search finds the document, and only its own copy.
    let own_hits = |hits: &[Value], file: &str| {
        assert!(!hits.is_empty(), "the document was not found");
        for h in hits {
            assert_eq!(h["file_id"], file, "a hit from another project: {h}");
            assert_eq!(h["filename"], SHARED_NAME);
        }
    };
    let a_hits = search_hits(&app, &alpha, &avs).await;
    let b_hits = search_hits(&app, &beta, &bvs).await;
    own_hits(&a_hits, &afile);
    own_hits(&b_hits, &bfile);
    assert_eq!(a_hits.len(), b_hits.len());
    for (x, y) in a_hits.iter().zip(&b_hits) {
        assert_eq!(
            x["content"], y["content"],
            "the same document, the same chunks"
        );
    }

    // The chunks of each side's file, with the file they come from.
    for (who, vs, file) in [(&alpha, &avs, &afile), (&beta, &bvs, &bfile)] {
        let (status, page) = get(
            &app,
            who,
            &format!("/v1/vector_stores/{vs}/files/{file}/content?include_metadata=true"),
        )
        .await;
        assert_eq!(status, 200, "{page}");
        let chunks = page["data"].as_array().unwrap();
        assert!(!chunks.is_empty(), "{page}");
        for c in chunks {
            assert_eq!(c["metadata"]["file_id"], file.as_str(), "{c}");
            assert_eq!(c["chunk_metadata"]["document_id"], file.as_str(), "{c}");
        }
        let text: String = chunks.iter().map(|c| c["text"].as_str().unwrap()).collect();
        assert!(text.contains("Slow start"), "{text}");
    }

    // Each side naming the other's ids gets what an unknown id gets.
    let probes = [
        probe(
            Method::POST,
            "/vector_stores/{vs}/search",
            Body::Json(json!({"query": QUESTION}).to_string()),
        ),
        probe(
            Method::GET,
            "/vector_stores/{vs}/files/{file}/content",
            Body::None,
        ),
        probe(Method::GET, "/vector_stores/{vs}/files/{file}", Body::None),
        probe(Method::GET, "/files/{file}/content", Body::None),
    ];
    for (who, vs, file) in [(&beta, &avs, &afile), (&alpha, &bvs, &bfile)] {
        let theirs: Ids = vec![("vs", vs.clone()), ("file", file.clone())];
        let unknown: Ids = vec![
            ("vs", VectorStoreId::generate().to_string()),
            ("file", FileId::generate().to_string()),
        ];
        for prefix in ["/v1", "/v1/openai/v1"] {
            for p in &probes {
                same_as_unknown(&app, who, prefix, p, &theirs, &unknown).await;
            }
        }
    }
    // Their file in one's own store is not there either.
    for (who, own_vs, their_file) in [(&beta, &bvs, &afile), (&alpha, &avs, &bfile)] {
        let (status, body) = get(
            &app,
            who,
            &format!("/v1/vector_stores/{own_vs}/files/{their_file}/content"),
        )
        .await;
        assert_eq!(status, 404, "{body}");
    }

    // Alpha deletes its copy: beta's, made from the same bytes, is untouched.
    let deleted = send(
        &app,
        &alpha.client,
        Method::DELETE,
        &format!("/v1/files/{afile}"),
        &Body::None,
    )
    .await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    app.drain().await;
    assert_eq!(point_count(&avs, None).await, 0);
    assert!(search_hits(&app, &alpha, &avs).await.is_empty());
    assert_eq!(point_count(&bvs, Some(&bfile)).await, n);
    let b_after = search_hits(&app, &beta, &bvs).await;
    own_hits(&b_after, &bfile);
    assert_eq!(b_after.len(), b_hits.len());
    let (status, page) = get(
        &app,
        &beta,
        &format!("/v1/vector_stores/{bvs}/files/{bfile}/content"),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(!page["data"].as_array().unwrap().is_empty());
    let content = send(
        &app,
        &beta.client,
        Method::GET,
        &format!("/v1/files/{bfile}/content"),
        &Body::None,
    )
    .await;
    assert_eq!((content.status, content.body.as_str()), (200, SHARED_DOC));
}

#[tokio::test]
async fn a_missing_or_wrong_key_is_401_invalid_api_key() {
    let app = TestApp::spawn().await;
    let alpha = tenant(&app, "alpha").await;
    // Revoked before the server has ever seen it (verdicts are remembered for a while).
    let revoked = tenant(&app, "gamma").await;
    assert!(app
        .state
        .meta
        .revoke_key(&revoked.key_id, app.clock.now())
        .await
        .unwrap());

    // The real key works.
    let (status, body) = get(&app, &alpha, "/v1/files").await;
    assert_eq!(status, 200, "{body}");

    // The same key with its last hex digit changed.
    let mut wrong = alpha.secret.clone();
    let last = wrong.pop().unwrap();
    wrong.push(if last == '0' { '1' } else { '0' });
    assert_ne!(wrong, alpha.secret);

    let garbage = "sk-this-is-not-a-key";
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no key", None),
        ("garbage", Some(format!("Bearer {garbage}"))),
        ("wrong secret", Some(format!("Bearer {wrong}"))),
        ("revoked", Some(format!("Bearer {}", revoked.secret))),
        ("not bearer", Some(format!("Basic {}", alpha.secret))),
    ];
    let plain = reqwest::Client::new();
    for prefix in ["/v1", "/v1/openai/v1"] {
        for (what, header) in &cases {
            for (method, path) in [
                (Method::GET, "/files"),
                (Method::GET, "/vector_stores"),
                (Method::GET, "/buckets"),
                (Method::POST, "/vector_stores"),
            ] {
                let mut req = plain.request(method.clone(), app.url(&format!("{prefix}{path}")));
                if let Some(h) = header {
                    req = req.header(AUTHORIZATION, h);
                }
                if method == Method::POST {
                    req = req.json(&json!({"name": "x"}));
                }
                let res = req.send().await.unwrap();
                assert_eq!(res.status(), 401, "{what}: {method} {prefix}{path}");
                assert_eq!(
                    res.headers().get("www-authenticate").map(|v| v.as_bytes()),
                    Some(&b"Bearer"[..]),
                    "{what}"
                );
                let body: Value = res.json().await.unwrap();
                let e = assert_error(&body, "invalid_request_error");
                assert_eq!(e["code"], "invalid_api_key", "{what}: {body}");
                let message = e["message"].as_str().unwrap();
                for secret in [&alpha.secret, &wrong, &revoked.secret] {
                    assert!(
                        !message.contains(secret.as_str()),
                        "{what}: the key is echoed: {message}"
                    );
                    // Not even the secret half of it.
                    let (_, tail) = secret.rsplit_once('-').unwrap();
                    assert!(!message.contains(tail), "{what}: {message}");
                }
                assert!(!message.contains(garbage), "{what}: {message}");
            }
        }
    }
    // Nothing was made by the refused requests.
    let (_, stores) = get(&app, &alpha, "/v1/vector_stores").await;
    assert_eq!(stores["data"], json!([]), "{stores}");

    // Health needs no key.
    let res = plain.get(app.url("/health")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}
