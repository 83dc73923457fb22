//! `importops ops ...`: loading, listing and removing import operations.

use std::io::Read;

use clap::Subcommand;

use super::output::{print_json, print_table};
use super::{CliError, CliResult};
use crate::domain::operation::parse_batch;
use crate::domain::time::now_ms;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum OpsCommand {
    /// Load operations from a JSON array or JSON lines (`-` for standard input); all or
    /// nothing, and an operation whose _id exists is replaced
    Load {
        #[arg(value_name = "FILE|-")]
        file: String,
        /// Print the counts as JSON: {"loaded", "inserted", "replaced"}
        #[arg(long)]
        json: bool,
    },
    /// List the newest operations, as getLatestImportOperations orders them
    List {
        /// How many to list
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..))]
        limit: i64,
        /// Print the documents as a JSON array
        #[arg(long)]
        json: bool,
    },
    /// Remove an operation by _id
    Remove { id: String },
}

pub async fn run(store: &Store, cmd: OpsCommand) -> CliResult {
    match cmd {
        OpsCommand::Load { file, json } => {
            let text = read_input(&file)?;
            let spinner = Spinner::start("checking the operations");
            let ops = parse_batch(&text, now_ms());
            spinner.finish();
            let ops = ops.map_err(|e| CliError::Usage(format!("nothing was loaded: {e}")))?;
            let spinner = Spinner::start(&format!("writing {} operations", ops.len()));
            let report = store.upsert_operations(&ops).await;
            spinner.finish();
            let report = report?;
            if json {
                print_json(&serde_json::json!({
                    "loaded": ops.len(),
                    "inserted": report.inserted,
                    "replaced": report.updated,
                }));
            } else {
                println!(
                    "loaded {} operations ({} new, {} replaced)",
                    ops.len(),
                    report.inserted,
                    report.updated
                );
            }
        }
        OpsCommand::List { limit, json } => {
            let docs = store.latest_operations(limit).await?;
            let values: Vec<serde_json::Value> = docs
                .iter()
                .map(|d| serde_json::from_str(d))
                .collect::<Result<_, _>>()
                .map_err(|e| CliError::Io(format!("a stored operation is not valid JSON: {e}")))?;
            if json {
                print_json(&values);
            } else {
                let cell = |v: &serde_json::Value, key: &str| match &v[key] {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => String::new(),
                    other => other.to_string(),
                };
                let rows: Vec<Vec<String>> = values
                    .iter()
                    .map(|v| {
                        [
                            "_id",
                            "type",
                            "importerKey",
                            "status",
                            "valid",
                            "_updatedAt",
                        ]
                        .iter()
                        .map(|k| cell(v, k))
                        .collect()
                    })
                    .collect();
                print_table(
                    &["ID", "TYPE", "IMPORTER", "STATUS", "VALID", "UPDATED"],
                    &rows,
                );
            }
        }
        OpsCommand::Remove { id } => {
            if !store.remove_operation(&id).await? {
                return Err(CliError::Usage(format!(
                    "there is no operation with _id {id:?}"
                )));
            }
            println!("removed operation {id}");
        }
    }
    Ok(())
}

fn read_input(file: &str) -> Result<String, CliError> {
    let mut text = String::new();
    let result = if file == "-" {
        std::io::stdin().read_to_string(&mut text).map(drop)
    } else {
        std::fs::File::open(file).and_then(|mut f| f.read_to_string(&mut text).map(drop))
    };
    result.map_err(|e| CliError::Io(format!("cannot read {file}: {e}")))?;
    Ok(text)
}

/// A spinner with a message on stderr while long work runs, only on a terminal.
struct Spinner(Option<indicatif::ProgressBar>);

impl Spinner {
    fn start(message: &str) -> Self {
        if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return Spinner(None);
        }
        let bar = indicatif::ProgressBar::new_spinner().with_message(message.to_owned());
        bar.enable_steady_tick(std::time::Duration::from_millis(100));
        Spinner(Some(bar))
    }

    fn finish(self) {
        if let Some(bar) = self.0 {
            bar.finish_and_clear();
        }
    }
}
