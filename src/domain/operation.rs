//! Import operations: the documents `getLatestImportOperations` returns.
//!
//! An operation is kept as the JSON document Rocket.Chat would return, with every field,
//! known or not, in Rocket.Chat's order. Only the fields used for ordering are copied out.

use serde_json::{Map, Value};

use super::ids::{is_document_id, new_object_id};
use super::time::{format_iso_ms, parse_iso_ms};

/// The known fields, in the order Rocket.Chat returns them; other fields follow as stored.
pub const LEADING_FIELDS: [&str; 8] = [
    "_id",
    "type",
    "importerKey",
    "ts",
    "status",
    "valid",
    "user",
    "_updatedAt",
];

/// Rocket.Chat's import progress steps, the values `status` may take.
pub const STATUSES: [&str; 20] = [
    "importer_new",
    "importer_uploading",
    "importer_downloading_file",
    "importer_file_loaded",
    "importer_preparing_started",
    "importer_preparing_users",
    "importer_preparing_channels",
    "importer_preparing_messages",
    "importer_preparing_contacts",
    "importer_user_selection",
    "importer_importing_started",
    "importer_importing_users",
    "importer_importing_channels",
    "importer_importing_messages",
    "importer_importing_contacts",
    "importer_importing_files",
    "importer_finishing",
    "importer_done",
    "importer_import_failed",
    "importer_import_cancelled",
];

/// An importer registered in Rocket.Chat (`Importers.add`): its key, its name, and whether
/// `importers.list` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Importer {
    pub key: &'static str,
    pub name: &'static str,
    pub visible: bool,
}

const fn importer(key: &'static str, name: &'static str, visible: bool) -> Importer {
    Importer { key, name, visible }
}

/// The importers a Rocket.Chat 8 server registers, in the order it registers them; the
/// omnichannel contacts importer only exists with an enterprise licence, so it is not here
/// (docs/compatibility.md#4-5-import-routes).
pub const IMPORTERS: [Importer; 6] = [
    importer("api", "API", false),
    importer("csv", "CSV", true),
    importer("pending-files", "Pending Files", false),
    importer("pending-avatars", "Pending Avatars", false),
    importer("slack", "Slack", true),
    importer("slack-users", "Slack_Users", true),
];

/// The importer registered under `key`.
pub fn importer_by_key(key: &str) -> Option<&'static Importer> {
    IMPORTERS.iter().find(|i| i.key == key)
}

/// An operation's progress as Rocket.Chat reports it (`ImporterProgress`: `getImportProgress`,
/// and the `stream-importers` `progress` event): the importer's key and name, the step (its
/// `status`) and the counts (missing numbers 0). `None` when its `importerKey` names no
/// importer Rocket.Chat registers (docs/compatibility.md, section 13).
pub fn progress(op: &Map<String, Value>) -> Option<Value> {
    let key = op.get("importerKey").and_then(Value::as_str)?;
    let importer = importer_by_key(key)?;
    let count = |field: &str| {
        op.get("count")
            .and_then(|c| c.get(field))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let mut out = Map::new();
    out.insert("key".into(), importer.key.into());
    out.insert("name".into(), importer.name.into());
    out.insert(
        "step".into(),
        op.get("status").cloned().unwrap_or(Value::Null),
    );
    let mut counts = Map::new();
    for field in ["completed", "total", "error"] {
        counts.insert(field.into(), count(field).into());
    }
    out.insert("count".into(), Value::Object(counts));
    Some(Value::Object(out))
}

/// `import.status`'s state for an operation, as Rocket.Chat derives it.
pub fn import_state(status: &str, valid: bool) -> &'static str {
    if !valid && status != "importer_done" {
        return "error";
    }
    match status {
        "importer_new" => "new",
        "importer_uploading"
        | "importer_downloading_file"
        | "importer_file_loaded"
        | "importer_preparing_started"
        | "importer_preparing_users"
        | "importer_preparing_channels"
        | "importer_preparing_messages"
        | "importer_preparing_contacts" => "loading",
        "importer_user_selection" => "ready",
        "importer_done" => "done",
        "importer_import_cancelled" => "canceled",
        // importer_importing_*, importer_finishing; importer_import_failed is an error.
        "importer_import_failed" => "error",
        _ => "importing",
    }
}

/// An operation ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    pub id: String,
    pub updated_at_ms: i64,
    /// `ts` in epoch milliseconds, whether it was written as a number or a date.
    pub ts_ms: i64,
    pub status: String,
    pub valid: bool,
    /// The whole document as compact JSON, fields in Rocket.Chat's order.
    pub doc: String,
}

