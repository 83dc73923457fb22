//! `importops import-rocketchat DIR`: loading a Rocket.Chat export made with mongoexport.
//!
//! Everything is read and checked before the database is opened; then it is written in one
//! transaction. On a terminal, progress bars show the counts; otherwise one summary line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;

use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{CliError, CliResult};
use crate::domain::time::now_ms;
use crate::rocketchat::{self, ExportError, Progress};

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

pub async fn run(url: &str, args: ImportArgs) -> CliResult {
    let bars = Bars::new(std::io::stderr().is_terminal());
    let data = rocketchat::read_export(&args.dir, now_ms(), &bars).map_err(|e| match e {
        ExportError::Read { .. } => CliError::Io(e.to_string()),
        ExportError::Invalid { .. } => CliError::Usage(format!("nothing was imported: {e}")),
        ExportError::NotADirectory(_) | ExportError::Empty(_) => CliError::Usage(e.to_string()),
    })?;
    let store = super::open(url).await?;
    let written = rocketchat::write(&store, &data, &bars).await;
    bars.finish();
    let report = written?;
    if args.json {
        super::output::print_json(&serde_json::json!({
            "users": data.users.len(),
            "tokens": report.tokens,
            "permissions": data.permissions.len(),
            "operations": data.operations.len(),
        }));
        return Ok(());
    }
    println!(
        "imported {} ({}), {}, {} from {}",
        count(data.users.len() as u64, "user"),
        count(report.tokens, "token"),
        count(data.permissions.len() as u64, "permission"),
        count(data.operations.len() as u64, "operation"),
        args.dir.display()
    );
    Ok(())
}

fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// One progress bar per step (each file read, then the writing), on stderr; nothing when
/// stderr is not a terminal.
struct Bars {
    multi: Option<MultiProgress>,
    current: Mutex<Option<ProgressBar>>,
}

impl Bars {
    fn new(terminal: bool) -> Self {
        Bars {
            multi: terminal.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            current: Mutex::new(None),
        }
    }

    /// Leaves the last bar as it is (full, or where a fault stopped it).
    fn finish(&self) {
        if let Some(bar) = self.current.lock().expect("not poisoned").take() {
            bar.abandon();
        }
    }
}

impl Progress for Bars {
    fn start(&self, step: &str, total: u64) {
        let Some(multi) = &self.multi else { return };
        let style = ProgressStyle::with_template(
            "{msg:>28} [{bar:40.cyan/blue}] {human_pos:>9}/{human_len:9} {elapsed}",
        )
        .expect("a valid template")
        .progress_chars("=> ");
        let bar = multi.add(ProgressBar::new(total).with_style(style));
        bar.set_message(step.to_owned());
        if let Some(previous) = self.current.lock().expect("not poisoned").replace(bar) {
            previous.abandon();
        }
    }

    fn advance(&self, n: u64) {
        if let Some(bar) = self.current.lock().expect("not poisoned").as_ref() {
            bar.inc(n);
        }
    }
}
