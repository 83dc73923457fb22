//! Sessions and users: `login`, `logout`, `me`, `users.create`, `users.delete`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::Value;

use super::AppState;
use super::auth::auth_token;
use super::body::{Fields, FromJson, JsonBody};
use super::error::ApiError;
use super::guard::{Guarded, route};
use super::openapi::{self as api, True};
use super::params::NoQuery;
use super::rate_limit::ClientAddress;
use crate::access::Caller;
use crate::accounts::{AccountError, NewAccount, TokenLifetime, create_user, issue_token};
use crate::domain::permission::{CREATE_USER, DELETE_USER};
use crate::domain::secrets::{
    hash_token, unmatchable_hash, verify_password, verify_password_digest,
};
use crate::domain::time::now_ms;
use crate::store::{ConflictKind, Revoke, StoreError};

/// A password as a client sends it: plain, or Meteor's `{digest, algorithm: "sha-256"}`.
pub enum Password {
    Plain(String),
    Sha256Hex(String),
}

/// `POST /api/v1/login` in any of Rocket.Chat's three shapes: `{user, password}` (`user` a
/// username or an e-mail), `{username | email, password}`, `{user: {username | email}, password}`.
pub struct LoginBody {
    login: String,
    password: Password,
}

impl FromJson for LoginBody {
    fn from_json(value: Value) -> Result<Self, String> {
        let mut fields = Fields::of(value)?;
        let password = match fields.take("password") {
            Some(Value::String(p)) if !p.is_empty() => Password::Plain(p),
            Some(Value::Object(mut digest)) => {
                match (digest.remove("digest"), digest.remove("algorithm")) {
                    (Some(Value::String(d)), Some(Value::String(a)))
                        if a == "sha-256" && !d.is_empty() =>
                    {
                        Password::Sha256Hex(d)
                    }
                    _ => {
                        return Err(
                            "/password must have properties 'digest' and 'algorithm' (sha-256)"
                                .into(),
                        );
                    }
                }
            }
            Some(_) => return Err("/password must be string".into()),
            None => return Err("must have required property 'password'".into()),
        };
        let login = match fields.take("user") {
            Some(Value::String(user)) if !user.is_empty() => user,
            Some(Value::Object(user)) => {
                let mut user = Fields(user);
                match user.optional_string("username")? {
                    Some(name) => name,
                    None => user
                        .optional_string("email")?
                        .ok_or("/user must have required property 'username' or 'email'")?,
                }
            }
            Some(_) => return Err("/user must be string or object".into()),
            None => match fields.optional_string("username")? {
                Some(name) => name,
                None => fields
                    .optional_string("email")?
                    .ok_or("must have required property 'user', 'username' or 'email'")?,
            },
        };
        Ok(LoginBody { login, password })
    }
}

route!(
    /// The checks of `login`.
    Login {
        caller: (),
        permission: None,
        query: (),
        body: JsonBody<LoginBody>,
        rate_limited: true,
    }
);

/// Log in with a password
///
/// Checks the password and answers a new login token. 10 failed logins for one user, or 50
/// from one client address, within 5 minutes block further logins for that user or from that
/// address until 5 minutes have passed since the last failure. Counted by the rate limiter once
/// the body is valid.
#[utoipa::path(
    post,
    path = "/api/v1/login",
    operation_id = "login",
    tag = "sessions",
    request_body(content = api::LoginRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Logged in: a new login token", body = api::LoginResponse),
        (status = 400, body = api::BadRequest, description = "Not a JSON body (or not sent as \
            `application/json`), or not one of the three shapes: `error-invalid-params`"),
        (status = 401, body = api::LoginRefused, description = "Bad credentials, or logins \
            blocked after repeated failures"),
        (status = 429, response = api::RateLimited),
        (status = 503, response = api::DatabaseUnavailable),
    ),
)]
pub async fn login(
    State(state): State<AppState>,
    ClientAddress(client): ClientAddress,
    Guarded {
        body: JsonBody(body),
        ..
    }: Guarded<Login>,
) -> Result<Json<api::LoginResponse>, ApiError> {
    state.login_guard.check(&body.login, client, now_ms())?;
    let found = state.store.user_for_login(&body.login).await?;
    let (user, stored) = match found {
        Some((user, Some(hash))) if user.active => (Some(user), hash),
        // No such user, no password, or deactivated: the same bcrypt work, then 401.
        _ => (None, unmatchable_hash().to_owned()),
    };
    let matches = tokio::task::spawn_blocking(move || match &body.password {
        Password::Plain(p) => verify_password(p, &stored),
        Password::Sha256Hex(d) => verify_password_digest(d, &stored),
    })
    .await
    .map_err(|e| ApiError::Internal(format!("password check failed: {e}")))?;
    let user = match user {
        Some(user) if matches => user,
        _ => {
            state.login_guard.failed(&body.login, client, now_ms());
            return Err(ApiError::LoginFailed);
        }
    };
    state.login_guard.succeeded(&body.login);
    let token = issue_token(&state.store, &user.id, TokenLifetime::Default).await?;
    Ok(Json(api::LoginResponse {
        status: api::SuccessStatus,
        data: api::LoginData {
            user_id: user.id.clone(),
            auth_token: token,
            me: user,
        },
        success: True,
    }))
}

