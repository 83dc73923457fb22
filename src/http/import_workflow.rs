//! The routes that drive an import (docs/compatibility.md section 11): uploading or
//! downloading an archive, what it holds, starting the import, the pending-files and
//! pending-avatars importers, and `import.addUsers` / `import.run`. All need `run-import`;
//! each hands its action to `importer::workflow`, which the realtime methods share.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::AppState;
use super::body::{FromJson, JsonBody, LargeField, LargeJsonBody};
use super::error::{ApiError, json_response};
use super::guard::{Guarded, route};
use super::openapi as api;
use super::params::NoQuery;
use crate::access::Caller;
use crate::domain::permission::RUN_IMPORT;
use crate::importer::workflow;

const ADDITIONAL: &str = "must NOT have additional properties";

/// ajv's string type with `coerceTypes`: numbers and booleans become their text, `null` the
/// empty string; arrays and objects are refused.
fn coerce_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

/// An object of required string properties and no others, validated with every error listed
/// (the shared ajv's `allErrors`) in ajv's order: required, additional, then types.
fn required_strings(value: Value, names: &[&str]) -> Result<Vec<String>, String> {
    let Value::Object(fields) = value else {
        return Err("must be object".into());
    };
    let mut errors = Vec::new();
    for name in names {
        if !fields.contains_key(*name) {
            errors.push(format!("must have required property '{name}'"));
        }
    }
    for key in fields.keys() {
        if !names.contains(&key.as_str()) {
            errors.push(ADDITIONAL.to_owned());
        }
    }
    let mut out = Vec::new();
    for name in names {
        if let Some(value) = fields.get(*name) {
            match coerce_string(value) {
                Some(s) => out.push(s),
                None => errors.push(format!("/{name} must be string")),
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors.join("\n"))
    }
}

/// The body of `uploadImportFile`; `binaryContent` itself is kept apart (`LargeJsonBody`).
pub struct UploadBody {
    _binary_content: String,
    content_type: String,
    file_name: String,
    importer_key: String,
}

impl FromJson for UploadBody {
    fn from_json(value: Value) -> Result<Self, String> {
        let mut v = required_strings(
            value,
            &["binaryContent", "contentType", "fileName", "importerKey"],
        )?
        .into_iter();
        let mut next = || v.next().unwrap_or_default();
        Ok(UploadBody {
            _binary_content: next(),
            content_type: next(),
            file_name: next(),
            importer_key: next(),
        })
    }
}

/// `binaryContent` stays where it lies in the body's bytes (`LargeJsonBody`): the body is
/// read once, and decoded from there.
impl LargeField for UploadBody {
    const LARGE_FIELD: &'static str = "binaryContent";
}

/// The body of `downloadPublicImportFile`.
pub struct DownloadBody {
    file_url: String,
    importer_key: String,
}

impl FromJson for DownloadBody {
    fn from_json(value: Value) -> Result<Self, String> {
        let mut v = required_strings(value, &["fileUrl", "importerKey"])?.into_iter();
        Ok(DownloadBody {
            file_url: v.next().unwrap_or_default(),
            importer_key: v.next().unwrap_or_default(),
        })
    }
}

/// The body of `startImport`: `input`, checked as Rocket.Chat's own validator does (the first
/// error only), with booleans coerced.
pub struct StartBody(Value);

fn check_choice(input: &mut Map<String, Value>, key: &str) -> Result<(), String> {
    let Some(choice) = input.get_mut(key) else {
        return Ok(());
    };
    let Value::Object(choice) = choice else {
        return Err(format!("/input/{key} must be object"));
    };
    if let Some(all) = choice.get_mut("all") {
        *all = match all {
            Value::Bool(b) => Value::Bool(*b),
            Value::String(s) if s == "true" => Value::Bool(true),
            Value::String(s) if s == "false" || s.is_empty() => Value::Bool(false),
            Value::Number(n) if n.as_f64() == Some(1.0) => Value::Bool(true),
            Value::Number(n) if n.as_f64() == Some(0.0) => Value::Bool(false),
            Value::Null => Value::Bool(false),
            _ => return Err(format!("/input/{key}/all must be boolean")),
        };
    }
    if let Some(list) = choice.get_mut("list") {
        let Value::Array(items) = list else {
            return Err(format!("/input/{key}/list must be array"));
        };
        for (i, item) in items.iter_mut().enumerate() {
            match coerce_string(item) {
                Some(s) => *item = Value::String(s),
                None => return Err(format!("/input/{key}/list/{i} must be string")),
            }
        }
    }
    Ok(())
}

impl FromJson for StartBody {
    fn from_json(value: Value) -> Result<Self, String> {
        let Value::Object(mut fields) = value else {
            return Err("must be object".into());
        };
        let Some(mut input) = fields.shift_remove("input") else {
            return Err("must have required property 'input'".into());
        };
        if !fields.is_empty() {
            return Err(ADDITIONAL.into());
        }
        let Value::Object(map) = &mut input else {
            return Err("/input must be object".into());
        };
        for key in ["users", "channels", "contacts"] {
            check_choice(map, key)?;
        }
        Ok(StartBody(input))
    }
}

/// A body that must be an empty object (`downloadPendingFiles`, `downloadPendingAvatars`).
pub struct EmptyBody;

impl FromJson for EmptyBody {
    fn from_json(value: Value) -> Result<Self, String> {
        match value {
            Value::Object(fields) if fields.is_empty() => Ok(EmptyBody),
            Value::Object(_) => Err(ADDITIONAL.into()),
            _ => Err("must be object".into()),
        }
    }
}

/// A body read as `{}` when the client sends none (the pending routes are called without
/// one): an empty or missing body is the empty object, anything else must be JSON `{}`.
pub struct OptionalEmptyBody;

impl super::body::FromBody for OptionalEmptyBody {
    async fn from_body(
        headers: &axum::http::HeaderMap,
        body: axum::body::Body,
    ) -> Result<Self, ApiError> {
        let announced_empty = headers
            .get(axum::http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() == b"0");
        let has_type = headers.contains_key(axum::http::header::CONTENT_TYPE);
        if announced_empty || !has_type {
            let bytes = axum::body::to_bytes(body, super::body::MAX_BODY_BYTES)
                .await
                .map_err(|_| ApiError::PayloadTooLarge)?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(OptionalEmptyBody);
            }
            return Err(ApiError::invalid_body(
                "the request body must be JSON (Content-Type: application/json) or a form \
                 (application/x-www-form-urlencoded)",
            ));
        }
        JsonBody::<EmptyBody>::from_body(headers, body)
            .await
            .map(|_| OptionalEmptyBody)
    }
}

