//! The API's settings: flags, environment variables and defaults in one struct.

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

/// How the cache's watcher learns of commits by other processes (docs/compatibility.md,
/// section 6.1). SQLite always polls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum ChangeDetection {
    /// Postgres: LISTEN for the triggers' notifications, with a heartbeat.
    #[default]
    Notify,
    /// Postgres: poll the change counters every 200 ms; for replicas behind PgBouncer's
    /// transaction pooling, where LISTEN cannot work.
    Poll,
}

/// What stands between importops and Postgres (docs/compatibility.md, section 6.1). Read by
/// every command, as the database URL is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum PostgresPooler {
    /// A direct connection, or a pooler in session mode: named prepared statements, reused.
    #[default]
    None,
    /// A pooler in transaction mode (PgBouncer's `pool_mode = transaction`): every statement
    /// inside an explicit transaction, as the unnamed statement, the server's waits set per
    /// transaction, the migrations under a transaction-level lock, and change detection by
    /// polling (LISTEN cannot work there).
    Transaction,
}

/// Defaults, each written once: the flags' `default_value_t` and `Settings::default` use them.
mod defaults {
    pub const LOGIN_EXPIRATION_DAYS: u32 = 90;
    pub const RATE_LIMIT_CALLS: u32 = 10;
    pub const RATE_LIMIT_WINDOW_MS: u64 = 60_000;
    /// The Rocket.Chat release `/api/info` reports (docs/compatibility.md#4-6-server-routes).
    pub const ROCKETCHAT_VERSION: &str = "8.0.0";
    /// Rocket.Chat's `API_CORS_Origin` default (docs/compatibility.md#4-6-cors).
    pub const CORS_ORIGIN: &str = "*";
    pub const ACCESS_LOG: bool = true;
    pub const BODY_READ_TIMEOUT_SECS: u64 = 10;
    /// 0: derived from the descriptor limit (`connections::limit`).
    pub const MAX_CONNECTIONS: usize = 0;
    /// 0: half the cores, at least one.
    pub const PASSWORD_HASHING: usize = 0;
}

