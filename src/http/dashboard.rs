//! `GET /`: the dashboard, a single page like Rocket.Chat's admin import history. It signs in
//! through the API, reads `getLatestImportOperations` from the browser and follows
//! `import.operations.events`; the server only serves the file, compiled into the binary.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// The page: HTML, CSS and JavaScript in one file, with no external resources.
const PAGE: &str = include_str!("../../assets/dashboard.html");

/// The page's inline script and style are its only code; it talks to this origin only (the
/// import page's too).
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The dashboard
///
/// A page like Rocket.Chat's admin import history: sign in, then the latest operations, kept
/// up to date by the event stream `import.operations.events` (loads and reconnections at most
/// every 6.5 s, and later when the rate limiter's headers ask for it, so a caller without
/// `api-bypass-rate-limit` never gets a 429). One HTML file with no external resources.
#[utoipa::path(
    get,
    path = "/",
    operation_id = "dashboard",
    tag = "server",
    responses((status = 200, description = "The page", body = String, content_type = "text/html")),
)]
pub async fn page() -> Response {
    html_page(PAGE, CONTENT_SECURITY_POLICY)
}

/// A page compiled into the binary, with the headers every page of the server sends: its
/// content security policy, no MIME sniffing, no referrer.
pub(crate) fn html_page(page: &'static str, content_security_policy: &'static str) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(content_security_policy),
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
        page,
    )
        .into_response()
}
