//! The one error type of the HTTP API and its mapping to Rocket.Chat's statuses and bodies.
//! Internal details are logged here, once, and never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::config::AuthErrorBody;
use crate::store::StoreError;

const UNAUTHORIZED_DOCUMENTED: &str = r#"{"success":false,"error":"unauthorized"}"#;
const UNAUTHORIZED_ROCKETCHAT: &str = r#"{"success":false,"error":"You must be logged in to do this.","status":"error","message":"You must be logged in to do this."}"#;
const FORBIDDEN: &str = r#"{"success":false,"error":"User does not have the permissions required for this action [error-unauthorized]"}"#;
const LOGIN_FAILED: &str =
    r#"{"success":false,"error":"Unauthorized","status":"error","message":"Unauthorized"}"#;
const PAYLOAD_TOO_LARGE: &str = r#"{"success":false,"error":"Payload Too Large"}"#;
const HEADERS_TOO_LARGE: &str = r#"{"success":false,"error":"Request Header Fields Too Large"}"#;
const REQUEST_TIMEOUT: &str = r#"{"success":false,"error":"Request Timeout"}"#;
const NOT_FOUND: &str = r#"{"success":false,"error":"Resource not found"}"#;
const UNAVAILABLE: &str = r#"{"success":false,"error":"Service Unavailable"}"#;
const INTERNAL: &str = r#"{"success":false,"error":"Internal server error"}"#;
const ADDITIONAL_PROPERTY: &str = "must NOT have additional properties";

/// What Meteor said when it refused a login.
#[derive(Debug)]
pub struct LoginRefusal {
    pub error: serde_json::Value,
    pub message: &'static str,
    pub details: Option<serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401: no valid session. The body is chosen by a setting; both cases of 401 (unknown user,
    /// wrong token, ...) must look the same from outside.
    #[error("not authenticated")]
    Unauthorized(AuthErrorBody),
    /// 403: authenticated, but none of the caller's roles holds the permission.
    #[error("permission denied")]
    Forbidden,
    /// 400: the route takes no query parameters; this many distinct ones were sent.
    #[error("{0} unexpected query parameters")]
    UnexpectedQueryParams(usize),
    /// 400 in Rocket.Chat's shape: `{"success":false,"error":..,"errorType":..}`, with the
    /// Meteor error's `details` when it has some (docs/compatibility.md#4-other-routes).
    #[error("{error}")]
    BadRequest {
        error: String,
        error_type: &'static str,
        details: Option<serde_json::Value>,
    },
    /// 400 for a body that fails the route's schema, `errorType: "invalid-params"`. Rocket.Chat
    /// words it two ways (compatibility.md, section 6): its typed routes answer the validator's
    /// message as is; routes declared the older way (`validateParams`) throw it as a Meteor
    /// error, so the message ends with ` [invalid-params]`.
    #[error("{message}")]
    InvalidBody { message: String, legacy: bool },
    /// 401 for a login that Meteor refused with an error of its own (`ApiClass.ts` login):
    /// `error` is the Meteor error's code (a number for Meteor's own 403s), `message` its reason.
    #[error("login refused: {}", .0.message)]
    LoginRefused(Box<LoginRefusal>),
    /// 401 for a failed password login (its own body, whatever the 401 setting).
    #[error("login failed")]
    LoginFailed,
    /// 401 while logins are blocked after repeated failures (`login_guard`).
    #[error("login blocked")]
    LoginBlocked { by_address: bool },
    /// 429: over the rate limit; the caller may try again after this many seconds.
    #[error("rate limited")]
    TooManyRequests { wait_seconds: u64 },
    /// 413: the request body is larger than the server reads.
    #[error("request body too large")]
    PayloadTooLarge,
    /// 431: the request headers are larger than the server reads.
    #[error("request headers too large")]
    HeadersTooLarge,
    /// 408: the request body did not arrive within `--body-read-timeout`.
    #[error("request body not received in time")]
    RequestTimeout,
    /// 503: the work is bounded and every slot stayed busy (password hashing).
    #[error("too busy")]
    Busy,
    /// 404: no such route.
    #[error("no such route")]
    NotFound,
    /// 503 when the database is unreachable, 500 for any other storage fault.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// 500: a bug; the message is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
    /// 400 for an error of the import workflow (`crate::importer::ImportError`): a Meteor
    /// error with its type and details, or a plain error with its message alone.
    #[error("{error}")]
    Import {
        error: String,
        error_type: Option<String>,
        details: Option<serde_json::Value>,
    },
}

impl From<crate::importer::ImportError> for ApiError {
    fn from(e: crate::importer::ImportError) -> Self {
        use crate::importer::ImportError;
        match e {
            ImportError::Meteor {
                code,
                reason,
                details,
            } => ApiError::Import {
                error: format!("{reason} [{code}]"),
                error_type: Some(code),
                details: Some(serde_json::Value::String(details)),
            },
            ImportError::Plain(message) => ApiError::Import {
                error: message,
                error_type: None,
                details: None,
            },
            ImportError::Store(e) => ApiError::Store(e),
        }
    }
}

impl ApiError {
    /// A 400 an action answers with `API.v1.failure(message, type)`: the message as it is,
    /// without the bracketed type a thrown Meteor error carries.
    pub fn failure(error_type: &'static str, message: &str) -> Self {
        ApiError::BadRequest {
            error: message.to_owned(),
            error_type,
            details: None,
        }
    }

