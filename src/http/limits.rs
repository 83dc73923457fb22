//! Limits on what a request may carry, answered in Rocket.Chat's JSON shape: headers larger
//! than `MAX_HEADER_BYTES` in all, or more than `MAX_HEADER_FIELDS` of them, get 431; bodies
//! larger than their route's limit get 413: `body::MAX_BODY_BYTES` for every route but
//! `uploadImportFile`, whose limit is the base64 size of `--import-max-bytes` and a little
//! JSON around it ([`upload_body_limit`], docs/compatibility.md section 11.4).

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

/// The one route whose body may be larger than `MAX_BODY_BYTES`.
pub const UPLOAD_PATH: &str = "/api/v1/uploadImportFile";

/// Room for `uploadImportFile`'s other fields and JSON around `binaryContent`.
pub const UPLOAD_JSON_OVERHEAD: usize = 64 * 1024;

/// The body limit of `uploadImportFile`: `binaryContent` of a file of `max_bytes` bytes is
/// `4 * ceil(max_bytes / 3)` base64 characters, plus [`UPLOAD_JSON_OVERHEAD`]; never less
/// than every other route's limit.
pub fn upload_body_limit(max_bytes: u64) -> usize {
    let base64 = max_bytes.div_ceil(3).saturating_mul(4);
    usize::try_from(base64)
        .unwrap_or(usize::MAX)
        .saturating_add(UPLOAD_JSON_OVERHEAD)
        .max(MAX_BODY_BYTES)
}

/// The body limit of a request to `path`, given `uploadImportFile`'s.
pub fn body_limit(path: &str, upload_limit: usize) -> usize {
    if path == UPLOAD_PATH {
        upload_limit
    } else {
        MAX_BODY_BYTES
    }
}

/// Refuses oversized headers and bodies that announce their size up front. Bodies that do not
/// announce it are cut off where they are read (`body::JsonBody`; `uploadImportFile`'s by the
/// front layer, which wraps it in its limit, `bounded`).
pub fn check(request: &Request, upload_limit: usize) -> Result<(), ApiError> {
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES || request.headers().len() > MAX_HEADER_FIELDS {
        return Err(ApiError::HeadersTooLarge);
    }
    let limit = body_limit(request.uri().path(), upload_limit);
    if announced(request.headers()).is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    Ok(())
}

/// `request` with its body cut off past its route's limit when that limit is not the one
/// `body::JsonBody` keeps itself (a read past it fails, and is answered 413).
pub fn bounded(request: Request, upload_limit: usize) -> Request {
    if request.uri().path() != UPLOAD_PATH {
        return request;
    }
    request.map(|body| Body::new(http_body_util::Limited::new(body, upload_limit)))
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

/// Serves `request` with `app`. When its body is announced larger than its route's limit
/// (`upload_limit` for `uploadImportFile`), `app` gets the request
/// without it (and answers 413 from the headers), and the body is read to its end before the
/// answer is returned: closing a connection with unread data makes the kernel reset it, and a
/// proxy still sending the body (nginx) then reports 502 instead of passing on the 413
/// (README "Deployment").
pub async fn serve<B>(
    request: axum::http::Request<B>,
    app: axum::Router,
    upload_limit: usize,
) -> Result<Response, Infallible>
where
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<axum::BoxError>,
{
    let limit = body_limit(request.uri().path(), upload_limit);
    let size = announced(request.headers()).filter(|&n| n > limit as u64);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upload_limit_is_the_base64_size_of_the_import_limit() {
        // 100 MiB: 139 810 134 base64 characters, and the JSON around them.
        assert_eq!(
            upload_body_limit(100 * 1024 * 1024),
            139_810_136 + UPLOAD_JSON_OVERHEAD
        );
        assert_eq!(upload_body_limit(3), MAX_BODY_BYTES);
        assert_eq!(
            upload_body_limit(3_000_000),
            4_000_000 + UPLOAD_JSON_OVERHEAD
        );
        assert_eq!(
            upload_body_limit(3_000_001),
            4_000_004 + UPLOAD_JSON_OVERHEAD
        );
        assert_eq!(body_limit(UPLOAD_PATH, 5 << 20), 5 << 20);
        assert_eq!(body_limit("/api/v1/startImport", 5 << 20), MAX_BODY_BYTES);
        assert_eq!(
            body_limit("/api/v1/uploadImportFile/x", 5 << 20),
            MAX_BODY_BYTES
        );
    }

    struct Upload;

    impl super::super::body::FromJson for Upload {
        fn from_json(_: serde_json::Value) -> Result<Self, String> {
            Ok(Upload)
        }
    }

    impl super::super::body::LargeField for Upload {
        const LARGE_FIELD: &'static str = "binaryContent";
    }

    /// A body that announces no size is cut off at the upload's limit by `bounded`.
    async fn read_chunked(path: &str, chunks: usize) -> Result<usize, ApiError> {
        use super::super::body::{FromBody, LargeJsonBody};
        let pieces = std::iter::once(Ok::<_, std::io::Error>(bytes::Bytes::from_static(
            b"{\"binaryContent\":\"",
        )))
        .chain((0..chunks).map(|_| Ok(bytes::Bytes::from(vec![b'A'; 1 << 20]))))
        .chain(std::iter::once(Ok(bytes::Bytes::from_static(b"\"}"))));
        let request = axum::http::Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from_stream(futures_util::stream::iter(pieces)))
            .unwrap();
        let request = bounded(request, upload_body_limit(3 << 20));
        let (parts, body) = request.into_parts();
        LargeJsonBody::<Upload>::from_body(&parts.headers, body)
            .await
            .map(|b| b.large.as_str().len())
    }

    #[tokio::test]
    async fn an_upload_without_a_size_is_cut_off_at_its_limit() {
        assert_eq!(read_chunked(UPLOAD_PATH, 4).await.ok(), Some(4 << 20));
        assert!(matches!(
            read_chunked(UPLOAD_PATH, 5).await,
            Err(ApiError::PayloadTooLarge)
        ));
    }
}
