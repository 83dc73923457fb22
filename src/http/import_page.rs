//! `GET /dashboard/import`: the dashboard's import page (`assets/import.html`): Rocket.Chat's
//! import-history columns with the current operation first, and a form to upload an archive,
//! choose its users and channels, start the import and watch its progress. Like the
//! dashboard, it works through the API from the browser; the server only serves the file,
//! compiled into the binary.

use axum::response::Response;

use super::dashboard::{CONTENT_SECURITY_POLICY, html_page};

const PAGE: &str = include_str!("../../assets/import.html");

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
    html_page(PAGE, CONTENT_SECURITY_POLICY)
}
