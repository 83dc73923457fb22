//! One document of Rocket.Chat's `users` collection to an `ImportedUser`.
//!
//! Only the fields importops keeps are read (and converted from Extended JSON); the rest of a
//! user document (preferences, rooms, 2FA secrets, ...) is ignored, whatever it holds.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::domain::auth::TokenKind;
use crate::domain::ejson::to_plain;
use crate::domain::secrets::hash_token;
use crate::domain::time::parse_iso_ms;
use crate::domain::user::Email;
use crate::store::{ImportedToken, ImportedUser};

/// Checks one user document. `now_ms` dates a personal access token that has no date.
///
/// - `username` may be absent (Rocket.Chat has users without one; they cannot log in).
/// - `active` absent counts as false, as Rocket.Chat refuses a user whose `active` is not true.
/// - `services.resume.loginTokens[]`: `{when, hashedToken}` is a login token issued at `when`;
///   `{type: "personalAccessToken", name, hashedToken, createdAt?}` a personal access token.
///   A `token` kept unhashed (Meteor before 0.7.2) is hashed as Meteor would.
pub fn parse_user(value: Value, now_ms: i64) -> Result<ImportedUser, String> {
    let Value::Object(mut doc) = value else {
        return Err("the record is not a JSON object".into());
    };
    let id = required_string(&mut doc, "_id")?;
    let username = optional_string(&mut doc, "username")?.filter(|s| !s.is_empty());
    let name = optional_string(&mut doc, "name")?;
    let active = match plain_field(&mut doc, "active")? {
        None => false,
        Some(Value::Bool(b)) => b,
        Some(other) => return Err(format!("active {other} is not true or false")),
    };
    let roles = match plain_field(&mut doc, "roles")? {
        None => Vec::new(),
        Some(Value::Array(items)) => role_list(items)?,
        Some(_) => return Err("roles is not a list".into()),
    };
    let emails = match plain_field(&mut doc, "emails")? {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| email(item).map_err(|e| format!("emails[{i}]: {e}")))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("emails is not a list".into()),
    };
    let created_at_ms = match plain_field(&mut doc, "createdAt")? {
        None => None,
        Some(v) => Some(date(&v).ok_or_else(|| format!("createdAt {v} is not a date"))?),
    };
    let (password_bcrypt, tokens) = match doc.remove("services") {
        None | Some(Value::Null) => (None, Vec::new()),
        Some(Value::Object(mut services)) => (
            password(&mut services)?,
            login_tokens(&mut services, now_ms)?,
        ),
        Some(_) => return Err("services is not an object".into()),
    };
    Ok(ImportedUser {
        id,
        username,
        name,
        active,
        roles,
        emails,
        password_bcrypt,
        created_at_ms,
        tokens,
    })
}

/// A field converted to plain JSON; `null` counts as absent.
pub(super) fn plain_field(
    doc: &mut Map<String, Value>,
    key: &str,
) -> Result<Option<Value>, String> {
    match doc.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => to_plain(v).map(Some).map_err(|e| format!("{key}: {e}")),
    }
}

pub(super) fn required_string(doc: &mut Map<String, Value>, key: &str) -> Result<String, String> {
    match plain_field(doc, key)? {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(other) => Err(format!("{key} {other} is not a non-empty string")),
        None => Err(format!("{key} is missing")),
    }
}

fn optional_string(doc: &mut Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match plain_field(doc, key)? {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!("{key} {other} is not a string")),
    }
}

/// Role names: non-empty strings, each kept once, in order.
pub(super) fn role_list(items: Vec<Value>) -> Result<Vec<String>, String> {
    let mut roles: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::String(s) if !s.is_empty() => {
                if !roles.contains(&s) {
                    roles.push(s);
                }
            }
            other => return Err(format!("roles holds {other}, which is not a role name")),
        }
    }
    Ok(roles)
}

fn email(item: Value) -> Result<Email, String> {
    let Value::Object(mut item) = item else {
        return Err("not an object".into());
    };
    let address = required_string(&mut item, "address")?;
    let verified = match plain_field(&mut item, "verified")? {
        None => false,
        Some(Value::Bool(b)) => b,
        Some(other) => return Err(format!("verified {other} is not true or false")),
    };
    Ok(Email { address, verified })
}

