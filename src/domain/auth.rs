//! Whether a stored session authenticates its holder: Rocket.Chat's rules in one place.

/// What kind of token a session holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A login token: expires a set time after it was issued.
    Login,
    /// A personal access token: has a name, never expires.
    Personal,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Login => "login",
            TokenKind::Personal => "personal",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "login" => Some(TokenKind::Login),
            "personal" => Some(TokenKind::Personal),
            _ => None,
        }
    }
}

/// A session found by user id and token hash, with what the decision needs of its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user_id: String,
    pub username: Option<String>,
    pub active: bool,
    pub roles: Vec<String>,
    pub kind: TokenKind,
    pub issued_at_ms: i64,
    /// An expiry set when the token was issued; `None` for the configured default.
    pub expires_at_ms: Option<i64>,
}

impl Session {
    /// When this session stops authenticating, if ever.
    pub fn expiry_ms(&self, login_expiration_ms: i64) -> Option<i64> {
        match self.kind {
            TokenKind::Personal => None,
            TokenKind::Login => Some(
                self.expires_at_ms
                    .unwrap_or(self.issued_at_ms.saturating_add(login_expiration_ms)),
            ),
        }
    }

    /// Rocket.Chat refuses expired tokens, deactivated users and users without a username.
    pub fn authenticates(&self, now_ms: i64, login_expiration_ms: i64) -> bool {
        self.active
            && self.username.as_deref().is_some_and(|u| !u.is_empty())
            && self
                .expiry_ms(login_expiration_ms)
                .is_none_or(|expiry| now_ms < expiry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    fn session(kind: TokenKind) -> Session {
        Session {
            user_id: "u".into(),
            username: Some("jane".into()),
            active: true,
            roles: vec![],
            kind,
            issued_at_ms: 1_000 * DAY,
            expires_at_ms: None,
        }
    }

    #[test]
    fn login_tokens_expire_after_the_configured_time() {
        let s = session(TokenKind::Login);
        assert!(s.authenticates(1_089 * DAY, 90 * DAY));
        assert!(!s.authenticates(1_090 * DAY, 90 * DAY));
        assert!(s.authenticates(1_090 * DAY, 91 * DAY));
    }

    #[test]
    fn an_explicit_expiry_wins() {
        let s = Session {
            expires_at_ms: Some(1_001 * DAY),
            ..session(TokenKind::Login)
        };
        assert!(!s.authenticates(1_002 * DAY, 90 * DAY));
    }

    #[test]
    fn personal_tokens_never_expire() {
        assert!(session(TokenKind::Personal).authenticates(100_000 * DAY, 90 * DAY));
    }

    #[test]
    fn inactive_or_nameless_users_are_refused() {
        let inactive = Session {
            active: false,
            ..session(TokenKind::Personal)
        };
        assert!(!inactive.authenticates(0, 90 * DAY));
        let nameless = Session {
            username: None,
            ..session(TokenKind::Personal)
        };
        assert!(!nameless.authenticates(0, 90 * DAY));
    }
}