route!(
    /// The checks of `logout`.
    Logout {
        caller: Arc<Caller>,
        permission: None,
        query: (),
        body: (),
        rate_limited: true,
    }
);

/// Log out
///
/// Revokes the token the request was made with; the user's other tokens keep working.
#[utoipa::path(
    post,
    path = "/api/v1/logout",
    operation_id = "logout",
    tag = "sessions",
    security(("userId" = [], "authToken" = [])),
    responses(
        (status = 200, description = "The token is revoked", body = api::LogoutResponse),
        (status = 429, response = api::RateLimited),
    ),
)]
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Guarded { caller, .. }: Guarded<Logout>,
) -> Result<Json<api::LogoutResponse>, ApiError> {
    let token = auth_token(&headers)
        .ok_or_else(|| ApiError::Internal("no token after authentication".into()))?;
    state
        .store
        .revoke_sessions(&caller.user_id, &Revoke::Hash(hash_token(token)))
        .await?;
    Ok(Json(api::LogoutResponse {
        status: api::SuccessStatus,
        data: api::LogoutData::default(),
        success: True,
    }))
}

route!(
    /// The checks of `me`.
    Me {
        caller: Arc<Caller>,
        permission: None,
        query: NoQuery,
        body: (),
        rate_limited: true,
    }
);

/// Who is logged in
///
/// The caller, with `success`. Takes no query parameter.
#[utoipa::path(
    get,
    path = "/api/v1/me",
    operation_id = "me",
    tag = "sessions",
    security(("userId" = [], "authToken" = [])),
    responses(
        (status = 200, description = "The caller", body = api::Me),
        (status = 400, body = api::BadRequest, description = "A query parameter was sent (the \
            route takes none): `error-invalid-params`"),
        (status = 429, response = api::RateLimited),
    ),
)]
pub async fn me(
    State(state): State<AppState>,
    Guarded { caller, .. }: Guarded<Me>,
) -> Result<Json<api::Me>, ApiError> {
    let user = state
        .store
        .user_by_id(&caller.user_id)
        .await?
        .ok_or_else(|| ApiError::Internal("the caller's user is gone".into()))?;
    Ok(Json(api::Me {
        user,
        success: True,
    }))
}

/// `POST /api/v1/users.create`.
pub struct CreateUserBody {
    account: NewAccount,
}

impl FromJson for CreateUserBody {
    fn from_json(value: Value) -> Result<Self, String> {
        let mut f = Fields::of(value)?;
        // Checked in Rocket.Chat's order of required properties.
        let email = f.string("email")?;
        let name = f.string("name")?;
        let password = f.string("password")?;
        let username = f.string("username")?;
        Ok(CreateUserBody {
            account: NewAccount {
                username,
                name: Some(name),
                email: Some(email),
                roles: f.optional_strings("roles")?.unwrap_or_default(),
                password: Some(password),
                active: f.optional_bool("active")?.unwrap_or(true),
            },
        })
    }
}

route!(
    /// The checks of `users.create`.
    UsersCreate {
        caller: Arc<Caller>,
        permission: Some(CREATE_USER),
        query: (),
        body: JsonBody<CreateUserBody>,
        rate_limited: true,
    }
);

