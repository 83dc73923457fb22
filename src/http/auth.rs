//! The one place where requests are authenticated and authorized: extractors that handlers
//! take as arguments. A handler that takes `Authorized<P>` runs only for a caller holding
//! permission `P`; one that takes `Authenticated` runs for any logged-in caller.
//!
//! Rejections come in Rocket.Chat's order: 401 (no valid session) before 403 (no permission).

use std::marker::PhantomData;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;

use super::AppState;
use super::error::ApiError;
use crate::access::Caller;
use crate::domain::permission;

/// A permission a route requires, named as in Rocket.Chat.
pub trait Permission {
    const NAME: &'static str;
}

/// Declares a marker type for a permission.
macro_rules! permission {
    ($(#[$doc:meta])* $name:ident = $value:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl Permission for $name {
            const NAME: &'static str = $value;
        }
    };
}

permission!(
    /// `view-import-operations`
    ViewImportOperations = permission::VIEW_IMPORT_OPERATIONS
);
permission!(
    /// `run-import`
    RunImport = permission::RUN_IMPORT
);
permission!(
    /// `access-permissions`
    AccessPermissions = permission::ACCESS_PERMISSIONS
);
permission!(
    /// `create-user`
    CreateUser = permission::CREATE_USER
);
permission!(
    /// `delete-user`
    DeleteUser = permission::DELETE_USER
);

/// A caller with a valid session.
pub struct Authenticated(pub Arc<Caller>);

/// A caller with a valid session who holds permission `P`.
pub struct Authorized<P>(pub Arc<Caller>, pub PhantomData<P>);

/// Longest header value looked up; longer ones cannot be an id or a token.
const MAX_CREDENTIAL_LEN: usize = 256;

/// The raw `X-Auth-Token` of a request that passed authentication.
pub fn auth_token(headers: &HeaderMap) -> Option<&str> {
    single_header(headers, "x-auth-token")
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

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let unauthorized = || ApiError::Unauthorized(state.settings.auth_error_body);
        let (Some(user_id), Some(token)) = (
            single_header(&parts.headers, "x-user-id"),
            single_header(&parts.headers, "x-auth-token"),
        ) else {
            return Err(unauthorized());
        };
        match state.access.authenticate(user_id, token).await? {
            Some(caller) => {
                // For the checks that follow (the rate limiter's bypass).
                parts.extensions.insert(caller.clone());
                Ok(Authenticated(caller))
            }
            None => Err(unauthorized()),
        }
    }
}

impl<P: Permission> FromRequestParts<AppState> for Authorized<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Authenticated(caller) = Authenticated::from_request_parts(parts, state).await?;
        if state.access.has_permission(&caller, P::NAME).await? {
            Ok(Authorized(caller, PhantomData))
        } else {
            Err(ApiError::Forbidden)
        }
    }
}
