//! The Meteor methods importops answers, over a WebSocket and over `method.call`: `login`,
//! the import methods Rocket.Chat still registers, and the importer stream's write method
//! (refused silently). Every method runs for the connection's user through the same access
//! rules as REST (`access`), and answers Meteor's errors (docs/compatibility.md, section 13).

use std::net::IpAddr;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::{MeteorError, ejson_date};
use crate::access::Caller;
use crate::domain::permission::{RUN_IMPORT, VIEW_IMPORT_OPERATIONS};
use crate::domain::time::now_ms;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::users::Password;

/// The credentials a connection logged in with (or a REST caller sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user_id: String,
    pub token: String,
}

/// What a method call runs with.
pub struct Context<'a> {
    pub state: &'a AppState,
    pub user: Option<&'a Credentials>,
    pub client: IpAddr,
}

/// A method's answer, and the credentials a successful `login` gives the connection.
pub struct Outcome {
    pub result: Result<Option<Value>, MeteorError>,
    pub login: Option<Credentials>,
}

impl From<Result<Option<Value>, MeteorError>> for Outcome {
    fn from(result: Result<Option<Value>, MeteorError>) -> Self {
        Outcome {
            result,
            login: None,
        }
    }
}

/// The import workflow's four methods besides the two answered here: their checks here, their
/// work the workflow's (`crate::importer::workflow`, shared with the REST routes).
pub const WORKFLOW_METHODS: [&str; 4] = [
    "getImportFileData",
    "startImport",
    "uploadImportFile",
    "downloadPublicImportFile",
];

/// Runs the method `name` with `params`.
pub async fn call(ctx: &Context<'_>, name: &str, params: &[Value]) -> Outcome {
    match name {
        "login" => login(ctx, params).await,
        "getLatestImportOperations" => get_latest_import_operations(ctx).await.into(),
        "getImportProgress" => get_import_progress(ctx).await.into(),
        _ if WORKFLOW_METHODS.contains(&name) => workflow(ctx, name, params).await.into(),
        // `allowWrite('none')`: the write is dropped, the call answers nothing.
        "stream-importers" => Ok(None).into(),
        _ => Err(MeteorError::method_not_found(name)).into(),
    }
}

/// The connection's user, if its credentials still authenticate.
async fn caller(ctx: &Context<'_>) -> Result<Option<Arc<Caller>>, MeteorError> {
    let Some(user) = ctx.user else {
        return Ok(None);
    };
    ctx.state
        .access
        .authenticate(&user.user_id, &user.token)
        .await
        .map_err(|_| MeteorError::internal())
}

async fn has(ctx: &Context<'_>, caller: &Caller, permission: &str) -> Result<bool, MeteorError> {
    ctx.state
        .access
        .has_permission(caller, permission)
        .await
        .map_err(|_| MeteorError::internal())
}

fn invalid_user(method: &str) -> MeteorError {
    MeteorError::new("error-invalid-user", "Invalid user").with_details(method)
}

/// `getLatestImportOperations`: the REST route's array, dates as EJSON dates.
async fn get_latest_import_operations(ctx: &Context<'_>) -> Result<Option<Value>, MeteorError> {
    const NAME: &str = "getLatestImportOperations";
    let caller = caller(ctx).await?.ok_or_else(|| invalid_user(NAME))?;
    if !has(ctx, &caller, VIEW_IMPORT_OPERATIONS).await? {
        return Err(MeteorError::new("not_authorized", "User not authorized").with_details(NAME));
    }
    let body = crate::http::operations::latest_array(ctx.state)
        .await
        .map_err(|e| from_api(e, NAME))?;
    let mut operations: Value =
        serde_json::from_slice(&body).map_err(|_| MeteorError::internal())?;
    if let Value::Array(items) = &mut operations {
        for op in items {
            for field in ["ts", "_updatedAt"] {
                if let Some(value) = op.get_mut(field) {
                    ejson_date(value);
                }
            }
        }
    }
    Ok(Some(operations))
}

/// `getImportProgress`: the REST route's answer without `success`.
async fn get_import_progress(ctx: &Context<'_>) -> Result<Option<Value>, MeteorError> {
    const NAME: &str = "getImportProgress";
    let caller = caller(ctx).await?.ok_or_else(|| invalid_user(NAME))?;
    if !has(ctx, &caller, RUN_IMPORT).await? {
        return Err(not_allowed());
    }
    let progress = crate::http::imports::current_progress(ctx.state)
        .await
        .map_err(|e| from_api(e, NAME))?;
    let mut value = serde_json::to_value(progress).map_err(|_| MeteorError::internal())?;
    if let Value::Object(map) = &mut value {
        map.shift_remove("success");
    }
    Ok(Some(value))
}

