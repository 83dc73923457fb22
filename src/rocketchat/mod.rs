//! Loading a Rocket.Chat export made with `mongoexport` (docs/compatibility.md, section 7).
//!
//! A directory holds up to three files, one MongoDB Extended JSON document a line (relaxed or
//! canonical; `--jsonArray` output is read too), read by the one batch reader (`batch`):
//! `users.json`, `rocketchat_permissions.json` and `rocketchat_import.json`. `read_export`
//! reads and checks the users and permissions before anything is written, naming the file,
//! the line and the reason of the first fault; `write` then stores everything in one
//! transaction (`Store::import_rocketchat`), the operations read and checked as they are
//! written, so that a fault there rolls it all back. Importing the same export again changes
//! nothing; a newer export replaces what an older one brought.

mod users;

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use crate::batch::{self, BatchError, read_records};
use crate::store::{ImportReport, RocketchatImport, Store, StoreError, StreamError};

pub use crate::batch::{Place, Progress};
pub use users::parse_user;

/// `mongoexport --collection users`.
pub const USERS_FILE: &str = "users.json";
/// `mongoexport --collection rocketchat_permissions`.
pub const PERMISSIONS_FILE: &str = "rocketchat_permissions.json";
/// `mongoexport --collection rocketchat_import`.
pub const OPERATIONS_FILE: &str = "rocketchat_import.json";

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

/// Why an import wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An export whose users and permissions are read and checked; its operations file is open,
/// to be read while it is written.
#[derive(Debug)]
pub struct Export {
    pub data: RocketchatImport,
    operations: Option<(PathBuf, File)>,
    now_ms: i64,
}

