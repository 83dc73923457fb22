//! `importops import run FILE --importer csv|slack|slack-users`: Rocket.Chat's import workflow
//! without HTTP (docs/compatibility.md section 11): the file copied into the import folder as
//! a new operation, prepared, the selection applied, imported, with a progress bar on a
//! terminal and a summary (or `--json`) at the end. Every step is the server's own function.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use super::progress::StepBar;
use super::{CliError, CliResult};
use crate::config::{ImportSettings, Settings, default_file_dir};
use crate::hashing::PasswordHashing;
use crate::importer::ImportError;
use crate::importer::workflow::{self, Choice, Context, Selection};

/// The `user` of operations started from the command line.
pub const CLI_USER: &str = "importops";

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import a CSV zip, a Slack export zip or a Slack users CSV through Rocket.Chat's import
    /// workflow, as `uploadImportFile`, `getImportFileData` and `startImport` would
    Run(RunArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImporterKey {
    Csv,
    Slack,
    SlackUsers,
}

impl ImporterKey {
    fn key(self) -> &'static str {
        match self {
            ImporterKey::Csv => "csv",
            ImporterKey::Slack => "slack",
            ImporterKey::SlackUsers => "slack-users",
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The archive (a zip; a CSV for slack-users)
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Which importer reads it
    #[arg(long, value_enum)]
    importer: ImporterKey,
    /// Import every user, channel and contact (the default when no list is given)
    #[arg(long, conflicts_with_all = ["users", "channels"])]
    all: bool,
    /// Import only these users (their import ids, comma-separated)
    #[arg(long, value_delimiter = ',')]
    users: Option<Vec<String>>,
    /// Import only these channels (their import ids, comma-separated; `__directMessages__`
    /// for every direct message)
    #[arg(long, value_delimiter = ',')]
    channels: Option<Vec<String>>,
    /// Where archives are stored (as the server's --import-file-dir)
    #[arg(long, env = "IMPORTOPS_IMPORT_FILE_DIR")]
    import_file_dir: Option<PathBuf>,
    /// The most bytes the file, and its entries uncompressed, may hold
    #[arg(long, env = "IMPORTOPS_IMPORT_MAX_BYTES")]
    import_max_bytes: Option<u64>,
    /// Print the summary as JSON
    #[arg(long)]
    json: bool,
}

fn failed(e: ImportError) -> CliError {
    match e {
        ImportError::Store(e) => e.into(),
        other => CliError::Usage(format!("the import failed: {other}")),
    }
}

pub async fn run(url: &super::Database, command: ImportCommand) -> CliResult {
    let ImportCommand::Run(args) = command;
    if !args.file.is_file() {
        return Err(CliError::Usage(format!(
            "{} is not a file",
            args.file.display()
        )));
    }
    let store = super::open(url).await?;
    let defaults = Settings::default();
    let import = ImportSettings::from_settings(&Settings {
        import_file_dir: Some(
            args.import_file_dir
                .clone()
                .unwrap_or_else(|| default_file_dir(&url.url)),
        ),
        import_max_bytes: args.import_max_bytes.unwrap_or(defaults.import_max_bytes),
        ..defaults
    });
    let cx = Context {
        store,
        import: Arc::new(import),
        hashing: PasswordHashing::shared().clone(),
    };
    let key = args.importer.key();
    let id = workflow::load_local_file(&cx, CLI_USER, &args.file, key)
        .await
        .map_err(failed)?;
    let data = workflow::file_data_with(&cx).await.map_err(failed)?;
    let listed = |field: &str| data[field].as_array().map_or(0, Vec::len);
    let (users, channels) = (listed("users"), listed("channels"));
    let messages = data["message_count"].as_u64().unwrap_or(0);
    if users + channels + listed("contacts") == 0 && messages == 0 {
        return Err(CliError::Usage(format!(
            "the import failed: {} holds nothing to import",
            args.file.display()
        )));
    }
    let everything = args.all || (args.users.is_none() && args.channels.is_none());
    let choice = |list: &Option<Vec<String>>| match list {
        _ if everything => Choice::everything(),
        Some(list) => Choice {
            all: false,
            list: list.iter().cloned().collect(),
        },
        None => Choice::default(),
    };
    let selection = Selection {
        users: choice(&args.users),
        channels: choice(&args.channels),
        contacts: if everything {
            Choice::everything()
        } else {
            Choice::default()
        },
    };
    workflow::begin_import(&cx, &Value::Null, "startImport")
        .await
        .map_err(failed)?;
    let bar = Arc::new(StepBar::on_stderr());
    let watcher = {
        let (store, bar) = (cx.store.clone(), bar.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(progress) = workflow::progress_with(&store).await {
                    let count = |f: &str| progress["count"][f].as_u64().unwrap_or(0);
                    bar.show(
                        progress["step"].as_str().unwrap_or_default(),
                        count("completed"),
                        count("total"),
                    );
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let result = workflow::run_import(&cx, &id, &selection, false).await;
    watcher.abort();
    bar.finish();
    result.map_err(failed)?;
    let progress = workflow::progress_with(&cx.store).await.map_err(failed)?;
    let count = |f: &str| progress["count"][f].as_u64().unwrap_or(0);
    if args.json {
        super::output::print_json(&json!({
            "operation": id,
            "importer": key,
            "status": progress["step"],
            "users": users,
            "channels": channels,
            "messages": messages,
            "completed": count("completed"),
            "error": count("error"),
        }));
        return Ok(());
    }
    println!(
        "imported {} with the {key} importer: {users} users, {channels} channels and {messages} \
         messages listed; {} records completed, {} failed (operation {id})",
        args.file.display(),
        count("completed"),
        count("error"),
    );
    Ok(())
}
