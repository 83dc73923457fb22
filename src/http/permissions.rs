//! `permissions.listAll` and `permissions.update`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::Value;

use super::AppState;
use super::body::{Fields, FromJson, JsonBody, strings};
use super::error::ApiError;
use super::guard::{Guarded, route};
use super::openapi::{self as api, True};
use super::params::UpdatedSince;
use crate::access::Caller;
use crate::domain::permission::ACCESS_PERMISSIONS;
use crate::domain::time::format_iso_ms;
use crate::store::Permission;

fn permission_answer(p: &Permission) -> api::Permission {
    api::Permission {
        id: p.id.clone(),
        roles: p.roles.clone(),
        updated_at: format_iso_ms(p.updated_at_ms),
    }
}

route!(
    /// The checks of `permissions.listAll`.
    ListAll {
        caller: Arc<Caller>,
        permission: None,
        query: UpdatedSince,
        body: (),
        rate_limited: true,
    }
);

/// List the permissions
///
/// Every permission with the roles that hold it, or with `updatedSince` those changed after
/// that date. Any logged-in user may read them.
#[utoipa::path(
    get,
    path = "/api/v1/permissions.listAll",
    operation_id = "permissions.listAll",
    tag = "permissions",
    security(("userId" = [], "authToken" = [])),
    params(
        ("updatedSince" = Option<String>, Query, format = DateTime,
            description = "Only the permissions changed after this date, in a form \
            JavaScript's `Date.parse` reads (`2021-10-27T11:26:24.430Z`, `2021-10-27`, \
            `Wed, 27 Oct 2021 11:26:24 GMT`, ...); empty is none; no other query parameter is \
            accepted"),
    ),
    responses(
        (status = 200, description = "The permissions", body = api::PermissionsListAll),
        (status = 400, body = api::BadRequest, description = "`updatedSince` is not a date \
            (`error-roomId-param-invalid`, as Rocket.Chat says), or another query parameter was \
            sent (`error-invalid-params`)"),
        (status = 429, response = api::RateLimited),
    ),
)]
pub async fn list_all(
    State(state): State<AppState>,
    Guarded {
        query: UpdatedSince(since),
        ..
    }: Guarded<ListAll>,
) -> Result<Json<api::PermissionsListAll>, ApiError> {
    let update: Vec<api::Permission> = state
        .store
        .list_permissions()
        .await?
        .iter()
        .filter(|p| since.is_none_or(|since| p.updated_at_ms > since))
        .map(permission_answer)
        .collect();
    // importops never deletes a permission, so nothing is ever removed.
    Ok(Json(api::PermissionsListAll {
        update,
        remove: [],
        success: True,
    }))
}

/// `{permissions: [{_id, roles: [...]}]}`.
pub struct UpdateBody {
    changes: Vec<(String, Vec<String>)>,
}

impl FromJson for UpdateBody {
    fn from_json(value: Value) -> Result<Self, String> {
        let mut f = Fields::of(value)?;
        let Some(Value::Array(items)) = f.take("permissions") else {
            return Err("must have required property 'permissions' (an array)".into());
        };
        let changes = items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                let mut p = Fields::of(item).map_err(|e| format!("/permissions/{i} {e}"))?;
                let id = p
                    .string("_id")
                    .map_err(|e| format!("/permissions/{i} {e}"))?;
                let roles = match p.take("roles") {
                    Some(roles) => {
                        strings(roles).map_err(|e| format!("/permissions/{i}/roles{e}"))?
                    }
                    None => {
                        return Err(format!(
                            "/permissions/{i} must have required property 'roles'"
                        ));
                    }
                };
                if let Some((later, earlier)) = duplicate(&roles) {
                    return Err(format!(
                        "/permissions/{i}/roles must NOT have duplicate items (items ## {later} and {earlier} are identical)"
                    ));
                }
                Ok((id, roles))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(UpdateBody { changes })
    }
}

/// The first pair of equal items as the schema's `uniqueItems` reports it (scanning from the
/// end): the later index, then the earlier one.
fn duplicate(items: &[String]) -> Option<(usize, usize)> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, item) in items.iter().enumerate().rev() {
        if let Some(&later) = seen.get(item.as_str()) {
            return Some((later, i));
        }
        seen.insert(item, i);
    }
    None
}

route!(
    /// The checks of `permissions.update`.
    Update {
        caller: Arc<Caller>,
        permission: Some(ACCESS_PERMISSIONS),
        query: (),
        body: JsonBody<UpdateBody>,
        rate_limited: true,
    }
);

/// Change which roles hold permissions
///
/// Needs `access-permissions`. Sets the roles of each permission given; all or nothing.
#[utoipa::path(
    post,
    path = "/api/v1/permissions.update",
    operation_id = "permissions.update",
    tag = "permissions",
    security(("userId" = [], "authToken" = [])),
    request_body(content = api::PermissionsUpdateRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Every permission, after the change",
            body = api::PermissionsUpdateResponse),
        (status = 400, body = api::BadRequest, description = "`error-invalid-params` (not JSON, \
            a missing or mistyped field, a role repeated), `Invalid permission` \
            (`error-invalid-permission`: a permission that does not exist, or one given twice) \
            or `Invalid role` (`error-invalid-role`: a role that does not exist); nothing is \
            changed"),
        (status = 403, response = api::PermissionDenied),
        (status = 429, response = api::RateLimited),
    ),
)]
pub async fn update(
    State(state): State<AppState>,
    Guarded {
        body: JsonBody(body),
        ..
    }: Guarded<Update>,
) -> Result<Json<api::PermissionsUpdateResponse>, ApiError> {
    // Rocket.Chat looks the permissions up by id and compares the counts, so an id that does
    // not exist, or one given twice, is an invalid permission; then the same for the distinct
    // roles (docs/compatibility.md#4-4-permissions).
    let existing = state.store.list_permissions().await?;
    let mut ids = HashSet::new();
    if !body
        .changes
        .iter()
        .all(|(id, _)| ids.insert(id.as_str()) && existing.iter().any(|p| &p.id == id))
    {
        return Err(ApiError::failure(
            "error-invalid-permission",
            "Invalid permission",
        ));
    }
    let roles = state.store.list_roles().await?;
    if body
        .changes
        .iter()
        .flat_map(|(_, r)| r)
        .any(|r| !roles.contains(r))
    {
        return Err(ApiError::failure("error-invalid-role", "Invalid role"));
    }
    state.store.set_permissions(&body.changes).await?;
    let all: Vec<api::Permission> = state
        .store
        .list_permissions()
        .await?
        .iter()
        .map(permission_answer)
        .collect();
    Ok(Json(api::PermissionsUpdateResponse {
        permissions: all,
        success: True,
    }))
}
