//! The gate in front of every `/v1` route: who is calling (an API key, or nobody on an open
//! server), whether this key may make this kind of request now (per-key rate limits with
//! OpenAI's `x-ratelimit-*` headers), and an audit line for each create and delete.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use super::error::{body, ApiError};
use crate::config::RateLimitArgs;
use crate::domain::KeyId;
use crate::service::auth::{AuthService, Caller, Denied};

/// The kinds of request that have a per-key limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Upload,
    Retrieval,
    Deletion,
    Search,
    Attach,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Upload,
        Kind::Retrieval,
        Kind::Deletion,
        Kind::Search,
        Kind::Attach,
    ];

    fn index(self) -> usize {
        self as usize
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::Upload => "uploads",
            Kind::Retrieval => "file retrievals",
            Kind::Deletion => "deletions",
            Kind::Search => "searches",
            Kind::Attach => "attaches",
        }
    }

    /// The kind of `method path`, if limited; `path` is below the API's prefix (`/files/…`:
    /// the gate sits inside the `/v1` and llama-stack nests). Routes match paths exactly, so
    /// the path's shape is all there is to read.
    pub fn of(method: &Method, path: &str) -> Option<Kind> {
        match *method {
            Method::DELETE => Some(Kind::Deletion),
            Method::GET if path == "/files" || path.starts_with("/files/") => Some(Kind::Retrieval),
            Method::POST if path == "/files" || path == "/uploads" => Some(Kind::Upload),
            Method::POST => {
                let (_store, action) = path.strip_prefix("/vector_stores/")?.split_once('/')?;
                match action {
                    "search" => Some(Kind::Search),
                    "files" | "file_batches" => Some(Kind::Attach),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

type Limiter =
    RateLimiter<KeyId, HashMapStateStore<KeyId>, DefaultClock, StateInformationMiddleware>;

/// One kind's allowance per minute, and the limiter that keeps it per key.
struct Limit {
    per_minute: u32,
    /// How long one request takes to come back.
    interval: Duration,
    limiter: Limiter,
}

/// One limiter per kind of request, each keyed by API key.
pub struct RateLimits {
    limits: [Option<Limit>; 5],
    clock: DefaultClock,
}

impl RateLimits {
    /// Per minute, each divided among `replicas`; 0 = no limit.
    pub fn new(args: &RateLimitArgs) -> Self {
        let per_minute = |kind: Kind| match kind {
            Kind::Upload => args.uploads,
            Kind::Retrieval => args.retrievals,
            Kind::Deletion => args.deletions,
            Kind::Search => args.searches,
            Kind::Attach => args.attaches,
        };
        let replicas = args.replicas.max(1);
        let limits = Kind::ALL.map(|kind| {
            let n = per_minute(kind);
            // A share of at least one request per minute.
            let share = NonZeroU32::new(n.div_ceil(replicas))?;
            let quota = Quota::per_minute(share);
            Some(Limit {
                per_minute: share.get(),
                interval: quota.replenish_interval(),
                limiter: RateLimiter::hashmap(quota)
                    .with_middleware::<StateInformationMiddleware>(),
            })
        });
        Self {
            limits,
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request of `kind` from `key`'s allowance: the headers to send either way,
    /// and whether the request may go on.
    pub fn take(&self, kind: Kind, key: &KeyId) -> Option<Verdict> {
        let Limit {
            per_minute: limit,
            interval,
            limiter,
        } = self.limits[kind.index()].as_ref()?;
        let (limit, interval) = (*limit, *interval);
        Some(match limiter.check_key(key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Verdict {
                    kind,
                    limit,
                    remaining,
                    reset: interval * (limit - remaining.min(limit)),
                    retry_after: None,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Verdict {
                    kind,
                    limit,
                    remaining: 0,
                    reset: wait + interval * limit.saturating_sub(1),
                    retry_after: Some(wait),
                }
            }
        })
    }

    /// Forgets keys whose allowance is full again (keeps memory bounded by active keys).
    pub fn forget_idle(&self) {
        for l in self.limits.iter().flatten() {
            l.limiter.retain_recent();
        }
    }
}

/// What a rate limit says about one request.
#[derive(Debug, Clone, Copy)]
pub struct Verdict {
    pub kind: Kind,
    pub limit: u32,
    pub remaining: u32,
    /// Until the allowance is full again.
    pub reset: Duration,
    /// `Some` when refused: how long until one more request is allowed.
    pub retry_after: Option<Duration>,
}

impl Verdict {
    fn write_headers(&self, h: &mut HeaderMap) {
        let mut set = |name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(HeaderName::from_static(name), v);
            }
        };
        set("x-ratelimit-limit-requests", self.limit.to_string());
        set("x-ratelimit-remaining-requests", self.remaining.to_string());
        set("x-ratelimit-reset-requests", go_duration(self.reset));
        if let Some(wait) = self.retry_after {
            set(
                "retry-after",
                wait.as_secs_f64().ceil().max(1.0).to_string(),
            );
            // Rounded up: a client that waits exactly this long is not early.
            let ms = wait.as_nanos().div_ceil(1_000_000).max(1);
            set("retry-after-ms", ms.to_string());
        }
    }

    fn refusal(&self) -> Response {
        let wait = self.retry_after.unwrap_or_default();
        let message = format!(
            "Rate limit reached for {} on this API key: limit {} per minute. Please try again in {}.",
            self.kind.noun(),
            self.limit,
            go_duration(wait)
        );
        let mut res = body(
            StatusCode::TOO_MANY_REQUESTS,
            &message,
            "requests",
            None,
            Some("rate_limit_exceeded"),
        );
        self.write_headers(res.headers_mut());
        res
    }
}

/// `850ms`, `1.2s`, `6m0s`: the way OpenAI writes durations in `x-ratelimit-reset-*`.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        let s = format!("{:.3}", d.as_secs_f64());
        format!("{}s", s.trim_end_matches('0').trim_end_matches('.'))
    } else {
        format!("{}m{}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// What the gate needs: who is calling, and their allowances.
#[derive(Clone)]
pub struct Gate {
    pub auth: AuthService,
    pub limits: Arc<RateLimits>,
}

/// Lets a request in (or not) and records its caller for the handlers.
pub async fn gate(State(gate): State<Gate>, mut req: Request, next: Next) -> Response {
    let authorization = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let caller = match gate.auth.authenticate(authorization).await {
        Ok(Ok(caller)) => caller,
        Ok(Err(denied)) => return refuse_before_body(req, unauthorized(&denied)).await,
        Err(e) => return ApiError(e).into_response(),
    };
    let method = req.method().clone();
    // The path as sent (nesting strips the prefix from `uri()`), copied only for the creates
    // and deletes that are audited: reads are the hot path.
    let sent_path = |req: &Request| {
        req.extensions()
            .get::<axum::extract::OriginalUri>()
            .map_or_else(|| req.uri().path().to_owned(), |u| u.path().to_owned())
    };
    let audited_path = audited(&method, req.uri().path()).then(|| sent_path(&req));
    let verdict = match (&caller.key, Kind::of(&method, req.uri().path())) {
        (Some(key), Some(kind)) => gate.limits.take(kind, key),
        _ => None,
    };
    if let Some(v) = verdict.filter(|v| v.retry_after.is_some()) {
        // Every refusal is audited, reads included.
        let res = v.refusal();
        let path = audited_path.unwrap_or_else(|| sent_path(&req));
        audit(&caller, &method, &path, res.status());
        return refuse_before_body(req, res).await;
    }
    let audit_as = audited_path.map(|path| (caller.clone(), path));
    req.extensions_mut().insert(caller);
    let mut res = next.run(req).await;
    if let Some(v) = verdict {
        v.write_headers(res.headers_mut());
    }
    if let Some((caller, path)) = audit_as {
        audit(&caller, &method, &path, res.status());
    }
    res
}

/// The largest unread body a refusal reads and drops to keep its connection open.
const DRAIN_LIMIT: u64 = 1 << 20;
/// How long a refusal waits for that body.
const DRAIN_WAIT: Duration = Duration::from_secs(2);

/// Sends a refusal (401, 429) decided before the request's body was read. A small body is read
/// and dropped first (briefly), so the kept-alive connection can serve the client's next
/// request, the SDKs' retry of a 429 among them; a body left unread (large, chunked, slow)
/// makes the response say `connection: close` (see `unread`).
async fn refuse_before_body(req: Request, res: Response) -> Response {
    if let Some(n @ 1..=DRAIN_LIMIT) = super::unread::content_length(req.headers()) {
        let read = axum::body::to_bytes(req.into_body(), n as usize);
        let _ = tokio::time::timeout(DRAIN_WAIT, read).await;
    }
    res
}

/// The audit line of a create or delete: who (project and key id, never the key), what, and
/// how it ended.
fn audit(caller: &Caller, method: &Method, path: &str, status: StatusCode) {
    tracing::info!(
        target: "ragstore::audit",
        project = %caller.project,
        key = caller.key.as_ref().map_or("none", KeyId::as_str),
        %method,
        path,
        status = status.as_u16(),
        "audit"
    );
}

/// Creates and deletes (and the state changes of uploads and batches); not searches, which
/// are reads sent with POST.
fn audited(method: &Method, path: &str) -> bool {
    match *method {
        Method::DELETE => true,
        Method::POST => !(path.ends_with("/search") || path.ends_with("/embeddings")),
        _ => false,
    }
}

/// OpenAI's 401: `invalid_api_key`, showing at most the key's last four characters.
fn unauthorized(denied: &Denied) -> Response {
    let message = match denied {
        Denied::NoKey => "You didn't provide an API key. You need to provide your API key in an \
             Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            .to_owned(),
        Denied::BadKey(hint) => format!(
            "Incorrect API key provided: {hint}. Create one with `ragstore keys create --project NAME`."
        ),
    };
    let mut res = body(
        StatusCode::UNAUTHORIZED,
        &message,
        "invalid_request_error",
        None,
        Some("invalid_api_key"),
    );
    res.headers_mut().insert(
        axum::http::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer"),
    );
    res
}

/// The caller the gate let in (handlers' `Project` extractor reads it).
pub fn caller_of(parts: &axum::http::request::Parts) -> Option<&Caller> {
    parts.extensions.get::<Caller>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_of_routes() {
        let k = |m: Method, p: &str| Kind::of(&m, p);
        assert_eq!(k(Method::POST, "/files"), Some(Kind::Upload));
        assert_eq!(k(Method::POST, "/uploads"), Some(Kind::Upload));
        assert_eq!(k(Method::POST, "/uploads/upload_x/parts"), None);
        assert_eq!(
            k(Method::GET, "/files/file-x/content"),
            Some(Kind::Retrieval)
        );
        assert_eq!(k(Method::GET, "/files"), Some(Kind::Retrieval));
        assert_eq!(
            k(Method::DELETE, "/vector_stores/vs_x"),
            Some(Kind::Deletion)
        );
        assert_eq!(
            k(Method::POST, "/vector_stores/vs_x/search"),
            Some(Kind::Search)
        );
        assert_eq!(
            k(Method::POST, "/vector_stores/vs_x/files"),
            Some(Kind::Attach)
        );
        assert_eq!(
            k(Method::POST, "/vector_stores/vs_x/file_batches"),
            Some(Kind::Attach)
        );
        assert_eq!(k(Method::GET, "/vector_stores"), None);
        assert_eq!(k(Method::GET, "/models"), None);
    }

    #[test]
    fn durations_as_openai_writes_them() {
        assert_eq!(go_duration(Duration::from_millis(600)), "600ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(2)), "2s");
        assert_eq!(go_duration(Duration::from_secs(360)), "6m0s");
    }

    fn args(uploads: u32, replicas: u32) -> RateLimitArgs {
        RateLimitArgs {
            uploads,
            retrievals: 1000,
            deletions: 100,
            searches: 0,
            attaches: 10,
            replicas,
        }
    }

    #[test]
    fn a_burst_gets_exactly_the_limit_and_then_a_wait() {
        let limits = RateLimits::new(&args(100, 1));
        let key = KeyId::generate();
        let verdicts: Vec<Verdict> = (0..150)
            .filter_map(|_| limits.take(Kind::Upload, &key))
            .collect();
        let allowed = verdicts.iter().filter(|v| v.retry_after.is_none()).count();
        assert_eq!(allowed, 100);
        assert_eq!(verdicts[0].remaining, 99);
        assert_eq!(verdicts[99].remaining, 0);
        let refused = verdicts[100];
        let wait = refused.retry_after.unwrap_or_default();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(600),
            "{wait:?}"
        );
        // Another key has its own allowance; unlimited kinds give no verdict.
        assert!(limits
            .take(Kind::Upload, &KeyId::generate())
            .is_some_and(|v| v.retry_after.is_none()));
        assert!(limits.take(Kind::Search, &key).is_none());
    }

    #[test]
    fn replicas_divide_each_limit() {
        let limits = RateLimits::new(&args(100, 4));
        let key = KeyId::generate();
        let allowed = (0..100)
            .filter_map(|_| limits.take(Kind::Upload, &key))
            .filter(|v| v.retry_after.is_none())
            .count();
        assert_eq!(allowed, 25);
        // A share never rounds down to nothing.
        let limits = RateLimits::new(&args(1, 4));
        assert_eq!(limits.take(Kind::Upload, &key).map(|v| v.limit), Some(1));
    }
}
