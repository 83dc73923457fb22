//! The few JavaScript conversions Rocket.Chat's importers rely on, reproduced so that a record
//! comes out as it does there (docs/compatibility.md, "Importers"): `String.prototype.trim`,
//! `parseInt`, `Number(x)`, truthiness, `new Date(ms)` as JSON shows it, default string order.

use serde_json::Value;

/// JavaScript's `trim()`: white space and line terminators, U+FEFF included, U+0085 not.
pub fn trim(s: &str) -> &str {
    s.trim_matches(|c: char| (c.is_whitespace() && c != '\u{85}') || c == '\u{feff}')
}

fn is_js_space(c: char) -> bool {
    (c.is_whitespace() && c != '\u{85}') || c == '\u{feff}'
}

/// JavaScript's `parseInt(s)` (radix 10, or 16 after `0x`): `None` for `NaN`.
pub fn parse_int(s: &str) -> Option<f64> {
    let s = s.trim_start_matches(is_js_space);
    let (negative, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = if s.len() >= 2 && (s.starts_with("0x") || s.starts_with("0X")) {
        (16u32, &s[2..])
    } else {
        (10u32, s)
    };
    let mut value = 0f64;
    let mut any = false;
    for c in digits.chars() {
        let Some(d) = c.to_digit(radix) else { break };
        value = value * f64::from(radix) + f64::from(d);
        any = true;
    }
    any.then_some(if negative { -value } else { value })
}

/// JavaScript's `Number(v)` for the values JSON can hold: `None` for `NaN`.
pub fn to_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::Null => Some(0.0),
        Value::String(s) => {
            let t = trim(s);
            if t.is_empty() {
                return Some(0.0);
            }
            if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                return u64::from_str_radix(hex, 16).ok().map(|n| n as f64);
            }
            match t {
                "Infinity" | "+Infinity" => Some(f64::INFINITY),
                "-Infinity" => Some(f64::NEG_INFINITY),
                _ if t.contains(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E') => None,
                _ => t.parse::<f64>().ok(),
            }
        }
        Value::Array(a) if a.is_empty() => Some(0.0),
        Value::Array(a) if a.len() == 1 => to_number(&a[0]),
        _ => None,
    }
}

/// Whether a JSON value is truthy in JavaScript.
pub fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

/// A number as `JSON.stringify` writes it: whole numbers without a fraction, `NaN` as null.
pub fn number(f: f64) -> Value {
    if !f.is_finite() {
        return Value::Null;
    }
    if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 {
        return Value::from(f as i64);
    }
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// `new Date(ms)` as a staged record holds it: the ISO string Rocket.Chat's JSON shows
/// (`2023-11-14T22:13:20.000Z`), or null for an invalid date (and for dates outside years
/// 0 to 9999, which JSON cannot show in that form).
pub fn date(ms: Option<f64>) -> Value {
    let Some(ms) = ms.filter(|m| m.is_finite() && m.abs() <= 8.64e15) else {
        return Value::Null;
    };
    crate::domain::time::format_iso_ms(ms.trunc() as i64).map_or(Value::Null, Value::String)
}

/// JavaScript's default `Array.prototype.sort` order for strings: by UTF-16 code units.
pub fn cmp_utf16(a: &str, b: &str) -> std::cmp::Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn trim_is_javascripts() {
        assert_eq!(trim(" \u{feff}\u{a0}alice\t\r\n"), "alice");
        assert_eq!(trim("\u{85}x"), "\u{85}x");
    }

    #[test]
    fn parse_int_is_javascripts() {
        assert_eq!(parse_int("1700000000000"), Some(1_700_000_000_000.0));
        assert_eq!(parse_int("  42abc"), Some(42.0));
        assert_eq!(parse_int("-7"), Some(-7.0));
        assert_eq!(parse_int("0x1A"), Some(26.0));
        assert_eq!(parse_int("abc"), None);
        assert_eq!(parse_int(""), None);
        assert_eq!(parse_int("1.9"), Some(1.0));
    }

    #[test]
    fn numbers_and_dates() {
        assert_eq!(to_number(&json!("3600")), Some(3600.0));
        assert_eq!(to_number(&json!("abc")), None);
        assert_eq!(to_number(&json!(true)), Some(1.0));
        assert_eq!(number(3600.0 / 3600.0), json!(1));
        assert_eq!(number(-19800.0 / 3600.0), json!(-5.5));
        assert_eq!(number(f64::NAN), Value::Null);
        assert_eq!(
            date(Some(1_700_000_000_000.0)),
            json!("2023-11-14T22:13:20.000Z")
        );
        assert_eq!(date(None), Value::Null);
        assert_eq!(date(Some(9e15)), Value::Null);
    }

    #[test]
    fn truthiness() {
        assert!(!truthy(None));
        assert!(!truthy(Some(&json!(""))));
        assert!(!truthy(Some(&json!(0))));
        assert!(truthy(Some(&json!([]))));
        assert!(truthy(Some(&json!("0"))));
    }

    #[test]
    fn utf16_order() {
        // U+FF5E sorts before U+1F600 by UTF-8 bytes but after it by UTF-16 code units.
        assert_eq!(
            cmp_utf16("\u{ff5e}", "\u{1f600}"),
            std::cmp::Ordering::Greater
        );
        assert_eq!(cmp_utf16("alice", "bob"), std::cmp::Ordering::Less);
    }
}
