//! Sessions and users: `login`, `logout`, `me`, `users.create`, `users.delete`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::AppState;
use super::auth::auth_token;
use super::body::{Fields, FromJson, JsonBody};
use super::error::{ApiError, LoginRefusal};
use super::guard::{Guarded, route};
use super::openapi::{self as api, True};
use super::rate_limit::ClientAddress;
use super::user_views;
use crate::access::Caller;
use crate::accounts::{AccountError, NewAccount, TokenLifetime, create_user_with, issue_token};
use crate::domain::permission::{CREATE_USER, DELETE_USER};
use crate::domain::secrets::{
    hash_token, new_raw_token, unmatchable_hash, verify_password, verify_password_digest,
};
use crate::domain::time::now_ms;
use crate::domain::user::{is_valid_email, is_valid_username};
use crate::store::{ConflictKind, Revoke, StoreError};

/// A password as a client sends it: plain, or Meteor's `{digest, algorithm: "sha-256"}`.
#[derive(Clone)]
pub enum Password {
    Plain(String),
    Sha256Hex(String),
}

/// `POST /api/v1/login` in any of Rocket.Chat's three password shapes, `{user, password}`
/// (`user` a username or an e-mail), `{username | email, password}`,
/// `{user: {username | email}, password}`, or Meteor's `{resume: <token>}`.
pub enum LoginBody {
    Password { login: String, password: Password },
    Resume(String),
}

impl FromJson for LoginBody {
    fn from_json(value: Value) -> Result<Self, String> {
        let mut fields = Fields::of(value)?;
        if !fields.0.contains_key("password") && fields.0.contains_key("resume") {
            return match fields.take("resume") {
                Some(Value::String(token)) if !token.is_empty() => Ok(LoginBody::Resume(token)),
                _ => Err("/resume must be a non-empty string".into()),
            };
        }
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
        Ok(LoginBody::Password { login, password })
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
    headers: HeaderMap,
    Guarded {
        body: JsonBody(body),
        ..
    }: Guarded<Login>,
) -> Result<Json<api::LoginResponse>, ApiError> {
    let (user_id, token) = match body {
        LoginBody::Password { login, password } => {
            password_login(&state, client, &login, password).await?
        }
        LoginBody::Resume(token) => {
            let (user_id, token, _) = resume_login(&state, client, token).await?;
            (user_id, token)
        }
    };
    let record = state
        .store
        .user_record_by_id(&user_id)
        .await?
        .ok_or(ApiError::LoginFailed)?;
    Ok(Json(api::LoginResponse {
        status: api::SuccessStatus,
        data: api::LoginData {
            user_id,
            auth_token: token,
            me: user_views::me(&record, &site_url(&state, &headers)),
        },
        success: True,
    }))
}

/// Meteor's validation of a login whose credentials were right: a deactivated user is refused
/// with its own error (compatibility.md, section 4.1).
fn not_activated() -> ApiError {
    ApiError::LoginRefused(Box::new(LoginRefusal {
        error: "error-user-is-not-activated".into(),
        message: "User is not activated",
        details: Some(json!({"function": "Accounts.validateLoginAttempt"})),
    }))
}

/// A password login: the user's id and a new login token.
pub(crate) async fn password_login(
    state: &AppState,
    client: std::net::IpAddr,
    login: &str,
    password: Password,
) -> Result<(String, String), ApiError> {
    state.login_guard.check(login, client, now_ms())?;
    let found = state.store.user_for_login(login).await?;
    let (user, stored) = match found {
        Some((user, Some(hash))) => (Some(user), hash),
        // No such user, or no password: the same bcrypt work, then 401.
        _ => (None, unmatchable_hash().to_owned()),
    };
    // Refused fast when the hashing slots stay busy, before it counts as a failed login.
    let matches = state
        .hashing
        .run(Some(crate::hashing::LOGIN_WAIT), move || match &password {
            Password::Plain(p) => verify_password(p, &stored),
            Password::Sha256Hex(d) => verify_password_digest(d, &stored),
        })
        .await
        .map_err(|_| {
            crate::telemetry::password_hashing_busy();
            ApiError::Busy
        })?;
    let user = match user {
        Some(user) if matches => user,
        _ => {
            state.login_guard.failed(login, client, now_ms());
            return Err(ApiError::LoginFailed);
        }
    };
    if !user.active {
        state.login_guard.failed(login, client, now_ms());
        return Err(not_activated());
    }
    state.login_guard.succeeded(login);
    let token = issue_token(&state.store, &user.id, TokenLifetime::Default).await?;
    Ok((user.id, token))
}

/// Meteor's resume login: the token is looked up by its hash and, while it is valid, answered
/// again as the login's token (compatibility.md, section 4.1).
/// Answers the user's id, the token and when it expires (`None`: never).
pub(crate) async fn resume_login(
    state: &AppState,
    client: std::net::IpAddr,
    token: String,
) -> Result<(String, String, Option<i64>), ApiError> {
    let now = now_ms();
    state.login_guard.check_address(client, now)?;
    let refused = |message| {
        ApiError::LoginRefused(Box::new(LoginRefusal {
            error: 403.into(),
            message,
            details: None,
        }))
    };
    let Some(session) = state
        .store
        .find_session_by_token(&hash_token(&token))
        .await?
    else {
        state.login_guard.failed_address(client, now);
        return Err(refused(
            "You've been logged out by the server. Please log in again.",
        ));
    };
    let expiry = session.expiry_ms(state.settings.login_expiration_ms());
    let expired = expiry.is_some_and(|expiry| now >= expiry);
    if expired {
        state.login_guard.failed_address(client, now);
        return Err(refused("Your session has expired. Please log in again."));
    }
    if !session.active {
        state.login_guard.failed_address(client, now);
        return Err(not_activated());
    }
    Ok((session.user_id, token, expiry))
}

/// Rocket.Chat's `Site_Url`: the setting, or the address the client called.
fn site_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.settings.site_url {
        return url.clone();
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
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
    revoke_presented_token(&state, &headers, &caller).await
}

/// Log out (deprecated GET)
///
/// The same as `POST /api/v1/logout`: Rocket.Chat still serves the GET that older clients
/// (`@rocket.chat/sdk` among them) send.
#[utoipa::path(
    get,
    path = "/api/v1/logout",
    operation_id = "logout.get",
    tag = "sessions",
    security(("userId" = [], "authToken" = [])),
    responses(
        (status = 200, description = "The token is revoked", body = api::LogoutResponse),
        (status = 429, response = api::RateLimited),
    ),
)]
pub async fn logout_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    Guarded { caller, .. }: Guarded<Logout>,
) -> Result<Json<api::LogoutResponse>, ApiError> {
    revoke_presented_token(&state, &headers, &caller).await
}