/// `error-action-not-allowed`, as every import method words it (details `setupImporter`).
fn not_allowed() -> MeteorError {
    MeteorError::new("error-action-not-allowed", "Importing is not allowed")
        .with_details("setupImporter")
}

/// Meteor's `check` refusing a parameter.
fn match_failed() -> MeteorError {
    MeteorError::new(400, "Match failed")
}

/// One of `WORKFLOW_METHODS`: the user and `run-import` checked, the parameters as Rocket.Chat's
/// methods take them (`uploadImportFile(binaryContent, contentType, fileName, importerKey)`,
/// `downloadPublicImportFile(fileUrl, importerKey)`, `startImport(input)`,
/// `getImportFileData()`), then the workflow's function.
async fn workflow(
    ctx: &Context<'_>,
    name: &str,
    params: &[Value],
) -> Result<Option<Value>, MeteorError> {
    use crate::importer::workflow;
    let caller = caller(ctx).await?.ok_or_else(|| invalid_user(name))?;
    if !has(ctx, &caller, RUN_IMPORT).await? {
        return Err(not_allowed());
    }
    // Every parameter named must be a string (`check(x, String)`).
    let texts = |n: usize| -> Option<Vec<&str>> {
        (0..n)
            .map(|i| params.get(i).and_then(Value::as_str))
            .collect()
    };
    let state = ctx.state;
    let done = match name {
        "getImportFileData" => {
            return workflow::get_import_file_data(state, &caller)
                .await
                .map(Some)
                .map_err(from_import);
        }
        "startImport" => {
            let input = params
                .first()
                .filter(|input| input.is_object())
                .cloned()
                .ok_or_else(match_failed)?;
            workflow::start_import(state, &caller, input).await
        }
        "uploadImportFile" => {
            let [content, content_type, file_name, key] = texts(4).ok_or_else(match_failed)?[..]
            else {
                return Err(match_failed());
            };
            workflow::upload_import_file(state, &caller, content, content_type, file_name, key)
                .await
        }
        "downloadPublicImportFile" => {
            let [url, key] = texts(2).ok_or_else(match_failed)?[..] else {
                return Err(match_failed());
            };
            workflow::download_public_import_file(state, &caller, url, key).await
        }
        _ => return Err(MeteorError::method_not_found(name)),
    };
    done.map(|()| None).map_err(from_import)
}

/// The workflow's error as the method's: a `Meteor.Error` as it is; a plain `Error` is not
/// client-safe, so Meteor answers it as the internal error.
fn from_import(error: crate::importer::ImportError) -> MeteorError {
    match error {
        crate::importer::ImportError::Meteor {
            code,
            reason,
            details,
        } => MeteorError::new(code, reason).with_details(details),
        _ => MeteorError::internal(),
    }
}

/// A REST error of a shared handler as the method's Meteor error.
fn from_api(error: ApiError, method: &str) -> MeteorError {
    match error {
        ApiError::BadRequest {
            error,
            error_type,
            details,
        } => {
            let suffix = format!(" [{error_type}]");
            let reason = error.strip_suffix(&suffix).unwrap_or(&error).to_owned();
            MeteorError::new(error_type, reason)
                .with_details(details.unwrap_or_else(|| method.into()))
        }
        ApiError::Forbidden => {
            MeteorError::new("not_authorized", "User not authorized").with_details(method)
        }
        _ => MeteorError::internal(),
    }
}

/// Meteor's `login` method: `{resume}` or `{user, password: {digest, algorithm}}`.
async fn login(ctx: &Context<'_>, params: &[Value]) -> Outcome {
    let options = params.first().and_then(Value::as_object);
    let result = match options {
        Some(options) if options.get("resume").is_some_and(Value::is_string) => {
            let token = options["resume"].as_str().unwrap_or_default().to_owned();
            resume(ctx, token).await
        }
        Some(options) if options.contains_key("user") && options.contains_key("password") => {
            match password_options(options) {
                Some((login, password)) => with_password(ctx, &login, password).await,
                None => Err(unrecognized()),
            }
        }
        _ => Err(unrecognized()),
    };
    match result {
        Ok((answer, credentials)) => Outcome {
            result: Ok(Some(answer)),
            login: Some(credentials),
        },
        Err(error) => Outcome {
            result: Err(error),
            login: None,
        },
    }
}