/// An ISO-8601 date (what `to_plain` makes of `$date`) or epoch milliseconds.
fn date(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => parse_iso_ms(s),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// `services.password.bcrypt`, kept as Rocket.Chat stored it (bcrypt of the sha256 hex).
fn password(services: &mut Map<String, Value>) -> Result<Option<String>, String> {
    let Some(Value::Object(password)) = services.get_mut("password") else {
        return Ok(None);
    };
    match plain_field(password, "bcrypt")? {
        None => Ok(None),
        Some(Value::String(hash)) if hash.starts_with("$2") && hash.len() == 60 => Ok(Some(hash)),
        Some(other) => Err(format!(
            "services.password.bcrypt {other} is not a bcrypt hash"
        )),
    }
}

fn login_tokens(
    services: &mut Map<String, Value>,
    now_ms: i64,
) -> Result<Vec<ImportedToken>, String> {
    let Some(Value::Object(resume)) = services.get_mut("resume") else {
        return Ok(Vec::new());
    };
    let items = match resume.remove("loginTokens") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err("services.resume.loginTokens is not a list".into()),
    };
    let mut hashes = HashSet::new();
    let mut names = HashSet::new();
    let mut tokens = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let token = login_token(item, now_ms)
            .map_err(|e| format!("services.resume.loginTokens[{i}]: {e}"))?;
        if !hashes.insert(token.hashed_token.clone()) {
            return Err(format!(
                "services.resume.loginTokens[{i}]: the same hashedToken is listed twice"
            ));
        }
        if let Some(name) = &token.name
            && !names.insert(name.clone())
        {
            return Err(format!(
                "services.resume.loginTokens[{i}]: a personal access token named {name:?} \
                 is listed twice"
            ));
        }
        tokens.push(token);
    }
    Ok(tokens)
}

