//! Limits on what a request may carry, answered in Rocket.Chat's JSON shape: headers larger
//! than `MAX_HEADER_BYTES` in all get 431, bodies larger than `body::MAX_BODY_BYTES` get 413.

use axum::extract::Request;
use axum::http::header;

use super::body::MAX_BODY_BYTES;
use super::error::ApiError;

/// The most header bytes (names and values) a request may send.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Refuses oversized headers and bodies that announce their size up front. Bodies that do not
/// announce it are cut off where they are read (`body::JsonBody`).
pub fn check(request: &Request) -> Result<(), ApiError> {
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return Err(ApiError::HeadersTooLarge);
    }
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    Ok(())
}