fn unrecognized() -> MeteorError {
    MeteorError::new(400, "Unrecognized options for login request")
}

/// The login name (username, e-mail or id) and the password of a password login.
fn password_options(options: &Map<String, Value>) -> Option<(LoginName, Password)> {
    let user = options.get("user")?;
    let name = match user {
        Value::String(s) => LoginName::Name(s.clone()),
        Value::Object(user) => {
            if let Some(name) = user.get("username").and_then(Value::as_str) {
                LoginName::Name(name.to_owned())
            } else if let Some(email) = user.get("email").and_then(Value::as_str) {
                LoginName::Name(email.to_owned())
            } else {
                LoginName::Id(user.get("id").and_then(Value::as_str)?.to_owned())
            }
        }
        _ => return None,
    };
    let password = match options.get("password")? {
        Value::String(plain) => Password::Plain(plain.clone()),
        Value::Object(digest) => {
            let algorithm = digest.get("algorithm").and_then(Value::as_str)?;
            let digest = digest.get("digest").and_then(Value::as_str)?;
            if algorithm != "sha-256" {
                return None;
            }
            Password::Sha256Hex(digest.to_owned())
        }
        _ => return None,
    };
    Some((name, password))
}

enum LoginName {
    /// A username or an e-mail address.
    Name(String),
    Id(String),
}

fn login_result(
    user_id: &str,
    token: &str,
    expires_ms: Option<i64>,
    kind: &str,
    ctx: &Context<'_>,
) -> Value {
    let expires = expires_ms.unwrap_or_else(|| now_ms() + ctx.state.settings.login_expiration_ms());
    json!({
        "id": user_id,
        "token": token,
        "tokenExpires": {"$date": expires},
        "type": kind,
    })
}

async fn resume(ctx: &Context<'_>, token: String) -> Result<(Value, Credentials), MeteorError> {
    let (user_id, token, expiry) = crate::http::users::resume_login(ctx.state, ctx.client, token)
        .await
        .map_err(login_error)?;
    let answer = login_result(&user_id, &token, expiry, "resume", ctx);
    Ok((answer, Credentials { user_id, token }))
}

async fn with_password(
    ctx: &Context<'_>,
    name: &LoginName,
    password: Password,
) -> Result<(Value, Credentials), MeteorError> {
    let login = match name {
        LoginName::Name(name) => name.clone(),
        LoginName::Id(id) => {
            let user = ctx
                .state
                .store
                .user_record_by_id(id)
                .await
                .map_err(|_| MeteorError::internal())?;
            match user.and_then(|u| u.user.username) {
                Some(username) => username,
                None => return Err(login_error(ApiError::LoginFailed)),
            }
        }
    };
    let issued = now_ms();
    let (user_id, token) =
        crate::http::users::password_login(ctx.state, ctx.client, &login, password)
            .await
            .map_err(login_error)?;
    let expires = issued + ctx.state.settings.login_expiration_ms();
    let answer = login_result(&user_id, &token, Some(expires), "password", ctx);
    Ok((answer, Credentials { user_id, token }))
}

/// A refused login as Meteor's error.
fn login_error(error: ApiError) -> MeteorError {
    match error {
        // Meteor 3's ambiguous message for an unknown user and a wrong password alike.
        ApiError::LoginFailed => {
            MeteorError::new(403, "Something went wrong. Please check your credentials.")
        }
        ApiError::LoginRefused(refusal) => {
            let error = MeteorError::new(refusal.error.clone(), refusal.message);
            match &refusal.details {
                Some(details) => error.with_details(details.clone()),
                None => error,
            }
        }
        ApiError::LoginBlocked { by_address } => {
            let (code, what) = if by_address {
                ("error-login-blocked-for-ip", "IP")
            } else {
                ("error-login-blocked-for-user", "User")
            };
            MeteorError::new(
                code,
                format!("Login has been temporarily blocked for this {what}"),
            )
            .with_details(json!({"function": "Accounts.validateLoginAttempt"}))
        }
        _ => MeteorError::internal(),
    }
}
