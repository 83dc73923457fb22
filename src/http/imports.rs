//! The import routes besides `getLatestImportOperations`: the current operation, its state and
//! progress, starting and clearing imports, the importers, and importops' own write route
//! `import.operations.upsert`. All need `run-import`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value};

use super::AppState;
use super::body::{Fields, FromJson, JsonBody};
use super::error::{ApiError, json_response};
use super::guard::{Guarded, route};
use super::openapi::{self as api, True};
use super::params::NoQuery;
use crate::access::Caller;
use crate::domain::operation::{
    IMPORTERS, Operation, STATUSES, import_state, importer_by_key, revise,
};
use crate::domain::permission::RUN_IMPORT;
use crate::domain::time::{format_iso_ms, now_ms};
use crate::store::StreamError;

/// The current operation's document, parsed.
async fn current(state: &AppState) -> Result<Option<Map<String, Value>>, ApiError> {
    let Some(doc) = state.store.current_operation().await? else {
        return Ok(None);
    };
    match serde_json::from_str(&doc) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        _ => Err(ApiError::Internal(
            "a stored operation is not a JSON object".into(),
        )),
    }
}

route!(
    /// The checks of `getCurrentImportOperation`.
    GetCurrent {
        caller: Arc<Caller>,
        permission: Some(RUN_IMPORT),
        query: NoQuery,
        body: (),
        rate_limited: true,
    }
);

/// The current import operation
///
/// The operation with the newest `ts`, whatever its status. Needs `run-import`. Takes no query
/// parameter.
#[utoipa::path(
    get,
    path = "/api/v1/getCurrentImportOperation",
    operation_id = "getCurrentImportOperation",
    tag = "imports",
    security(("userId" = [], "authToken" = [])),
    responses(
        (status = 200, description = "The current operation, if any",
            body = api::CurrentImportOperation),
        (status = 400, body = api::BadRequest, description = "A query parameter was sent (the \
            route takes none): `error-invalid-params`"),
        (status = 403, response = api::PermissionDenied),
        (status = 429, response = api::RateLimited),
    ),
)]
pub async fn get_current(
    State(state): State<AppState>,
    _: Guarded<GetCurrent>,
) -> Result<Response, ApiError> {
    let body = match state.store.current_operation().await? {
        Some(doc) => format!(r#"{{"operation":{doc},"success":true}}"#),
        None => r#"{"success":true}"#.to_owned(),
    };
    Ok(json_response(StatusCode::OK, body))
}

route!(
    /// The checks of `import.status`.
    Status {
        caller: Arc<Caller>,
        permission: Some(RUN_IMPORT),
        query: (),
        body: (),
        rate_limited: true,
    }
);

/// The state of the current import
///
/// Derived from the current operation's status and validity as Rocket.Chat does. Needs
/// `run-import`. Query parameters are ignored (Rocket.Chat declares no query schema).
#[utoipa::path(
    get,
    path = "/api/v1/import.status",
    operation_id = "import.status",
    tag = "imports",
    security(("userId" = [], "authToken" = [])),
    responses(
        (status = 200, description = "The state, and the current operation if any",
            body = api::ImportStatus),
        (status = 403, response = api::PermissionDenied),
        (status = 429, response = api::RateLimited),
    ),
)]
pub async fn status(
    State(state): State<AppState>,
    _: Guarded<Status>,
) -> Result<Json<api::ImportStatus>, ApiError> {
    let operation = current(&state).await?;
    let state = match &operation {
        None => "none",
        Some(op) => {
            let status = op.get("status").and_then(Value::as_str).unwrap_or_default();
            let valid = op.get("valid").and_then(Value::as_bool).unwrap_or(false);
            import_state(status, valid)
        }
    };
    Ok(Json(api::ImportStatus {
        state,
        operation,
        success: True,
    }))
}

route!(
    /// The checks of `import.new`.
    New {
        caller: Arc<Caller>,
        permission: Some(RUN_IMPORT),
        query: (),
        body: (),
        rate_limited: true,
    }
);

/// Start a new import
///
/// Invalidates every valid operation (`valid: false`, `_updatedAt` now), then starts
/// `{type: "api", importerKey: "api", status: "importer_new", valid: true, user: <caller>}`.
/// Needs `run-import`. Takes no body.
#[utoipa::path(
    post,
    path = "/api/v1/import.new",
    operation_id = "import.new",
    tag = "imports",
    security(("userId" = [], "authToken" = [])),
    responses(
        (status = 200, description = "The new operation", body = api::OperationResponse),
        (status = 403, response = api::PermissionDenied),
        (status = 429, response = api::RateLimited),
    ),
)]
pub async fn new(
    State(state): State<AppState>,
    Guarded { caller, .. }: Guarded<New>,
) -> Result<Json<api::OperationResponse>, ApiError> {
    // Rocket.Chat's `newOperation` with the type `api` (docs/compatibility.md section 11).
    let op =
        crate::importer::workflow::new_operation_typed(&state.store, &caller.user_id, "api", "api")
            .await?;
    let operation: Value =
        serde_json::from_str(&op.doc).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(api::OperationResponse {
        operation,
        success: True,
    }))
}

