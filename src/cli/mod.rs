//! The command line: `importops serve` and the admin subcommands. Parsing lives here; each
//! group of subcommands has its own module. Errors end as one sentence on stderr and exit 1.

mod import;
mod import_run;
mod ops;
mod output;
mod permissions;
mod progress;
mod serve;
mod tokens;
mod users;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::PostgresPooler;
use crate::store::{DEFAULT_DATABASE_URL, Store, StoreError, Waits};
use crate::telemetry::{self, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "importops",
    version,
    about = "A standalone server for Rocket.Chat's import-operations API"
)]
pub struct Cli {
    /// sqlite://PATH (created on first use) or postgres://USER@HOST/DB
    #[arg(long, global = true, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    database_url: String,

    /// What stands between importops and Postgres: `none`, or `transaction` for a pooler in
    /// transaction mode such as PgBouncer's (implies `--change-detection poll`)
    #[arg(long, global = true, env = "IMPORTOPS_POSTGRES_POOLER", value_enum,
          default_value_t = PostgresPooler::None)]
    postgres_pooler: PostgresPooler,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server
    Serve(Box<serve::ServeArgs>),
    /// Apply the database migrations and exit
    Migrate,
    /// Add, list, remove, activate or deactivate users
    #[command(subcommand)]
    User(users::UserCommand),
    /// Grant or revoke a user's roles
    #[command(subcommand)]
    Role(users::RoleCommand),
    /// List permissions or set the roles that hold one
    #[command(subcommand)]
    Permission(permissions::PermissionCommand),
    /// Issue, list or revoke login tokens and personal access tokens
    #[command(subcommand)]
    Token(tokens::TokenCommand),
    /// Load, list or remove import operations
    #[command(subcommand)]
    Ops(ops::OpsCommand),
    /// Load a Rocket.Chat export made with mongoexport (users.json, rocketchat_permissions.json,
    /// rocketchat_import.json in DIR): all or nothing, and safe to run again
    ImportRocketchat(import::ImportArgs),
    /// Run Rocket.Chat's import workflow on an archive without the server
    #[command(subcommand)]
    Import(import_run::ImportCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// What a command can fail with; shown as one sentence.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(String),
}

pub type CliResult = Result<(), CliError>;

impl From<crate::accounts::AccountError> for CliError {
    fn from(e: crate::accounts::AccountError) -> Self {
        match e {
            crate::accounts::AccountError::Invalid(msg) => CliError::Usage(msg),
            crate::accounts::AccountError::Store(e) => e.into(),
        }
    }
}

/// Parses the command line, runs the command, and turns any error into one line and exit 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server logs its start and faults; other commands only warnings, their output is on
    // stdout. RUST_LOG overrides either.
    match &cli.command {
        // sqlx's own warnings (slow statements) print whole SQL texts: off unless RUST_LOG
        // asks for them; our errors say what failed in words.
        Command::Serve(args) => telemetry::init_logging(args.log_format, "info,sqlx=error"),
        _ => telemetry::init_logging(LogFormat::Text, "warn,sqlx=error"),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The database the command line names, and how to reach it.
pub(crate) struct Database {
    url: String,
    pooler: PostgresPooler,
}

async fn run(cli: Cli) -> CliResult {
    let url = Database {
        url: cli.database_url,
        pooler: cli.postgres_pooler,
    };
    match cli.command {
        Command::Serve(args) => serve::run(&url, *args).await,
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "importops", &mut std::io::stdout());
            Ok(())
        }
        Command::Migrate => {
            open(&url).await?;
            println!("the database is up to date");
            Ok(())
        }
        Command::User(cmd) => users::run_user(&open(&url).await?, cmd).await,
        Command::Role(cmd) => users::run_role(&open(&url).await?, cmd).await,
        Command::Permission(cmd) => permissions::run(&open(&url).await?, cmd).await,
        Command::Token(cmd) => tokens::run(&open(&url).await?, cmd).await,
        Command::Ops(cmd) => ops::run(&open(&url).await?, cmd).await,
        Command::ImportRocketchat(args) => import::run(&url, args).await,
        Command::Import(cmd) => import_run::run(&url, cmd).await,
    }
}

/// Opens and migrates the database named on the command line.
async fn open(database: &Database) -> Result<Store, CliError> {
    open_with(database, None).await
}

/// [`open`], with the server's bounds on waiting for Postgres.
async fn open_with(database: &Database, waits: Option<Waits>) -> Result<Store, CliError> {
    let url = &database.url;
    Store::open_with(url, waits, database.pooler)
        .await
        .map_err(|e| match e {
            StoreError::Other(sqlx::Error::Configuration(msg)) => {
                CliError::Usage(format!("{msg} (got {:?})", redacted(url)))
            }
            other => other.into(),
        })
}

/// The database URL as it may be shown in a message: a password in it (`user:PASSWORD@` or a
/// `password=` query parameter) is replaced by `***`.
fn redacted(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let base = match base.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
                None => base.to_owned(),
            },
            None => base.to_owned(),
        },
        None => base.to_owned(),
    };
    match query {
        None => base,
        Some(query) => {
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{base}?{}", pairs.join("&"))
        }
    }
}

/// The user with this username, or an error that says there is none.
async fn find_user(store: &Store, username: &str) -> Result<crate::domain::user::User, CliError> {
    store
        .user_by_username(username)
        .await?
        .ok_or_else(|| no_such_user(username))
}

fn no_such_user(username: &str) -> CliError {
    CliError::Usage(format!("there is no user named {username:?}"))
}
