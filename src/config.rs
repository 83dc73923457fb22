//! The API's settings: flags, environment variables and defaults in one struct.

use std::path::{Path, PathBuf};

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
    /// `--import-max-bytes`: 100 MiB.
    pub const IMPORT_MAX_BYTES: u64 = 100 * 1024 * 1024;
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
    /// The folder uploaded and downloaded import archives are stored in (Rocket.Chat's
    /// `ImportFile_FileSystemPath`); default a folder `import-files` beside the SQLite
    /// database, or the system's temporary folder on Postgres
    #[arg(long, env = "IMPORTOPS_IMPORT_FILE_DIR")]
    pub import_file_dir: Option<PathBuf>,
    /// The most bytes an import upload, an import download, and an archive's entries once
    /// uncompressed may hold
    #[arg(long, env = "IMPORTOPS_IMPORT_MAX_BYTES", default_value_t = defaults::IMPORT_MAX_BYTES,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub import_max_bytes: u64,
    /// Hosts (`host` or `host:port`, comma-separated) `downloadPublicImportFile` may fetch from
    /// even at a loopback, private or link-local address (Rocket.Chat's `SSRF_Allowlist`)
    #[arg(long, env = "IMPORTOPS_IMPORT_URL_ALLOWLIST", value_delimiter = ',')]
    pub import_url_allowlist: Vec<String>,
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
            import_file_dir: None,
            import_max_bytes: defaults::IMPORT_MAX_BYTES,
            import_url_allowlist: Vec::new(),
            metrics_on_api: true,
        }
    }
}

/// The import workflow's settings (docs/compatibility.md section 11), resolved once from
/// [`Settings`] when the state is built (`AppState::import`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSettings {
    /// Where uploaded and downloaded archives are stored; local paths given to
    /// `downloadPublicImportFile` must lie under it.
    pub file_dir: PathBuf,
    /// Bounds an upload, a download, and the uncompressed size of an archive.
    pub max_bytes: u64,
    /// Rocket.Chat's `SSRF_Allowlist`: `host` or `host:port` entries, trimmed, lower-cased,
    /// empties dropped.
    pub url_allowlist: Vec<String>,
}

impl ImportSettings {
    /// The settings' values; without `--import-file-dir`, a folder in the system's temporary
    /// folder (`serve` first puts the default beside a SQLite database: [`default_file_dir`]).
    pub fn from_settings(settings: &Settings) -> Self {
        ImportSettings {
            file_dir: settings
                .import_file_dir
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join("importops-import-files")),
            max_bytes: settings.import_max_bytes,
            url_allowlist: settings
                .import_url_allowlist
                .iter()
                .map(|entry| entry.trim().to_ascii_lowercase())
                .filter(|entry| !entry.is_empty())
                .collect(),
        }
    }
}

/// `--import-file-dir`'s default for a database URL: `import-files` beside a SQLite
/// database file, else (Postgres, in-memory SQLite) the system's temporary folder.
pub fn default_file_dir(database_url: &str) -> PathBuf {
    let file = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .map(|rest| rest.split('?').next().unwrap_or(rest))
        .filter(|path| !path.is_empty() && !path.contains(":memory:"));
    match file.and_then(|path| Path::new(path).parent()) {
        Some(parent) if parent.as_os_str().is_empty() => PathBuf::from("import-files"),
        Some(parent) => parent.join("import-files"),
        None => std::env::temp_dir().join("importops-import-files"),
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
    fn the_import_file_folder_defaults_beside_a_sqlite_database() {
        assert_eq!(
            default_file_dir("sqlite:///var/lib/importops/db.sqlite?mode=rwc"),
            PathBuf::from("/var/lib/importops/import-files")
        );
        assert_eq!(
            default_file_dir("sqlite:importops.db"),
            PathBuf::from("import-files")
        );
        assert_eq!(
            default_file_dir("postgres://u@h/db"),
            std::env::temp_dir().join("importops-import-files")
        );
        let parsed = Flags::try_parse_from([
            "importops",
            "--import-url-allowlist",
            " Mock.dev:8080 ,,10.0.0.1",
            "--import-max-bytes",
            "1000",
        ])
        .unwrap();
        let import = ImportSettings::from_settings(&parsed.settings);
        assert_eq!(import.url_allowlist, ["mock.dev:8080", "10.0.0.1"]);
        assert_eq!(import.max_bytes, 1000);
        assert!(Flags::try_parse_from(["importops", "--import-max-bytes", "0"]).is_err());
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