async fn revoke_presented_token(
    state: &AppState,
    headers: &HeaderMap,
    caller: &Caller,
) -> Result<Json<api::LogoutResponse>, ApiError> {
    let token = auth_token(headers)
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
    /// The checks of `me`: Rocket.Chat declares no query schema, so parameters are ignored.
    Me {
        caller: Arc<Caller>,
        permission: None,
        query: (),
        body: (),
        rate_limited: true,
    }
);

/// Who is logged in
///
/// The caller as Rocket.Chat's `getUserInfo` describes it, with `success`. Query parameters
/// are ignored.
#[utoipa::path(
    get,
    path = "/api/v1/me",
    operation_id = "me",
    tag = "sessions",
    security(("userId" = [], "authToken" = [])),
    responses(
        (status = 200, description = "The caller", body = api::Me),
        (status = 429, response = api::RateLimited),
    ),
)]
pub async fn me(
    State(state): State<AppState>,
    headers: HeaderMap,
    Guarded { caller, .. }: Guarded<Me>,
) -> Result<Json<api::Me>, ApiError> {
    let record = state
        .store
        .user_record_by_id(&caller.user_id)
        .await?
        .ok_or_else(|| ApiError::Internal("the caller's user is gone".into()))?;
    Ok(Json(api::Me {
        user: user_views::me(&record, &site_url(&state, &headers)),
        success: True,
    }))
}

/// The permission that lets a caller give the `admin` role (Rocket.Chat's `validateUserData`).
const ASSIGN_ADMIN_ROLE: &str = "assign-admin-role";

/// Usernames Rocket.Chat never gives out: `all`, `here` and its
/// `Accounts_SystemBlockedUsernameList` default.
const BLOCKED_USERNAMES: &[&str] = &["all", "here", "admin", "administrator", "system", "user"];

