//! Rocket.Chat's realtime API: Meteor's DDP (docs/compatibility.md, section 13). `methods`
//! runs a method call for a connection's user (over a WebSocket, `session`, or over REST,
//! `method.call`), with Meteor's errors; `session` is one WebSocket connection: the
//! handshake, heartbeats, methods, the `stream-importers` subscription fed by `crate::feed`.

pub mod methods;
pub mod session;

use serde_json::{Map, Value};

/// A `Meteor.Error`, as EJSON sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct MeteorError {
    /// A string code, or a number for Meteor's own (403, 404, 500).
    pub error: Value,
    pub reason: Option<String>,
    pub details: Option<Value>,
}

impl MeteorError {
    pub fn new(error: impl Into<Value>, reason: impl Into<String>) -> Self {
        MeteorError {
            error: error.into(),
            reason: Some(reason.into()),
            details: None,
        }
    }

    /// An error without a reason (`message` is `[<code>]`).
    pub fn bare(error: impl Into<Value>) -> Self {
        MeteorError {
            error: error.into(),
            reason: None,
            details: None,
        }
    }

    pub fn with_details(mut self, details: impl Into<Value>) -> Self {
        self.details = Some(details.into());
        self
    }

    /// What any exception that is not client-safe becomes (Meteor's `wrapInternalException`).
    pub fn internal() -> Self {
        MeteorError::new(500, "Internal server error")
    }

    /// `Method '<name>' not found [404]`.
    pub fn method_not_found(name: &str) -> Self {
        MeteorError::new(404, format!("Method '{name}' not found"))
    }

    /// The serialized error: `isClientSafe`, `error`, `reason` and `details` when defined,
    /// `message` (`<reason> [<code>]`, or `[<code>]`), `errorType`.
    pub fn to_value(&self) -> Value {
        let code = match &self.error {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut out = Map::new();
        out.insert("isClientSafe".into(), Value::Bool(true));
        out.insert("error".into(), self.error.clone());
        if let Some(reason) = &self.reason {
            out.insert("reason".into(), reason.clone().into());
        }
        if let Some(details) = &self.details {
            out.insert("details".into(), details.clone());
        }
        let message = match &self.reason {
            Some(reason) => format!("{reason} [{code}]"),
            None => format!("[{code}]"),
        };
        out.insert("message".into(), message.into());
        out.insert("errorType".into(), "Meteor.Error".into());
        Value::Object(out)
    }
}

/// `{"msg":"result","id":..,"result"|"error":..}`: a method's answer (no `result` key when the
/// method returned nothing).
pub fn result_message(id: &str, outcome: &Result<Option<Value>, MeteorError>) -> Value {
    let mut out = Map::new();
    out.insert("msg".into(), "result".into());
    out.insert("id".into(), id.into());
    match outcome {
        Ok(Some(result)) => {
            out.insert("result".into(), result.clone());
        }
        Ok(None) => {}
        Err(error) => {
            out.insert("error".into(), error.to_value());
        }
    }
    Value::Object(out)
}

/// An ISO date string as EJSON's `{"$date": <epoch ms>}`; other values unchanged.
pub fn ejson_date(value: &mut Value) {
    if let Value::String(text) = value
        && let Some(ms) = crate::domain::time::parse_iso_ms(text)
    {
        *value = serde_json::json!({ "$date": ms });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meteor_errors_serialize_as_ejson_sends_them() {
        assert_eq!(
            MeteorError::method_not_found("x").to_value().to_string(),
            r#"{"isClientSafe":true,"error":404,"reason":"Method 'x' not found","message":"Method 'x' not found [404]","errorType":"Meteor.Error"}"#
        );
        assert_eq!(
            MeteorError::bare("not-allowed").to_value().to_string(),
            r#"{"isClientSafe":true,"error":"not-allowed","message":"[not-allowed]","errorType":"Meteor.Error"}"#
        );
        let with = MeteorError::new("error-invalid-user", "Invalid user").with_details("m");
        assert_eq!(
            with.to_value()["message"],
            Value::from("Invalid user [error-invalid-user]")
        );
        assert_eq!(with.to_value()["details"], Value::from("m"));
        let mut date = Value::from("2021-10-27T11:26:24.430Z");
        ejson_date(&mut date);
        assert_eq!(date, serde_json::json!({"$date": 1635333984430i64}));
        let mut number = Value::from(1635280600083u64);
        ejson_date(&mut number);
        assert_eq!(number, Value::from(1635280600083u64));
    }
}
