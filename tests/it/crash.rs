//! What a dying client or a killed process leaves behind: nothing visible, nothing orphaned.
//! The process tests run the real `ragstore` binary.

use crate::{eventually, files_under, multipart_head, multipart_tail, post_head, TestApp};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[tokio::test]
async fn a_client_that_disconnects_mid_upload_leaves_nothing() {
    let app = TestApp::spawn().await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let tmp = app.data_dir().join("tmp");
    let head = multipart_head("assistants", "cut.bin");
    let declared = head.len() + 10_000_000 + multipart_tail().len();
    let stream = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&post_head("/v1/files", declared)).unwrap();
        s.write_all(&head).unwrap();
        s.write_all(&vec![b'z'; 3_000_000]).unwrap();
        s
    })
    .await
    .unwrap();
    assert!(
        eventually(5, || !files_under(&tmp).is_empty()).await,
        "the upload was being staged"
    );
    drop(stream);
    assert!(
        eventually(5, || files_under(&tmp).is_empty()).await,
        "staged bytes were not removed"
    );
    let (_, list) = app.get_json("/v1/files").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0);
    assert!(files_under(&app.data_dir().join("blobs")).is_empty());
}

struct Server {
    child: Child,
    addr: String,
}

/// A test that fails half-way must not leave a server running.
impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(data_dir: &Path) -> Server {
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_ragstore"))
        .args(["serve", "--addr", &addr, "--data-dir"])
        .arg(data_dir)
        .arg("--models-dir")
        .arg(crate::models_dir())
        .env("RAGSTORE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Up to a minute: loading the model takes seconds on a busy machine.
    for _ in 0..3000 {
        if http_get(&addr, "/health").is_some_and(|(s, _)| s == 200) {
            return Server { child, addr };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut child = child;
    let _ = child.kill();
    let _ = child.wait();
    panic!("ragstore did not start");
}

/// A bare HTTP/1.1 GET: (status, body).
fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    read_response(&mut s)
}

fn read_response(s: &mut TcpStream) -> Option<(u16, String)> {
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split(' ').nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

fn listed_files(addr: &str) -> Vec<Value> {
    let (status, body) = http_get(addr, "/v1/files").unwrap();
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    v["data"].as_array().unwrap().clone()
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn a_process_killed_mid_upload_leaves_no_file_and_no_row() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = start(&data);

    // A first, complete file that must survive everything below.
    let head = multipart_head("assistants", "kept.txt");
    let mut body = head.clone();
    body.extend_from_slice(b"kept bytes");
    body.extend(multipart_tail());
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.write_all(&post_head("/v1/files", body.len())).unwrap();
    s.write_all(&body).unwrap();
    let (status, _) = read_response(&mut s).unwrap();
    assert_eq!(status, 200);

    // Half an upload, then SIGKILL.
    let mut s = TcpStream::connect(&server.addr).unwrap();
    let head = multipart_head("assistants", "doomed.bin");
    s.write_all(&post_head(
        "/v1/files",
        head.len() + 8_000_000 + multipart_tail().len(),
    ))
    .unwrap();
    s.write_all(&head).unwrap();
    s.write_all(&vec![b'd'; 4_000_000]).unwrap();
    let tmp = data.join("tmp");
    for _ in 0..250 {
        if !files_under(&tmp).is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!files_under(&tmp).is_empty(), "the upload was being staged");
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    drop(s);

    // What a kill between "blob published" and "row committed" would leave.
    let orphan = data.join("blobs/files/file-OrphanNoRowXXXXXXXXXXX");
    std::fs::write(&orphan, b"orphan").unwrap();
    let orphan_part = data.join("blobs/parts/upload_gone/part_gone");
    std::fs::create_dir_all(orphan_part.parent().unwrap()).unwrap();
    std::fs::write(&orphan_part, b"orphan part").unwrap();

    let mut server = start(&data);
    // (The restarted server's own workers may stage extracted text for a moment.)
    for _ in 0..250 {
        if files_under(&tmp).is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        files_under(&tmp).is_empty(),
        "staged bytes survived a restart"
    );
    assert!(!orphan.exists(), "a blob without a row survived a restart");
    assert!(
        !orphan_part.exists(),
        "a part without a row survived a restart"
    );
    let files = listed_files(&server.addr);
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["filename"], "kept.txt");
    let blobs = files_under(&data.join("blobs/files"));
    assert_eq!(blobs.len(), 1, "{blobs:?}");
    signal(&server.child, "-TERM");
    assert!(server.child.wait().unwrap().success());
}

#[test]
fn sigterm_lets_an_in_flight_upload_finish() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = start(&data);

    let head = multipart_head("user_data", "in-flight.txt");
    let payload = vec![b'q'; 2_000_000];
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.write_all(&post_head(
        "/v1/files",
        head.len() + payload.len() + multipart_tail().len(),
    ))
    .unwrap();
    s.write_all(&head).unwrap();
    s.write_all(&payload[..1_000_000]).unwrap();
    let tmp = data.join("tmp");
    for _ in 0..250 {
        if !files_under(&tmp).is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&server.child, "-TERM");
    std::thread::sleep(Duration::from_millis(300));
    // Still running: it waits for the request in flight.
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "exited with a request in flight"
    );
    s.write_all(&payload[1_000_000..]).unwrap();
    s.write_all(&multipart_tail()).unwrap();
    let (status, body) = read_response(&mut s).unwrap();
    assert_eq!(status, 200, "{body}");
    let status = server.child.wait().unwrap();
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
    assert!(files_under(&tmp).is_empty());

    let mut server = start(&data);
    let files = listed_files(&server.addr);
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["bytes"], 2_000_000);
    signal(&server.child, "-TERM");
    assert!(server.child.wait().unwrap().success());
}

