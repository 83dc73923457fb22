//! Rocket.Chat's import workflow (docs/compatibility.md section 11): one function per
//! Rocket.Chat method, shared by the REST routes, the realtime methods and the command line.
//! Permission checks stay with the callers; these functions do the action.
//!
//! The state machine lives in the operation document (`status`, `valid`, `count`, ...), and
//! every change to it is a write through the store (`Store::revise_operation`, which bumps
//! `_updatedAt` as Rocket.Chat's models do), so the cache and every replica see it.
//! Preparation runs the importer on a blocking thread, whose [`Sink`] hands what it finds over
//! a bounded channel to an async writer that stages records in batches; importing runs as a
//! background task that outlives the request.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::{Counts, DataType, ImportError, Limits, PrepareFn, Prepared, Sink, fetch, files};
use crate::access::Caller;
use crate::config::ImportSettings;
use crate::domain::ids::new_object_id;
use crate::domain::operation::{Importer, Operation, importer_by_key, revise};
use crate::domain::time::{format_iso_ms, now_ms};
use crate::hashing::PasswordHashing;
use crate::http::AppState;
use crate::store::staging::STAGE_BATCH;
use crate::store::{NewStaged, Outcome, Staged, Store, StoreError, StreamError};

/// The name a channel selection gives every direct-message room at once.
pub const DIRECT_MESSAGES: &str = "__directMessages__";

/// Statuses during which `getImportFileData` answers `{waiting: true}`.
const WAITING: [&str; 6] = [
    "importer_downloading_file",
    "importer_preparing_started",
    "importer_preparing_users",
    "importer_preparing_channels",
    "importer_preparing_messages",
    "importer_preparing_contacts",
];

/// Statuses from which `getImportFileData` builds the selection without preparing again.
const SELECTION_READY: [&str; 4] = [
    "importer_user_selection",
    "importer_done",
    "importer_import_cancelled",
    "importer_import_failed",
];

/// Items in flight between the importer's thread and the writer.
const CHANNEL_ITEMS: usize = 1_024;
/// The longest counts wait in memory while an importer prepares.
const COUNTS_EVERY: Duration = Duration::from_millis(250);
/// Staged records read at once while importing.
const IMPORT_PAGE: i64 = 2_000;

/// The importer that prepares files of an importer key: the one list of importers is
/// `domain::operation::IMPORTERS`; this gives the parsers of those that read archives.
pub fn prepare_fn(key: &str) -> Option<PrepareFn> {
    PREPARERS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, prepare)| *prepare)
}

/// The parsers of the importers that read a file (`csv`, `slack`, `slack-users`).
static PREPARERS: &[(&str, PrepareFn)] = &[
    ("csv", super::csv::prepare),
    ("slack", super::slack::prepare),
    ("slack-users", super::slack_users::prepare),
];

/// What the workflow needs from a server, so that the command line can run it without one.
#[derive(Clone)]
pub struct Context {
    pub store: Store,
    pub import: std::sync::Arc<ImportSettings>,
    pub hashing: PasswordHashing,
}

impl Context {
    pub fn of(state: &AppState) -> Self {
        Context {
            store: state.store.clone(),
            import: state.import.clone(),
            hashing: state.hashing.clone(),
        }
    }
}

fn not_defined(key: &str, method: &str) -> ImportError {
    ImportError::meteor(
        "error-importer-not-defined",
        format!("The importer ({key}) has no import class defined."),
        method,
    )
}

fn not_found(method: &str) -> ImportError {
    ImportError::meteor(
        "error-operation-not-found",
        "Import Operation Not Found",
        method,
    )
}

fn corrupt(message: impl Into<String>) -> ImportError {
    ImportError::Store(StoreError::Corrupt(message.into()))
}

/// The current operation (newest `ts`), parsed.
async fn current(store: &Store) -> Result<Option<Map<String, Value>>, ImportError> {
    match store.current_operation().await? {
        None => Ok(None),
        Some(doc) => parse_doc(&doc).map(Some),
    }
}

fn parse_doc(doc: &str) -> Result<Map<String, Value>, ImportError> {
    match serde_json::from_str(doc) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(corrupt("a stored operation is not a JSON object")),
    }
}

fn text<'a>(op: &'a Map<String, Value>, key: &str) -> &'a str {
    op.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// Changes the operation `id` with `change` (given its fields, it changes them), in one write
/// that bumps `_updatedAt`; the operation as stored after it.
async fn update(
    store: &Store,
    id: &str,
    change: &(dyn Fn(&mut Map<String, Value>) + Sync),
) -> Result<Map<String, Value>, ImportError> {
    let now = now_ms();
    let revised = store
        .revise_operation(id, &|doc| {
            let doc = doc.ok_or_else(|| "the import operation was removed".to_owned())?;
            let mut fields: Map<String, Value> =
                serde_json::from_str(doc).map_err(|e| format!("a stored operation: {e}"))?;
            change(&mut fields);
            revise(doc, fields, now).map_err(|e| e.0)
        })
        .await
        .map_err(|e| match e {
            StreamError::Input(message) => ImportError::plain(message),
            StreamError::Store(e) => e.into(),
        })?;
    parse_doc(&revised.doc)
}

/// Sets the operation's status.
async fn set_status(store: &Store, id: &str, status: &'static str) -> Result<(), ImportError> {
    update(store, id, &|op| {
        op.insert("status".into(), Value::String(status.into()));
    })
    .await
    .map(drop)
}