fn login_token(item: Value, now_ms: i64) -> Result<ImportedToken, String> {
    let Value::Object(mut item) = item else {
        return Err("not an object".into());
    };
    let hashed_token = match (
        plain_field(&mut item, "hashedToken")?,
        plain_field(&mut item, "token")?,
    ) {
        (Some(Value::String(hash)), _) if !hash.is_empty() => hash,
        (None, Some(Value::String(raw))) if !raw.is_empty() => hash_token(&raw),
        (Some(other), _) => return Err(format!("hashedToken {other} is not a token hash")),
        _ => return Err("hashedToken is missing".into()),
    };
    let mut date_of = |key: &str| -> Result<Option<i64>, String> {
        match plain_field(&mut item, key)? {
            None => Ok(None),
            Some(v) => date(&v)
                .map(Some)
                .ok_or_else(|| format!("{key} {v} is not a date")),
        }
    };
    let when = date_of("when")?;
    let created_at = date_of("createdAt")?;
    let personal = matches!(item.get("type"), Some(Value::String(t)) if t == "personalAccessToken");
    if personal {
        let name = match plain_field(&mut item, "name")? {
            Some(Value::String(name)) if !name.is_empty() => name,
            Some(other) => return Err(format!("name {other} is not a non-empty string")),
            None => return Err("a personal access token without a name".into()),
        };
        Ok(ImportedToken {
            hashed_token,
            kind: TokenKind::Personal,
            name: Some(name),
            issued_at_ms: created_at.or(when).unwrap_or(now_ms),
        })
    } else {
        Ok(ImportedToken {
            hashed_token,
            kind: TokenKind::Login,
            name: None,
            issued_at_ms: when.ok_or("a login token without a when date")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BCRYPT: &str = "$2b$10$aIYnKFD71WUXTF590CATbu9hp.1bmrfsrLMpqEZo2Cm495LpefVra";

    #[test]
    fn reads_what_importops_keeps_and_ignores_the_rest() {
        let user = parse_user(
            json!({"_id": "u1", "username": "jo", "name": "Jo Ümlaut", "active": true,
                "roles": ["user", "user", "importer"], "type": "user", "__rooms": ["GENERAL"],
                "emails": [{"address": "jo@example.com"}],
                "createdAt": {"$date": {"$numberLong": "1633078800000"}},
                "settings": {"preferences": {"odd": {"$date": "not even a date"}}},
                "services": {"password": {"bcrypt": BCRYPT}, "totp": {"enabled": false},
                    "resume": {"loginTokens": [
                        {"when": {"$date": "2026-11-20T10:00:00.000Z"}, "hashedToken": "h1"},
                        {"type": "personalAccessToken", "name": "ci", "hashedToken": "h2",
                         "createdAt": {"$date": "2021-10-01T09:00:00Z"}, "lastTokenPart": "abc",
                         "bypassTwoFactor": true},
                        {"type": "personalAccessToken", "name": "old", "hashedToken": "h3"},
                        {"when": {"$date": "2020-01-01T00:00:00Z"}, "token": "raw"}]}}}),
            42,
        )
        .unwrap();
        assert_eq!(user.id, "u1");
        assert_eq!(user.username.as_deref(), Some("jo"));
        assert_eq!(user.name.as_deref(), Some("Jo Ümlaut"));
        assert!(user.active);
        assert_eq!(user.roles, ["user", "importer"]);
        assert_eq!(user.emails[0].address, "jo@example.com");
        assert!(!user.emails[0].verified);
        assert_eq!(user.created_at_ms, Some(1_633_078_800_000));
        assert_eq!(user.password_bcrypt.as_deref(), Some(BCRYPT));
        let t = &user.tokens;
        assert_eq!(t.len(), 4);
        assert_eq!(
            (t[0].kind, t[0].issued_at_ms),
            (TokenKind::Login, 1_795_168_800_000)
        );
        assert_eq!(
            (t[1].kind, t[1].name.as_deref()),
            (TokenKind::Personal, Some("ci"))
        );
        assert_eq!(t[1].issued_at_ms, 1_633_078_800_000);
        assert_eq!(t[2].issued_at_ms, 42, "no date: imported now");
        assert_eq!(t[3].hashed_token, hash_token("raw"));
    }

    #[test]
    fn a_minimal_user_has_no_username_and_is_inactive() {
        let user = parse_user(json!({"_id": {"$oid": "64d69545ee8ae821983005f5"}}), 0).unwrap();
        assert_eq!(user.id, "64d69545ee8ae821983005f5");
        assert_eq!(user.username, None);
        assert!(!user.active);
        assert!(user.roles.is_empty() && user.tokens.is_empty());
        assert_eq!(user.password_bcrypt, None);
    }

    #[test]
    fn bad_users_are_refused_with_a_reason() {
        let cases = [
            (json!("x"), "not a JSON object"),
            (json!({"username": "a"}), "_id is missing"),
            (json!({"_id": ""}), "_id \"\" is not"),
            (
                json!({"_id": "a", "username": 3}),
                "username 3 is not a string",
            ),
            (json!({"_id": "a", "active": "yes"}), "active"),
            (json!({"_id": "a", "roles": "admin"}), "roles is not a list"),
            (json!({"_id": "a", "roles": [""]}), "roles holds"),
            (
                json!({"_id": "a", "emails": [{"verified": true}]}),
                "emails[0]: address is missing",
            ),
            (
                json!({"_id": "a", "services": {"password": {"bcrypt": "plain"}}}),
                "not a bcrypt hash",
            ),
            (
                json!({"_id": "a", "services": {"resume": {"loginTokens": [{"hashedToken": "h"}]}}}),
                "loginTokens[0]: a login token without a when date",
            ),
            (
                json!({"_id": "a", "services": {"resume": {"loginTokens": [{"when": 1}]}}}),
                "loginTokens[0]: hashedToken is missing",
            ),
            (
                json!({"_id": "a", "services": {"resume": {"loginTokens": [
                    {"type": "personalAccessToken", "hashedToken": "h"}]}}}),
                "without a name",
            ),
            (
                json!({"_id": "a", "services": {"resume": {"loginTokens": [
                    {"when": 1, "hashedToken": "h"}, {"when": 2, "hashedToken": "h"}]}}}),
                "loginTokens[1]: the same hashedToken",
            ),
            (
                json!({"_id": "a", "services": {"resume": {"loginTokens": [
                    {"type": "personalAccessToken", "name": "n", "hashedToken": "h1"},
                    {"type": "personalAccessToken", "name": "n", "hashedToken": "h2"}]}}}),
                "named \"n\" is listed twice",
            ),
            (
                json!({"_id": "a", "createdAt": {"$date": "soon"}}),
                "createdAt: $date",
            ),
        ];
        for (input, reason) in cases {
            let err = parse_user(input.clone(), 0).unwrap_err();
            assert!(err.contains(reason), "{input}: {err}");
        }
    }
}