#[test]
fn serve_without_the_model_names_the_fetch_script() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ragstore"))
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--models-dir")
        .arg(dir.path().join("no-models-here"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("scripts/fetch-models.sh"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A bare HTTP/1.1 request with a body: (status, body).
fn http_send(
    addr: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    read_response(&mut s).unwrap()
}

/// A kill -9 in the middle of an upload session loses no acknowledged byte: after a restart the
/// session's offset is what was acknowledged, and the client resumes from there.
#[test]
fn a_session_resumes_after_kill_9_with_every_acknowledged_byte() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let server = start(&data);
    let (status, body) = http_send(
        &server.addr,
        "POST",
        "/v1/files",
        "application/json",
        format!(
            r#"{{"bucket":"b","key":"data/blob.bin","mime_type":"application/octet-stream","size":{}}}"#,
            bytes.len()
        )
        .as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    let session: Value = serde_json::from_str(&body).unwrap();
    let path = format!("/v1/files/session:{}", session["id"].as_str().unwrap());
    let first = 100_000;
    let (status, body) = http_send(
        &server.addr,
        "POST",
        &path,
        "application/octet-stream",
        &bytes[..first],
    );
    assert_eq!((status, body.as_str()), (200, "null"));
    signal(&server.child, "-9");
    drop(server);

    let server = start(&data);
    let (status, body) = http_get(&server.addr, &path).unwrap();
    assert_eq!(status, 200, "{body}");
    let info: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["offset"].as_u64(), Some(first as u64), "{info}");
    let (status, body) = http_send(
        &server.addr,
        "POST",
        &path,
        "application/octet-stream",
        &bytes[first..],
    );
    assert_eq!(status, 200, "{body}");
    let file: Value = serde_json::from_str(&body).unwrap();
    let fid = file["id"].as_str().unwrap();
    let mut s = TcpStream::connect(&server.addr).unwrap();
    write!(
        s,
        "GET /v1/files/{fid}/content HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = memchr_find(&raw, b"\r\n\r\n").unwrap() + 4;
    assert_eq!(
        &raw[split..],
        bytes.as_slice(),
        "the file is every byte, in order"
    );
}

fn memchr_find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `ragstore search` against a running server: the store by name, readable hits, filters, and
/// a clear failure for an unknown store.
#[test]
fn the_search_command_prints_readable_hits() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"));
    let addr = server.addr.clone();
    let json = |method: &str, path: &str, body: &str| -> Value {
        let (status, text) = http_send(&addr, method, path, "application/json", body.as_bytes());
        assert_eq!(status, 200, "{method} {path}: {text}");
        serde_json::from_str(&text).unwrap()
    };
    let mut file_ids = Vec::new();
    for (key, text) in [
        (
            "basalt.txt",
            "Basalt forms when lava cools quickly at the surface of a volcano.",
        ),
        (
            "tides.txt",
            "Tides are caused by the gravity of the moon pulling on the oceans.",
        ),
    ] {
        let s = json(
            "POST",
            "/v1/files",
            &format!(
                r#"{{"bucket":"notes","key":"{key}","mime_type":"text/plain","size":{}}}"#,
                text.len()
            ),
        );
        let path = format!("/v1/files/session:{}", s["id"].as_str().unwrap());
        let (status, body) = http_send(&addr, "POST", &path, "text/plain", text.as_bytes());
        assert_eq!(status, 200, "{body}");
        let file: Value = serde_json::from_str(&body).unwrap();
        file_ids.push(file["id"].as_str().unwrap().to_owned());
    }
    let vs = json("POST", "/v1/vector_stores", r#"{"name": "geo notes"}"#);
    let vs_id = vs["id"].as_str().unwrap().to_owned();
    for (fid, team) in file_ids.iter().zip(["rocks", "sea"]) {
        json(
            "POST",
            &format!("/v1/vector_stores/{vs_id}/files"),
            &format!(r#"{{"file_id": "{fid}", "attributes": {{"team": "{team}"}}}}"#),
        );
    }
    for _ in 0..600 {
        let (_, body) = http_get(&addr, &format!("/v1/vector_stores/{vs_id}")).unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        if v["file_counts"]["completed"] == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let search = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ragstore"))
            .arg("search")
            .args(args)
            .args(["--server", &format!("http://{addr}")])
            .env_remove("RAGSTORE_SERVER")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = search(&["geo notes", "how does lava become rock", "-k", "1"]);
    assert!(ok, "{err}");
    let first = out.lines().next().unwrap();
    assert!(first.contains("basalt.txt"), "{out}");
    assert!(
        first
            .split_whitespace()
            .next()
            .unwrap()
            .parse::<f64>()
            .is_ok(),
        "{out}"
    );
    assert!(out.contains("Basalt forms when lava cools"), "{out}");
    assert_eq!(out.lines().count(), 2, "one hit: {out}");

    let (ok, out, err) = search(&[&vs_id, "how does lava become rock", "--filter", "team=sea"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("tides.txt") && !out.contains("basalt.txt"),
        "{out}"
    );

    let (ok, _, err) = search(&["no such store", "lava"]);
    assert!(!ok);
    assert!(
        err.contains("no vector store is named \"no such store\""),
        "{err}"
    );
}

/// `ragstore ingest` against a running server: a directory of mixed documents (one broken, one
/// excluded, one hidden) into a store it creates by name; a line per file, the summary, the
/// server's reason for the broken file and a non-zero exit. Run again, it skips every indexed
/// file and uploads only the broken one again (which fails again).
#[test]
fn the_ingest_command_uploads_a_tree_and_resumes_without_reuploading() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"));
    let addr = server.addr.clone();
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(docs.join("guides")).unwrap();
    std::fs::create_dir_all(docs.join(".cache")).unwrap();
    let write = |rel: &str, bytes: &[u8]| std::fs::write(docs.join(rel), bytes).unwrap();
    write(
        "basalt.txt",
        b"Basalt forms when lava cools quickly at the surface of a volcano.",
    );
    write(
        "guides/tides.md",
        b"# Tides\n\nTides are caused by the gravity of the moon pulling on the oceans.\n",
    );
    write(
        "guides/birds.html",
        b"<html><head><title>Birds</title></head><body><p>Marsh harriers glide low over \
          the reed beds.</p></body></html>",
    );
    write(
        "report.pdf",
        &crate::vector_stores::pdf_with(
            b"BT /F1 12 Tf 72 700 Td (Glaciers carve deep valleys.) Tj ET",
        ),
    );
    let mut broken = b"%PDF-1.7\n1 0 obj<</Type/Cat".to_vec();
    broken.extend((0..4000u32).map(|i| (i * 7919 % 251) as u8));
    write("broken.pdf", &broken);
    write("scratch.tmp", b"excluded by --exclude");
    write(".cache/hidden.txt", b"hidden files are skipped");

    let ingest = || {
        let out = Command::new(env!("CARGO_BIN_EXE_ragstore"))
            .arg("ingest")
            .arg(&docs)
            .args(["--vector-store", "field notes", "--exclude", "*.tmp"])
            .args(["--attributes", "team=geo", "year=2024"])
            .args(["--server", &format!("http://{addr}")])
            .env_remove("RAGSTORE_SERVER")
            .env_remove("RAGSTORE_API_KEY")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The summary row `label files bytes`: its file count.
    let row = |out: &str, label: &str| -> u64 {
        out.lines()
            .filter(|l| l.starts_with("  "))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|w| w.len() >= 3 && w[0] == label)
            .and_then(|w| w[1].parse().ok())
            .unwrap_or_else(|| panic!("no {label} row: {out}"))
    };
    let line_of = |out: &str, name: &str| -> String {
        out.lines()
            .find(|l| !l.starts_with("  ") && l.contains(name))
            .unwrap_or_else(|| panic!("no line for {name}: {out}"))
            .to_owned()
    };
    let good = ["basalt.txt", "tides.md", "birds.html", "report.pdf"];

    let (ok, out, err) = ingest();
    assert!(!ok, "the broken file fails the run: {out}");
    assert!(err.contains("1 of 5 files failed"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        !out.contains('\u{1b}'),
        "no terminal codes in plain output: {out}"
    );
    assert!(
        out.contains("created vector store \"field notes\""),
        "{out}"
    );
    for name in good {
        let line = line_of(&out, name);
        let chunks = line.ends_with(" chunk)") || line.ends_with(" chunks)");
        assert!(line.starts_with("ok ") && chunks, "{line}");
    }
    assert!(line_of(&out, "broken.pdf").starts_with("FAILED "), "{out}");
    assert!(
        !out.contains("scratch.tmp") && !out.contains("hidden.txt"),
        "{out}"
    );
    assert_eq!(
        (
            row(&out, "uploaded"),
            row(&out, "skipped"),
            row(&out, "failed")
        ),
        (4, 0, 1),
        "{out}"
    );
    assert_eq!(row(&out, "total"), 5, "{out}");

    // The store as the server has it: the good files indexed with their hash, path and the
    // given attributes; the broken one failed, with the reason the command printed.
    let (_, body) = http_get(&addr, "/v1/vector_stores").unwrap();
    let stores: Value = serde_json::from_str(&body).unwrap();
    let vs_id = stores["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "field notes")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) =
        http_get(&addr, &format!("/v1/vector_stores/{vs_id}/files?limit=100")).unwrap();
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body).unwrap();
    let vs_files = list["data"].as_array().unwrap();
    assert_eq!(vs_files.len(), 5, "{list}");
    let by_path = |p: &str| {
        vs_files
            .iter()
            .find(|f| f["attributes"]["path"] == p)
            .unwrap_or_else(|| panic!("no store file with path {p}: {list}"))
    };
    for p in [
        "basalt.txt",
        "guides/tides.md",
        "guides/birds.html",
        "report.pdf",
    ] {
        let f = by_path(p);
        assert_eq!(f["status"], "completed", "{f}");
        assert_eq!(f["attributes"]["team"], "geo", "{f}");
        assert_eq!(f["attributes"]["year"], 2024, "{f}");
        assert_eq!(f["attributes"]["sha256"].as_str().unwrap().len(), 64, "{f}");
        assert!(
            f["progress"]["chunks_indexed"].as_u64().unwrap() >= 1,
            "{f}"
        );
    }
    let failed = by_path("broken.pdf");
    assert_eq!(failed["status"], "failed", "{failed}");
    let reason = failed["last_error"]["message"].as_str().unwrap();
    assert!(!reason.is_empty(), "{failed}");
    assert!(
        line_of(&out, "broken.pdf").ends_with(&format!("broken.pdf: {reason}")),
        "the server's reason: {out}"
    );
    let names = |files: &[Value]| {
        let mut n: Vec<String> = files
            .iter()
            .map(|f| f["filename"].as_str().unwrap().to_owned())
            .collect();
        n.sort();
        n
    };
    assert_eq!(
        names(&listed_files(&addr)),
        [
            "basalt.txt",
            "birds.html",
            "broken.pdf",
            "report.pdf",
            "tides.md"
        ]
    );

    // Again: the indexed files are skipped, only the broken one goes up (and fails) again.
    let (ok, out, err) = ingest();
    assert!(!ok, "{out}");
    assert!(err.contains("1 of 5 files failed"), "{err}");
    assert!(!out.contains("created vector store"), "{out}");
    for name in good {
        let line = line_of(&out, name);
        assert!(
            line.starts_with("skipped ") && line.ends_with("(already in store)"),
            "{line}"
        );
    }
    assert!(line_of(&out, "broken.pdf").starts_with("FAILED "), "{out}");
    assert_eq!(
        (
            row(&out, "uploaded"),
            row(&out, "skipped"),
            row(&out, "failed")
        ),
        (0, 4, 1),
        "{out}"
    );
    assert_eq!(
        names(&listed_files(&addr)),
        [
            "basalt.txt",
            "birds.html",
            "broken.pdf",
            "broken.pdf",
            "report.pdf",
            "tides.md"
        ],
        "nothing but the broken file was uploaded again"
    );
}