/// The operation's `count` object, made when missing.
fn counts_of(op: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let count = op
        .entry("count")
        .or_insert_with(|| Value::Object(Map::new()));
    if !count.is_object() {
        *count = Value::Object(Map::new());
    }
    count.as_object_mut().expect("made an object above")
}

fn count_value(op: &Map<String, Value>, field: &str) -> u64 {
    op.get("count")
        .and_then(|c| c.get(field))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// Applies importer count changes to an operation's fields.
fn apply_counts(op: &mut Map<String, Value>, counts: &Counts) {
    let count = counts_of(op);
    if counts.add_total > 0 || !count.contains_key("total") {
        let total = count.get("total").and_then(Value::as_u64).unwrap_or(0) + counts.add_total;
        count.insert("total".into(), total.into());
    }
    for (field, value) in [
        ("users", counts.users),
        ("channels", counts.channels),
        ("messages", counts.messages),
        ("contacts", counts.contacts),
    ] {
        if let Some(value) = value {
            count.insert(field.into(), value.into());
        }
    }
    if let Some(status) = &counts.messages_status {
        op.insert(
            "messagesstatus".into(),
            status.clone().map_or(Value::Null, Value::String),
        );
    }
}

/// Folds a later count change into an earlier one not yet written.
fn merge_counts(into: &mut Counts, later: Counts) {
    into.add_total += later.add_total;
    into.users = later.users.or(into.users);
    into.channels = later.channels.or(into.channels);
    into.messages = later.messages.or(into.messages);
    into.contacts = later.contacts.or(into.contacts);
    if later.messages_status.is_some() {
        into.messages_status = later.messages_status;
    }
}

/// Rocket.Chat's `newOperation`: every other operation invalidated and every staged record
/// deleted, then a new operation of `importer` at `importer_new`, in one transaction.
pub async fn new_operation(
    store: &Store,
    user_id: &str,
    importer: &Importer,
) -> Result<Operation, ImportError> {
    new_operation_typed(store, user_id, importer.name, importer.key).await
}

/// [`new_operation`] with the `type` given apart (`import.new` writes `api`).
pub async fn new_operation_typed(
    store: &Store,
    user_id: &str,
    type_name: &str,
    key: &str,
) -> Result<Operation, ImportError> {
    let invalidated_at = now_ms();
    // Strictly newer than those it replaces, so it is listed first.
    let now = invalidated_at + 1;
    let date = format_iso_ms(now).ok_or_else(|| ImportError::plain("the clock is out of range"))?;
    let document = json!({
        "_id": new_object_id(), "type": type_name, "importerKey": key, "ts": date,
        "status": "importer_new", "valid": true, "user": user_id, "_updatedAt": date,
    });
    let op = Operation::from_document(document, now).map_err(|e| ImportError::plain(e.0))?;
    store
        .invalidate_operations(&|doc| invalidate(doc, invalidated_at), Some(&op))
        .await?;
    Ok(op)
}

/// The changes that invalidate an operation.
pub fn invalidate(doc: &str, now: i64) -> Result<Operation, String> {
    let mut changes = Map::new();
    changes.insert("valid".into(), Value::Bool(false));
    revise(doc, changes, now).map_err(|e| e.0)
}

/// What a server does at start-up (Rocket.Chat's `setImportsToInvalid`): see
/// `Store::invalidate_at_start`.
pub async fn on_server_start(store: &Store) -> Result<u64, StoreError> {
    let now = now_ms();
    store.invalidate_at_start(&|doc| invalidate(doc, now)).await
}

/// `uploadImportFile`: a new operation for the importer, the base64 content stored under
/// the import folder, then `importer_file_loaded`.
pub async fn upload_import_file(
    state: &AppState,
    caller: &Caller,
    binary_content: &str,
    content_type: &str,
    file_name: &str,
    importer_key: &str,
) -> Result<(), ImportError> {
    upload_with(
        &Context::of(state),
        &caller.user_id,
        binary_content,
        content_type,
        file_name,
        importer_key,
    )
    .await
}

/// [`upload_import_file`] for a context and a user id.
pub async fn upload_with(
    cx: &Context,
    user_id: &str,
    binary_content: &str,
    content_type: &str,
    file_name: &str,
    importer_key: &str,
) -> Result<(), ImportError> {
    let importer = importer_by_key(importer_key)
        .ok_or_else(|| not_defined(importer_key, "uploadImportFile"))?;
    let name = files::checked_stored_name(now_ms(), user_id, file_name, "uploadImportFile")?;
    let op = new_operation(&cx.store, user_id, importer).await?;
    let (stored, content_type) = (name.clone(), content_type.to_owned());
    update(&cx.store, &op.id, &|fields| {
        fields.insert("status".into(), "importer_uploading".into());
        fields.insert("file".into(), Value::String(stored.clone()));
        if !content_type.is_empty() {
            fields.insert("contentType".into(), Value::String(content_type.clone()));
        }
    })
    .await?;
    let path = cx.import.file_dir.join(&name);
    let written = std::fs::create_dir_all(&cx.import.file_dir)
        .map_err(files::write_failed)
        .and_then(|()| {
            // Decoding writes as it goes, without a copy of the text: on this worker thread,
            // told to the runtime where it can be (a current-thread runtime just waits).
            let decode =
                || files::decode_base64_to_file(binary_content, &path, cx.import.max_bytes);
            match tokio::runtime::Handle::current().runtime_flavor() {
                tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(decode),
                _ => decode(),
            }
        });
    if let Err(e) = written {
        set_status(&cx.store, &op.id, "importer_import_failed").await?;
        return Err(e);
    }
    set_status(&cx.store, &op.id, "importer_file_loaded").await
}

/// `downloadPublicImportFile`: a new operation whose file is a local file under the import
/// folder (copied), or a URL (fetched, with the SSRF rules).
pub async fn download_public_import_file(
    state: &AppState,
    caller: &Caller,
    file_url: &str,
    importer_key: &str,
) -> Result<(), ImportError> {
    download_with(&Context::of(state), &caller.user_id, file_url, importer_key).await
}

/// [`download_public_import_file`] for a context and a user id.
pub async fn download_with(
    cx: &Context,
    user_id: &str,
    file_url: &str,
    importer_key: &str,
) -> Result<(), ImportError> {
    let importer = importer_by_key(importer_key)
        .ok_or_else(|| not_defined(importer_key, "downloadImportFile"))?;
    let store = &cx.store;
    if !file_url.starts_with("http") {
        // Only paths under the import folder are read (docs/compatibility.md section 11).
        let source = files::local_source(&cx.import.file_dir, file_url)?;
        let op = new_operation(store, user_id, importer).await?;
        set_status(store, &op.id, "importer_uploading").await?;
        set_status(store, &op.id, "importer_downloading_file").await?;
        let (file, copy) = match source {
            files::LocalSource::Directory(dir) => (dir.to_string_lossy().into_owned(), None),
            files::LocalSource::File(path) => {
                let name = files::checked_stored_name(
                    now_ms(),
                    user_id,
                    files::url_file_name(file_url),
                    "downloadPublicImportFile",
                )?;
                (name, Some(path))
            }
        };
        if let Some(source) = copy {
            let dest = cx.import.file_dir.join(&file);
            let max = cx.import.max_bytes;
            let copied =
                tokio::task::spawn_blocking(move || files::copy_bounded(&source, &dest, max))
                    .await
                    .unwrap_or_else(|_| Err(ImportError::plain("The copy stopped unexpectedly.")));
            if let Err(e) = copied {
                set_status(store, &op.id, "importer_import_failed").await?;
                return Err(e);
            }
        }
        update(store, &op.id, &|fields| {
            fields.insert("file".into(), Value::String(file.clone()));
            fields.insert("status".into(), "importer_file_loaded".into());
        })
        .await?;
        return Ok(());
    }
    let name = files::checked_stored_name(
        now_ms(),
        user_id,
        files::url_file_name(file_url),
        "downloadPublicImportFile",
    )?;
    let op = new_operation(store, user_id, importer).await?;
    let stored = name.clone();
    update(store, &op.id, &|fields| {
        fields.insert("status".into(), "importer_uploading".into());
        fields.insert("file".into(), Value::String(stored.clone()));
    })
    .await?;
    set_status(store, &op.id, "importer_downloading_file").await?;
    let allow = fetch::Allowlist::parse(&cx.import.url_allowlist.join(","));
    let dest = cx.import.file_dir.join(&name);
    let started = match std::fs::create_dir_all(&cx.import.file_dir) {
        Ok(()) => {
            fetch::download(
                file_url,
                &allow,
                &dest,
                cx.import.max_bytes,
                fetch::DEFAULT_TIMEOUT,
            )
            .await
        }
        Err(e) => Err(files::write_failed(e)),
    };
    let download = match started {
        Ok(download) => download,
        Err(e) => {
            set_status(store, &op.id, "importer_import_failed").await?;
            return Err(e);
        }
    };
    // Answered once the headers are in; the body is written in the background.
    let (store, id) = (store.clone(), op.id.clone());
    tokio::spawn(async move {
        let status = match download.finish().await {
            Ok(_) => "importer_file_loaded",
            Err(e) => {
                tracing::warn!(operation = id, error = %e, "the import download failed");
                "importer_import_failed"
            }
        };
        let file = name.clone();
        let written = update(&store, &id, &|fields| {
            if status == "importer_file_loaded" {
                fields.insert("file".into(), Value::String(file.clone()));
            }
            fields.insert("status".into(), status.into());
        })
        .await;
        if let Err(e) = written {
            tracing::warn!(operation = id, error = %e, "the import download's end was not written");
        }
    });
    Ok(())
}

/// A file on this machine copied into the import folder as a new operation of the importer,
/// left at `importer_file_loaded` (the command line's `import run`).
pub async fn load_local_file(
    cx: &Context,
    user_id: &str,
    path: &std::path::Path,
    importer_key: &str,
) -> Result<String, ImportError> {
    let importer = importer_by_key(importer_key)
        .filter(|_| prepare_fn(importer_key).is_some())
        .ok_or_else(|| not_defined(importer_key, "uploadImportFile"))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = files::checked_stored_name(now_ms(), user_id, &file_name, "uploadImportFile")?;
    let op = new_operation(&cx.store, user_id, importer).await?;
    let stored = name.clone();
    update(&cx.store, &op.id, &|fields| {
        fields.insert("status".into(), "importer_uploading".into());
        fields.insert("file".into(), Value::String(stored.clone()));
    })
    .await?;
    let (source, dest, max) = (
        path.to_owned(),
        cx.import.file_dir.join(&name),
        cx.import.max_bytes,
    );
    let folder = cx.import.file_dir.clone();
    let copied = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&folder).map_err(files::write_failed)?;
        files::copy_bounded(&source, &dest, max)
    })
    .await
    .unwrap_or_else(|_| Err(ImportError::plain("The copy stopped unexpectedly.")));
    if let Err(e) = copied {
        set_status(&cx.store, &op.id, "importer_import_failed").await?;
        return Err(e);
    }
    set_status(&cx.store, &op.id, "importer_file_loaded").await?;
    Ok(op.id)
}

