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
        let value = read_value::<T>(headers, body).await?;
        T::from_json(value).map(JsonBody).map_err(invalid::<T>)
    }
}

/// A JSON or form body, within `MAX_BODY_BYTES`, as a JSON value with no U+0000 in it.
async fn read_value<T: FromJson>(headers: &HeaderMap, body: Body) -> Result<Value, ApiError> {
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
    Ok(value)
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

/// A JSON body with one large string field (`uploadImportFile`'s `binaryContent`), read once:
/// the body's bytes are kept, the field's text stays where it lies in them (copied only when
/// it holds escapes), and `T` is checked on the body with that field's text left out (an
/// empty string in its place: only its type matters to the schema). Its route's limit is the
/// front layer's (`limits::bounded`); other bodies are refused as `JsonBody` refuses them.
pub struct LargeJsonBody<T> {
    pub body: T,
    pub large: LargeText,
}

/// Which field of a [`LargeJsonBody`] is the large one.
pub trait LargeField: FromJson {
    const LARGE_FIELD: &'static str;
}

/// The large field's text: a part of the body's bytes, or its own text when it held escapes.
/// Cheap to move to a blocking thread. Empty when the field was missing or not a string.
#[derive(Debug, Clone, Default)]
pub struct LargeText {
    bytes: bytes::Bytes,
    owned: Option<String>,
}

impl AsRef<str> for LargeText {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl LargeText {
    pub fn as_str(&self) -> &str {
        match &self.owned {
            Some(s) => s,
            // Always a whole string serde_json borrowed from the bytes, so UTF-8.
            None => std::str::from_utf8(&self.bytes).unwrap_or_default(),
        }
    }
}

impl<T: LargeField + Send> FromBody for LargeJsonBody<T> {
    async fn from_body(headers: &HeaderMap, body: Body) -> Result<Self, ApiError> {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            // Forms and anything else: as every other body, within its 1 MB.
            let mut value = read_value::<T>(headers, body).await?;
            let mut large = LargeText::default();
            if let Some(Value::String(text)) = value
                .as_object_mut()
                .and_then(|fields| fields.get_mut(T::LARGE_FIELD))
            {
                large.owned = Some(std::mem::take(text));
            }
            let body = T::from_json(value).map_err(invalid::<T>)?;
            return Ok(LargeJsonBody { body, large });
        }
        let bytes = read_whole(headers, body).await?;
        let parsed: large::Field<'_> = serde_json::from_slice(&bytes)
            .map_err(|e| invalid::<T>(format!("the request body is not valid JSON ({e})")))?;
        let (value, large) = large::split(parsed, T::LARGE_FIELD);
        if let Some(at) = nul_at(&value) {
            return Err(invalid::<T>(format!(
                "{at} must NOT contain the character U+0000"
            )));
        }
        let large = match large {
            None => LargeText::default(),
            Some(std::borrow::Cow::Owned(s)) => LargeText {
                bytes: bytes::Bytes::new(),
                owned: Some(s),
            },
            Some(std::borrow::Cow::Borrowed(s)) => {
                let start = s.as_ptr() as usize - bytes.as_ptr() as usize;
                LargeText {
                    bytes: bytes.slice(start..start + s.len()),
                    owned: None,
                }
            }
        };
        if large.as_str().contains('\0') {
            return Err(invalid::<T>(format!(
                "/{} must NOT contain the character U+0000",
                T::LARGE_FIELD
            )));
        }
        let body = T::from_json(value).map_err(invalid::<T>)?;
        Ok(LargeJsonBody { body, large })
    }
}

/// The whole body in one buffer, allocated once when its size is announced.
async fn read_whole(headers: &HeaderMap, mut body: Body) -> Result<bytes::Bytes, ApiError> {
    use http_body_util::BodyExt;
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    // The front layer has refused any announced size past the route's limit.
    let mut buffer = bytes::BytesMut::with_capacity(announced);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            if super::deadline::timed_out(&e) {
                ApiError::RequestTimeout
            } else {
                ApiError::PayloadTooLarge
            }
        })?;
        if let Ok(data) = frame.into_data() {
            buffer.extend_from_slice(&data);
        }
    }
    Ok(buffer.freeze())
}

/// A JSON document whose strings are borrowed from the text they were read from.
mod large {
    use std::borrow::Cow;
    use std::fmt;

    use serde::Deserialize;
    use serde::de::{self, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Value};

