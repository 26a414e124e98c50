//! A response to a request whose body the handler did not read to the end (an early 4xx: not
//! found, over quota, refused) says `connection: close`. HTTP/1.1 can serve the client's next
//! request on the connection only after this one's body is consumed; otherwise hyper closes it
//! after the response, and a client that had put the connection back in its pool would meet
//! "server disconnected" on its next request.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use axum::http::{HeaderValue, Version};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::Stream;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

/// How far a request body was read.
#[derive(Default)]
struct Progress {
    bytes: AtomicU64,
    ended: AtomicBool,
}

/// The request body's data, counting what the handler reads.
struct Watched {
    inner: axum::body::BodyDataStream,
    progress: Arc<Progress>,
}

impl Stream for Watched {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        match &polled {
            Poll::Ready(Some(Ok(chunk))) => {
                self.progress
                    .bytes
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
            Poll::Ready(None) => self.progress.ended.store(true, Ordering::Relaxed),
            _ => {}
        }
        polled
    }
}

/// The request's `content-length`, if it sent a valid one.
pub(super) fn content_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

pub async fn close_if_body_unread(req: Request, next: Next) -> Response {
    let length = content_length(req.headers());
    let has_body = match length {
        Some(n) => n > 0,
        None => req.headers().contains_key(TRANSFER_ENCODING),
    };
    if !has_body || req.version() >= Version::HTTP_2 {
        return next.run(req).await;
    }
    let progress = Arc::new(Progress::default());
    let (parts, body) = req.into_parts();
    let watched = Watched {
        inner: body.into_data_stream(),
        progress: progress.clone(),
    };
    let req = Request::from_parts(parts, Body::from_stream(watched));
    let mut res = next.run(req).await;
    let read = progress.bytes.load(Ordering::Relaxed);
    let consumed = progress.ended.load(Ordering::Relaxed) || length.is_some_and(|n| read >= n);
    if !consumed {
        res.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    res
}
