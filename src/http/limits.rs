//! Limits on what a request may carry, answered in Rocket.Chat's JSON shape: headers larger
//! than `MAX_HEADER_BYTES` in all, or more than `MAX_HEADER_FIELDS` of them, get 431; bodies
//! larger than `body::MAX_BODY_BYTES` get 413.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::body::MAX_BODY_BYTES;
use super::error::ApiError;

/// The most header bytes (names and values) a request may send.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// The most header fields a request may send (hyper's own default, kept).
pub const MAX_HEADER_FIELDS: usize = 100;
/// How many fields hyper parses, so that the count above is ours to answer; past this many
/// hyper answers a bare 431 itself (docs/compatibility.md#6-request-limits).
pub const PARSED_HEADER_FIELDS: usize = 1024;

/// Refuses oversized headers and bodies that announce their size up front. Bodies that do not
/// announce it are cut off where they are read (`body::JsonBody`).
pub fn check(request: &Request) -> Result<(), ApiError> {
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES || request.headers().len() > MAX_HEADER_FIELDS {
        return Err(ApiError::HeadersTooLarge);
    }
    if announced(request.headers()).is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    Ok(())
}

fn announced(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// A body announced too large but at most this big is read and dropped before the 413 goes
/// out; a larger one is not, and the connection is closed on it.
const DRAIN_MAX_BYTES: u64 = 16 << 20;
/// The most time spent reading such a body.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// Serves `request` with `app`. When its body is announced too large, `app` gets the request
/// without it (and answers 413 from the headers), and the body is read to its end before the
/// answer is returned: closing a connection with unread data makes the kernel reset it, and a
/// proxy still sending the body (nginx) then reports 502 instead of passing on the 413
/// (README "Deployment").
pub async fn serve<B>(
    request: axum::http::Request<B>,
    app: axum::Router,
) -> Result<Response, Infallible>
where
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<axum::BoxError>,
{
    let size = announced(request.headers()).filter(|&n| n > MAX_BODY_BYTES as u64);
    let Some(size) = size else {
        return app.oneshot(request.map(Body::new)).await;
    };
    let (parts, mut body) = request.into_parts();
    let response = app.oneshot(Request::from_parts(parts, Body::empty())).await;
    if size <= DRAIN_MAX_BYTES {
        let _ = tokio::time::timeout(DRAIN_TIME, async {
            while let Some(Ok(_)) = body.frame().await {}
        })
        .await;
    }
    response
}
