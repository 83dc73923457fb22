//! `GET /dashboard/import`: the dashboard's import page (`assets/import.html`): Rocket.Chat's
//! import-history columns with the current operation first, and a form to upload an archive,
//! choose its users and channels, start the import and watch its progress. Like the
//! dashboard, it works through the API from the browser; the server only serves the file,
//! compiled into the binary.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("../../assets/import.html");

/// The page's inline script and style are its only code; it talks to this origin only.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The dashboard's import page
///
/// Rocket.Chat's import history (type, last updated, status, file, users, contacts, channels,
/// messages, total; the current operation first) and a form that uploads an archive (base64
/// read in the browser), lists what `getImportFileData` found, starts the import with the
/// users and channels chosen and polls `getImportProgress` at most once a second. One HTML
/// file with no external resources.
#[utoipa::path(
    get,
    path = "/dashboard/import",
    operation_id = "dashboardImport",
    tag = "server",
    responses((status = 200, description = "The page", body = String, content_type = "text/html")),
)]
pub async fn page() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
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
        PAGE,
    )
        .into_response()
}
