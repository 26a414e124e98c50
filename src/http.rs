//! The HTTP front door. Accepts connections up to a cap and refuses the rest at once with a 503
//! (so a flood of idle sockets cannot exhaust the process's file descriptors or starve clients
//! already connected), and serves each connection with hyper under timeouts: request headers
//! (and a keep-alive connection's wait for its next request) must arrive within
//! `header_timeout`, a request body may not stall for longer than `body_timeout` between two
//! reads, and a response may not stall for longer than `body_timeout` on a client that stopped
//! reading.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_io_timeout::TimeoutStream;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::RequestBodyTimeoutLayer;

/// How the front door bounds what clients may hold.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Connections open at once; more are refused with a 503.
    pub max_connections: usize,
    /// Time to send a request's headers, and the longest a keep-alive connection waits idle.
    pub header_timeout: Duration,
    /// Longest pause within a request body, or in a response the client is not reading.
    pub body_timeout: Duration,
    /// Largest request head (request line and headers).
    pub max_header_bytes: usize,
}

/// Connections over the cap being answered with a 503 at once; more are closed unanswered.
const MAX_REFUSING: usize = 64;

/// File descriptors kept back from connections for the database, blobs, the index and staging.
const RESERVED_FDS: u64 = 256;

impl HttpLimits {
    /// Raises the process's open-file limit as far as the system allows, and lowers
    /// `max_connections` if even that could not hold them and the server's own files.
    pub fn fit_to_fd_limit(mut self) -> Self {
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(limit) => {
                // Every connection may also hold a staged file or a blob open.
                let room = usize::try_from(limit.saturating_sub(RESERVED_FDS) / 2)
                    .unwrap_or(usize::MAX)
                    .max(1);
                if self.max_connections > room {
                    tracing::warn!(
                        fd_limit = limit,
                        requested = self.max_connections,
                        allowed = room,
                        "the open-file limit cannot hold the configured connections; lowering the cap"
                    );
                    self.max_connections = room;
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not read the open-file limit"),
        }
        self
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops accepting and lets
/// open connections finish their requests for up to `grace`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let router = router.layer(RequestBodyTimeoutLayer::new(limits.body_timeout));
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSING));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_header_size(limits.max_header_bytes);
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors or a transient network error: wait, don't spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Answered while few are being answered; beyond that, closed at once.
            if let Ok(refusing) = refusals.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    refuse(stream, limits.max_connections).await;
                    drop(refusing);
                });
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let mut io = TimeoutStream::new(stream);
        io.set_write_timeout(Some(limits.body_timeout));
        let conn = http.serve_connection(
            TokioIo::new(Box::pin(io)),
            TowerToHyperService::new(router.clone()),
        );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(grace) => {
            tracing::warn!("in-flight requests did not finish within the shutdown grace; stopping anyway");
        }
    }
}

/// Answers a connection over the cap with a 503 (OpenAI's error shape and `retry-after`, which
/// the SDKs honour) and closes it, without reading its request.
async fn refuse(mut stream: TcpStream, cap: usize) {
    tracing::warn!(cap, "connection refused: at the connection limit");
    let message = format!("The server is serving its limit of {cap} connections; retry shortly.");
    let body = serde_json::json!({
        "error": {
            "message": message,
            "type": "server_error",
            "param": null,
            "code": "server_busy",
        },
        "status": 503,
        "title": "Service Unavailable",
        "detail": message,
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = async {
        // Clients expect the answer after their request: wait for its head (a little of it).
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while head.len() < 64 << 10 {
            let n = match stream.read(&mut buf).await? {
                0 => return Ok(()),
                n => n,
            };
            // Only the new bytes (and the three before them) can complete the blank line.
            let from = head.len().saturating_sub(3);
            head.extend_from_slice(&buf[..n]);
            if memchr::memmem::find(&head[from..], b"\r\n\r\n").is_some() {
                break;
            }
        }
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        // Closing with the request unread would reset the connection, and the client could
        // lose the answer: drain a little of what it sent first.
        let mut sink = [0u8; 8192];
        let mut drained = 0;
        while drained < 1 << 20 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<_, std::io::Error>(())
    };
    // A client that does not even read this is not waited for.
    let _ = tokio::time::timeout(Duration::from_secs(2), pin!(answer)).await;
}
