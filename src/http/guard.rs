//! The checks a route runs before its handler, in one function and in Rocket.Chat's order:
//! authentication (401), permission (403), the query string then the body (400), the rate
//! limit (429). A route declares what it needs as a [`Route`]; its handler takes
//! [`Guarded<R>`], the one extractor that runs the checks, so no order of handler arguments
//! can change the order of the checks.
//!
//! The caller is passed from step to step as a value. The limiter's count is the one thing
//! that outlives the checks: it goes to the front layer (`observe::set_rate_limit`) so that
//! every answer after it, errors of the handler included, carries the rate-limit headers.

use axum::extract::{FromRequest, Request};

use super::AppState;
use super::auth::Session;
use super::body::FromBody;
use super::error::ApiError;
use super::params::FromQuery;
use super::rate_limit;

/// What a route checks before its handler runs.
pub trait Route: Send + 'static {
    /// `Arc<Caller>` when the route needs a session (401 without one), `()` when it does not.
    type Caller: Session;
    /// The permission the caller must hold (403 without it). Needs a session.
    const PERMISSION: Option<&'static str> = None;
    /// The query string: `params::NoQuery`, `params::UpdatedSince`, or `()` when not read.
    type Query: FromQuery;
    /// The body: `body::JsonBody<T>`, or `()` when not read.
    type Body: FromBody;
    /// Counted by the rate limiter once the other checks pass.
    const RATE_LIMITED: bool;
}

/// A request that passed its route's checks: what they found, for the handler.
pub struct Guarded<R: Route> {
    pub caller: R::Caller,
    pub query: R::Query,
    pub body: R::Body,
}

impl<R: Route> FromRequest<AppState> for Guarded<R> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        check::<R>(request, state).await
    }
}

/// Runs the route's checks in order; the first that fails gives the answer.
pub async fn check<R: Route>(request: Request, state: &AppState) -> Result<Guarded<R>, ApiError> {
    const {
        assert!(
            R::PERMISSION.is_none() || <R::Caller as Session>::REQUIRED,
            "a route that needs a permission needs a session"
        );
    }
    let (parts, body) = request.into_parts();
    // 401
    let caller = R::Caller::authenticate(&parts.headers, state).await?;
    // 403
    if let (Some(permission), Some(who)) = (R::PERMISSION, caller.caller())
        && !state.access.has_permission(who, permission).await?
    {
        return Err(ApiError::Forbidden);
    }
    // 400: the query string, then the body.
    let query = R::Query::from_query(parts.uri.query())?;
    let body = R::Body::from_body(&parts.headers, body).await?;
    // 429
    if R::RATE_LIMITED {
        rate_limit::enforce(&parts, caller.caller(), state).await?;
    }
    Ok(Guarded {
        caller,
        query,
        body,
    })
}

/// Declares a route's checks: a unit struct implementing [`Route`].
macro_rules! route {
    (
        $(#[$doc:meta])*
        $name:ident {
            caller: $caller:ty,
            permission: $permission:expr,
            query: $query:ty,
            body: $body:ty,
            rate_limited: $rate_limited:expr $(,)?
        }
    ) => {
        $(#[$doc])*
        pub struct $name;

        impl $crate::http::guard::Route for $name {
            type Caller = $caller;
            const PERMISSION: Option<&'static str> = $permission;
            type Query = $query;
            type Body = $body;
            const RATE_LIMITED: bool = $rate_limited;
        }
    };
}

pub(crate) use route;