/// The body of `import.addUsers`: `users`, checked as Rocket.Chat's own validator does (the
/// first error only).
pub struct AddUsersBody(Vec<Value>);

impl FromJson for AddUsersBody {
    fn from_json(value: Value) -> Result<Self, String> {
        let Value::Object(mut fields) = value else {
            return Err("must be object".into());
        };
        let Some(users) = fields.shift_remove("users") else {
            return Err("must have required property 'users'".into());
        };
        if !fields.is_empty() {
            return Err(ADDITIONAL.into());
        }
        let Value::Array(mut users) = users else {
            return Err("/users must be array".into());
        };
        for (i, user) in users.iter_mut().enumerate() {
            let Value::Object(user) = user else {
                return Err(format!("/users/{i} must be object"));
            };
            for key in ["emails", "importIds"] {
                if !user.contains_key(key) {
                    return Err(format!("/users/{i} must have required property '{key}'"));
                }
            }
            for key in ["emails", "importIds", "roles"] {
                match user.get_mut(key) {
                    None | Some(Value::Null) if key == "roles" => {}
                    Some(Value::Array(items)) => {
                        for (j, item) in items.iter_mut().enumerate() {
                            match coerce_string(item) {
                                Some(s) => *item = Value::String(s),
                                None => {
                                    return Err(format!("/users/{i}/{key}/{j} must be string"));
                                }
                            }
                        }
                    }
                    _ => return Err(format!("/users/{i}/{key} must be array")),
                }
            }
            for key in [
                "username",
                "name",
                "avatarUrl",
                "statusText",
                "type",
                "bio",
                "password",
            ] {
                match user.get(key) {
                    None | Some(Value::Null) => {}
                    Some(value) => match coerce_string(value) {
                        Some(s) => {
                            user.insert(key.into(), Value::String(s));
                        }
                        None => return Err(format!("/users/{i}/{key} must be string")),
                    },
                }
            }
            match user.get("utcOffset") {
                None | Some(Value::Null) | Some(Value::Number(_)) => {}
                Some(Value::String(s)) if s.parse::<f64>().is_ok() => {
                    let n: f64 = s.parse().unwrap_or_default();
                    user.insert("utcOffset".into(), json!(n));
                }
                Some(_) => return Err(format!("/users/{i}/utcOffset must be number")),
            }
            match user.get("deleted") {
                None | Some(Value::Null) | Some(Value::Bool(_)) => {}
                Some(Value::String(s)) if s == "true" || s == "false" => {
                    let b = s == "true";
                    user.insert("deleted".into(), Value::Bool(b));
                }
                Some(_) => return Err(format!("/users/{i}/deleted must be boolean")),
            }
        }
        Ok(AddUsersBody(users))
    }
}