/// `POST /api/v1/users.create`, read as rest-typings' `isUserCreateParamsPOST` reads it: the
/// listed properties only, the four required ones, and ajv's type coercion.
pub struct CreateUserBody {
    email: String,
    name: String,
    password: String,
    username: String,
    active: Option<bool>,
    roles: Option<Vec<String>>,
    set_random_password: bool,
    verified: bool,
}

/// The properties of rest-typings' `UserCreateParamsPOST`.
const CREATE_USER_PROPERTIES: &[&str] = &[
    "email",
    "name",
    "password",
    "username",
    "active",
    "bio",
    "nickname",
    "statusText",
    "roles",
    "joinDefaultChannels",
    "requirePasswordChange",
    "setRandomPassword",
    "sendWelcomeEmail",
    "verified",
    "customFields",
    "fields",
];

impl FromJson for CreateUserBody {
    const LEGACY_VALIDATION: bool = true;

    fn from_json(value: Value) -> Result<Self, String> {
        let Value::Object(mut map) = value else {
            return Err("must be object".into());
        };
        // ajv stops at the first error: required properties, then unknown ones, then types.
        for key in ["email", "name", "password", "username"] {
            if !map.contains_key(key) {
                return Err(format!("must have required property '{key}'"));
            }
        }
        if map
            .keys()
            .any(|k| !CREATE_USER_PROPERTIES.contains(&k.as_str()))
        {
            return Err("must NOT have additional properties".into());
        }
        let mut string = |key: &str| -> Result<String, String> {
            coerce::string(map.remove(key).unwrap_or(Value::Null))
                .map(Option::unwrap_or_default)
                .ok_or_else(|| "must be string".to_string())
        };
        let email = string("email")?;
        let name = string("name")?;
        let password = string("password")?;
        let username = string("username")?;
        let mut flag = |key: &str| -> Result<Option<bool>, String> {
            match map.remove(key) {
                None => Ok(None),
                Some(v) => coerce::nullable_bool(v).ok_or_else(|| "must be boolean".to_string()),
            }
        };
        let active = flag("active")?;
        for key in [
            "joinDefaultChannels",
            "requirePasswordChange",
            "sendWelcomeEmail",
        ] {
            flag(key)?;
        }
        let set_random_password = flag("setRandomPassword")?.unwrap_or(false);
        let verified = flag("verified")?.unwrap_or(false);
        for key in ["bio", "nickname", "statusText", "fields"] {
            if let Some(v) = map.remove(key)
                && !v.is_null()
                && coerce::string(v).is_none()
            {
                return Err("must be string".into());
            }
        }
        let roles = match map.remove("roles") {
            None => None,
            Some(Value::Array(items)) => Some(
                items
                    .into_iter()
                    .map(|item| {
                        coerce::string(item)
                            .flatten()
                            .ok_or_else(|| "must be string".to_string())
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(_) => return Err("must be array".into()),
        };
        if let Some(fields) = map.remove("customFields")
            && !fields.is_object()
        {
            return Err("must be object".into());
        }
        Ok(CreateUserBody {
            email,
            name,
            password,
            username,
            active,
            roles,
            set_random_password,
            verified,
        })
    }
}

/// ajv's `coerceTypes: true` for the types `users.create` declares.
mod coerce {
    use serde_json::Value;

    /// A `string`: numbers and booleans become their text, `null` the empty string (`None`
    /// for a value that cannot be one).
    pub fn string(value: Value) -> Option<Option<String>> {
        match value {
            Value::String(s) => Some(Some(s)),
            Value::Number(n) => Some(Some(n.to_string())),
            Value::Bool(b) => Some(Some(b.to_string())),
            Value::Null => Some(None),
            _ => None,
        }
    }

    /// A nullable `boolean`: `"true"`/`"false"` and `1`/`0` become booleans.
    pub fn nullable_bool(value: Value) -> Option<Option<bool>> {
        match value {
            Value::Bool(b) => Some(Some(b)),
            Value::Null => Some(None),
            Value::String(s) if s == "true" => Some(Some(true)),
            Value::String(s) if s == "false" => Some(Some(false)),
            Value::Number(n) if n.as_f64() == Some(1.0) => Some(Some(true)),
            Value::Number(n) if n.as_f64() == Some(0.0) => Some(Some(false)),
            _ => None,
        }
    }
}

/// lodash's `escape`, which Rocket.Chat applies to names it puts in its messages.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A Meteor error of Rocket.Chat's `insertOrUpdateUser` checks.
fn refuse(error_type: &'static str, message: &str, detail: (&str, Value)) -> ApiError {
    let mut details = json!({"method": "insertOrUpdateUser"});
    details[detail.0] = detail.1;
    ApiError::meteor(error_type, message).with_details(details)
}

fn field_unavailable(value: &str) -> ApiError {
    refuse(
        "error-field-unavailable",
        &format!("{} is already in use :(", html_escape(value)),
        ("field", value.into()),
    )
}

fn is_blocked(username: &str, extra: &[String]) -> bool {
    let name = username.trim();
    BLOCKED_USERNAMES
        .iter()
        .copied()
        .chain(extra.iter().map(|s| s.trim()))
        .any(|blocked| !blocked.is_empty() && blocked.eq_ignore_ascii_case(name))
}

route!(
    /// The checks of `users.create`. Rocket.Chat requires no permission of the route: its
    /// `validateUserData` checks `create-user` inside the action (compatibility.md, 4.3).
    UsersCreate {
        caller: Arc<Caller>,
        permission: None,
        query: (),
        body: JsonBody<CreateUserBody>,
        rate_limited: true,
    }
);

/// Create a user
///
/// Needs `create-user` (400 `error-action-not-allowed` without it, as Rocket.Chat answers).
/// `roles` default to `["user"]`, `active` to `true`; the password is stored as Rocket.Chat
/// stores it (bcrypt of its sha256). Answers the stored user.
#[utoipa::path(
    post,
    path = "/api/v1/users.create",
    operation_id = "users.create",
    tag = "users",
    security(("userId" = [], "authToken" = [])),
    request_body(content = api::CreateUserRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The new user", body = api::UserResponse),
        (status = 400, body = api::BadRequest, description = "`invalid-params` (not JSON, a \
            missing, unknown or mistyped property), `error-action-not-allowed` (no \
            `create-user`, an unknown role, `admin` without `assign-admin-role`), \
            `error-the-field-is-required`, `error-input-is-not-a-valid-field`, \
            `error-blocked-username`, `error-field-unavailable` (the username or the e-mail \
            address is taken) or `error-invalid-email`"),
        (status = 429, response = api::RateLimited),
    ),
)]
pub async fn users_create(
    State(state): State<AppState>,
    Guarded {
        caller,
        body: JsonBody(body),
        ..
    }: Guarded<UsersCreate>,
) -> Result<Json<api::UserResponse>, ApiError> {
    // Rocket.Chat's `validateUserData`, in its order.
    if !state.access.has_permission(&caller, CREATE_USER).await? {
        return Err(refuse(
            "error-action-not-allowed",
            "Adding user is not allowed",
            ("action", "Adding_user".into()),
        ));
    }
    if let Some(roles) = &body.roles {
        let known = state.store.list_roles().await?;
        if roles.iter().any(|r| !known.contains(r)) {
            return Err(refuse(
                "error-action-not-allowed",
                "The field Roles consist invalid role id",
                ("action", "Assign_role".into()),
            ));
        }
        if roles.iter().any(|r| r == "admin")
            && !state
                .access
                .has_permission(&caller, ASSIGN_ADMIN_ROLE)
                .await?
        {
            return Err(refuse(
                "error-action-not-allowed",
                "Assigning admin is not allowed",
                ("action", "Assign_admin".into()),
            ));
        }
    }
    let required = |field: &str| {
        refuse(
            "error-the-field-is-required",
            &format!("The field {field} is required"),
            ("field", field.into()),
        )
    };
    if body.name.trim().is_empty() {
        return Err(required("Name"));
    }
    if body.username.trim().is_empty() {
        return Err(required("Username"));
    }
    if !is_valid_username(&body.username) {
        return Err(ApiError::meteor(
            "error-input-is-not-a-valid-field",
            &format!("{} is not a valid username", html_escape(&body.username)),
        )
        .with_details(json!({
            "method": "insertOrUpdateUser",
            "input": body.username,
            "field": "Username",
        })));
    }
    if body.password.is_empty() && !body.set_random_password {
        return Err(required("Password"));
    }
    // `checkUsernameAvailability`.
    if is_blocked(&body.username, &state.settings.blocked_usernames) {
        return Err(ApiError::meteor(
            "error-blocked-username",
            &format!(
                "{} is blocked and can't be used!",
                html_escape(&body.username)
            ),
        )
        .with_details(json!({
            "method": "checkUsernameAvailability",
            "field": body.username,
        })));
    }
    if state
        .store
        .user_by_username(&body.username)
        .await?
        .is_some()
    {
        return Err(field_unavailable(&body.username));
    }
    let email = Some(body.email).filter(|e| !e.is_empty());
    if let Some(email) = &email {
        if state.store.email_taken(email).await? {
            return Err(field_unavailable(email));
        }
        if !is_valid_email(email) {
            return Err(
                ApiError::meteor("error-invalid-email", &format!("Invalid email {email}"))
                    .with_details(json!({
                        "function": "RocketChat.validateEmailDomain",
                        "email": email,
                    })),
            );
        }
    }
    let password = if body.password.is_empty() {
        new_raw_token()
    } else {
        body.password
    };
    let account = NewAccount {
        username: body.username,
        name: Some(body.name),
        email,
        roles: body.roles.unwrap_or_default(),
        password: Some(password),
        active: body.active.unwrap_or(true),
        email_verified: body.verified,
    };
    let user = create_user_with(&state.store, &state.hashing, account)
        .await
        .map_err(|e| match e {
            AccountError::Invalid(message) => ApiError::InvalidBody {
                message,
                legacy: true,
            },
            // The database's unique indexes decide races that the checks above cannot.
            AccountError::Store(StoreError::Conflict(c))
                if matches!(c.kind, ConflictKind::Username | ConflictKind::Email) =>
            {
                field_unavailable(&c.value)
            }
            AccountError::Store(e) => e.into(),
        })?;
    let record = state
        .store
        .user_record_by_id(&user.id)
        .await?
        .ok_or_else(|| ApiError::Internal("the new user is gone".into()))?;
    Ok(Json(api::UserResponse {
        user: user_views::stored(&record),
        success: True,
    }))
}

/// `POST /api/v1/users.delete`: Rocket.Chat declares no body schema; `getUserFromParams`
/// takes `userId`, else `username`, else `user` (both names in any case).
pub struct DeleteUserBody {
    user_id: Option<String>,
    username: Option<String>,
}

impl FromJson for DeleteUserBody {
    const LEGACY_VALIDATION: bool = true;

