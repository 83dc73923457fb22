//! Loading a Rocket.Chat export made with `mongoexport` (COMPAT section 7).
//!
//! A directory holds up to three files, one MongoDB Extended JSON document a line (relaxed or
//! canonical; `--jsonArray` output is read too): `users.json`, `rocketchat_permissions.json`
//! and `rocketchat_import.json`. `read_export` reads and checks all of them before anything is
//! written, and names the file, the line and the reason of the first fault; `write` then
//! stores everything in one transaction (`Store::import_rocketchat`). Importing the same
//! export again changes nothing; a newer export replaces what an older one brought.

mod users;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::domain::ejson::to_plain;
use crate::domain::operation::Operation;
use crate::store::{ImportReport, RocketchatImport, Store, StoreError};

pub use users::parse_user;

/// `mongoexport --collection users`.
pub const USERS_FILE: &str = "users.json";
/// `mongoexport --collection rocketchat_permissions`.
pub const PERMISSIONS_FILE: &str = "rocketchat_permissions.json";
/// `mongoexport --collection rocketchat_import`.
pub const OPERATIONS_FILE: &str = "rocketchat_import.json";

/// Told how far reading and writing an export went (the command line draws progress bars).
pub trait Progress: Sync {
    /// A new step of `total` items begins: the records of a file, or the rows to write.
    fn start(&self, _step: &str, _total: u64) {}
    /// `n` more items of the current step are done.
    fn advance(&self, _n: u64) {}
}

/// No progress to show.
impl Progress for () {}

/// Where a record is in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A line of JSON lines (1-based).
    Line(usize),
    /// An element of a JSON array (1-based).
    Record(usize),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Line(n) => write!(f, "line {n}"),
            Place::Record(n) => write!(f, "record {n}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error(
        "{} holds none of {USERS_FILE}, {PERMISSIONS_FILE} and {OPERATIONS_FILE} (mongoexport's \
         output for Rocket.Chat's users, rocketchat_permissions and rocketchat_import collections)",
        .0.display()
    )]
    Empty(PathBuf),
    /// A record that cannot be imported; `place` is `None` for a fault of the whole file.
    #[error("{file}{}: {reason}", place.map(|p| format!(" {p}")).unwrap_or_default())]
    Invalid {
        file: &'static str,
        place: Option<Place>,
        reason: String,
    },
}

/// Reads and checks the export in `dir`; nothing is written. A missing file is an empty
/// collection, but at least one of the three must be there.
pub fn read_export(
    dir: &Path,
    now_ms: i64,
    progress: &dyn Progress,
) -> Result<RocketchatImport, ExportError> {
    let meta = std::fs::metadata(dir).map_err(|source| ExportError::Read {
        path: dir.to_owned(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(ExportError::NotADirectory(dir.to_owned()));
    }
    let users = read_optional(dir, USERS_FILE)?;
    let permissions = read_optional(dir, PERMISSIONS_FILE)?;
    let operations = read_optional(dir, OPERATIONS_FILE)?;
    if users.is_none() && permissions.is_none() && operations.is_none() {
        return Err(ExportError::Empty(dir.to_owned()));
    }
    Ok(RocketchatImport {
        users: match users {
            Some(text) => parse_users(&text, now_ms, progress)?,
            None => Vec::new(),
        },
        permissions: match permissions {
            Some(text) => parse_permissions(&text, progress)?,
            None => Vec::new(),
        },
        operations: match operations {
            Some(text) => parse_operations(&text, now_ms, progress)?,
            None => Vec::new(),
        },
    })
}

/// Writes a checked export in one transaction.
pub async fn write(
    store: &Store,
    data: &RocketchatImport,
    progress: &dyn Progress,
) -> Result<ImportReport, StoreError> {
    let rows = data.users.len() + data.permissions.len() + data.operations.len();
    progress.start("writing", rows as u64);
    store
        .import_rocketchat(data, &|n| progress.advance(n))
        .await
}

fn read_optional(dir: &Path, file: &str) -> Result<Option<String>, ExportError> {
    let path = dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ExportError::Read { path, source }),
    }
}

/// `users.json`: users by `_id`, with their passwords and tokens.
pub fn parse_users(
    text: &str,
    now_ms: i64,
    progress: &dyn Progress,
) -> Result<Vec<crate::store::ImportedUser>, ExportError> {
    let records = records(USERS_FILE, text, progress, |value| {
        parse_user(value, now_ms)
    })?;
    let mut ids: HashMap<&str, Place> = HashMap::with_capacity(records.len());
    let mut usernames: HashMap<&str, Place> = HashMap::with_capacity(records.len());
    for (place, user) in &records {
        if let Some(first) = ids.insert(&user.id, *place) {
            let reason = format!("_id {:?} was already used by {first}", user.id);
            return Err(invalid(USERS_FILE, *place, reason));
        }
        if let Some(name) = &user.username {
            if let Some(first) = usernames.insert(name, *place) {
                let reason = format!("username {name:?} was already used by {first}");
                return Err(invalid(USERS_FILE, *place, reason));
            }
        }
    }
    Ok(records.into_iter().map(|(_, user)| user).collect())
}

