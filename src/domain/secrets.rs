//! Login tokens and passwords, stored the way Rocket.Chat stores them so that data moves both
//! ways: a token as `base64(sha256(token))`, a password as bcrypt (cost 10) of the lowercase
//! sha256 hex of the password. Raw values exist only in memory, long enough to be shown once.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Rocket.Chat's bcrypt cost for passwords.
pub const BCRYPT_COST: u32 = 10;

/// A fresh raw login token: 32 random bytes as 43 URL-safe characters, like Meteor's
/// `Random.secret()`.
pub fn new_raw_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The sha256 of a raw token, from which its stored form is made.
pub fn token_digest(raw: &str) -> [u8; 32] {
    Sha256::digest(raw.as_bytes()).into()
}

/// The stored form of a token digest: standard base64 (with padding), 44 chars.
pub fn encode_digest(digest: &[u8; 32]) -> String {
    STANDARD.encode(digest)
}

/// The stored form of a login token: standard base64 (with padding) of its sha256, 44 chars.
pub fn hash_token(raw: &str) -> String {
    encode_digest(&token_digest(raw))
}

fn sha256_hex(password: &str) -> String {
    Sha256::digest(password.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The stored form of a password. Slow on purpose: call it off the async workers.
pub fn hash_password(password: &str) -> Result<String, bcrypt::BcryptError> {
    bcrypt::hash(sha256_hex(password), BCRYPT_COST)
}

/// Whether `password` matches a stored bcrypt hash (Rocket.Chat's `$2b$` hashes included).
/// Slow on purpose: call it off the async workers.
pub fn verify_password(password: &str, stored: &str) -> bool {
    verify_password_digest(&sha256_hex(password), stored)
}

/// Like `verify_password`, for a client that sent the sha256 hex of the password (Meteor's
/// `{digest, algorithm: "sha-256"}` form).
pub fn verify_password_digest(sha256_hex: &str, stored: &str) -> bool {
    bcrypt::verify(sha256_hex.to_ascii_lowercase(), stored).unwrap_or(false)
}

/// A valid bcrypt hash (of a random secret) no password matches, so that a login for an
/// unknown user costs the same time as one with a wrong password. Made once, on first use.
pub fn unmatchable_hash() -> &'static str {
    static HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        hash_password(&new_raw_token()).expect("bcrypt of a fixed-length secret")
    });
    &HASH
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_hash_matches_rocketchat() {
        // The admin token of the mongoexport fixture and the hash Rocket.Chat stored for it.
        let raw = format!("fixture-admin-token-{}", "a".repeat(29));
        assert_eq!(
            hash_token(&raw),
            "nj6BYiQFKhoomxto8209N2y+uNh4nyK+IMnb7+EOMCs="
        );
    }

    #[test]
    fn raw_tokens_are_long_and_distinct() {
        let a = new_raw_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, new_raw_token());
        assert_eq!(hash_token(&a).len(), 44);
    }

    #[test]
    fn passwords_verify_against_rocketchat_hashes() {
        let stored = "$2b$10$aIYnKFD71WUXTF590CATbu9hp.1bmrfsrLMpqEZo2Cm495LpefVra";
        assert!(verify_password("fixture-admin-password", stored));
        assert!(!verify_password("wrong", stored));
        let ours = hash_password("s3cret").unwrap();
        assert!(ours.starts_with("$2b$10$"));
        assert!(verify_password("s3cret", &ours));
        assert!(!verify_password("s3cret", "not a hash"));
        assert!(verify_password_digest(
            &sha256_hex("s3cret").to_uppercase(),
            &ours
        ));
        assert!(!verify_password(
            "fixture-admin-password",
            unmatchable_hash()
        ));
        assert!(
            bcrypt::verify("x", unmatchable_hash()).is_ok(),
            "a hash bcrypt can check"
        );
    }
}
