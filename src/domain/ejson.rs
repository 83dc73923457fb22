//! MongoDB Extended JSON (what `mongoexport` writes, relaxed or canonical) to plain JSON as
//! Rocket.Chat's API would show it: dates become ISO-8601 strings, ObjectIds their hex string,
//! wrapped numbers plain numbers. Anything else is passed through unchanged.

use serde_json::{Map, Number, Value};

use super::time::{format_iso_ms, parse_iso_ms};

/// Converts every Extended JSON wrapper inside `value`.
pub fn to_plain(value: Value) -> Result<Value, String> {
    match value {
        Value::Array(items) => items
            .into_iter()
            .map(to_plain)
            .collect::<Result<_, _>>()
            .map(Value::Array),
        Value::Object(map) => convert_object(map),
        other => Ok(other),
    }
}

fn convert_object(map: Map<String, Value>) -> Result<Value, String> {
    if map.len() == 1 {
        let (key, inner) = map.iter().next().expect("one entry");
        match key.as_str() {
            "$date" => return date(inner).map(Value::String),
            "$oid" => {
                return inner
                    .as_str()
                    .map(|s| Value::String(s.to_owned()))
                    .ok_or_else(|| "$oid is not a string".to_owned());
            }
            "$numberInt" | "$numberLong" => {
                let text = inner
                    .as_str()
                    .ok_or_else(|| format!("{key} is not a string"))?;
                return text
                    .parse::<i64>()
                    .map(|n| Value::Number(n.into()))
                    .map_err(|_| format!("{key} {text:?} is not an integer"));
            }
            "$numberDouble" | "$numberDecimal" => {
                let text = inner
                    .as_str()
                    .ok_or_else(|| format!("{key} is not a string"))?;
                return text
                    .parse::<f64>()
                    .ok()
                    .and_then(Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| format!("{key} {text:?} is not a finite number"));
            }
            _ => {}
        }
    }
    map.into_iter()
        .map(|(k, v)| to_plain(v).map(|v| (k, v)))
        .collect::<Result<Map<_, _>, _>>()
        .map(Value::Object)
}

/// `{"$date": "..."}`, `{"$date": {"$numberLong": "..."}}` or `{"$date": <ms>}` as ISO-8601.
fn date(inner: &Value) -> Result<String, String> {
    let ms = match inner {
        Value::String(s) => parse_iso_ms(s),
        Value::Number(n) => n.as_i64(),
        Value::Object(o) => o
            .get("$numberLong")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<i64>().ok()),
        _ => None,
    };
    ms.and_then(format_iso_ms)
        .ok_or_else(|| format!("$date {inner} is not a date"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn relaxed_and_canonical_give_the_same_plain_json() {
        let relaxed = json!({"_id": {"$oid": "64d69545ee8ae821983005f5"},
            "ts": {"$date": "2023-08-11T20:08:37.655Z"}, "count": {"total": 3}});
        let canonical = json!({"_id": {"$oid": "64d69545ee8ae821983005f5"},
            "ts": {"$date": {"$numberLong": "1691784517655"}},
            "count": {"total": {"$numberInt": "3"}}});
        let expected = json!({"_id": "64d69545ee8ae821983005f5",
            "ts": "2023-08-11T20:08:37.655Z", "count": {"total": 3}});
        assert_eq!(to_plain(relaxed).unwrap(), expected);
        assert_eq!(to_plain(canonical).unwrap(), expected);
    }

    #[test]
    fn bad_wrappers_are_errors() {
        assert!(to_plain(json!({"$date": "soon"})).is_err());
        assert!(to_plain(json!({"$numberLong": "x"})).is_err());
        assert!(to_plain(json!({"$numberDouble": "NaN"})).is_err());
    }

    #[test]
    fn plain_values_pass_through() {
        let v = json!({"a": [1, "b", null, {"$other": 1}]});
        assert_eq!(to_plain(v.clone()).unwrap(), v);
    }
}
