//! MongoDB Extended JSON (what `mongoexport` writes, relaxed or canonical) to plain JSON as
//! Rocket.Chat's API would show it: dates become ISO-8601 strings, ObjectIds their hex string,
//! binary data its base64, wrapped numbers plain numbers, and a whole number written as a
//! float (`1.635280600083E+12`, `{"$numberDouble": "3.0"}`: how a JavaScript number that
//! MongoDB stored as a double is exported) an integer, as JavaScript prints it. Anything else
//! is passed through unchanged.

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
        Value::Number(n) => Ok(Value::Number(js_number(n))),
        other => Ok(other),
    }
}

/// The largest integer a JavaScript number holds exactly (2^53).
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_992.0;

/// A float with no fractional part, within JavaScript's exact integers, as an integer.
fn js_number(n: Number) -> Number {
    match n.as_f64() {
        Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() <= MAX_SAFE_INTEGER => {
            Number::from(f as i64)
        }
        _ => n,
    }
}

fn convert_object(map: Map<String, Value>) -> Result<Value, String> {
    // Extended JSON v1 (legacy mongoexport): `{"$binary": "<base64>", "$type": "00"}`.
    if map.len() == 2
        && map.contains_key("$type")
        && let Some(Value::String(base64)) = map.get("$binary")
    {
        return Ok(Value::String(base64.clone()));
    }
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
                    .map(|n| Value::Number(js_number(n)))
                    .ok_or_else(|| format!("{key} {text:?} is not a finite number"));
            }
            // `{"$binary": {"base64": "...", "subType": "00"}}`: the base64, as Rocket.Chat's
            // JSON shows a Binary.
            "$binary" => {
                return inner
                    .get("base64")
                    .unwrap_or(inner)
                    .as_str()
                    .map(|s| Value::String(s.to_owned()))
                    .ok_or_else(|| "$binary has no base64 string".to_owned());
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
    fn whole_floats_are_integers_as_in_javascript() {
        // How mongoexport writes a JavaScript `Date.now()` that MongoDB stored as a double.
        let relaxed: Value =
            serde_json::from_str(r#"{"ts": 1.635280600083E+12, "r": 0.5, "n": 3.0}"#).unwrap();
        let canonical = json!({"ts": {"$numberDouble": "1.635280600083E+12"},
            "r": {"$numberDouble": "0.5"}, "n": {"$numberDouble": "3.0"}});
        let expected = r#"{"ts":1635280600083,"r":0.5,"n":3}"#;
        assert_eq!(to_plain(relaxed).unwrap().to_string(), expected);
        assert_eq!(to_plain(canonical).unwrap().to_string(), expected);
        let huge: Value = serde_json::from_str("1e300").unwrap();
        assert!(to_plain(huge).unwrap().is_f64());
    }

    #[test]
    fn binary_is_its_base64() {
        let v2 = json!({"$binary": {"base64": "AQID", "subType": "00"}});
        let v1 = json!({"$binary": "AQID", "$type": "00"});
        assert_eq!(to_plain(v2).unwrap(), json!("AQID"));
        assert_eq!(to_plain(v1).unwrap(), json!("AQID"));
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