    pub enum Field<'a> {
        Str(Cow<'a, str>),
        Array(Vec<Field<'a>>),
        Object(Vec<(String, Field<'a>)>),
        Scalar(Value),
    }

    impl<'de> Deserialize<'de> for Field<'de> {
        fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(FieldVisitor)
        }
    }

    struct FieldVisitor;

    impl<'de> Visitor<'de> for FieldVisitor {
        type Value = Field<'de>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Field::Str(Cow::Borrowed(v)))
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Field::Str(Cow::Owned(v.to_owned())))
        }
        fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
            Ok(Field::Str(Cow::Owned(v)))
        }
        fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Field::Scalar(Value::Bool(v)))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Field::Scalar(Value::from(v)))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Field::Scalar(Value::from(v)))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Field::Scalar(Value::from(v)))
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(Field::Scalar(Value::Null))
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(Field::Scalar(Value::Null))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element::<Field<'de>>()? {
                items.push(item);
            }
            Ok(Field::Array(items))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut fields = Vec::new();
            while let Some(entry) = map.next_entry::<String, Field<'de>>()? {
                fields.push(entry);
            }
            Ok(Field::Object(fields))
        }
    }

    fn to_value(field: Field<'_>) -> Value {
        match field {
            Field::Str(s) => Value::String(s.into_owned()),
            Field::Array(items) => Value::Array(items.into_iter().map(to_value).collect()),
            Field::Object(fields) => Value::Object(
                fields
                    .into_iter()
                    .map(|(k, v)| (k, to_value(v)))
                    .collect::<Map<String, Value>>(),
            ),
            Field::Scalar(v) => v,
        }
    }

    /// The document as a `Value` with the top-level string field `large` emptied, and that
    /// field's text (the last one, as a JSON object keeps the last of a repeated key).
    pub fn split<'a>(field: Field<'a>, large: &str) -> (Value, Option<Cow<'a, str>>) {
        let Field::Object(fields) = field else {
            return (to_value(field), None);
        };
        let mut text = None;
        let mut map = Map::new();
        for (key, value) in fields {
            match value {
                Field::Str(s) if key == large => {
                    text = Some(s);
                    map.insert(key, Value::String(String::new()));
                }
                other => {
                    if key == large {
                        text = None;
                    }
                    map.insert(key, to_value(other));
                }
            }
        }
        (Value::Object(map), text)
    }
}

#[cfg(test)]
mod large_tests {
    use super::*;

    struct Upload {
        name: String,
        content: String,
    }

    impl FromJson for Upload {
        fn from_json(value: Value) -> Result<Self, String> {
            let mut f = Fields::of(value)?;
            let content = match f.take("content") {
                Some(Value::String(s)) => s,
                _ => return Err("/content must be string".into()),
            };
            Ok(Upload {
                name: f.string("name")?,
                content,
            })
        }
    }

    impl LargeField for Upload {
        const LARGE_FIELD: &'static str = "content";
    }

    async fn read(body: &'static str) -> Result<LargeJsonBody<Upload>, ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        LargeJsonBody::<Upload>::from_body(&headers, Body::from(body)).await
    }

    #[tokio::test]
    async fn the_large_field_is_kept_apart_and_the_rest_checked() {
        let b = read(r#"{"name":"a.zip","content":"QUJD"}"#)
            .await
            .ok()
            .unwrap();
        assert_eq!(b.large.as_str(), "QUJD");
        assert_eq!(b.body.name, "a.zip");
        assert_eq!(b.body.content, "", "the checked body holds no copy");
        // Escapes: its own text.
        let b = read(r#"{"name":"a","content":"QU\/JD\n"}"#)
            .await
            .ok()
            .unwrap();
        assert_eq!(b.large.as_str(), "QU/JD\n");
        // The last of a repeated key, as serde_json keeps it.
        let b = read(r#"{"name":"a","content":"x","content":"y"}"#)
            .await
            .ok()
            .unwrap();
        assert_eq!(b.large.as_str(), "y");
        for bad in [
            r#"{"name":"a","content":5}"#,
            r#"{"content":"x"}"#,
            r#"[1]"#,
            r#"{"name":"a","content":"x\u0000"}"#,
            r#"{"name":"a""#,
        ] {
            assert!(
                matches!(read(bad).await, Err(ApiError::InvalidBody { .. })),
                "{bad}"
            );
        }
    }
}
