//! Progress bars on stderr for reading batches (`ops load`, `import-rocketchat`): one bar a
//! step with the records read, their rate, and the bytes read against the size when it is
//! known (hence the time left). Nothing at all when stderr is not a terminal.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use indicatif::{HumanCount, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::batch::Progress;

pub struct Bars {
    multi: Option<MultiProgress>,
    current: Mutex<Option<Step>>,
}

struct Step {
    bar: ProgressBar,
    records: AtomicU64,
    started: Instant,
}

impl Bars {
    /// Bars when stderr is a terminal; otherwise none.
    pub fn on_stderr() -> Self {
        let terminal = std::io::stderr().is_terminal();
        Bars {
            multi: terminal.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            current: Mutex::new(None),
        }
    }

    /// Leaves the last bar as it is (full, or where a fault stopped it).
    pub fn finish(&self) {
        if let Some(step) = self.current.lock().expect("not poisoned").take() {
            step.bar.abandon();
        }
    }
}

impl Progress for Bars {
    fn start(&self, step: &str, bytes: Option<u64>) {
        let Some(multi) = &self.multi else { return };
        let (bar, template) = match bytes {
            Some(len) => (
                ProgressBar::new(len),
                "{prefix:>28} [{bar:30.cyan/blue}] {binary_bytes}/{binary_total_bytes} {msg} \
                 {elapsed}, {eta} left",
            ),
            None => (
                ProgressBar::no_length(),
                "{prefix:>28} {spinner} {binary_bytes} {msg} {elapsed}",
            ),
        };
        let style = ProgressStyle::with_template(template)
            .expect("a valid template")
            .progress_chars("=> ");
        let bar = multi.add(bar.with_style(style));
        bar.set_prefix(step.to_owned());
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        let step = Step {
            bar,
            records: AtomicU64::new(0),
            started: Instant::now(),
        };
        if let Some(previous) = self.current.lock().expect("not poisoned").replace(step) {
            previous.bar.abandon();
        }
    }

    fn advance(&self, records: u64, bytes: u64) {
        let current = self.current.lock().expect("not poisoned");
        let Some(step) = current.as_ref() else { return };
        let total = step.records.fetch_add(records, Ordering::Relaxed) + records;
        let seconds = step.started.elapsed().as_secs_f64().max(0.001);
        step.bar.inc(bytes);
        step.bar.set_message(format!(
            "{} records ({}/s)",
            HumanCount(total),
            HumanCount((total as f64 / seconds) as u64)
        ));
    }
}

/// One bar for an import of the workflow (`import run`): the operation's step, and its
/// records completed against the total. Nothing when stderr is not a terminal.
pub struct StepBar(Option<ProgressBar>);

impl StepBar {
    pub fn on_stderr() -> Self {
        let terminal = std::io::stderr().is_terminal();
        StepBar(terminal.then(|| {
            let style = ProgressStyle::with_template(
                "{prefix:>28} [{bar:30.cyan/blue}] {pos}/{len} records {elapsed}, {eta} left",
            )
            .expect("a valid template")
            .progress_chars("=> ");
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr())
                .with_style(style);
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            bar
        }))
    }

    /// Shows the step and the counts.
    pub fn show(&self, step: &str, completed: u64, total: u64) {
        if let Some(bar) = &self.0 {
            bar.set_prefix(step.trim_start_matches("importer_").replace('_', " "));
            bar.set_length(total.max(completed));
            bar.set_position(completed);
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.abandon();
        }
    }
}