/// Why a document is not an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidOperation(pub String);

fn invalid(msg: impl Into<String>) -> InvalidOperation {
    InvalidOperation(msg.into())
}

impl Operation {
    /// Checks a plain-JSON document and puts it in stored form. A missing `_id` is made, a
    /// missing `ts` or `_updatedAt` is `now`; dates are normalised to Rocket.Chat's form.
    pub fn from_document(value: Value, now_ms: i64) -> Result<Self, InvalidOperation> {
        let Value::Object(mut fields) = value else {
            return Err(invalid("the record is not a JSON object"));
        };

        let id = match fields.shift_remove("_id") {
            // Rocket.Chat's models make an ObjectId when no `_id` is given.
            None => new_object_id(),
            Some(Value::String(id)) if is_document_id(&id) => id,
            Some(other) => {
                return Err(invalid(format!(
                    "_id {other} is not a 17-character Meteor id or a 24-hex ObjectId"
                )));
            }
        };
        for key in ["type", "importerKey", "user"] {
            match fields.get(key) {
                Some(Value::String(s)) if !s.is_empty() => {}
                Some(_) => return Err(invalid(format!("{key} is not a non-empty string"))),
                None => return Err(invalid(format!("{key} is missing"))),
            }
        }
        let status = match fields.get("status") {
            Some(Value::String(s)) if STATUSES.contains(&s.as_str()) => s.clone(),
            Some(other) => {
                return Err(invalid(format!(
                    "status {other} is not one of Rocket.Chat's import statuses"
                )));
            }
            None => return Err(invalid("status is missing")),
        };
        let valid = match fields.get("valid") {
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(invalid("valid is not true or false")),
            None => return Err(invalid("valid is missing")),
        };
        let ts_ms = match fields.get_mut("ts") {
            None => {
                fields.insert("ts".into(), Value::String(iso(now_ms)?));
                now_ms
            }
            // Older Rocket.Chat wrote `ts` as epoch milliseconds: kept as written.
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .ok_or_else(|| invalid("ts is not a valid number"))?,
            Some(v @ Value::String(_)) => {
                let ms = date_field(v, "ts")?;
                *v = Value::String(iso(ms)?);
                ms
            }
            Some(_) => return Err(invalid("ts is not a number or a date")),
        };
        let updated_at_ms = match fields.shift_remove("_updatedAt") {
            None => now_ms,
            Some(v) => date_field(&v, "_updatedAt")?,
        };

        let mut ordered = Map::with_capacity(fields.len() + 2);
        ordered.insert("_id".into(), Value::String(id.clone()));
        for key in &LEADING_FIELDS[1..7] {
            if let Some(v) = fields.shift_remove(*key) {
                ordered.insert((*key).into(), v);
            }
        }
        ordered.insert("_updatedAt".into(), Value::String(iso(updated_at_ms)?));
        ordered.extend(fields);

        let doc = serde_json::to_string(&Value::Object(ordered))
            .map_err(|e| invalid(format!("the record cannot be written as JSON: {e}")))?;
        Ok(Operation {
            id,
            updated_at_ms,
            ts_ms,
            status,
            valid,
            doc,
        })
    }
}

/// A stored operation with some fields changed and `_updatedAt` set to now: every write to an
/// operation bumps it, as in Rocket.Chat. `_id` cannot change; other fields keep their places,
/// new ones go last.
pub fn revise(
    doc: &str,
    changes: Map<String, Value>,
    now_ms: i64,
) -> Result<Operation, InvalidOperation> {
    let mut value: Value = serde_json::from_str(doc)
        .map_err(|e| invalid(format!("a stored operation is not valid JSON ({e})")))?;
    let fields = value
        .as_object_mut()
        .ok_or_else(|| invalid("a stored operation is not a JSON object"))?;
    for (key, v) in changes {
        if key != "_id" {
            fields.insert(key, v);
        }
    }
    fields.insert("_updatedAt".into(), Value::String(iso(now_ms)?));
    Operation::from_document(value, now_ms)
}

fn date_field(v: &Value, key: &str) -> Result<i64, InvalidOperation> {
    v.as_str()
        .and_then(parse_iso_ms)
        .ok_or_else(|| invalid(format!("{key} {v} is not an ISO-8601 date")))
}