/// Every setting of the API, with its flag, its environment variable and its default. `serve`
/// reads them once at start-up (clap, flattened into its arguments); the parts that use them
/// take what they need when the state is built (`http::AppState::new`). Tests build them
/// directly.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Which 401 body to send
    #[arg(long, env = "IMPORTOPS_AUTH_ERROR_BODY", value_enum, default_value_t = AuthErrorBody::Documented)]
    pub auth_error_body: AuthErrorBody,
    /// Days a login token lasts after it was issued (Rocket.Chat's `Accounts_LoginExpiration`)
    #[arg(long, env = "IMPORTOPS_LOGIN_EXPIRATION_DAYS", default_value_t = defaults::LOGIN_EXPIRATION_DAYS,
          value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub login_expiration_days: u32,
    /// Calls allowed per rate-limit window, per client address on each route and method (0: off)
    #[arg(long, env = "IMPORTOPS_RATE_LIMIT_CALLS", default_value_t = defaults::RATE_LIMIT_CALLS)]
    pub rate_limit_calls: u32,
    /// Length of a rate-limit window in milliseconds (0: off)
    #[arg(long, env = "IMPORTOPS_RATE_LIMIT_WINDOW_MS", default_value_t = defaults::RATE_LIMIT_WINDOW_MS)]
    pub rate_limit_window_ms: u64,
    /// Take the client address for rate limiting from the last X-Forwarded-For entry (the one
    /// the proxy in front added) instead of the socket; only behind a proxy that sets it
    #[arg(long, env = "IMPORTOPS_TRUST_PROXY")]
    pub trust_proxy: bool,
    /// The server's public address, as Rocket.Chat's `Site_Url` (`me`'s `avatarUrl` is made
    /// from it); when unset, `http://` and the request's `Host` header
    #[arg(long, env = "IMPORTOPS_SITE_URL")]
    pub site_url: Option<String>,
    /// Usernames `users.create` refuses besides Rocket.Chat's own (comma-separated, any case;
    /// Rocket.Chat's `Accounts_BlockedUsernameList`)
    #[arg(long, env = "IMPORTOPS_BLOCKED_USERNAMES", value_delimiter = ',')]
    pub blocked_usernames: Vec<String>,
    /// The Rocket.Chat version `/api/info` reports (trimmed to major.minor for callers without
    /// `view-statistics`); importops' own version is in its `X-Importops-Version` header
    #[arg(long, env = "IMPORTOPS_ROCKETCHAT_VERSION", default_value = defaults::ROCKETCHAT_VERSION)]
    pub rocketchat_version: String,
    /// Answer CORS pre-flight requests (Rocket.Chat's `API_Enable_CORS`); without it they get 405
    #[arg(long, env = "IMPORTOPS_API_ENABLE_CORS")]
    pub api_enable_cors: bool,
    /// The origins allowed by pre-flight requests: `*`, or a comma-separated list
    /// (Rocket.Chat's `API_CORS_Origin`)
    #[arg(long, env = "IMPORTOPS_API_CORS_ORIGIN", default_value = defaults::CORS_ORIGIN)]
    pub api_cors_origin: String,
    /// Write one line per answered request at `info` (method, route pattern, status,
    /// duration in ms, request id); `false` turns it off
    #[arg(long, env = "IMPORTOPS_ACCESS_LOG", default_value_t = defaults::ACCESS_LOG,
          action = clap::ArgAction::Set, value_name = "BOOL",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub access_log: bool,
    /// Seconds a client has to send a request body once its headers are in; past it, 408
    #[arg(long, env = "IMPORTOPS_BODY_READ_TIMEOUT", default_value_t = defaults::BODY_READ_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub body_read_timeout: u64,
    /// Most connections open at once (0: the descriptor limit less a reserve); past it, the
    /// one waiting longest for its request or body is closed
    #[arg(long, env = "IMPORTOPS_MAX_CONNECTIONS", default_value_t = defaults::MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Password hashes (logins, users.create) computed at once (0: half the cores, at least
    /// one); a login that finds them all busy for 2 s gets 503
    #[arg(long, env = "IMPORTOPS_PASSWORD_HASHING", default_value_t = defaults::PASSWORD_HASHING)]
    pub password_hashing: usize,
    /// How the cache learns of other processes' commits on Postgres: `notify` (LISTEN) or
    /// `poll` (the change counters every 200 ms, for PgBouncer's transaction pooling)
    #[arg(long, env = "IMPORTOPS_CHANGE_DETECTION", value_enum, default_value_t = ChangeDetection::Notify)]
    pub change_detection: ChangeDetection,
    /// Serve `GET /metrics` on the API's address; `serve` turns it off when
    /// `--metrics-listen` gives metrics an address of their own.
    #[arg(skip = true)]
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
            login_expiration_days: defaults::LOGIN_EXPIRATION_DAYS,
            rate_limit_calls: defaults::RATE_LIMIT_CALLS,
            rate_limit_window_ms: defaults::RATE_LIMIT_WINDOW_MS,
            trust_proxy: false,
            site_url: None,
            blocked_usernames: Vec::new(),
            rocketchat_version: defaults::ROCKETCHAT_VERSION.to_owned(),
            api_enable_cors: false,
            api_cors_origin: defaults::CORS_ORIGIN.to_owned(),
            access_log: defaults::ACCESS_LOG,
            body_read_timeout: defaults::BODY_READ_TIMEOUT_SECS,
            max_connections: defaults::MAX_CONNECTIONS,
            password_hashing: defaults::PASSWORD_HASHING,
            change_detection: ChangeDetection::Notify,
            metrics_on_api: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        settings: Settings,
    }

    /// The flags' defaults are `Settings::default()` (an environment variable would change
    /// them, so none of ours may be set while this runs).
    #[test]
    fn the_flags_defaults_are_the_default_settings() {
        if std::env::vars()
            .any(|(k, _)| k.starts_with("IMPORTOPS_") && k != "IMPORTOPS_TEST_POSTGRES_URL")
        {
            return;
        }
        let parsed = Flags::parse_from(["importops"]).settings;
        assert_eq!(format!("{parsed:?}"), format!("{:?}", Settings::default()));
        assert!(parsed.access_log, "the access log is on by default");
    }

    #[test]
    fn the_access_log_is_turned_off_by_a_false_value() {
        for off in ["false", "0", "no", "off"] {
            let parsed = Flags::try_parse_from(["importops", "--access-log", off]).unwrap();
            assert!(!parsed.settings.access_log, "{off}");
        }
        let on = Flags::try_parse_from(["importops", "--access-log", "true"]).unwrap();
        assert!(on.settings.access_log);
        assert!(Flags::try_parse_from(["importops", "--access-log", "maybe"]).is_err());
    }
}
