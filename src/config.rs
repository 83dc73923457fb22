//! Server settings that change behaviour at request time. The command line (`cli`) fills
//! them from flags and environment variables; tests build them directly.

use clap::ValueEnum;

/// Which of Rocket.Chat's two 401 bodies to send.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum AuthErrorBody {
    /// The API documentation's body: `{"success":false,"error":"unauthorized"}`.
    #[default]
    Documented,
    /// What Rocket.Chat 7.x/8.x servers send: `You must be logged in to do this.`
    Rocketchat,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub auth_error_body: AuthErrorBody,
    /// How long a login token lasts after it was issued (Rocket.Chat's
    /// `Accounts_LoginExpiration`, 90 days by default).
    pub login_expiration_days: u32,
    /// Rocket.Chat's API rate limiter: calls allowed per window per route, method and client
    /// address; 0 turns it off.
    pub rate_limit_calls: u32,
    /// The window's length in milliseconds; 0 turns the limiter off.
    pub rate_limit_window_ms: u64,
    /// Take the client address from the last `X-Forwarded-For` entry (the one the proxy in
    /// front added) instead of the socket. Only behind a proxy that sets it.
    pub trust_proxy: bool,
    /// Serve `GET /metrics` on the API's address (off when metrics have their own).
    pub metrics_on_api: bool,
}

impl Settings {
    /// The same settings with the rate limiter off.
    pub fn without_rate_limit(self) -> Self {
        Settings {
            rate_limit_calls: 0,
            ..self
        }
    }

    pub fn login_expiration_ms(&self) -> i64 {
        i64::from(self.login_expiration_days) * 86_400_000
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            auth_error_body: AuthErrorBody::Documented,
            login_expiration_days: 90,
            rate_limit_calls: 10,
            rate_limit_window_ms: 60_000,
            trust_proxy: false,
            metrics_on_api: true,
        }
    }
}