/// `getImportFileData`: `{waiting: true}` while a file is downloaded or prepared; otherwise
/// the file prepared if it was not yet, and the selection (without `success`).
pub async fn get_import_file_data(
    state: &AppState,
    _caller: &Caller,
) -> Result<Value, ImportError> {
    file_data_with(&Context::of(state)).await
}

/// [`get_import_file_data`] for a context.
pub async fn file_data_with(cx: &Context) -> Result<Value, ImportError> {
    const METHOD: &str = "getImportFileData";
    let op = current(&cx.store).await?.ok_or_else(|| not_found(METHOD))?;
    let key = text(&op, "importerKey").to_owned();
    let importer = importer_by_key(&key).ok_or_else(|| not_defined(&key, METHOD))?;
    let status = text(&op, "status");
    let id = text(&op, "_id").to_owned();
    if WAITING.contains(&status) {
        if op.get("valid").and_then(Value::as_bool) == Some(false) {
            return Err(ImportError::meteor(
                "error-import-operation-invalid",
                "Invalid Import Operation",
                METHOD,
            ));
        }
        return Ok(json!({"waiting": true}));
    }
    if !SELECTION_READY.contains(&status) {
        let file = text(&op, "file");
        if !file.is_empty()
            && let Some(prepare) = prepare_fn(&key)
        {
            let path = files::resolve_stored(&cx.import.file_dir, file)?;
            // Claimed first: a request that comes meanwhile waits instead of preparing again.
            if !claim_preparation(&cx.store, &id, status).await? {
                return Ok(json!({"waiting": true}));
            }
            run_prepare(cx, &id, prepare, path).await?;
        }
    }
    build_selection(&cx.store, &id, importer).await
}