    fn from_json(value: Value) -> Result<Self, String> {
        let Value::Object(mut map) = value else {
            return Ok(DeleteUserBody {
                user_id: None,
                username: None,
            });
        };
        let mut text = |key: &str| match map.remove(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s)),
            None | Some(Value::Null) | Some(Value::String(_)) => Ok(None),
            Some(_) => Err(format!("/{key} must be string")),
        };
        let user_id = text("userId")?;
        let username = text("username")?;
        let user = text("user")?;
        Ok(DeleteUserBody {
            user_id,
            username: username.or(user),
        })
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
/// Needs `delete-user`. Removes the user and all its tokens. The user is named by `userId`,
/// else `username` (or `user`), in any case.
#[utoipa::path(
    post,
    path = "/api/v1/users.delete",
    operation_id = "users.delete",
    tag = "users",
    security(("userId" = [], "authToken" = [])),
    request_body(content = api::DeleteUserRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The user is deleted", body = api::UserDeleted),
        (status = 400, body = api::BadRequest, description = "`invalid-params` (not JSON, a \
            mistyped field), `error-user-param-not-provided` (neither `userId` nor `username`) \
            or `error-invalid-user` (no such user)"),
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
) -> Result<Json<api::UserDeleted>, ApiError> {
    let user = match (&body.user_id, &body.username) {
        (Some(id), _) => state.store.user_by_id(id).await?,
        (None, Some(name)) => state.store.user_by_username(name).await?,
        (None, None) => {
            return Err(ApiError::meteor(
                "error-user-param-not-provided",
                "The required \"userId\" or \"username\" param was not provided",
            ));
        }
    };
    let removed = match user {
        Some(user) => state.store.remove_user_by_id(&user.id).await?,
        None => false,
    };
    if !removed {
        return Err(ApiError::meteor(
            "error-invalid-user",
            "The required \"userId\" or \"username\" param provided does not match any users",
        ));
    }
    Ok(Json(api::UserDeleted::default()))
}