/// `rocketchat_permissions.json`: `{_id, roles}`; other fields are ignored.
pub fn parse_permissions(
    text: &str,
    progress: &dyn Progress,
) -> Result<Vec<(String, Vec<String>)>, ExportError> {
    let records = records(PERMISSIONS_FILE, text, progress, |value| {
        let Value::Object(mut doc) = value else {
            return Err("the record is not a JSON object".into());
        };
        let id = users::required_string(&mut doc, "_id")?;
        let roles = match users::plain_field(&mut doc, "roles")? {
            Some(Value::Array(items)) => users::role_list(items)?,
            Some(_) => return Err("roles is not a list".into()),
            None => return Err("roles is missing".into()),
        };
        Ok((id, roles))
    })?;
    let mut ids: HashMap<&str, Place> = HashMap::with_capacity(records.len());
    for (place, (id, _)) in &records {
        if let Some(first) = ids.insert(id, *place) {
            let reason = format!("_id {id:?} was already used by {first}");
            return Err(invalid(PERMISSIONS_FILE, *place, reason));
        }
    }
    Ok(records.into_iter().map(|(_, p)| p).collect())
}

/// `rocketchat_import.json`: every operation with all its fields, in Rocket.Chat's order.
pub fn parse_operations(
    text: &str,
    now_ms: i64,
    progress: &dyn Progress,
) -> Result<Vec<Operation>, ExportError> {
    let records = records(OPERATIONS_FILE, text, progress, |value| {
        Operation::from_document(to_plain(value)?, now_ms).map_err(|e| e.0)
    })?;
    let mut ids: HashMap<&str, Place> = HashMap::with_capacity(records.len());
    for (place, op) in &records {
        if let Some(first) = ids.insert(&op.id, *place) {
            let reason = format!("_id {} was already used by {first}", op.id);
            return Err(invalid(OPERATIONS_FILE, *place, reason));
        }
    }
    Ok(records.into_iter().map(|(_, op)| op).collect())
}

fn invalid(file: &'static str, place: Place, reason: String) -> ExportError {
    ExportError::Invalid {
        file,
        place: Some(place),
        reason,
    }
}

/// How many records go by between two progress reports.
const PROGRESS_EVERY: u64 = 1_024;
/// From this many records on, they are converted on several threads.
const PARALLEL_FROM: usize = 4_096;

/// A record before it is parsed: a line of JSON lines, or an element of a JSON array.
enum Source<'a> {
    Line(&'a str),
    Parsed(Value),
}

