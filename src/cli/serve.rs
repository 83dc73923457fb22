//! `importops serve`: start-up (migrations, the bootstrap admin, `--demo`), then the server.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::Args;
use tokio::net::TcpListener;

use super::{CliError, CliResult, open_with};
use crate::accounts::{AccountError, NewAccount, TokenLifetime, create_user, issue_token};
use crate::batch::parse_batch;
use crate::config::Settings;
use crate::domain::time::now_ms;
use crate::http::AppState;
use crate::store::{ConflictKind, Store, StoreError, Waits};
use crate::telemetry::LogFormat;

/// The documented example that `--demo` loads.
const DEMO_OPERATIONS: &str = include_str!("../../fixtures/documented-operations.json");
const DEMO_ADMIN: &str = "admin";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on
    #[arg(long, env = "IMPORTOPS_LISTEN", default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Load the documented example into an empty database, ensure a user `admin`, and print a
    /// curl line with a fresh token
    #[arg(long)]
    demo: bool,
    #[command(flatten)]
    settings: Settings,
    /// Serve /metrics on this address instead of the API's
    #[arg(long, env = "IMPORTOPS_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Log lines as human text or JSON objects
    #[arg(long, env = "IMPORTOPS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Create this admin user at start-up if it does not exist (with IMPORTOPS_ADMIN_PASSWORD)
    #[arg(long, env = "IMPORTOPS_ADMIN_USERNAME", hide = true)]
    admin_username: Option<String>,
    #[arg(
        long,
        env = "IMPORTOPS_ADMIN_PASSWORD",
        hide = true,
        hide_env_values = true
    )]
    admin_password: Option<String>,
    /// Milliseconds a request may wait for a free Postgres connection (then 503)
    #[arg(long, env = "IMPORTOPS_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 4_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    db_acquire_timeout_ms: u64,
    /// Milliseconds a Postgres statement may wait for a lock (then 503; 0: no bound)
    #[arg(long, env = "IMPORTOPS_DB_LOCK_TIMEOUT_MS", default_value_t = 1_500)]
    db_lock_timeout_ms: u64,
    /// Milliseconds a Postgres statement may run (then 503; 0: no bound)
    #[arg(
        long,
        env = "IMPORTOPS_DB_STATEMENT_TIMEOUT_MS",
        default_value_t = 5_000
    )]
    db_statement_timeout_ms: u64,
}

impl ServeArgs {
    fn waits(&self) -> Waits {
        Waits {
            acquire: Duration::from_millis(self.db_acquire_timeout_ms),
            lock: Duration::from_millis(self.db_lock_timeout_ms),
            statement: Duration::from_millis(self.db_statement_timeout_ms),
        }
    }
}

pub async fn run(url: &super::Database, args: ServeArgs) -> CliResult {
    let store = open_with(url, Some(args.waits())).await?;
    // Rocket.Chat invalidates interrupted imports at start-up (docs/compatibility.md section 11).
    crate::importer::workflow::on_server_start(&store).await?;
    if let (Some(username), Some(password)) = (&args.admin_username, &args.admin_password) {
        bootstrap_admin(&store, username, password).await?;
    }
    let demo_token = if args.demo {
        Some(prepare_demo(&store).await?)
    } else {
        None
    };

    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| CliError::Io(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Io(format!("cannot read the listening address: {e}")))?;
    tracing::info!(%addr, backend = ?store.backend(), "importops is listening");
    if let Some((user_id, token)) = demo_token {
        let reachable = reachable_address(addr);
        println!(
            "importops demo: the documented example, served by user {DEMO_ADMIN} with a fresh token:"
        );
        println!(
            "curl -H 'X-User-Id: {user_id}' -H 'X-Auth-Token: {token}' http://{reachable}/api/v1/getLatestImportOperations"
        );
    }

    let import_file_dir = args
        .settings
        .import_file_dir
        .clone()
        .unwrap_or_else(|| crate::config::default_file_dir(&url.url));
    let settings = Settings {
        metrics_on_api: args.metrics_listen.is_none(),
        import_file_dir: Some(import_file_dir),
        ..args.settings
    };
    let bounds = crate::server::Bounds::from_settings(&settings);
    let state = AppState::new(store, settings);
    // One signal stops both listeners.
    let (stop, stopped) = tokio::sync::watch::channel(());
    tokio::spawn(async move {
        crate::server::shutdown_signal().await;
        let _ = stop.send(());
    });
    let signalled = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.changed().await;
        }
    };
    let metrics = match args.metrics_listen {
        Some(metrics_addr) => {
            let metrics_listener = TcpListener::bind(metrics_addr)
                .await
                .map_err(|e| CliError::Io(format!("cannot listen on {metrics_addr}: {e}")))?;
            tracing::info!(addr = %metrics_addr, "metrics are served on their own address");
            let app = crate::http::metrics_router(state.clone());
            Some(tokio::spawn(crate::server::serve(
                metrics_listener,
                app,
                bounds.clone(),
                signalled(),
            )))
        }
        None => None,
    };
    let served = crate::server::run(listener, state, bounds, signalled()).await;
    if let Some(metrics) = metrics
        && let Ok(Err(error)) = metrics.await
    {
        tracing::error!(%error, "the metrics listener stopped");
    }
    served.map_err(|e| CliError::Io(format!("the server stopped: {e}")))
}

/// Creates the admin named by the environment, as Rocket.Chat does with ADMIN_USERNAME and
/// ADMIN_PASS, unless that user exists already.
async fn bootstrap_admin(store: &Store, username: &str, password: &str) -> CliResult {
    if store.user_by_username(username).await?.is_some() {
        return Ok(());
    }
    let account = NewAccount {
        username: username.to_owned(),
        roles: vec!["admin".into()],
        password: Some(password.to_owned()),
        active: true,
        ..NewAccount::default()
    };
    match create_user(store, account).await {
        Ok(_) => {
            tracing::info!(username, "created the admin user from the environment");
            Ok(())
        }
        // Another replica starting at the same time created it first.
        Err(AccountError::Store(StoreError::Conflict(c))) if c.kind == ConflictKind::Username => {
            Ok(())
        }
        Err(AccountError::Invalid(msg)) => {
            Err(CliError::Usage(format!("IMPORTOPS_ADMIN_USERNAME: {msg}")))
        }
        Err(AccountError::Store(e)) => Err(e.into()),
    }
}

/// Loads the documented example into an empty database, makes sure user `admin` exists, and
/// issues it a fresh token. Returns the user id and the raw token.
async fn prepare_demo(store: &Store) -> Result<(String, String), CliError> {
    if store.count_operations().await? == 0 {
        let ops = parse_batch(DEMO_OPERATIONS, now_ms()).expect("the documented example is valid");
        store.upsert_operations(&ops).await?;
    }
    let admin = match store.user_by_username(DEMO_ADMIN).await? {
        Some(user) => user,
        None => {
            let account = NewAccount {
                username: DEMO_ADMIN.into(),
                name: Some("Administrator".into()),
                roles: vec!["admin".into()],
                active: true,
                ..NewAccount::default()
            };
            create_user(store, account).await?
        }
    };
    if !admin.active || !admin.roles.iter().any(|r| r == "admin") {
        tracing::warn!(
            "user admin exists but is inactive or lacks the admin role: the demo token may be refused"
        );
    }
    let token = issue_token(store, &admin.id, TokenLifetime::Default).await?;
    Ok((admin.id, token))
}

/// An address a local curl can reach: the unspecified address becomes loopback.
fn reachable_address(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        let ip = match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        };
        SocketAddr::new(ip, addr.port())
    } else {
        addr
    }
}
