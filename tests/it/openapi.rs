//! `GET /openapi.json`: an OpenAPI 3.1 document that parses, whose references all resolve, that
//! lists every route of the router (read from the route tables in `src/api/`), and every one of
//! whose operations reaches a handler.

use crate::TestApp;
use serde_json::Value;
use std::collections::BTreeSet;

/// `/files/{id}/{*rest}` -> `/files/{}/{}`: a templated segment (or one holding a template,
/// such as `session:{upload_id}`) matches any.
fn shape(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.contains('{') { "{}" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

/// (method, shape) of every route the router declares: `.route("PATH", get(..).post(..))`.
fn router_routes() -> BTreeSet<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/api");
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let src = std::fs::read_to_string(&path).unwrap();
        let root = path.file_name().unwrap() == "mod.rs";
        let mut rest = src.as_str();
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + ".route(".len()..];
            let open = rest.find('"').unwrap();
            let close = open + 1 + rest[open + 1..].find('"').unwrap();
            let route = &rest[open + 1..close];
            // The methods chained on this route: the rest of the `.route(` call.
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(rest.len(), |(i, _)| i);
            let chain = &rest[close..end];
            let full = if root {
                route.to_owned()
            } else {
                format!("/v1{route}")
            };
            for method in ["get", "post", "delete"] {
                let called = chain.contains(&format!("{method}("))
                    || chain.contains(&format!(".{method}("))
                    || chain.contains(&format!("routing::{method}("));
                if called {
                    out.insert((method.to_owned(), shape(&full)));
                }
            }
        }
    }
    out.retain(|(_, p)| p != "/v1");
    out
}

fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|x| refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_openapi_document_lists_every_route_and_parses() {
    let app = TestApp::spawn().await;
    let (status, doc) = app.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    std::fs::write(
        std::env::temp_dir().join("ragstore-openapi.json"),
        serde_json::to_vec_pretty(&doc).unwrap(),
    )
    .unwrap();

    // Every reference resolves to a schema of the document.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in &all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{r}"));
        assert!(schemas.contains_key(name), "unresolved {r}");
    }
    // OpenAI's schema names.
    for name in [
        "OpenAIFile",
        "Upload",
        "VectorStoreObject",
        "VectorStoreFileObject",
        "ErrorResponse",
    ] {
        assert!(
            schemas.contains_key(name),
            "no schema {name}: {:?}",
            schemas.keys()
        );
    }

    // Every route of the router is documented.
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.clone(), shape(path)));
        }
    }
    let routes = router_routes();
    assert!(routes.len() > 30, "{routes:?}");
    let missing: Vec<_> = routes.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes not in /openapi.json: {missing:?}"
    );

    // And every documented operation reaches a handler (not the router's 404 or 405).
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{file_id}", "file-x")
            .replace("{upload_id}", "upload_x")
            .replace("{vector_store_id}", "vs_x")
            .replace("{batch_id}", "vsfb_x")
            .replace("{bucket}", "b")
            .replace("{key}", "k")
            .replace("{model}", "m");
        for method in item.as_object().unwrap().keys() {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let res = app
                .client
                .request(m, app.url(&concrete))
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            let code = body["error"]["code"].as_str().unwrap_or("");
            assert!(
                !matches!(code, "not_found" | "method_not_allowed") && status != 405,
                "{method} {concrete}: {status} {body}"
            );
        }
    }
}