/// Documentation of the request bodies (the checks are the `FromJson` types above).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct UploadImportFileRequest {
    /// The file's content in base64 (read leniently, as Node's `Buffer.from(s, 'base64')`)
    #[schema(schema_with = api::coerced_string)]
    binary_content: String,
    /// Stored as the operation's `contentType` when not empty
    #[schema(schema_with = api::coerced_string, examples("application/zip"))]
    content_type: String,
    /// The file's name; stored as `<date>_<user id>_<name>` in the import folder
    #[schema(schema_with = api::coerced_string, examples("export.zip"))]
    file_name: String,
    /// `csv`, `slack`, `slack-users`, ...
    #[schema(schema_with = api::coerced_string, examples("csv"))]
    importer_key: String,
}

#[derive(utoipa::ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct DownloadPublicImportFileRequest {
    /// An `http`/`https` URL, or a path under the server's import folder
    #[schema(schema_with = api::coerced_string, examples("https://files.example.com/export.zip"))]
    file_url: String,
    #[schema(schema_with = api::coerced_string, examples("slack"))]
    importer_key: String,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct StartImportRequest {
    /// `{users, channels, contacts}`, each `{all?: boolean, list?: string[]}`: `all: true`
    /// imports every record of the kind, otherwise those whose id is in `list`
    #[schema(value_type = Object, example = json!({"users": {"all": true}, "channels": {"all": false, "list": ["__directMessages__"]}}))]
    input: Value,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct AddUsersRequest {
    /// Users, each with `emails` and `importIds` (string arrays) and optionally `username`,
    /// `name`, `avatarUrl`, `statusText`, `type`, `bio`, `password`, `utcOffset`, `deleted`,
    /// `roles`
    #[schema(value_type = Vec<Object>, example = json!([{"emails": ["jane@example.com"], "importIds": ["jane"], "username": "jane"}]))]
    users: Vec<Value>,
}

/// `getImportFileData`'s selection (or `{waiting: true, success: true}`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ImportFileData {
    /// `true` while the file is downloaded or prepared (then no other field but `success`)
    waiting: Option<bool>,
    #[schema(examples("CSV"))]
    name: Option<String>,
    /// `{user_id, username, email, is_deleted, is_bot, do_import, is_email_taken}`
    #[schema(value_type = Option<Vec<Object>>)]
    users: Option<Vec<Value>>,
    /// `{channel_id, name, is_archived, do_import, is_private, is_direct}`; direct messages as
    /// one entry `__directMessages__`
    #[schema(value_type = Option<Vec<Object>>)]
    channels: Option<Vec<Value>>,
    message_count: Option<u64>,
    /// `{id, name, emails, phones, do_import}`
    #[schema(value_type = Option<Vec<Object>>)]
    contacts: Option<Vec<Value>>,
    success: bool,
}

/// `downloadPendingFiles` / `downloadPendingAvatars`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct PendingCount {
    pub count: u64,
    pub success: bool,
}

macro_rules! import_route {
    ($name:ident, $query:ty, $body:ty) => {
        route!(
            /// The checks of an import workflow route.
            $name {
                caller: Arc<Caller>,
                permission: Some(RUN_IMPORT),
                query: $query,
                body: $body,
                rate_limited: true,
            }
        );
    };
}

import_route!(Upload, (), LargeJsonBody<UploadBody>);
import_route!(Download, (), JsonBody<DownloadBody>);
import_route!(FileData, NoQuery, ());
import_route!(Start, (), JsonBody<StartBody>);
import_route!(PendingFiles, (), OptionalEmptyBody);
import_route!(PendingAvatars, (), OptionalEmptyBody);
import_route!(AddUsers, (), JsonBody<AddUsersBody>);
import_route!(Run, (), ());

