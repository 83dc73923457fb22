//! Authentication, the first of a route's checks (`guard::check`): `X-User-Id` and
//! `X-Auth-Token` to a caller, or 401. A route's `Route::Caller` says whether it needs one.

use std::future::Future;
use std::sync::Arc;

use axum::http::HeaderMap;

use super::AppState;
use super::error::ApiError;
use crate::access::Caller;

/// What a route knows of its caller after authentication: `Arc<Caller>` for a route that needs
/// a session, `()` for one that does not.
pub trait Session: Sized + Send + Sync {
    /// Whether the route answers 401 without a valid session.
    const REQUIRED: bool;

    fn authenticate(
        headers: &HeaderMap,
        state: &AppState,
    ) -> impl Future<Output = Result<Self, ApiError>> + Send;

    /// The caller, for the permission check and the rate limiter's bypass.
    fn caller(&self) -> Option<&Caller>;
}

/// No session needed; the headers are not read.
impl Session for () {
    const REQUIRED: bool = false;

    async fn authenticate(_: &HeaderMap, _: &AppState) -> Result<(), ApiError> {
        Ok(())
    }

    fn caller(&self) -> Option<&Caller> {
        None
    }
}

/// A caller with a valid session, or 401.
impl Session for Arc<Caller> {
    const REQUIRED: bool = true;

    async fn authenticate(headers: &HeaderMap, state: &AppState) -> Result<Self, ApiError> {
        let unauthorized = || ApiError::Unauthorized(state.settings.auth_error_body);
        let (Some(user_id), Some(token)) = (
            single_header(headers, "x-user-id"),
            single_header(headers, "x-auth-token"),
        ) else {
            return Err(unauthorized());
        };
        state
            .access
            .authenticate(user_id, token)
            .await?
            .ok_or_else(unauthorized)
    }

    fn caller(&self) -> Option<&Caller> {
        Some(self)
    }
}

/// Longest header value looked up; longer ones cannot be an id or a token.
const MAX_CREDENTIAL_LEN: usize = 256;

/// The raw `X-Auth-Token` of a request that passed authentication.
pub fn auth_token(headers: &HeaderMap) -> Option<&str> {
    single_header(headers, "x-auth-token")
}

/// The `X-User-Id` of a request that passed authentication.
pub fn user_id(headers: &HeaderMap) -> Option<&str> {
    single_header(headers, "x-user-id")
}

/// The single value of a header, if it was sent exactly once as non-empty visible ASCII.
fn single_header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    value
        .to_str()
        .ok()
        .filter(|v| !v.is_empty() && v.len() <= MAX_CREDENTIAL_LEN)
}