/// Moves the operation from `status` to `importer_preparing_started`, unless another request
/// changed it meanwhile (then false).
async fn claim_preparation(store: &Store, id: &str, status: &str) -> Result<bool, ImportError> {
    let now = now_ms();
    let claimed = store
        .revise_operation(id, &|doc| {
            let doc = doc.ok_or_else(|| "the import operation was removed".to_owned())?;
            let fields: Map<String, Value> =
                serde_json::from_str(doc).map_err(|e| format!("a stored operation: {e}"))?;
            if text(&fields, "status") != status {
                return Err(String::new());
            }
            let mut changes = Map::new();
            changes.insert("status".into(), "importer_preparing_started".into());
            revise(doc, changes, now).map_err(|e| e.0)
        })
        .await;
    match claimed {
        Ok(_) => Ok(true),
        Err(StreamError::Input(message)) if message.is_empty() => Ok(false),
        Err(StreamError::Input(message)) => Err(ImportError::plain(message)),
        Err(StreamError::Store(e)) => Err(e.into()),
    }
}

/// The sink of an importer's thread: each item over the bounded channel to the writer.
struct ChannelSink(mpsc::Sender<Prepared>);

impl Sink for ChannelSink {
    fn send(&mut self, item: Prepared) -> Result<(), ImportError> {
        self.0
            .blocking_send(item)
            .map_err(|_| ImportError::plain("The import operation could not be written."))
    }
}

/// Runs `prepare` over the file on a blocking thread, staging what it finds as it comes.
async fn run_prepare(
    cx: &Context,
    operation_id: &str,
    prepare: PrepareFn,
    path: PathBuf,
) -> Result<(), ImportError> {
    let (send, receive) = mpsc::channel(CHANNEL_ITEMS);
    let limits = Limits {
        max_bytes: cx.import.max_bytes,
    };
    let parser = tokio::task::spawn_blocking(move || {
        let mut sink = ChannelSink(send);
        prepare(&path, &limits, &mut sink)
    });
    let written = write_prepared(&cx.store, operation_id, receive).await;
    let parsed = parser
        .await
        .unwrap_or_else(|_| Err(ImportError::plain("The importer stopped unexpectedly.")));
    // A failed write stops the importer: its error is the one to tell.
    written?;
    parsed
}

/// The writer behind [`ChannelSink`]: records staged [`STAGE_BATCH`] at a time, counts
/// written at most every [`COUNTS_EVERY`] and before every step, steps written in order.
async fn write_prepared(
    store: &Store,
    operation_id: &str,
    mut receive: mpsc::Receiver<Prepared>,
) -> Result<(), ImportError> {
    let mut records: Vec<NewStaged> = Vec::with_capacity(STAGE_BATCH);
    let mut counts: Option<Counts> = None;
    let mut counts_written = Instant::now();
    let flush_counts = async |counts: &mut Option<Counts>| -> Result<(), ImportError> {
        if let Some(change) = counts.take() {
            update(store, operation_id, &|op| apply_counts(op, &change)).await?;
        }
        Ok(())
    };
    while let Some(item) = receive.recv().await {
        match item {
            Prepared::Record(data_type, value) => {
                let import_id = value
                    .get("importIds")
                    .and_then(|ids| ids.get(0))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                records.push(NewStaged {
                    data_type,
                    import_id,
                    data: value.to_string(),
                });
                if records.len() >= STAGE_BATCH {
                    store.stage_records(operation_id, &records).await?;
                    records.clear();
                }
            }
            Prepared::Counts(change) => {
                match &mut counts {
                    Some(pending) => merge_counts(pending, change),
                    None => counts = Some(change),
                }
                if counts_written.elapsed() >= COUNTS_EVERY {
                    store.stage_records(operation_id, &records).await?;
                    records.clear();
                    flush_counts(&mut counts).await?;
                    counts_written = Instant::now();
                }
            }
            Prepared::Step(step) => {
                store.stage_records(operation_id, &records).await?;
                records.clear();
                let change = counts.take();
                update(store, operation_id, &|op| {
                    if let Some(change) = &change {
                        apply_counts(op, change);
                    }
                    op.insert("status".into(), Value::String(step.into()));
                })
                .await?;
                counts_written = Instant::now();
            }
        }
    }
    store.stage_records(operation_id, &records).await?;
    flush_counts(&mut counts).await
}

