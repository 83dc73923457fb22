//! Request bodies: JSON checked like Rocket.Chat's schema validation (400
//! `invalid-params` with its messages). Read after the query string and before the rate
//! limit, which Rocket.Chat applies after validation (`guard::check`).

use std::future::Future;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use serde_json::{Map, Value};

use super::error::ApiError;

/// Largest request body read.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// A route's request body.
pub trait FromBody: Sized + Send {
    fn from_body(
        headers: &HeaderMap,
        body: Body,
    ) -> impl Future<Output = Result<Self, ApiError>> + Send;
}

/// The body is not read.
impl FromBody for () {
    async fn from_body(_: &HeaderMap, _: Body) -> Result<(), ApiError> {
        Ok(())
    }
}

/// A body type read from JSON, with messages in the words of Rocket.Chat's validator.
pub trait FromJson: Sized {
    /// Whether Rocket.Chat validates this body the older way (`validateParams`), which words
    /// the error as a Meteor error (compatibility.md, section 6).
    const LEGACY_VALIDATION: bool = false;

    fn from_json(value: Value) -> Result<Self, String>;
}

fn invalid<T: FromJson>(message: String) -> ApiError {
    ApiError::InvalidBody {
        message,
        legacy: T::LEGACY_VALIDATION,
    }
}

/// A validated JSON body of type `T`.
pub struct JsonBody<T>(pub T);

impl<T: FromJson + Send> FromBody for JsonBody<T> {
    async fn from_body(headers: &HeaderMap, body: Body) -> Result<Self, ApiError> {
        let mime = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase());
        // Rocket.Chat's router reads JSON and, field by field as strings, HTML forms
        // (compatibility.md, section 6).
        let form = match mime.as_deref() {
            Some("application/json") => false,
            Some("application/x-www-form-urlencoded") => true,
            _ => {
                return Err(invalid::<T>(
                    "the request body must be JSON (Content-Type: application/json) or a form \
                     (application/x-www-form-urlencoded)"
                        .into(),
                ));
            }
        };
        // Past the limit the read fails: the body is too large (a broken connection never
        // gets to see an answer).
        let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|e| {
                if super::deadline::timed_out(&e) {
                    ApiError::RequestTimeout
                } else {
                    ApiError::PayloadTooLarge
                }
            })?;
        let value: Value = if form {
            let fields: Map<String, Value> = form_urlencoded::parse(&bytes)
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect();
            Value::Object(fields)
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|e| invalid::<T>(format!("the request body is not valid JSON ({e})")))?
        };
        if let Some(at) = nul_at(&value) {
            return Err(invalid::<T>(format!(
                "{at} must NOT contain the character U+0000"
            )));
        }
        T::from_json(value).map(JsonBody).map_err(invalid::<T>)
    }
}

/// Where the first string holding U+0000 is in `value` (a JSON pointer, `""` for the whole),
/// key or value. Postgres cannot store the character in text, so every body is checked here,
/// once, before any route sees it (docs/compatibility.md, section 6).
fn nul_at(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if s.contains('\0') => Some(String::new()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_at(item).map(|at| format!("/{i}{at}"))),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            if key.contains('\0') {
                Some(format!("/{}", key.replace('\0', "\\u0000")))
            } else {
                nul_at(item).map(|at| format!("/{key}{at}"))
            }
        }),
        _ => None,
    }
}

/// The fields of a JSON object body, read with the validator's messages.
pub struct Fields(pub Map<String, Value>);

impl Fields {
    pub fn of(value: Value) -> Result<Self, String> {
        match value {
            Value::Object(map) => Ok(Fields(map)),
            _ => Err("must be object".into()),
        }
    }

    pub fn take(&mut self, key: &str) -> Option<Value> {
        self.0.remove(key)
    }

    /// A required non-empty string.
    pub fn string(&mut self, key: &str) -> Result<String, String> {
        self.optional_string(key)?
            .ok_or_else(|| format!("must have required property '{key}'"))
    }

    pub fn optional_string(&mut self, key: &str) -> Result<Option<String>, String> {
        match self.0.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => {
                Err(format!("/{key} must NOT have fewer than 1 characters"))
            }
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!("/{key} must be string")),
        }
    }

    pub fn optional_bool(&mut self, key: &str) -> Result<Option<bool>, String> {
        match self.0.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(_) => Err(format!("/{key} must be boolean")),
        }
    }

    pub fn optional_strings(&mut self, key: &str) -> Result<Option<Vec<String>>, String> {
        match self.0.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => strings(value).map(Some).map_err(|e| format!("/{key}{e}")),
        }
    }
}

/// A JSON array of strings.
pub fn strings(value: Value) -> Result<Vec<String>, String> {
    let Value::Array(items) = value else {
        return Err(" must be array".into());
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) => Ok(s),
            _ => Err(format!("/{i} must be string")),
        })
        .collect()
}
