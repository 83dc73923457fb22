//! Users and their roles.

use serde::Serialize;

/// A user as Rocket.Chat describes one (`_id, username, name, active, roles, emails`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    #[serde(rename = "_id")]
    pub id: String,
    pub username: Option<String>,
    pub name: Option<String>,
    pub active: bool,
    pub roles: Vec<String>,
    pub emails: Vec<Email>,
}

/// A user as stored: what `me` and `users.create` answer beyond [`User`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub user: User,
    pub has_password: bool,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Email {
    pub address: String,
    pub verified: bool,
}

/// What creating a user takes; the password is already hashed.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: String,
    pub username: String,
    pub name: Option<String>,
    pub active: bool,
    pub roles: Vec<String>,
    pub emails: Vec<Email>,
    pub password_bcrypt: Option<String>,
}

/// Rocket.Chat's default username rule (`UTF8_User_Names_Validation`): `[0-9a-zA-Z-_.]+`.
pub fn is_valid_username(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 120
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A role name: non-empty, printable, no spaces.
pub fn is_valid_role(s: &str) -> bool {
    !s.is_empty() && s.len() <= 100 && s.chars().all(|c| c.is_ascii_graphic())
}

/// A plausible e-mail address: one `@` with text on both sides, no spaces.
pub fn is_valid_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !s.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_rule() {
        assert!(is_valid_username("jane.doe-2_x"));
        assert!(!is_valid_username(""));
        assert!(!is_valid_username("jane doe"));
        assert!(!is_valid_username("jane@x"));
    }

    #[test]
    fn email_rule() {
        assert!(is_valid_email("a@b.c"));
        assert!(!is_valid_email("ab.c"));
        assert!(!is_valid_email("a@"));
        assert!(!is_valid_email("a b@c"));
    }
}