/// Upload an archive to import
///
/// Starts a new operation for the importer (every other one invalidated, staged records
/// deleted), stores the decoded file in the import folder, and answers once the operation is
/// at `importer_file_loaded`. Needs `run-import`.
#[utoipa::path(
    post,
    path = "/api/v1/uploadImportFile",
    operation_id = "uploadImportFile",
    tag = "imports",
    security(("userId" = [], "authToken" = [])),
    request_body(content = UploadImportFileRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Stored", body = api::Success),
        (status = 400, body = api::ImportBadRequest, description = "`invalid-params` (a property \
            missing, of the wrong type, or unknown), `error-importer-not-defined` (an unknown \
            `importerKey`), or the file larger than `--import-max-bytes`"),
        (status = 403, response = api::PermissionDenied),
        (status = 429, response = api::RateLimited),
    ),
)]
pub async fn upload(
    State(state): State<AppState>,
    Guarded {
        caller,
        body: LargeJsonBody { body, large },
        ..
    }: Guarded<Upload>,
) -> Result<Json<api::Success>, ApiError> {
    workflow::upload_import_file(
        &state,
        &caller,
        large.as_str(),
        &body.content_type,
        &body.file_name,
        &body.importer_key,
    )
    .await?;
    Ok(Json(api::Success::default()))
}

/// Download an archive to import
///
/// Starts a new operation for the importer and fetches `fileUrl` (an `http`/`https` URL,
/// under Rocket.Chat's SSRF rules and `--import-url-allowlist`) or copies a local path (only
/// under `--import-file-dir`). Needs `run-import`.
#[utoipa::path(
    post,
    path = "/api/v1/downloadPublicImportFile",
    operation_id = "downloadPublicImportFile",
    tag = "imports",
    security(("userId" = [], "authToken" = [])),
    request_body(content = DownloadPublicImportFileRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Downloading (or copied)", body = api::Success),
        (status = 400, body = api::ImportBadRequest, description = "`invalid-params`, \
            `error-importer-not-defined`, `error-import-file-missing` (a path that does not \
            exist under the import folder), `error-ssrf-validation-failed` and other download \
            failures (the operation is then `importer_import_failed`)"),
        (status = 403, response = api::PermissionDenied),
        (status = 429, response = api::RateLimited),
    ),
)]
pub async fn download(
    State(state): State<AppState>,
    Guarded {
        caller,
        body: JsonBody(body),
        ..
    }: Guarded<Download>,
) -> Result<Json<api::Success>, ApiError> {
    workflow::download_public_import_file(&state, &caller, &body.file_url, &body.importer_key)
        .await?;
    Ok(Json(api::Success::default()))
}

/// What the archive holds
///
/// `{waiting: true}` while the file is downloaded or prepared; otherwise prepares the file if
/// it was not yet (the operation moves through the importer's `importer_preparing_*` steps)
/// and answers the selection, the operation then at `importer_user_selection`. Needs
/// `run-import`. Takes no query parameter.
#[utoipa::path(
    get,
    path = "/api/v1/getImportFileData",
    operation_id = "getImportFileData",
    tag = "imports",
    security(("userId" = [], "authToken" = [])),
    responses(
        (status = 200, description = "The selection, or `{waiting: true}`", body = ImportFileData),
        (status = 400, body = api::ImportBadRequest, description = "`error-operation-not-found`, \
            `error-importer-not-defined`, `error-import-operation-invalid`, the importer's \
            error for a file it cannot read, or a query parameter (`error-invalid-params`)"),
        (status = 403, response = api::PermissionDenied),
        (status = 429, response = api::RateLimited),
    ),
)]
pub async fn file_data(
    State(state): State<AppState>,
    Guarded { caller, .. }: Guarded<FileData>,
) -> Result<Response, ApiError> {
    let mut data = workflow::get_import_file_data(&state, &caller).await?;
    if let Value::Object(fields) = &mut data {
        fields.insert("success".into(), Value::Bool(true));
    }
    Ok(json_response(StatusCode::OK, data.to_string()))
}

/// Start importing
///
/// Moves the current operation to `importer_importing_started` and answers; the import goes
/// on in the background (`importer_importing_users`, `_contacts`, `_channels`, `_messages`,
/// `importer_finishing`, `importer_done`, or `importer_import_failed`). Needs `run-import`.
#[utoipa::path(
    post,
    path = "/api/v1/startImport",
    operation_id = "startImport",
    tag = "imports",
    security(("userId" = [], "authToken" = [])),
    request_body(content = StartImportRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Started", body = api::Success),
        (status = 400, body = api::ImportBadRequest, description = "`invalid-params` (the first \
            schema error), `error-operation-not-found`, `error-importer-not-defined`"),
        (status = 403, response = api::PermissionDenied),
        (status = 429, response = api::RateLimited),
    ),
)]
pub async fn start(
    State(state): State<AppState>,
    Guarded {
        caller,
        body: JsonBody(StartBody(input)),
        ..
    }: Guarded<Start>,
) -> Result<Json<api::Success>, ApiError> {
    workflow::start_import(&state, &caller, input).await?;
    Ok(Json(api::Success::default()))
}