/// Rocket.Chat's `buildSelection`: the operation to `importer_user_selection`, and every
/// staged user, channel (direct messages as one entry) and contact, with the message count.
async fn build_selection(
    store: &Store,
    operation_id: &str,
    importer: &Importer,
) -> Result<Value, ImportError> {
    set_status(store, operation_id, "importer_user_selection").await?;
    let mut users = Vec::new();
    for_each_staged(store, DataType::User, |record, data| {
        let mut user = Map::new();
        user.insert(
            "user_id".into(),
            record.import_id.clone().map_or(Value::Null, Value::String),
        );
        if let Some(username) = data.get("username").filter(|v| !v.is_null()) {
            user.insert("username".into(), username.clone());
        }
        if let Some(email) = data.get("emails").and_then(|e| e.get(0)) {
            user.insert("email".into(), email.clone());
        }
        user.insert("is_deleted".into(), truthy(data.get("deleted")).into());
        user.insert(
            "is_bot".into(),
            (data.get("type").and_then(Value::as_str) == Some("bot")).into(),
        );
        user.insert("do_import".into(), true.into());
        user.insert("is_email_taken".into(), false.into());
        users.push(Value::Object(user));
    })
    .await?;
    let mut channels = Vec::new();
    let mut direct = false;
    for_each_staged(store, DataType::Channel, |record, data| {
        let t = data.get("t").and_then(Value::as_str).unwrap_or_default();
        if t == "d" {
            direct = true;
            return;
        }
        channels.push(json!({
            "channel_id": record.import_id,
            "name": data.get("name"),
            "is_archived": truthy(data.get("archived")),
            "do_import": true,
            "is_private": t == "p",
            "is_direct": false,
        }));
    })
    .await?;
    if direct {
        channels.push(json!({
            "channel_id": DIRECT_MESSAGES, "name": "Direct Messages", "is_archived": false,
            "do_import": true, "is_private": true, "is_direct": true,
        }));
    }
    let mut contacts = Vec::new();
    for_each_staged(store, DataType::Contact, |record, data| {
        contacts.push(json!({
            "id": record.import_id,
            "name": data.get("name").and_then(Value::as_str).unwrap_or_default(),
            "emails": data.get("emails").cloned().unwrap_or_else(|| json!([])),
            "phones": data.get("phones").cloned().unwrap_or_else(|| json!([])),
            "do_import": true,
        }));
    })
    .await?;
    let message_count = store.count_staged(DataType::Message).await?;
    Ok(json!({
        "name": importer.name,
        "users": users,
        "channels": channels,
        "message_count": message_count,
        "contacts": contacts,
    }))
}

/// JavaScript's `Boolean(value)` for a JSON value.
fn truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

/// Calls `each` with every staged record of a kind, in stored order, a page at a time.
async fn for_each_staged(
    store: &Store,
    data_type: DataType,
    mut each: impl FnMut(&Staged, &Value),
) -> Result<(), ImportError> {
    let mut after = 0;
    loop {
        let page = store.staged_page(data_type, after, IMPORT_PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.seq;
        for record in &page {
            let data: Value = serde_json::from_str(&record.data)
                .map_err(|e| corrupt(format!("a staged record: {e}")))?;
            each(record, &data);
        }
        if (page.len() as i64) < IMPORT_PAGE {
            return Ok(());
        }
    }
}

/// What `startImport` imports of one kind of record (Rocket.Chat's `IImporterShortSelection`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Choice {
    pub all: bool,
    pub list: HashSet<String>,
}

impl Choice {
    pub fn everything() -> Self {
        Choice {
            all: true,
            list: HashSet::new(),
        }
    }