/// Converts every document of `text` (JSON lines, blank lines skipped, or one JSON array) with
/// `convert`, in file order; the first fault in file order fails the whole file, naming its
/// place. Many records are converted on several threads.
fn records<T: Send>(
    file: &'static str,
    text: &str,
    progress: &dyn Progress,
    convert: impl Fn(Value) -> Result<T, String> + Sync,
) -> Result<Vec<(Place, T)>, ExportError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let sources: Vec<(Place, Source<'_>)> = if text.trim_start().starts_with('[') {
        let values: Vec<Value> = serde_json::from_str(text).map_err(|e| ExportError::Invalid {
            file,
            place: None,
            reason: format!("not a valid JSON array ({e})"),
        })?;
        values
            .into_iter()
            .enumerate()
            .map(|(i, v)| (Place::Record(i + 1), Source::Parsed(v)))
            .collect()
    } else {
        text.lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(i, line)| (Place::Line(i + 1), Source::Line(line)))
            .collect()
    };
    progress.start(file, sources.len() as u64);

    let convert_all = |chunk: Vec<(Place, Source<'_>)>| -> Result<Vec<(Place, T)>, ExportError> {
        let mut out = Vec::with_capacity(chunk.len());
        let mut pending = 0;
        for (place, source) in chunk {
            let value = match source {
                Source::Parsed(value) => value,
                Source::Line(line) => serde_json::from_str(line).map_err(|e| {
                    invalid(file, place, format!("not a valid JSON document ({e})"))
                })?,
            };
            out.push((place, convert(value).map_err(|r| invalid(file, place, r))?));
            pending += 1;
            if pending == PROGRESS_EVERY {
                progress.advance(pending);
                pending = 0;
            }
        }
        progress.advance(pending);
        Ok(out)
    };

    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    if sources.len() < PARALLEL_FROM || threads == 1 {
        return convert_all(sources);
    }
    let chunk_len = sources.len().div_ceil(threads);
    let mut rest = sources.into_iter();
    let chunks: Vec<Vec<_>> = std::iter::from_fn(|| {
        let chunk: Vec<_> = rest.by_ref().take(chunk_len).collect();
        (!chunk.is_empty()).then_some(chunk)
    })
    .collect();
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| scope.spawn(|| convert_all(chunk)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    // Each chunk stopped at its own first fault: the first failed chunk has the file's first.
    let mut out = Vec::new();
    for result in results {
        out.extend(result?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_and_arrays_give_the_same_permissions() {
        let lines = "{\"_id\":\"run-import\",\"roles\":[\"admin\",\"importer\",\"admin\"]}\n\n\
                     {\"_id\":\"x\",\"roles\":[],\"_updatedAt\":{\"$date\":\"soon\"}}\n";
        let array = r#"[{"_id":"run-import","roles":["admin","importer"]},{"_id":"x","roles":[]}]"#;
        let expected = vec![
            (
                "run-import".to_owned(),
                vec!["admin".into(), "importer".into()],
            ),
            ("x".to_owned(), vec![]),
        ];
        assert_eq!(parse_permissions(lines, &()).unwrap(), expected);
        assert_eq!(parse_permissions(array, &()).unwrap(), expected);
    }

    #[test]
    fn faults_name_the_file_and_the_place() {
        let twice = "{\"_id\":\"a\",\"roles\":[]}\n{\"_id\":\"a\",\"roles\":[]}\n";
        assert_eq!(
            parse_permissions(twice, &()).unwrap_err().to_string(),
            "rocketchat_permissions.json line 2: _id \"a\" was already used by line 1"
        );
        let err = parse_permissions("\n{\"_id\":\"a\"}", &()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "rocketchat_permissions.json line 2: roles is missing"
        );
        let err = parse_operations("{nope\n", 0, &()).unwrap_err().to_string();
        assert!(
            err.starts_with("rocketchat_import.json line 1: not a valid JSON document"),
            "{err}"
        );
        let err = parse_operations("[{},", 0, &()).unwrap_err().to_string();
        assert!(
            err.starts_with("rocketchat_import.json: not a valid JSON array"),
            "{err}"
        );
        let err = parse_operations("[{\"type\":\"x\"}]", 0, &())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("rocketchat_import.json record 1: importerKey is missing"),
            "{err}"
        );
    }

    #[test]
    fn many_records_keep_their_order_and_the_first_fault_wins() {
        let line = |i: usize| format!("{{\"_id\":\"p{i}\",\"roles\":[\"r{i}\"]}}");
        let mut lines: Vec<String> = (0..10_000).map(line).collect();
        let parsed = parse_permissions(&lines.join("\n"), &()).unwrap();
        assert_eq!(parsed.len(), 10_000);
        assert!(
            parsed
                .iter()
                .enumerate()
                .all(|(i, (id, roles))| *id == format!("p{i}") && roles == &[format!("r{i}")])
        );

        lines[9_000] = "{".into();
        lines[7_000] = "{\"_id\":\"p7000\"}".into();
        lines[9_500] = line(10);
        let err = parse_permissions(&lines.join("\n"), &()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "rocketchat_permissions.json line 7001: roles is missing"
        );
        lines[7_000] = line(7_000);
        lines[9_000] = line(9_000);
        let err = parse_permissions(&lines.join("\n"), &()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "rocketchat_permissions.json line 9501: _id \"p10\" was already used by line 11"
        );
    }

    #[test]
    fn progress_counts_every_record() {
        use std::sync::atomic::{AtomicU64, Ordering};
        struct Count(AtomicU64, AtomicU64);
        impl Progress for Count {
            fn start(&self, _: &str, total: u64) {
                self.0.store(total, Ordering::Relaxed);
            }
            fn advance(&self, n: u64) {
                self.1.fetch_add(n, Ordering::Relaxed);
            }
        }
        let text: String = (0..12_500)
            .map(|i| format!("{{\"_id\":\"p{i}\",\"roles\":[]}}\n"))
            .collect();
        let count = Count(AtomicU64::new(0), AtomicU64::new(0));
        assert_eq!(parse_permissions(&text, &count).unwrap().len(), 12_500);
        assert_eq!(count.0.load(Ordering::Relaxed), 12_500);
        assert_eq!(count.1.load(Ordering::Relaxed), 12_500);
    }
}