/// Download the files of imported messages
///
/// Starts a `Pending Files` operation (every other one invalidated, staged records deleted)
/// and answers how many files are to download. Needs `run-import`.
#[utoipa::path(
    post,
    path = "/api/v1/downloadPendingFiles",
    operation_id = "downloadPendingFiles",
    tag = "imports",
    security(("userId" = [], "authToken" = [])),
    responses(
        (status = 200, description = "How many files", body = PendingCount,
            example = json!({"count": 0, "success": true})),
        (status = 400, body = api::ImportBadRequest, description = "A body other than `{}`: \
            `invalid-params`"),
        (status = 403, response = api::PermissionDenied),
        (status = 429, response = api::RateLimited),
    ),
)]
pub async fn pending_files(
    State(state): State<AppState>,
    Guarded { caller, .. }: Guarded<PendingFiles>,
) -> Result<Json<PendingCount>, ApiError> {
    let count = workflow::download_pending(&state, &caller, "pending-files").await?;
    Ok(Json(PendingCount {
        count,
        success: true,
    }))
}

/// Download the avatars of imported users
///
/// Starts a `Pending Avatars` operation (every other one invalidated, staged records deleted)
/// and answers how many users have an avatar URL left by an import. Needs `run-import`.
#[utoipa::path(
    post,
    path = "/api/v1/downloadPendingAvatars",
    operation_id = "downloadPendingAvatars",
    tag = "imports",
    security(("userId" = [], "authToken" = [])),
    responses(
        (status = 200, description = "How many avatars", body = PendingCount,
            example = json!({"count": 0, "success": true})),
        (status = 400, body = api::ImportBadRequest, description = "A body other than `{}`: \
            `invalid-params`"),
        (status = 403, response = api::PermissionDenied),
        (status = 429, response = api::RateLimited),
    ),
)]
pub async fn pending_avatars(
    State(state): State<AppState>,
    Guarded { caller, .. }: Guarded<PendingAvatars>,
) -> Result<Json<PendingCount>, ApiError> {
    let count = workflow::download_pending(&state, &caller, "pending-avatars").await?;
    Ok(Json(PendingCount {
        count,
        success: true,
    }))
}

/// Add users to the current `api` import
///
/// Stages the users for the current operation (made by `import.new`), which moves to
/// `importer_user_selection`. Needs `run-import`.
#[utoipa::path(
    post,
    path = "/api/v1/import.addUsers",
    operation_id = "import.addUsers",
    tag = "imports",
    security(("userId" = [], "authToken" = [])),
    request_body(content = AddUsersRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Staged", body = api::Success),
        (status = 400, body = api::ImportBadRequest, description = "`invalid-params` (the first \
            schema error), `Import operation not initialized.`, `The current import operation \
            can not receive new data.`, `The current import operation is already finished.`, \
            `Users are missing required data.`, `One or more of the users have been assigned \
            invalid roles.`"),
        (status = 403, response = api::PermissionDenied),
        (status = 429, response = api::RateLimited),
    ),
)]
pub async fn add_users(
    State(state): State<AppState>,
    Guarded {
        body: JsonBody(AddUsersBody(users)),
        ..
    }: Guarded<AddUsers>,
) -> Result<Json<api::Success>, ApiError> {
    workflow::add_users(&state, users).await?;
    Ok(Json(api::Success::default()))
}

/// Import the users added
///
/// Imports every user staged by `import.addUsers` in the background, each inserted as a new
/// user. Needs `run-import`. Takes no body.
#[utoipa::path(
    post,
    path = "/api/v1/import.run",
    operation_id = "import.run",
    tag = "imports",
    security(("userId" = [], "authToken" = [])),
    responses(
        (status = 200, description = "Started", body = api::Success),
        (status = 400, body = api::ImportBadRequest, description = "`error-operation-not-found`, \
            `error-invalid-operation-status`, `error-importer-not-defined`"),
        (status = 403, response = api::PermissionDenied),
        (status = 429, response = api::RateLimited),
    ),
)]
pub async fn run(
    State(state): State<AppState>,
    _: Guarded<Run>,
) -> Result<Json<api::Success>, ApiError> {
    workflow::run_api_import(&state).await?;
    Ok(Json(api::Success::default()))
}
