//! `OPTIONS` and CORS under `/api`, as Rocket.Chat's API router answers them
//! (docs/compatibility.md#4-6-cors): every other answer there allows any origin; an `OPTIONS`
//! request is answered by the front line itself (no session, no rate limit), `200 OK` unless it
//! is a pre-flight that the settings (`--api-enable-cors`, `--api-cors-origin`) refuse.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;

use crate::config::Settings;

const ALLOW_METHODS: &str = "GET, POST, PUT, DELETE, HEAD, PATCH";
const ALLOW_HEADERS: &str = "Origin, X-Requested-With, Content-Type, Accept, X-User-Id, \
     X-Auth-Token, x-visitor-token, Authorization, MCP-Protocol-Version";
/// What a fetch `Response` made from a string is labelled with.
const TEXT: &str = "text/plain;charset=UTF-8";
const NOT_ENABLED: &str = "CORS not enabled. Go to \"Admin > General > REST Api\" to enable it.";

/// The CORS settings, read once when the router is built.
#[derive(Debug, Clone, Default)]
pub struct Cors {
    enabled: bool,
    origin: String,
}

impl Cors {
    pub fn from_settings(settings: &Settings) -> Self {
        Cors {
            enabled: settings.api_enable_cors,
            origin: settings.api_cors_origin.clone(),
        }
    }

    /// The answer to an `OPTIONS` request under `/api`.
    pub fn preflight(&self, headers: &HeaderMap) -> Response {
        let origin = joined(headers, header::ORIGIN);
        // Not a pre-flight: Rocket.Chat's catch-all `OPTIONS` route.
        if joined(headers, header::ACCESS_CONTROL_REQUEST_METHOD).is_none() && origin.is_none() {
            return text(StatusCode::OK, "OK");
        }
        if !self.enabled {
            return text(StatusCode::METHOD_NOT_ALLOWED, NOT_ENABLED);
        }
        let allowed = if self.origin == "*" {
            HeaderValue::from_static("*")
        } else {
            let listed = origin.as_deref().is_some_and(|origin| {
                self.origin
                    .trim()
                    .split(',')
                    .any(|o| o.trim().to_lowercase() == origin)
            });
            match origin.filter(|_| listed).map(HeaderValue::try_from) {
                Some(Ok(value)) => value,
                _ => return text(StatusCode::FORBIDDEN, "Invalid origin"),
            }
        };
        let mut response = text(StatusCode::OK, "OK");
        let headers = response.headers_mut();
        if allowed != "*" {
            headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        response
    }
}

/// Whether Rocket.Chat's API router (mounted at `/api`) answers this path.
pub fn is_api_path(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

/// Whether the front line answers this request itself.
pub fn is_preflight(method: &Method, path: &str) -> bool {
    method == Method::OPTIONS && is_api_path(path)
}

/// The headers every other answer under `/api` carries, whatever the settings.
pub fn allow_any_origin(headers: &mut HeaderMap) {
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOW_HEADERS),
    );
}

/// A header's values as a fetch `Headers` object reads them (joined with `, `), or `None` when
/// it is absent or empty.
fn joined(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    Some(values.join(", ")).filter(|v| !v.is_empty())
}

fn text(status: StatusCode, body: &'static str) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT));
    response
}
