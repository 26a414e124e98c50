//! The web console at `GET /console`: one page, its script and its style sheet (`console/` at the
//! repository root), embedded in the binary when it is built. Like `/health` it needs no key:
//! it is static, and the page sends the key the user types with its calls to the public `/v1`
//! API, the only thing it uses. Routed at the top level in `api/mod.rs` and listed in
//! `/openapi.json`.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};

const INDEX_HTML: &str = include_str!("../../console/index.html");
const APP_JS: &str = include_str!("../../console/app.js");
const STYLE_CSS: &str = include_str!("../../console/style.css");

/// Same origin only, and no inline script or style: text from the server (file names, chunk
/// text) could not run even if it ever reached the page as markup.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
    script-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // Revalidated on every load, so a new binary's console is never mixed with an old one.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        body,
    )
        .into_response()
}

/// `GET /console`
pub async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /console/`: the page has one address.
pub async fn slash() -> Redirect {
    Redirect::permanent("/console")
}

/// `GET /console/app.js`
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /console/style.css`
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_assets_and_nothing_inline() {
        for asset in ["/console/app.js", "/console/style.css"] {
            assert!(
                INDEX_HTML.contains(asset),
                "index.html does not load {asset}"
            );
        }
        // The CSP forbids inline script and style: they would silently not run.
        assert!(!INDEX_HTML.contains("<script>"));
        assert!(!INDEX_HTML.contains("style="));
        assert!(!INDEX_HTML.contains("<style"));
        let inline_handler = INDEX_HTML.match_indices(" on").any(|(i, _)| {
            let rest = &INDEX_HTML[i + " on".len()..];
            let name = rest.bytes().take_while(u8::is_ascii_lowercase).count();
            name > 0 && rest[name..].starts_with('=')
        });
        assert!(!inline_handler, "inline event handler in index.html");
        assert!(!INDEX_HTML.contains("http://") && !INDEX_HTML.contains("https://"));
        // Server data is set as text only.
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!APP_JS.contains(sink), "app.js uses {sink}");
        }
    }

    #[tokio::test]
    async fn assets_have_their_types_and_the_policy() {
        for (res, kind) in [
            (page().await, "text/html"),
            (script().await, "text/javascript"),
            (style().await, "text/css"),
        ] {
            let h = res.headers();
            let ct = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
            assert!(ct.is_some_and(|v| v.starts_with(kind)), "{ct:?}");
            assert_eq!(
                h.get(header::CONTENT_SECURITY_POLICY)
                    .and_then(|v| v.to_str().ok()),
                Some(CSP)
            );
            assert_eq!(
                h.get(header::CACHE_CONTROL).and_then(|v| v.to_str().ok()),
                Some("no-cache")
            );
        }
    }
}
