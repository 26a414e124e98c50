//! The front door under slow, stalled and too many clients: timeouts close what never finishes,
//! a connection cap refuses the excess with a 503, and nothing a stalled client holds starves
//! anyone else.

use crate::{eventually, files_under, multipart_head, post_head, TestApp, BOUNDARY};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection or `secs` pass; the bytes read and whether the
/// connection was closed.
async fn read_until_closed(s: &mut TcpStream, secs: u64) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&out).into(), false),
        }
    }
}

fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

#[tokio::test]
async fn headers_that_never_finish_and_idle_connections_are_closed() {
    let app = TestApp::spawn_with(|c| c.header_timeout_secs = 0.5).await;

    // Half a request head, then nothing.
    let mut slow = TcpStream::connect(addr(&app)).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (_, closed) = read_until_closed(&mut slow, 5).await;
    assert!(closed, "a request head that never ends is not held open");

    // A keep-alive connection that served a request and then sits idle.
    let mut idle = TcpStream::connect(addr(&app)).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let (answer, closed) = read_until_closed(&mut idle, 5).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed, "an idle keep-alive connection is not held open");
    assert!(started.elapsed() >= Duration::from_millis(400));

    // A connection that sends nothing at all.
    let mut mute = TcpStream::connect(addr(&app)).await.unwrap();
    let (_, closed) = read_until_closed(&mut mute, 5).await;
    assert!(closed);
    app.stop().await;
}

#[tokio::test]
async fn a_stalled_upload_body_is_dropped_and_leaves_nothing() {
    let app = TestApp::spawn_with(|c| c.body_timeout_secs = 0.5).await;
    let tmp = app.data_dir().join("tmp");
    let mut s = TcpStream::connect(addr(&app)).await.unwrap();
    let head = multipart_head("assistants", "stalled.bin");
    s.write_all(&post_head("/v1/files", head.len() + 10_000_000))
        .await
        .unwrap();
    s.write_all(&head).await.unwrap();
    s.write_all(&vec![b'z'; 3_000_000]).await.unwrap();
    assert!(
        eventually(5, || !files_under(&tmp).is_empty()).await,
        "the upload was being staged"
    );
    // The client now stalls with the connection open.
    let (answer, closed) = read_until_closed(&mut s, 10).await;
    assert!(closed, "a stalled body is not waited for forever: {answer}");
    assert!(
        eventually(5, || files_under(&tmp).is_empty()).await,
        "the stalled upload's staged bytes were removed"
    );
    let (_, list) = app.get_json("/v1/files").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0);
    app.stop().await;
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_with_a_503_until_some_close() {
    let app = TestApp::spawn_with(|c| c.max_connections = 4).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(addr(&app)).await.unwrap());
    }
    // Give the server a moment to accept them all.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let res = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 503);
    assert_eq!(res.headers()["retry-after"], "1");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["type"], "server_error");
    assert_eq!(body["error"]["code"], "server_busy");

    held.truncate(2);
    let client = app.client.clone();
    let url = app.url("/health");
    let mut ok = false;
    for _ in 0..50 {
        // A fresh connection each time: the refused one was closed.
        let res = reqwest::Client::new().get(&url).send().await.unwrap();
        if res.status().is_success() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "the server serves again once connections close");
    drop(client);
    drop(held);
    app.stop().await;
}

/// A runtime with few blocking threads, as a busy server's pool would be: stalled uploads must
/// not hold them, or every later upload (and anything else that needs one) waits behind them.
#[test]
fn stalled_uploads_do_not_hold_threads_others_need() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let app = TestApp::spawn().await;
        let tmp = app.data_dir().join("tmp");
        let mut stalled = Vec::new();
        for i in 0..8 {
            let mut s = TcpStream::connect(addr(&app)).await.unwrap();
            let head = multipart_head("assistants", &format!("stalled-{i}.bin"));
            s.write_all(&post_head("/v1/files", head.len() + 10_000_000))
                .await
                .unwrap();
            s.write_all(&head).await.unwrap();
            s.write_all(&vec![b'z'; 1_500_000]).await.unwrap();
            stalled.push(s);
        }
        assert!(
            eventually(10, || files_under(&tmp).len() >= 8).await,
            "every stalled upload was being staged"
        );
        let upload = tokio::time::timeout(
            Duration::from_secs(20),
            app.upload("fine.txt", b"hello".to_vec(), "assistants"),
        )
        .await
        .expect("an upload completes while others are stalled");
        assert!(
            upload["id"].as_str().unwrap().starts_with("file-"),
            "{upload}"
        );
        drop(stalled);
        assert!(eventually(10, || files_under(&tmp).is_empty()).await);
        app.stop().await;
    });
}

#[tokio::test]
async fn an_endless_part_header_is_refused_without_reading_on() {
    let app = TestApp::spawn().await;
    let mut s = TcpStream::connect(addr(&app)).await.unwrap();
    s.write_all(&post_head("/v1/files", 500_000_000))
        .await
        .unwrap();
    let mut head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nX-Junk: "
    )
    .into_bytes();
    head.extend(std::iter::repeat_n(b'j', 200_000));
    s.write_all(&head).await.unwrap();
    // The client keeps the connection open and sends no more.
    let (answer, _) = read_until_closed(&mut s, 5).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("headers are longer than"), "{answer}");
    app.stop().await;
}

#[tokio::test]
async fn a_bad_filename_is_refused_before_the_body_is_read() {
    let app = TestApp::spawn().await;
    let tmp = app.data_dir().join("tmp");
    let mut s = TcpStream::connect(addr(&app)).await.unwrap();
    let name = "n".repeat(2000);
    let head = multipart_head("assistants", &name);
    s.write_all(&post_head("/v1/files", head.len() + 100_000_000))
        .await
        .unwrap();
    s.write_all(&head).await.unwrap();
    s.write_all(&vec![b'z'; 2_000_000]).await.unwrap();
    let (answer, _) = read_until_closed(&mut s, 5).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("at most 1024 bytes"), "{answer}");
    assert!(files_under(&tmp).is_empty(), "nothing was staged");
    app.stop().await;
}
