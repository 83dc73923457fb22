//! Staged users into importops users (docs/compatibility.md section 11): Rocket.Chat's
//! `UserConverter` as far as importops has users. A user is matched by its first e-mail
//! address, then by username ignoring case, and updated, or created; either is one write
//! transaction (`Store::import_user`), so a user is never half imported.

use serde_json::Value;

use super::ImportError;
use super::workflow::Context;
use crate::domain::ids::new_meteor_id;
use crate::domain::secrets::hash_password;
use crate::store::{StoreError, UserImport};

/// How a staged user record failed (Rocket.Chat's error codes, kept in the record's `errors`).
pub type Failure = String;

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn string(value: Option<&Value>) -> Option<String> {
    value
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Rocket.Chat's `guessNameFromUsername`: characters other than letters, digits and `_`
/// become spaces, each word capitalised.
pub fn guess_name(username: &str) -> String {
    username
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|word| !word.is_empty())
        .map(|word| {
            let mut chars = word.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect::<String>(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A username for a record without one, from its name or its first address (Rocket.Chat's
/// `generateUsernameSuggestion`, simplified to importops' username rule).
fn suggest_username(name: Option<&str>, email: Option<&str>) -> Option<String> {
    let from = |text: &str, keep_dots: bool| {
        let s: String = text
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || (keep_dots && c == '.') {
                    c.to_ascii_lowercase()
                } else {
                    '.'
                }
            })
            .collect();
        let s = s.trim_matches('.').to_owned();
        (!s.is_empty()).then_some(s)
    };
    name.and_then(|n| from(n, false)).or_else(|| {
        email
            .and_then(|e| e.split('@').next())
            .and_then(|local| from(local, true))
    })
}

/// Imports one staged user (its document as JSON text). `Ok(Ok(import ids))` when it was
/// imported, `Ok(Err(code))` when the record failed (kept with that error), `Err` when the
/// import must stop (the database failed).
pub async fn import_staged_user(
    cx: &Context,
    data: &str,
    quick: bool,
) -> Result<Result<Vec<String>, Failure>, ImportError> {
    let Ok(data) = serde_json::from_str::<Value>(data) else {
        return Ok(Err("importer-user-invalid-record".into()));
    };
    let emails = strings(data.get("emails"));
    let username = string(data.get("username"));
    if emails.is_empty() && username.is_none() {
        return Ok(Err("importer-user-missing-email-and-username".into()));
    }
    let import_ids = strings(data.get("importIds"));
    let name = string(data.get("name"));
    let roles = data.get("roles").map(|r| strings(Some(r)));
    let deleted = data.get("deleted").and_then(Value::as_bool);
    let password = string(data.get("password"));
    let password_bcrypt = match password {
        None => None,
        Some(password) => {
            let hashed = cx
                .hashing
                .run(None, move || hash_password(&password))
                .await
                .map_err(|_| ImportError::plain("Password hashing is unavailable."))?;
            match hashed {
                Ok(hash) => Some(hash),
                Err(_) => return Ok(Err("importer-user-invalid-password".into())),
            }
        }
    };
    let username =
        username.or_else(|| suggest_username(name.as_deref(), emails.first().map(String::as_str)));
    let name = name.or_else(|| username.as_deref().map(guess_name));
    let user = UserImport {
        new_id: new_meteor_id(),
        import_ids: import_ids.clone(),
        username,
        name,
        emails,
        roles,
        deleted,
        password_bcrypt,
        avatar_url: string(data.get("avatarUrl")),
        insert_only: quick,
    };
    match cx.store.import_user(&user).await {
        Ok(_) => Ok(Ok(import_ids)),
        Err(StoreError::Conflict(conflict)) => {
            Ok(Err(format!("importer-user-conflict: {}", &*conflict)))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_guessed_from_usernames() {
        assert_eq!(guess_name("billy.bob"), "Billy Bob");
        assert_eq!(guess_name("john_doe-x"), "John_doe X");
    }

    #[test]
    fn usernames_are_suggested_from_names_then_addresses() {
        assert_eq!(
            suggest_username(Some("Jane Doe"), None).as_deref(),
            Some("jane.doe")
        );
        assert_eq!(
            suggest_username(None, Some("j.smith@example.com")).as_deref(),
            Some("j.smith")
        );
        assert_eq!(suggest_username(None, None), None);
    }
}