route!(
    /// The checks of `import.clear`.
    Clear {
        caller: Arc<Caller>,
        permission: Some(RUN_IMPORT),
        query: (),
        body: (),
        rate_limited: true,
    }
);

/// Clear the current import
///
/// Invalidates every valid operation (`valid: false`, `_updatedAt` now). Needs `run-import`.
/// Takes no body.
#[utoipa::path(
    post,
    path = "/api/v1/import.clear",
    operation_id = "import.clear",
    tag = "imports",
    security(("userId" = [], "authToken" = [])),
    responses(
        (status = 200, description = "Done", body = api::Success),
        (status = 403, response = api::PermissionDenied),
        (status = 429, response = api::RateLimited),
    ),
)]
pub async fn clear(
    State(state): State<AppState>,
    _: Guarded<Clear>,
) -> Result<Json<api::Success>, ApiError> {
    let now = now_ms();
    state
        .store
        .invalidate_operations(&|doc| crate::importer::workflow::invalidate(doc, now), None)
        .await?;
    Ok(Json(api::Success::default()))
}

route!(
    /// The checks of `importers.list`.
    Importers {
        caller: Arc<Caller>,
        permission: Some(RUN_IMPORT),
        query: NoQuery,
        body: (),
        rate_limited: true,
    }
);

/// The importers
///
/// Rocket.Chat's importers, as a bare array. Needs `run-import`. Takes no query parameter.
#[utoipa::path(
    get,
    path = "/api/v1/importers.list",
    operation_id = "importers.list",
    tag = "imports",
    security(("userId" = [], "authToken" = [])),
    responses(
        (status = 200, description = "A bare JSON array (no `success`)", body = [api::Importer],
            example = json!([{"key": "csv", "name": "CSV"}, {"key": "slack", "name": "Slack"},
                {"key": "slack-users", "name": "Slack_Users"}])),
        (status = 400, body = api::BadRequest, description = "A query parameter was sent (the \
            route takes none): `error-invalid-params`"),
        (status = 403, response = api::PermissionDenied),
        (status = 429, response = api::RateLimited),
    ),
)]
pub async fn importers(_: Guarded<Importers>) -> Json<Vec<api::Importer>> {
    Json(
        IMPORTERS
            .iter()
            .filter(|i| i.visible)
            .map(|i| api::Importer {
                key: i.key,
                name: i.name,
            })
            .collect(),
    )
}

route!(
    /// The checks of `getImportProgress`.
    Progress {
        caller: Arc<Caller>,
        permission: Some(RUN_IMPORT),
        query: NoQuery,
        body: (),
        rate_limited: true,
    }
);

/// The current import's progress
///
/// The current operation's importer, status and counts. Needs `run-import`. Takes no query
/// parameter.
#[utoipa::path(
    get,
    path = "/api/v1/getImportProgress",
    operation_id = "getImportProgress",
    tag = "imports",
    security(("userId" = [], "authToken" = [])),
    responses(
        (status = 200, description = "The progress", body = api::ImportProgress),
        (status = 400, body = api::BadRequest, description = "There is no operation \
            (`error-operation-not-found`), the current operation's importer is not one \
            Rocket.Chat registers (`error-importer-not-defined`), or a query parameter was sent \
            (`error-invalid-params`)"),
        (status = 403, response = api::PermissionDenied),
        (status = 429, response = api::RateLimited),
    ),
)]
pub async fn progress(
    State(state): State<AppState>,
    _: Guarded<Progress>,
) -> Result<Json<api::ImportProgress>, ApiError> {
    Ok(Json(current_progress(&state).await?))
}