    fn read(value: Option<&Value>) -> Self {
        let Some(value) = value else {
            return Choice::default();
        };
        Choice {
            all: value.get("all").and_then(Value::as_bool) == Some(true),
            list: value
                .get("list")
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    pub fn takes(&self, import_id: Option<&str>) -> bool {
        self.all || import_id.is_some_and(|id| self.list.contains(id))
    }
}

/// A whole selection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    pub users: Choice,
    pub channels: Choice,
    pub contacts: Choice,
}

impl Selection {
    /// From `startImport`'s `input`.
    pub fn from_input(input: &Value) -> Self {
        Selection {
            users: Choice::read(input.get("users")),
            channels: Choice::read(input.get("channels")),
            contacts: Choice::read(input.get("contacts")),
        }
    }
}

/// `startImport`: the current operation to `importer_importing_started`, then the import in a
/// background task (see [`run_import`]).
pub async fn start_import(
    state: &AppState,
    _caller: &Caller,
    input: Value,
) -> Result<(), ImportError> {
    let cx = Context::of(state);
    let id = begin_import(&cx, &input, "startImport").await?;
    let selection = Selection::from_input(&input);
    tokio::spawn(async move {
        let _ = run_import(&cx, &id, &selection, false).await;
    });
    Ok(())
}

/// The checks of `startImport` and its first step; the operation's id.
pub async fn begin_import(
    cx: &Context,
    _input: &Value,
    method: &str,
) -> Result<String, ImportError> {
    let op = current(&cx.store).await?.ok_or_else(|| not_found(method))?;
    let key = text(&op, "importerKey");
    importer_by_key(key).ok_or_else(|| not_defined(key, method))?;
    let id = text(&op, "_id").to_owned();
    set_status(&cx.store, &id, "importer_importing_started").await?;
    Ok(id)
}

/// The counts of an import as it goes: written every page, exact at the end.
struct Progress {
    completed: u64,
    error: u64,
}

/// Imports the staged records of the operation `id` that `selection` takes: users, contacts,
/// channels, then every message; `importer_done` at the end with exact counts, or
/// `importer_import_failed` with the reason (the records that failed keep their errors).
/// `quick` is `import.run`'s user insertion (no matching with existing users).
pub async fn run_import(
    cx: &Context,
    id: &str,
    selection: &Selection,
    quick: bool,
) -> Result<(), ImportError> {
    let mut progress = Progress {
        completed: 0,
        error: 0,
    };
    let outcome = import_all(cx, id, selection, quick, &mut progress).await;
    match outcome {
        Ok(()) => Ok(()),
        Err(e) => {
            tracing::warn!(operation = id, error = %e, "the import failed");
            let (completed, error) = (progress.completed, progress.error);
            update(&cx.store, id, &|op| {
                let count = counts_of(op);
                count.insert("completed".into(), completed.into());
                count.insert("error".into(), error.into());
                op.insert("status".into(), "importer_import_failed".into());
            })
            .await?;
            Err(e)
        }
    }
}

/// Writes the counts and checks the operation is still valid.
async fn checkpoint(store: &Store, id: &str, progress: &Progress) -> Result<(), ImportError> {
    let (completed, error) = (progress.completed, progress.error);
    let op = update(store, id, &|op| {
        let count = counts_of(op);
        count.insert("completed".into(), completed.into());
        count.insert("error".into(), error.into());
    })
    .await?;
    if op.get("valid").and_then(Value::as_bool) == Some(false) {
        return Err(ImportError::plain(
            "The import operation is no longer valid.",
        ));
    }
    Ok(())
}

fn errors_json(code: &str) -> String {
    json!([{"message": code}]).to_string()
}

async fn import_all(
    cx: &Context,
    id: &str,
    selection: &Selection,
    quick: bool,
    progress: &mut Progress,
) -> Result<(), ImportError> {
    let store = &cx.store;
    checkpoint(store, id, progress).await?;

    // Users.
    set_status(store, id, "importer_importing_users").await?;
    let mut users: HashSet<String> = HashSet::new();
    let mut after = 0;
    loop {
        let page = store
            .staged_page(DataType::User, after, STAGE_BATCH as i64)
            .await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        let mut outcomes = Vec::new();
        for record in &page {
            if !selection.users.takes(record.import_id.as_deref()) {
                outcomes.push((record.seq, Outcome::Skipped));
                continue;
            }
            progress.completed += 1;
            match super::import_users::import_staged_user(cx, &record.data, quick).await? {
                Ok(import_ids) => users.extend(import_ids),
                Err(code) => {
                    progress.error += 1;
                    outcomes.push((record.seq, Outcome::Failed(errors_json(&code))));
                }
            }
        }
        store.mark_staged(&outcomes).await?;
        checkpoint(store, id, progress).await?;
    }

    // Contacts and channels: kept as staged records, marked by the selection.
    set_status(store, id, "importer_importing_contacts").await?;
    mark_selected(
        store,
        id,
        DataType::Contact,
        &selection.contacts,
        progress,
        |_, _| true,
    )
    .await?;
    set_status(store, id, "importer_importing_channels").await?;
    let mut rooms: HashSet<String> = HashSet::new();
    mark_selected(
        store,
        id,
        DataType::Channel,
        &selection.channels,
        progress,
        |record, data| {
            let direct = data.get("t").and_then(Value::as_str) == Some("d");
            let chosen = if direct {
                selection.channels.all || selection.channels.list.contains(DIRECT_MESSAGES)
            } else {
                selection.channels.takes(record.import_id.as_deref())
            };
            if chosen {
                rooms.extend(record.import_id.clone());
                if let Some(name) = data.get("name").and_then(Value::as_str) {
                    rooms.insert(name.to_owned());
                }
            }
            chosen
        },
    )
    .await?;

    // Messages: every one is attempted; one whose room or author was not imported fails.
    set_status(store, id, "importer_importing_messages").await?;
    let mut authors: HashMap<String, bool> = users.into_iter().map(|u| (u, true)).collect();
    authors.insert("rocket.cat".into(), true);
    let mut after = 0;
    loop {
        let page = store
            .staged_page(DataType::Message, after, IMPORT_PAGE)
            .await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        let mut outcomes = Vec::new();
        for record in &page {
            progress.completed += 1;
            let data: Value = serde_json::from_str(&record.data)
                .map_err(|e| corrupt(format!("a staged message: {e}")))?;
            let room = data.get("rid").and_then(Value::as_str).unwrap_or_default();
            let author = data
                .get("u")
                .and_then(|u| u.get("_id"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            let failure = if !rooms.contains(room) {
                Some("importer-message-unknown-room")
            } else {
                let known = match authors.get(author) {
                    Some(known) => *known,
                    None => {
                        let known =
                            !author.is_empty() && store.user_known_for_import(author).await?;
                        authors.insert(author.to_owned(), known);
                        known
                    }
                };
                (!known).then_some("importer-message-unknown-user")
            };
            if let Some(code) = failure {
                progress.error += 1;
                outcomes.push((record.seq, Outcome::Failed(errors_json(code))));
            }
        }
        store.mark_staged(&outcomes).await?;
        checkpoint(store, id, progress).await?;
        if (page.len() as i64) < IMPORT_PAGE {
            break;
        }
    }

    set_status(store, id, "importer_finishing").await?;
    store.clear_imported_staged().await?;
    let (completed, error) = (progress.completed, progress.error);
    let op = update(store, id, &|op| {
        let count = counts_of(op);
        count.insert("completed".into(), completed.into());
        count.insert("error".into(), error.into());
    })
    .await?;
    if op.get("valid").and_then(Value::as_bool) == Some(false) {
        return Err(ImportError::plain(
            "The import operation is no longer valid.",
        ));
    }
    set_status(store, id, "importer_done").await
}

/// Marks the staged records of a kind that `chosen` leaves out as skipped; the others count
/// as completed.
async fn mark_selected(
    store: &Store,
    id: &str,
    data_type: DataType,
    choice: &Choice,
    progress: &mut Progress,
    mut chosen: impl FnMut(&Staged, &Value) -> bool,
) -> Result<(), ImportError> {
    let _ = choice;
    let mut after = 0;
    loop {
        let page = store.staged_page(data_type, after, IMPORT_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        let mut outcomes = Vec::new();
        for record in &page {
            let data: Value = serde_json::from_str(&record.data)
                .map_err(|e| corrupt(format!("a staged record: {e}")))?;
            if chosen(record, &data) {
                progress.completed += 1;
            } else {
                outcomes.push((record.seq, Outcome::Skipped));
            }
        }
        store.mark_staged(&outcomes).await?;
        checkpoint(store, id, progress).await?;
        if (page.len() as i64) < IMPORT_PAGE {
            break;
        }
    }
    Ok(())
}

/// `downloadPendingFiles` (`pending-files`) and `downloadPendingAvatars` (`pending-avatars`):
/// a new operation of that importer, and how many files or avatars wait. None: the operation
/// is done at once; otherwise it goes to `importer_importing_files` and a background task
/// works through them (docs/compatibility.md section 11).
pub async fn download_pending(
    state: &AppState,
    caller: &Caller,
    key: &str,
) -> Result<u64, ImportError> {
    pending_with(&Context::of(state), &caller.user_id, key).await
}

/// [`download_pending`] for a context and a user id.
pub async fn pending_with(cx: &Context, user_id: &str, key: &str) -> Result<u64, ImportError> {
    let method = if key == "pending-files" {
        "downloadPendingFiles"
    } else {
        "downloadPendingAvatars"
    };
    let importer = importer_by_key(key).ok_or_else(|| {
        ImportError::meteor(
            "error-importer-not-defined",
            "The Pending File Importer was not found.",
            method,
        )
    })?;
    let op = new_operation(&cx.store, user_id, importer).await?;
    set_status(&cx.store, &op.id, "importer_preparing_started").await?;
    // Imported messages are not kept once imported (their staged records are deleted), so no
    // file of one waits; avatars wait as users' `_pendingAvatarUrl`.
    let n = if key == "pending-avatars" {
        cx.store.count_pending_avatars().await?
    } else {
        0
    };
    if n == 0 {
        set_status(&cx.store, &op.id, "importer_done").await?;
        return Ok(0);
    }
    update(&cx.store, &op.id, &|fields| {
        let count = counts_of(fields);
        count.insert("total".into(), n.into());
        count.insert("messages".into(), n.into());
        fields.insert("messagesstatus".into(), Value::Null);
        fields.insert("status".into(), "importer_importing_files".into());
    })
    .await?;
    let (store, id) = (cx.store.clone(), op.id.clone());
    tokio::spawn(async move {
        // importops keeps no avatar images: each URL is taken as handled and dropped.
        let result = async {
            let done = store.clear_pending_avatars().await?;
            update(&store, &id, &|fields| {
                let count = counts_of(fields);
                count.insert("completed".into(), done.into());
                count.insert("error".into(), 0.into());
                fields.insert("status".into(), "importer_done".into());
            })
            .await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(operation = id, error = %e, "the pending avatars failed");
            let _ = set_status(&store, &id, "importer_import_failed").await;
        }
    });
    Ok(n)
}

/// Rocket.Chat's `Accounts_Registration_Users_Default_Roles`.
const DEFAULT_ROLES: [&str; 1] = ["user"];

/// `import.addUsers`: stages users for the current `api` operation (section 9 of
/// docs/compatibility.md's import workflow), which moves to `importer_user_selection`.
pub async fn add_users(state: &AppState, users: Vec<Value>) -> Result<(), ImportError> {
    add_users_with(&Context::of(state), users).await
}

/// [`add_users`] for a context.
pub async fn add_users_with(cx: &Context, users: Vec<Value>) -> Result<(), ImportError> {
    if users.is_empty() {
        return Ok(());
    }
    let op = match current(&cx.store).await? {
        Some(op) if op.get("valid").and_then(Value::as_bool) != Some(false) => op,
        _ => return Err(ImportError::plain("Import operation not initialized.")),
    };
    match crate::domain::operation::import_state(text(&op, "status"), true) {
        "loading" | "importing" => {
            return Err(ImportError::plain(
                "The current import operation can not receive new data.",
            ));
        }
        "done" | "error" | "canceled" => {
            return Err(ImportError::plain(
                "The current import operation is already finished.",
            ));
        }
        _ => {}
    }
    let non_empty = |user: &Value, key: &str| {
        user.get(key)
            .and_then(Value::as_array)
            .is_some_and(|items| {
                items
                    .iter()
                    .any(|i| i.as_str().is_some_and(|s| !s.is_empty()))
            })
    };
    if users
        .iter()
        .any(|u| !non_empty(u, "emails") || !non_empty(u, "importIds"))
    {
        return Err(ImportError::plain("Users are missing required data."));
    }
    let existing: HashSet<String> = cx.store.list_roles().await?.into_iter().collect();
    let mut records = Vec::with_capacity(users.len());
    for mut user in users {
        let mut roles: Vec<String> = user
            .get("roles")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        roles.extend(DEFAULT_ROLES.iter().map(|r| (*r).to_owned()));
        let roles = crate::accounts::dedup(roles);
        if roles.iter().any(|r| !existing.contains(r)) {
            return Err(ImportError::plain(
                "One or more of the users have been assigned invalid roles.",
            ));
        }
        user["roles"] = json!(roles);
        let import_id = user
            .get("importIds")
            .and_then(|ids| ids.get(0))
            .and_then(Value::as_str)
            .map(str::to_owned);
        records.push(NewStaged {
            data_type: DataType::User,
            import_id,
            data: user.to_string(),
        });
    }
    let id = text(&op, "_id").to_owned();
    cx.store.stage_records(&id, &records).await?;
    let n = records.len() as u64;
    update(&cx.store, &id, &|fields| {
        let count = counts_of(fields);
        for key in ["total", "users"] {
            let before = count.get(key).and_then(Value::as_u64).unwrap_or(0);
            count.insert(key.into(), (before + n).into());
        }
        fields.insert("status".into(), "importer_user_selection".into());
    })
    .await
    .map(drop)
}

/// `import.run`: imports every user staged for the current operation, in the background,
/// each inserted as a new user (Rocket.Chat's quick insertion).
pub async fn run_api_import(state: &AppState) -> Result<(), ImportError> {
    let cx = Context::of(state);
    let op = match current(&cx.store).await? {
        Some(op) if op.get("valid").and_then(Value::as_bool) != Some(false) => op,
        _ => return Err(ImportError::plain("error-operation-not-found")),
    };
    if text(&op, "status") != "importer_user_selection" {
        return Err(ImportError::plain("error-invalid-operation-status"));
    }
    if importer_by_key(text(&op, "importerKey")).is_none() {
        return Err(ImportError::plain("error-importer-not-defined"));
    }
    let id = text(&op, "_id").to_owned();
    set_status(&cx.store, &id, "importer_importing_started").await?;
    let selection = Selection {
        users: Choice::everything(),
        ..Selection::default()
    };
    tokio::spawn(async move {
        let _ = run_import(&cx, &id, &selection, true).await;
    });
    Ok(())
}

/// `getImportProgress`: `{key, name, step, count: {completed, total, error}}` of the current
/// operation.
pub async fn get_import_progress(state: &AppState) -> Result<Value, ImportError> {
    progress_with(&state.store).await
}

/// [`get_import_progress`] for a store.
pub async fn progress_with(store: &Store) -> Result<Value, ImportError> {
    const METHOD: &str = "getImportProgress";
    let op = current(store).await?.ok_or_else(|| not_found(METHOD))?;
    let key = text(&op, "importerKey");
    let importer = importer_by_key(key).ok_or_else(|| not_defined(key, METHOD))?;
    Ok(json!({
        "key": importer.key,
        "name": importer.name,
        "step": op.get("status").cloned().unwrap_or(Value::Null),
        "count": {
            "completed": count_value(&op, "completed"),
            "total": count_value(&op, "total"),
            "error": count_value(&op, "error"),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_merge_and_apply_as_the_importers_write_them() {
        let mut op = Map::new();
        let mut pending = Counts {
            add_total: 2,
            users: Some(2),
            ..Counts::default()
        };
        merge_counts(
            &mut pending,
            Counts {
                add_total: 3,
                messages: Some(3),
                messages_status: Some(None),
                ..Counts::default()
            },
        );
        apply_counts(&mut op, &pending);
        assert_eq!(
            Value::Object(op),
            json!({"count": {"total": 5, "users": 2, "messages": 3}, "messagesstatus": null})
        );
    }

    #[test]
    fn a_selection_takes_all_a_list_or_nothing() {
        let s =
            Selection::from_input(&json!({"users": {"all": true}, "channels": {"list": ["a"]}}));
        assert!(s.users.takes(Some("x")));
        assert!(s.channels.takes(Some("a")));
        assert!(!s.channels.takes(Some("b")));
        assert!(!s.contacts.takes(Some("a")));
    }
}
