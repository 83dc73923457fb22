//! `importops ops ...`: loading, listing and removing import operations.

use std::io::Read;
use std::sync::Arc;

use clap::Subcommand;

use super::output::{print_json, print_table};
use super::progress::Bars;
use super::{CliError, CliResult};
use crate::batch::{self, BatchError, Progress};
use crate::domain::time::now_ms;
use crate::store::{LoadReport, Store, StreamError};

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
            let report = load(store, &file).await?;
            let loaded = report.inserted + report.updated;
            if json {
                print_json(&serde_json::json!({
                    "loaded": loaded,
                    "inserted": report.inserted,
                    "replaced": report.updated,
                }));
            } else {
                println!(
                    "loaded {loaded} operations ({} new, {} replaced)",
                    report.inserted, report.updated
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

/// Streams the operations of `file` (`-`: standard input) into one transaction.
async fn load(store: &Store, file: &str) -> Result<LoadReport, CliError> {
    let cannot_read = |e: std::io::Error| CliError::Io(format!("cannot read {file}: {e}"));
    let (input, size): (Box<dyn Read + Send>, _) = if file == "-" {
        (Box::new(std::io::stdin()), None)
    } else {
        let f = std::fs::File::open(file).map_err(cannot_read)?;
        let size = f.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
        (Box::new(f), size)
    };
    let bars = Arc::new(Bars::on_stderr());
    bars.start(if file == "-" { "standard input" } else { file }, size);
    let fault = |e: BatchError| match e {
        BatchError::Io(e) => cannot_read(e),
        e => CliError::Usage(format!("nothing was loaded: {e}")),
    };
    let chunks = batch::operation_chunks(input, now_ms(), bars.clone()).map_err(fault)?;
    let written = store.upsert_operation_stream(chunks).await;
    bars.finish();
    written.map_err(|e| match e {
        StreamError::Input(e) => fault(e),
        StreamError::Store(e) => e.into(),
    })
}