/// The current operation's progress, as `getImportProgress` answers it over REST and DDP
/// (the route and the method share it; the method leaves `success` out).
pub(crate) async fn current_progress(state: &AppState) -> Result<api::ImportProgress, ApiError> {
    // Rocket.Chat's Meteor errors here carry the method's name as `details`.
    let Some(op) = current(state).await? else {
        return Err(
            ApiError::meteor("error-operation-not-found", "Import Operation Not Found")
                .with_details("getImportProgress"),
        );
    };
    let key = op
        .get("importerKey")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(importer) = importer_by_key(key) else {
        return Err(ApiError::meteor(
            "error-importer-not-defined",
            &format!("The importer ({key}) has no import class defined."),
        )
        .with_details("getImportProgress"));
    };
    let count = |field: &str| {
        op.get("count")
            .and_then(|c| c.get(field))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    Ok(api::ImportProgress {
        key: importer.key,
        name: importer.name,
        step: op.get("status").cloned().unwrap_or(Value::Null),
        count: api::Counts {
            completed: count("completed"),
            total: count("total"),
            error: count("error"),
        },
        success: True,
    })
}

/// The body of `import.operations.upsert`: the operation's fields, with `_id` to update one.
pub struct UpsertBody(Map<String, Value>);

impl FromJson for UpsertBody {
    fn from_json(value: Value) -> Result<Self, String> {
        let Fields(fields) = Fields::of(value)?;
        if let Some(status) = fields.get("status")
            && !status.as_str().is_some_and(|s| STATUSES.contains(&s))
        {
            return Err(format!(
                "/status must be equal to one of the allowed values ({})",
                STATUSES.join(", ")
            ));
        }
        if let Some(count) = fields.get("count") {
            let Value::Object(counts) = count else {
                return Err("/count must be object".into());
            };
            if let Some((name, _)) = counts.iter().find(|(_, v)| v.as_u64().is_none()) {
                return Err(format!("/count/{name} must be a non-negative integer"));
            }
        }
        if let Some(id) = fields.get("_id")
            && !id.as_str().is_some_and(crate::domain::ids::is_document_id)
        {
            return Err("/_id must be a 17-character Meteor id or a 24-hex ObjectId".into());
        }
        Ok(UpsertBody(fields))
    }
}

route!(
    /// The checks of `import.operations.upsert`.
    Upsert {
        caller: Arc<Caller>,
        permission: Some(RUN_IMPORT),
        query: (),
        body: JsonBody<UpsertBody>,
        rate_limited: true,
    }
);

/// Create or change an operation (an importops extension)
///
/// Not part of Rocket.Chat's API: lets an import pipeline that is not Rocket.Chat report its
/// progress. Creates an operation, or with the `_id` of an existing one changes the fields
/// given; `_updatedAt` becomes now. Needs `run-import`.
#[utoipa::path(
    post,
    path = "/api/v1/import.operations.upsert",
    operation_id = "import.operations.upsert",
    tag = "imports",
    security(("userId" = [], "authToken" = [])),
    request_body(content = api::UpsertOperationRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The operation as stored", body = api::OperationResponse),
        (status = 400, body = api::BadRequest, description = "`error-invalid-params`: not JSON, \
            a field of the wrong type or value, or a new operation without `type`, \
            `importerKey` or `status`"),
        (status = 403, response = api::PermissionDenied),
        (status = 429, response = api::RateLimited),
    ),
)]
pub async fn upsert(
    State(state): State<AppState>,
    Guarded {
        caller,
        body: JsonBody(UpsertBody(fields)),
        ..
    }: Guarded<Upsert>,
) -> Result<Json<api::OperationResponse>, ApiError> {
    let now = now_ms();
    // The stored version (if any) is read and replaced in one transaction: concurrent
    // upserts of one `_id` each keep their fields (RELIABILITY.md, lost updates).
    let build = |existing: Option<&str>| {
        let mut fields = fields.clone();
        match existing {
            Some(doc) => {
                fields.shift_remove("_updatedAt");
                revise(doc, fields, now)
            }
            None => {
                let date = Value::String(format_iso_ms(now).unwrap_or_default());
                fields.entry("valid").or_insert(Value::Bool(true));
                fields
                    .entry("user")
                    .or_insert_with(|| Value::String(caller.user_id.clone()));
                fields.insert("_updatedAt".into(), date);
                Operation::from_document(Value::Object(fields), now)
            }
        }
        .map_err(|e| e.0)
    };
    let op = match fields.get("_id").and_then(Value::as_str) {
        Some(id) => state
            .store
            .revise_operation(id, &build)
            .await
            .map_err(|e| match e {
                StreamError::Input(message) => ApiError::invalid_body(message),
                StreamError::Store(e) => e.into(),
            })?,
        None => {
            let op = build(None).map_err(ApiError::invalid_body)?;
            state
                .store
                .upsert_operations(std::slice::from_ref(&op))
                .await?;
            op
        }
    };
    let operation: Value =
        serde_json::from_str(&op.doc).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(api::OperationResponse {
        operation,
        success: True,
    }))
}