/// Reads and checks the users and permissions of the export in `dir`, and opens its
/// operations; nothing is written. A missing file is an empty collection, but at least one of
/// the three must be there.
pub fn read_export(
    dir: &Path,
    now_ms: i64,
    progress: &dyn Progress,
) -> Result<Export, ExportError> {
    let meta = std::fs::metadata(dir).map_err(|source| ExportError::Read {
        path: dir.to_owned(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(ExportError::NotADirectory(dir.to_owned()));
    }
    let users = open_optional(dir, USERS_FILE)?;
    let permissions = open_optional(dir, PERMISSIONS_FILE)?;
    let operations = open_optional(dir, OPERATIONS_FILE)?;
    if users.is_none() && permissions.is_none() && operations.is_none() {
        return Err(ExportError::Empty(dir.to_owned()));
    }
    Ok(Export {
        data: RocketchatImport {
            users: match users {
                Some((path, file)) => {
                    progress.start(USERS_FILE, size(&file));
                    parse_users(&path, file, now_ms, progress)?
                }
                None => Vec::new(),
            },
            permissions: match permissions {
                Some((path, file)) => {
                    progress.start(PERMISSIONS_FILE, size(&file));
                    parse_permissions(&path, file, progress)?
                }
                None => Vec::new(),
            },
        },
        operations,
        now_ms,
    })
}

/// Writes a checked export in one transaction, its operations read and checked as they go.
pub async fn write(
    store: &Store,
    export: Export,
    progress: Arc<dyn Progress>,
) -> Result<ImportReport, ImportError> {
    let (path, chunks) = match export.operations {
        Some((path, file)) => {
            progress.start(OPERATIONS_FILE, size(&file));
            let chunks = batch::operation_chunks(file, export.now_ms, progress)
                .map_err(|e| fault(OPERATIONS_FILE, &path, e))?;
            (path, chunks)
        }
        None => {
            // No operations: a channel closed at once.
            let (_, chunks) = tokio::sync::mpsc::channel(1);
            (PathBuf::new(), chunks)
        }
    };
    store
        .import_rocketchat(&export.data, chunks)
        .await
        .map_err(|e| match e {
            StreamError::Input(e) => fault(OPERATIONS_FILE, &path, e).into(),
            StreamError::Store(e) => e.into(),
        })
}

fn open_optional(dir: &Path, file: &str) -> Result<Option<(PathBuf, File)>, ExportError> {
    let path = dir.join(file);
    match File::open(&path) {
        Ok(f) => Ok(Some((path, f))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ExportError::Read { path, source }),
    }
}

fn size(file: &File) -> Option<u64> {
    file.metadata()
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len())
}

/// A batch reader's fault as the export's.
fn fault(file: &'static str, path: &Path, e: BatchError) -> ExportError {
    match e {
        BatchError::Io(source) => ExportError::Read {
            path: path.to_owned(),
            source,
        },
        BatchError::NotAnArray(reason) => ExportError::Invalid {
            file,
            place: None,
            reason: format!("not a valid JSON array ({reason})"),
        },
        BatchError::Record { place, reason } => ExportError::Invalid {
            file,
            place: Some(place),
            reason,
        },
    }
}

/// Every record of one of the export's files, converted by `convert`; the first fault in file
/// order fails the file.
fn collect<T>(
    file: &'static str,
    path: &Path,
    input: impl Read,
    progress: &dyn Progress,
    mut convert: impl FnMut(Place, Value) -> Result<T, String>,
) -> Result<Vec<T>, ExportError> {
    let mut out = Vec::new();
    read_records(input, progress, |place, value| {
        out.push(convert(place, value)?);
        Ok(())
    })
    .map_err(|e| fault(file, path, e))?;
    Ok(out)
}

/// `users.json`: users by `_id`, with their passwords and tokens.
fn parse_users(
    path: &Path,
    input: impl Read,
    now_ms: i64,
    progress: &dyn Progress,
) -> Result<Vec<crate::store::ImportedUser>, ExportError> {
    let mut ids = HashMap::new();
    let mut usernames = HashMap::new();
    collect(USERS_FILE, path, input, progress, |place, value| {
        let user = parse_user(value, now_ms)?;
        if let Some(first) = ids.insert(user.id.clone(), place) {
            return Err(format!("_id {:?} was already used by {first}", user.id));
        }
        if let Some(name) = &user.username
            && let Some(first) = usernames.insert(name.clone(), place)
        {
            return Err(format!("username {name:?} was already used by {first}"));
        }
        Ok(user)
    })
}

/// `rocketchat_permissions.json`: `{_id, roles}`; other fields are ignored.
fn parse_permissions(
    path: &Path,
    input: impl Read,
    progress: &dyn Progress,
) -> Result<Vec<(String, Vec<String>)>, ExportError> {
    let mut ids = HashMap::new();
    collect(PERMISSIONS_FILE, path, input, progress, |place, value| {
        let Value::Object(mut doc) = value else {
            return Err("the record is not a JSON object".into());
        };
        let id = users::required_string(&mut doc, "_id")?;
        let roles = match users::plain_field(&mut doc, "roles")? {
            Some(Value::Array(items)) => users::role_list(items)?,
            Some(_) => return Err("roles is not a list".into()),
            None => return Err("roles is missing".into()),
        };
        if let Some(first) = ids.insert(id.clone(), place) {
            return Err(format!("_id {id:?} was already used by {first}"));
        }
        Ok((id, roles))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn permissions(text: &str) -> Result<Vec<(String, Vec<String>)>, ExportError> {
        parse_permissions(Path::new(PERMISSIONS_FILE), text.as_bytes(), &())
    }

    /// The operations of `text` as `write` reads them, or the first fault.
    fn operations(text: impl AsRef<[u8]>) -> Result<usize, ExportError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let input = std::io::Cursor::new(text.as_ref().to_vec());
        let mut chunks = batch::operation_chunks(input, 0, Arc::new(())).unwrap();
        let mut n = 0;
        while let Some(chunk) = runtime.block_on(chunks.recv()) {
            n += chunk
                .map_err(|e| fault(OPERATIONS_FILE, Path::new(OPERATIONS_FILE), e))?
                .len();
        }
        Ok(n)
    }

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
        assert_eq!(permissions(lines).unwrap(), expected);
        assert_eq!(permissions(array).unwrap(), expected);
        assert_eq!(permissions(&format!("\u{feff}{lines}")).unwrap(), expected);
    }

    #[test]
    fn faults_name_the_file_and_the_place() {
        let twice = "{\"_id\":\"a\",\"roles\":[]}\n{\"_id\":\"a\",\"roles\":[]}\n";
        assert_eq!(
            permissions(twice).unwrap_err().to_string(),
            "rocketchat_permissions.json line 2: _id \"a\" was already used by line 1"
        );
        let err = permissions("\n{\"_id\":\"a\"}").unwrap_err();
        assert_eq!(
            err.to_string(),
            "rocketchat_permissions.json line 2: roles is missing"
        );
        let err = operations("{nope\n").unwrap_err().to_string();
        assert!(
            err.starts_with("rocketchat_import.json line 1: not a valid JSON document"),
            "{err}"
        );
        let err = operations("[{},").unwrap_err().to_string();
        assert!(
            err.starts_with("rocketchat_import.json: not a valid JSON array"),
            "{err}"
        );
        let err = operations("[{\"type\":\"x\"}]").unwrap_err().to_string();
        assert!(
            err.starts_with("rocketchat_import.json record 1: importerKey is missing"),
            "{err}"
        );
        let op = r#"{"_id":{"$oid":"64d69545ee8ae821983005f5"},"type":"CSV","importerKey":"csv","status":"importer_new","valid":true,"user":"u"}"#;
        assert_eq!(operations(format!("\u{feff}{op}\n")).unwrap(), 1);
        let err = operations(format!("{op}\n\n{op}\n"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "rocketchat_import.json line 3: _id 64d69545ee8ae821983005f5 was already used by line 1"
        );
        let err = operations(b"{}\n\xff").unwrap_err();
        assert!(matches!(err, ExportError::Read { .. }), "{err}");
    }

    #[test]
    fn many_records_keep_their_order_and_the_first_fault_wins() {
        let line = |i: usize| format!("{{\"_id\":\"p{i}\",\"roles\":[\"r{i}\"]}}");
        let mut lines: Vec<String> = (0..10_000).map(line).collect();
        let parsed = permissions(&lines.join("\n")).unwrap();
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
        let err = permissions(&lines.join("\n")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "rocketchat_permissions.json line 7001: roles is missing"
        );
        lines[7_000] = line(7_000);
        lines[9_000] = line(9_000);
        let err = permissions(&lines.join("\n")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "rocketchat_permissions.json line 9501: _id \"p10\" was already used by line 11"
        );
    }
}
