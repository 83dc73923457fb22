//! Rocket.Chat's realtime API over HTTP: `GET /websocket` (Meteor DDP, served by
//! `crate::ddp::session`) and DDP over REST, `POST /api/v1/method.call/:method` and
//! `POST /api/v1/method.callAnon/:method`, answered as Rocket.Chat 8 answers them
//! (docs/compatibility.md, section 13).

use std::sync::Arc;

use axum::Extension;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::body::{Fields, FromJson, JsonBody};
use super::error::{ApiError, json_response};
use super::guard::{Guarded, route};
use super::openapi as api;
use super::rate_limit::ClientAddress;
use crate::access::Caller;
use crate::connections::ConnectionSlot;
use crate::ddp::methods::{self, Context, Credentials};
use crate::ddp::{result_message, session};

/// `GET /websocket`: Rocket.Chat's realtime API, Meteor's DDP over a WebSocket (each text
/// frame one EJSON message). Not in the OpenAPI document, which describes HTTP operations. A
/// request that asks for no upgrade gets a 400 in the API's shape.
pub async fn websocket(
    State(state): State<AppState>,
    ClientAddress(client): ClientAddress,
    slot: Option<Extension<ConnectionSlot>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            let body = json!({"success": false, "error": rejection.body_text()});
            return json_response(StatusCode::BAD_REQUEST, body.to_string());
        }
    };
    let held = slot.map(|Extension(slot)| slot.hold());
    upgrade
        .max_message_size(session::MAX_MESSAGE_BYTES)
        .max_frame_size(session::MAX_MESSAGE_BYTES)
        // The library's default read buffer (128 KiB, allocated up front) would make each
        // idle subscriber cost that much; DDP messages are small and the buffer grows for
        // the rare large one.
        .read_buffer_size(session::READ_BUFFER_BYTES)
        .on_upgrade(move |socket| session::serve(socket, state, client, held))
        .into_response()
}

/// The body of `method.call`: `{"message": "<a DDP method message, EJSON text>"}` and nothing
/// else (Rocket.Chat's `isMeteorCall`).
pub struct MethodCallBody(String);

impl FromJson for MethodCallBody {
    fn from_json(value: Value) -> Result<Self, String> {
        let Fields(mut fields) = Fields::of(value)?;
        let message = fields.shift_remove("message");
        if !fields.is_empty() {
            return Err("must NOT have additional properties".into());
        }
        match message {
            Some(Value::String(message)) => Ok(MethodCallBody(message)),
            Some(_) => Err("/message must be string".into()),
            None => Err("must have required property 'message'".into()),
        }
    }
}

route!(
    /// The checks of `method.call`: a session, no rate limit of the API's own.
    MethodCall {
        caller: Arc<Caller>,
        permission: None,
        query: (),
        body: JsonBody<MethodCallBody>,
        rate_limited: false,
    }
);

route!(
    /// The checks of `method.callAnon`: credentials are optional (read by the handler).
    MethodCallAnon {
        caller: (),
        permission: None,
        query: (),
        body: JsonBody<MethodCallBody>,
        rate_limited: false,
    }
);

/// Call a Meteor method over REST
///
/// Runs the DDP method message in `message` (its `method` and `params`; the path's method is
/// not used) as the caller, and answers the DDP `result` message as text in `message`:
/// `200` with `success: true`, or `400` with `success: false` when the method threw
/// (Rocket.Chat 8). Methods: `login` and the six import methods (docs/compatibility.md, section 13).
#[utoipa::path(
    post,
    path = "/api/v1/method.call/{method}",
    operation_id = "method.call",
    tag = "realtime",
    security(("userId" = [], "authToken" = [])),
    params(("method" = String, Path, description = "The method's name (not used)")),
    request_body(content = api::MethodCallRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The method's result, as a DDP `result` message in text",
            body = api::MethodCallAnswer,
            example = json!({"message": "{\"msg\":\"result\",\"id\":\"1\",\"result\":[]}", "success": true})),
        (status = 400, description = "`message` is missing or not a string, another field was \
            sent (`invalid-params`), or the method threw: its DDP `result` message with `error`",
            body = api::MethodCallRefused),
    ),
)]
pub async fn method_call(
    State(state): State<AppState>,
    ClientAddress(client): ClientAddress,
    headers: HeaderMap,
    _method: Path<String>,
    Guarded {
        body: JsonBody(MethodCallBody(message)),
        ..
    }: Guarded<MethodCall>,
) -> Result<Response, ApiError> {
    let user = credentials(&headers);
    run(&state, client, user.as_ref(), &message).await
}

/// Call a Meteor method over REST without logging in
///
/// `method.call` for callers that may have no session: with `X-User-Id` and `X-Auth-Token`
/// the method runs as that user, otherwise as no one (the import methods then answer
/// `error-invalid-user`). A password `login` goes this way.
#[utoipa::path(
    post,
    path = "/api/v1/method.callAnon/{method}",
    operation_id = "method.callAnon",
    tag = "realtime",
    params(("method" = String, Path, description = "The method's name (not used)")),
    request_body(content = api::MethodCallRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The method's result, as a DDP `result` message in text",
            body = api::MethodCallAnswer),
        (status = 400, description = "`message` is missing or not a string, another field was \
            sent (`invalid-params`), or the method threw: its DDP `result` message with `error`",
            body = api::MethodCallRefused),
    ),
)]
pub async fn method_call_anon(
    State(state): State<AppState>,
    ClientAddress(client): ClientAddress,
    headers: HeaderMap,
    _method: Path<String>,
    Guarded {
        body: JsonBody(MethodCallBody(message)),
        ..
    }: Guarded<MethodCallAnon>,
) -> Result<Response, ApiError> {
    let user = credentials(&headers);
    run(&state, client, user.as_ref(), &message).await
}

fn credentials(headers: &HeaderMap) -> Option<Credentials> {
    Some(Credentials {
        user_id: super::auth::user_id(headers)?.to_owned(),
        token: super::auth::auth_token(headers)?.to_owned(),
    })
}

/// Runs the DDP method message `message` and answers Rocket.Chat's `mountResult`.
async fn run(
    state: &AppState,
    client: std::net::IpAddr,
    user: Option<&Credentials>,
    message: &str,
) -> Result<Response, ApiError> {
    let parsed: Value = serde_json::from_str(message)
        .map_err(|_| ApiError::failure("invalid-params", "message must be a DDP method message"))?;
    let id = parsed.get("id").and_then(Value::as_str).unwrap_or_default();
    let Some(name) = parsed.get("method").and_then(Value::as_str) else {
        return Err(ApiError::failure(
            "invalid-params",
            "message must be a DDP method message",
        ));
    };
    let params = match parsed.get("params") {
        Some(Value::Array(params)) => params.as_slice(),
        _ => &[],
    };
    let ctx = Context {
        state,
        user,
        client,
    };
    let outcome = methods::call(&ctx, name, params).await;
    let failed = outcome.result.is_err();
    let body = json!({
        "message": result_message(id, &outcome.result).to_string(),
        "success": !failed,
    });
    let status = if failed {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    Ok(json_response(status, body.to_string()))
}