    /// A 400 for a Meteor error: the message carries the type in brackets, as Rocket.Chat's do.
    pub fn meteor(error_type: &'static str, message: &str) -> Self {
        ApiError::BadRequest {
            error: format!("{message} [{error_type}]"),
            error_type,
            details: None,
        }
    }

    /// The same 400 with the Meteor error's `details` (its third argument), which Rocket.Chat's
    /// `API.v1.failure` sends as `"details"` after `errorType`; other errors are unchanged.
    pub fn with_details(self, details: impl Into<serde_json::Value>) -> Self {
        match self {
            ApiError::BadRequest {
                error, error_type, ..
            } => ApiError::BadRequest {
                error,
                error_type,
                details: Some(details.into()),
            },
            other => other,
        }
    }

    /// A 400 for a body that fails the schema of a typed route.
    pub fn invalid_body(message: impl Into<String>) -> Self {
        ApiError::InvalidBody {
            message: message.into(),
            legacy: false,
        }
    }

    fn status_and_body(&self) -> (StatusCode, String) {
        match self {
            ApiError::Unauthorized(AuthErrorBody::Documented) => {
                (StatusCode::UNAUTHORIZED, UNAUTHORIZED_DOCUMENTED.into())
            }
            ApiError::Unauthorized(AuthErrorBody::Rocketchat) => {
                (StatusCode::UNAUTHORIZED, UNAUTHORIZED_ROCKETCHAT.into())
            }
            ApiError::Forbidden => (StatusCode::FORBIDDEN, FORBIDDEN.into()),
            ApiError::UnexpectedQueryParams(count) => {
                // Rocket.Chat's validator reports one line per extra parameter.
                let message = vec![ADDITIONAL_PROPERTY; (*count).max(1)].join("\n");
                let body = serde_json::json!({
                    "success": false,
                    "errorType": "error-invalid-params",
                    "error": message,
                });
                (StatusCode::BAD_REQUEST, body.to_string())
            }
            ApiError::BadRequest {
                error,
                error_type,
                details,
            } => {
                let mut body = serde_json::json!({
                    "success": false,
                    "error": error,
                    "errorType": error_type,
                });
                if let Some(details) = details {
                    body["details"] = details.clone();
                }
                (StatusCode::BAD_REQUEST, body.to_string())
            }
            ApiError::InvalidBody {
                message,
                legacy: false,
            } => {
                let body = serde_json::json!({
                    "success": false,
                    "errorType": "invalid-params",
                    "error": message,
                });
                (StatusCode::BAD_REQUEST, body.to_string())
            }
            ApiError::InvalidBody {
                message,
                legacy: true,
            } => {
                let body = serde_json::json!({
                    "success": false,
                    "error": format!("{message} [invalid-params]"),
                    "errorType": "invalid-params",
                });
                (StatusCode::BAD_REQUEST, body.to_string())
            }
            ApiError::LoginRefused(refusal) => {
                let LoginRefusal {
                    error,
                    message,
                    details,
                } = refusal.as_ref();
                // Rocket.Chat assigns `status`, `error`, `details` and `message` over its 401
                // body; an absent `details` is left out by JSON.
                let mut body = serde_json::Map::new();
                body.insert("success".into(), false.into());
                body.insert("error".into(), error.clone());
                body.insert("status".into(), "error".into());
                if let Some(details) = details {
                    body.insert("details".into(), details.clone());
                }
                body.insert("message".into(), (*message).into());
                (
                    StatusCode::UNAUTHORIZED,
                    serde_json::Value::Object(body).to_string(),
                )
            }
            ApiError::LoginFailed => (StatusCode::UNAUTHORIZED, LOGIN_FAILED.into()),
            ApiError::LoginBlocked { by_address } => {
                let (error, what) = if *by_address {
                    ("error-login-blocked-for-ip", "IP")
                } else {
                    ("error-login-blocked-for-user", "User")
                };
                let body = serde_json::json!({
                    "success": false,
                    "error": error,
                    "status": "error",
                    "message": format!("Login has been temporarily blocked for this {what}"),
                });
                (StatusCode::UNAUTHORIZED, body.to_string())
            }
            ApiError::TooManyRequests { wait_seconds } => {
                let body = serde_json::json!({
                    "success": false,
                    "error": format!(
                        "Error, too many requests. Please slow down. You must wait {wait_seconds} seconds before trying this endpoint again. [error-too-many-requests]"
                    ),
                });
                (StatusCode::TOO_MANY_REQUESTS, body.to_string())
            }
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, PAYLOAD_TOO_LARGE.into()),
            ApiError::HeadersTooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                HEADERS_TOO_LARGE.into(),
            ),
            ApiError::RequestTimeout => (StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT.into()),
            ApiError::Busy => (StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE.into()),
            ApiError::NotFound => (StatusCode::NOT_FOUND, NOT_FOUND.into()),
            ApiError::Store(StoreError::Unavailable(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE.into())
            }
            ApiError::Store(_) | ApiError::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, INTERNAL.into())
            }
            ApiError::Import {
                error,
                error_type,
                details,
            } => {
                let mut body = serde_json::Map::new();
                body.insert("success".into(), false.into());
                body.insert("error".into(), error.as_str().into());
                if let Some(error_type) = error_type {
                    body.insert("errorType".into(), error_type.as_str().into());
                }
                if let Some(details) = details {
                    body.insert("details".into(), details.clone());
                }
                (
                    StatusCode::BAD_REQUEST,
                    serde_json::Value::Object(body).to_string(),
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = self.status_and_body();
        // Shedding load is not a fault: a flood must not flood the log too.
        if status.is_server_error() && !matches!(self, ApiError::Busy) {
            let request_id = super::observe::current_request_id();
            tracing::error!(error = %self, request_id, "request failed");
        }
        let mut response = json_response(status, body);
        // An importops addition beside Rocket.Chat's `X-RateLimit-*` headers: the seconds of
        // the body's "wait S seconds" (docs/compatibility.md#9-retry-after).
        if let ApiError::TooManyRequests { wait_seconds } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait_seconds));
        }
        if let ApiError::Busy = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(1));
        }
        response
    }
}

/// A JSON response from an already serialized body.
pub fn json_response(status: StatusCode, body: impl Into<axum::body::Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The 500 body for a handler that panicked (the panic is logged by the caller).
pub fn internal_error_response() -> Response {
    json_response(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL)
}