/// Create a user
///
/// Needs `create-user`. `roles` default to `["user"]`, `active` to `true`; the password is
/// stored as Rocket.Chat stores it (bcrypt of its sha256).
#[utoipa::path(
    post,
    path = "/api/v1/users.create",
    operation_id = "users.create",
    tag = "users",
    security(("userId" = [], "authToken" = [])),
    request_body(content = api::CreateUserRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The new user", body = api::UserResponse),
        (status = 400, body = api::BadRequest, description = "`error-invalid-params` (not JSON, \
            a missing or mistyped field, an invalid username or e-mail address), \
            `error-field-unavailable` (the username or the e-mail address is taken) or \
            `error-invalid-role` (a role that does not exist)"),
        (status = 403, response = api::PermissionDenied),
        (status = 429, response = api::RateLimited),
    ),
)]
pub async fn users_create(
    State(state): State<AppState>,
    Guarded {
        body: JsonBody(body),
        ..
    }: Guarded<UsersCreate>,
) -> Result<Json<api::UserResponse>, ApiError> {
    let account = body.account;
    if state
        .store
        .user_by_username(&account.username)
        .await?
        .is_some()
    {
        return Err(ApiError::meteor(
            "error-field-unavailable",
            &format!("{} is already in use :(", account.username),
        ));
    }
    if let Some(email) = &account.email
        && state.store.email_taken(email).await?
    {
        return Err(ApiError::meteor(
            "error-field-unavailable",
            &format!("{email} is already in use :("),
        ));
    }
    let known = state.store.list_roles().await?;
    if account.roles.iter().any(|r| !known.contains(r)) {
        return Err(ApiError::meteor("error-invalid-role", "Invalid role"));
    }
    let user = create_user(&state.store, account)
        .await
        .map_err(|e| match e {
            AccountError::Invalid(message) => ApiError::invalid_params(message),
            // The database's unique indexes decide races that the checks above cannot.
            AccountError::Store(StoreError::Conflict(c))
                if matches!(c.kind, ConflictKind::Username | ConflictKind::Email) =>
            {
                ApiError::meteor(
                    "error-field-unavailable",
                    &format!("{} is already in use :(", c.value),
                )
            }
            AccountError::Store(e) => e.into(),
        })?;
    Ok(Json(api::UserResponse {
        user,
        success: True,
    }))
}

/// `POST /api/v1/users.delete`: `{userId}` or `{username}`.
pub struct DeleteUserBody {
    user_id: Option<String>,
    username: Option<String>,
}

impl FromJson for DeleteUserBody {
    fn from_json(value: Value) -> Result<Self, String> {
        let mut f = Fields::of(value)?;
        let user_id = f.optional_string("userId")?;
        let username = f.optional_string("username")?;
        if user_id.is_none() && username.is_none() {
            return Err("must have required property 'userId' or 'username'".into());
        }
        Ok(DeleteUserBody { user_id, username })
    }
}

route!(
    /// The checks of `users.delete`.
    UsersDelete {
        caller: Arc<Caller>,
        permission: Some(DELETE_USER),
        query: (),
        body: JsonBody<DeleteUserBody>,
        rate_limited: true,
    }
);

/// Delete a user
///
/// Needs `delete-user`. Removes the user and all its tokens.
#[utoipa::path(
    post,
    path = "/api/v1/users.delete",
    operation_id = "users.delete",
    tag = "users",
    security(("userId" = [], "authToken" = [])),
    request_body(content = api::DeleteUserRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The user is deleted", body = api::Success),
        (status = 400, body = api::BadRequest, description = "`error-invalid-params` (not JSON, \
            neither `userId` nor `username`, a mistyped field) or `error-invalid-user` (no such \
            user)"),
        (status = 403, response = api::PermissionDenied),
        (status = 429, response = api::RateLimited),
    ),
)]
pub async fn users_delete(
    State(state): State<AppState>,
    Guarded {
        body: JsonBody(body),
        ..
    }: Guarded<UsersDelete>,
) -> Result<Json<api::Success>, ApiError> {
    let user = match (&body.user_id, &body.username) {
        (Some(id), _) => state.store.user_by_id(id).await?,
        (None, Some(name)) => state.store.user_by_username(name).await?,
        (None, None) => None,
    };
    let removed = match user {
        Some(user) => state.store.remove_user_by_id(&user.id).await?,
        None => false,
    };
    if !removed {
        return Err(ApiError::meteor(
            "error-invalid-user",
            "The required \"userId\" or \"username\" param provided does not match any user",
        ));
    }
    Ok(Json(api::Success::default()))
}