fn iso(ms: i64) -> Result<String, InvalidOperation> {
    format_iso_ms(ms).ok_or_else(|| invalid("a date is outside the years 0 to 9999"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(extra: Value) -> Value {
        let mut base = json!({"type": "CSV", "importerKey": "csv", "status": "importer_new",
            "valid": true, "user": "d26x6zSkaPSe5gCyy"});
        base.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        base
    }

    #[test]
    fn puts_known_fields_first_and_keeps_the_rest_in_order() {
        let input = json!({"zeta": 1, "_updatedAt": "2021-10-27T11:26:24.43Z", "user": "u",
            "file": "f.zip", "valid": false, "status": "importer_done", "ts": 1635280600083u64,
            "importerKey": "csv", "type": "CSV", "_id": "MJxTRZsYdho8Ww2qq", "alpha": {"b": 1}});
        let op = Operation::from_document(input, 0).unwrap();
        assert_eq!(
            op.doc,
            r#"{"_id":"MJxTRZsYdho8Ww2qq","type":"CSV","importerKey":"csv","ts":1635280600083,"status":"importer_done","valid":false,"user":"u","_updatedAt":"2021-10-27T11:26:24.430Z","zeta":1,"file":"f.zip","alpha":{"b":1}}"#
        );
        assert_eq!(op.updated_at_ms, 1_635_333_984_430);
        assert_eq!(op.ts_ms, 1_635_280_600_083);
    }

    #[test]
    fn ts_as_a_date_is_normalised_and_kept_a_date() {
        let op = Operation::from_document(doc(json!({"ts": "2023-08-11T20:08:37.655+00:00"})), 5)
            .unwrap();
        assert!(
            op.doc.contains(r#""ts":"2023-08-11T20:08:37.655Z""#),
            "{}",
            op.doc
        );
        assert_eq!(op.ts_ms, 1_691_784_517_655);
    }

    #[test]
    fn fills_in_id_and_times() {
        let op = Operation::from_document(doc(json!({})), 1_635_333_984_430).unwrap();
        assert!(crate::domain::ids::is_object_id(&op.id), "{}", op.id);
        assert!(
            op.doc
                .contains(r#""_updatedAt":"2021-10-27T11:26:24.430Z""#)
        );
        assert!(op.doc.contains(r#""ts":"2021-10-27T11:26:24.430Z""#));
    }

    #[test]
    fn import_states_follow_rocketchat() {
        assert_eq!(import_state("importer_new", true), "new");
        assert_eq!(import_state("importer_new", false), "error");
        assert_eq!(import_state("importer_done", false), "done");
        assert_eq!(import_state("importer_file_loaded", true), "loading");
        assert_eq!(import_state("importer_user_selection", true), "ready");
        assert_eq!(import_state("importer_importing_files", true), "importing");
        assert_eq!(import_state("importer_finishing", true), "importing");
        assert_eq!(import_state("importer_import_failed", true), "error");
        assert_eq!(import_state("importer_import_cancelled", true), "canceled");
    }

    #[test]
    fn revising_bumps_updated_at_and_keeps_field_order() {
        let op = Operation::from_document(doc(json!({"_id": "MJxTRZsYdho8Ww2qq", "extra": 1})), 0)
            .unwrap();
        let mut changes = Map::new();
        changes.insert("valid".into(), json!(false));
        changes.insert("_id".into(), json!("64d69545ee8ae821983005f5"));
        changes.insert("added".into(), json!(2));
        let revised = revise(&op.doc, changes, 1_635_333_984_430).unwrap();
        assert_eq!(revised.id, "MJxTRZsYdho8Ww2qq");
        assert!(!revised.valid);
        assert_eq!(revised.updated_at_ms, 1_635_333_984_430);
        assert!(
            revised
                .doc
                .ends_with(r#""_updatedAt":"2021-10-27T11:26:24.430Z","extra":1,"added":2}"#),
            "{}",
            revised.doc
        );
    }

    #[test]
    fn rejects_bad_records_with_a_reason() {
        let cases = [
            (json!([1]), "not a JSON object"),
            (doc(json!({"_id": "short"})), "_id"),
            (doc(json!({"status": "importer_sleeping"})), "status"),
            (doc(json!({"valid": "yes"})), "valid"),
            (doc(json!({"_updatedAt": "yesterday"})), "_updatedAt"),
            (doc(json!({"ts": true})), "ts"),
            (doc(json!({"type": 3})), "type"),
            (
                json!({"status": "importer_new", "valid": true, "user": "u"}),
                "type is missing",
            ),
        ];
        for (input, reason) in cases {
            let err = Operation::from_document(input.clone(), 0).unwrap_err();
            assert!(err.0.contains(reason), "{input}: {err}");
        }
    }
}
