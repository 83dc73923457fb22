//! `importops import-rocketchat DIR`: loading a Rocket.Chat export made with mongoexport.
//!
//! The users and permissions are read and checked before the database is opened; then
//! everything is written in one transaction, the operations read and checked as they are
//! written. On a terminal, progress bars show the counts; otherwise one summary line.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use super::progress::Bars;
use super::{CliError, CliResult};
use crate::domain::time::now_ms;
use crate::rocketchat::{self, ExportError, ImportError};

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A directory with mongoexport's users.json, rocketchat_permissions.json and
    /// rocketchat_import.json (any may be missing, not all)
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Print the counts as JSON: {"users", "tokens", "permissions", "operations"}
    #[arg(long)]
    pub json: bool,
}

pub async fn run(url: &super::Database, args: ImportArgs) -> CliResult {
    let bars = Arc::new(Bars::on_stderr());
    let export = rocketchat::read_export(&args.dir, now_ms(), &*bars).map_err(|e| {
        bars.finish();
        export_error(e)
    })?;
    let (users, permissions) = (export.data.users.len(), export.data.permissions.len());
    let store = super::open(url).await?;
    let written = rocketchat::write(&store, export, bars.clone()).await;
    bars.finish();
    let report = written.map_err(|e| match e {
        ImportError::Export(e) => export_error(e),
        ImportError::Store(e) => e.into(),
    })?;
    let operations = report.operations.inserted + report.operations.updated;
    if args.json {
        super::output::print_json(&serde_json::json!({
            "users": users,
            "tokens": report.tokens,
            "permissions": permissions,
            "operations": operations,
        }));
        return Ok(());
    }
    println!(
        "imported {} ({}), {}, {} from {}",
        count(users as u64, "user"),
        count(report.tokens, "token"),
        count(permissions as u64, "permission"),
        count(operations, "operation"),
        args.dir.display()
    );
    Ok(())
}

fn export_error(e: ExportError) -> CliError {
    match e {
        ExportError::Read { .. } => CliError::Io(e.to_string()),
        ExportError::Invalid { .. } => CliError::Usage(format!("nothing was imported: {e}")),
        ExportError::NotADirectory(_) | ExportError::Empty(_) => CliError::Usage(e.to_string()),
    }
}

fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
