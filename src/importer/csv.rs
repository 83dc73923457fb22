//! Rocket.Chat's CSV importer (key `csv`, name `CSV`; docs/compatibility.md, "The CSV
//! importer"): a zip of `channels.csv`, `users.csv`, `contacts.csv` and one folder of message
//! files per channel, `directmessages/` for direct messages.
//!
//! Every CSV file is read as Rocket.Chat's parser (csv-parse with its defaults) reads it: no
//! header row, `"` quotes, every row as long as the first, and its error texts
//! (`Invalid Record Length: expect 3, got 2 on line 2`, `Quote Not Closed: ...`). A file is
//! read twice, streamed both times: once to check it, once to send its records, so that a
//! file with a syntax error sends nothing, as in Rocket.Chat, where the parser runs first.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;

use serde_json::{Map, Value, json};

use super::archive::{Archive, Entry};
use super::{Counts, DataType, ImportError, Limits, Prepared, Sink, js};

pub const PREPARING_CHANNELS: &str = "importer_preparing_channels";
pub const PREPARING_USERS: &str = "importer_preparing_users";
pub const PREPARING_CONTACTS: &str = "importer_preparing_contacts";
pub const PREPARING_MESSAGES: &str = "importer_preparing_messages";
pub const IMPORT_FAILED: &str = "importer_import_failed";
pub const USER_SELECTION: &str = "importer_user_selection";

/// One parsed row: its fields and the line it ends on (csv-parse's line count).
pub struct Row<'a> {
    pub line: u64,
    pub fields: &'a ::csv::StringRecord,
}

impl Row<'_> {
    /// Field `i`, `None` past the end (JavaScript's `undefined`).
    pub fn get(&self, i: usize) -> Option<&str> {
        self.fields.get(i)
    }
}

/// Reads CSV rows from `input` as csv-parse does, calling `on_row` for each. `Ok(Err(text))`
/// is a syntax error of the content, in csv-parse's words; `Err` is `on_row`'s own error.
/// Returns the number of rows.
pub fn read_rows<R: Read>(
    input: R,
    mut on_row: impl FnMut(Row<'_>) -> Result<(), ImportError>,
) -> Result<Result<u64, String>, ImportError> {
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(false)
        .from_reader(Strict::new(input));
    let mut record = ::csv::StringRecord::new();
    let mut rows = 0u64;
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                if let Some(text) = reader.get_mut().fault.take() {
                    return Ok(Err(text));
                }
                return Ok(Err(csv_error_text(&e)));
            }
        }
        let line = reader.get_mut().record_lines.pop_front();
        let line = line.unwrap_or(record.position().map_or(0, |p| p.line()));
        rows += 1;
        on_row(Row {
            line,
            fields: &record,
        })?;
    }
    // The scanner may have seen a fault past the last record the csv reader handed out.
    if let Some(text) = reader.get_mut().fault.take() {
        return Ok(Err(text));
    }
    Ok(Ok(rows))
}

fn csv_error_text(e: &::csv::Error) -> String {
    match e.kind() {
        ::csv::ErrorKind::UnequalLengths {
            pos,
            expected_len,
            len,
        } => format!(
            "Invalid Record Length: expect {expected_len}, got {len} on line {}",
            pos.as_ref().map_or(0, |p| p.line())
        ),
        ::csv::ErrorKind::Utf8 { pos, .. } => format!(
            "The file is not UTF-8 text (line {})",
            pos.as_ref().map_or(0, |p| p.line())
        ),
        _ => e.to_string(),
    }
}

/// The strictness csv-parse has and the csv crate does not, checked on the bytes as they pass:
/// a quote inside an unquoted field, a character after a closing quote, a quote left open,
/// and rows of differing lengths, blank lines included (csv-parse reads a blank line as a
/// row of one empty field). Records the line each row ends on, as csv-parse counts lines.
struct Strict<R> {
    inner: R,
    state: State,
    /// 1-based line of the current position (CRLF, CR and LF each end a line).
    line: u64,
    after_cr: bool,
    /// Fields completed in the current row.
    fields: usize,
    /// The current unquoted field's bytes (for csv-parse's "value is" text), bounded.
    field: Vec<u8>,
    expected: Option<usize>,
    /// Lines on which the rows not yet handed out end (front = oldest).
    record_lines: std::collections::VecDeque<u64>,
    fault: Option<String>,
    done: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    RowStart,
    FieldStart,
    Unquoted,
    Quoted,
    /// A quote was seen inside a quoted field: the field ends here, or `""` is a quote.
    QuoteInQuoted,
}

const FIELD_TEXT_MAX: usize = 200;

impl<R> Strict<R> {
    fn new(inner: R) -> Self {
        Strict {
            inner,
            state: State::RowStart,
            line: 1,
            after_cr: false,
            fields: 0,
            field: Vec::new(),
            expected: None,
            record_lines: std::collections::VecDeque::new(),
            fault: None,
            done: false,
        }
    }

    fn end_field(&mut self) {
        self.fields += 1;
        self.field.clear();
    }

    fn end_row(&mut self) -> Result<(), String> {
        self.end_field();
        let got = self.fields;
        self.fields = 0;
        match self.expected {
            None => self.expected = Some(got),
            Some(expected) if expected != got => {
                return Err(format!(
                    "Invalid Record Length: expect {expected}, got {got} on line {}",
                    self.line
                ));
            }
            Some(_) => {}
        }
        self.record_lines.push_back(self.line);
        Ok(())
    }

    fn scan(&mut self, bytes: &[u8]) -> Result<(), String> {
        for &b in bytes {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            let newline = b == b'\n' || b == b'\r';
            match self.state {
                State::Quoted => {
                    if b == b'"' {
                        self.state = State::QuoteInQuoted;
                    }
                }
                State::QuoteInQuoted => match b {
                    b'"' => self.state = State::Quoted,
                    b',' => {
                        self.end_field();
                        self.state = State::FieldStart;
                    }
                    _ if newline => {
                        self.end_row()?;
                        self.state = State::RowStart;
                    }
                    _ => {
                        return Err(format!(
                            "Invalid Closing Quote: got \"{}\" at line {} instead of delimiter, record delimiter, trimable character (if activated) or comment",
                            char::from(b),
                            self.line
                        ));
                    }
                },
                State::RowStart | State::FieldStart => match b {
                    b'"' => self.state = State::Quoted,
                    b',' => {
                        self.end_field();
                        self.state = State::FieldStart;
                    }
                    _ if newline => {
                        self.end_row()?;
                        self.state = State::RowStart;
                    }
                    _ => {
                        self.field.push(b);
                        self.state = State::Unquoted;
                    }
                },
                State::Unquoted => match b {
                    b'"' => {
                        let value = String::from_utf8_lossy(&self.field).into_owned();
                        let bom = if value == "\u{feff}" {
                            " (utf8 bom)"
                        } else {
                            ""
                        };
                        return Err(format!(
                            "Invalid Opening Quote: a quote is found on field {} at line {}, value is {}{bom}",
                            self.fields,
                            self.line,
                            serde_json::to_string(&value).unwrap_or_default()
                        ));
                    }
                    b',' => {
                        self.end_field();
                        self.state = State::FieldStart;
                    }
                    _ if newline => {
                        self.end_row()?;
                        self.state = State::RowStart;
                    }
                    _ => {
                        if self.field.len() < FIELD_TEXT_MAX {
                            self.field.push(b);
                        }
                    }
                },
            }
            if newline {
                self.line += 1;
                self.after_cr = b == b'\r';
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), String> {
        match self.state {
            State::Quoted => Err(format!(
                "Quote Not Closed: the parsing is finished with an opening quote at line {}",
                self.line
            )),
            State::RowStart => Ok(()),
            _ => {
                self.end_row()?;
                self.state = State::RowStart;
                Ok(())
            }
        }
    }
}

impl<R: Read> Read for Strict<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let fail =
            |text: &String| std::io::Error::new(std::io::ErrorKind::InvalidData, text.clone());
        if let Some(text) = &self.fault {
            return Err(fail(text));
        }
        if self.done {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        let outcome = if n == 0 {
            self.done = true;
            self.finish()
        } else {
            self.scan(&buf[..n])
        };
        if let Err(text) = outcome {
            let e = fail(&text);
            self.fault = Some(text);
            return Err(e);
        }
        Ok(n)
    }
}

/// Reads the CSV entry `entry` twice: a check (the row count, or csv-parse's syntax error),
/// then, when it passed, `on_row` for each row. Faults of the archive are `Err`.
fn checked_rows(
    archive: &mut Archive,
    entry: &Entry,
    on_row: impl FnMut(Row<'_>) -> Result<(), ImportError>,
) -> Result<Result<u64, String>, ImportError> {
    let checked = archive.read_entry(entry, true, |r| read_rows(r, |_| Ok(())))??;
    if let Err(text) = checked {
        return Ok(Err(text));
    }
    archive.read_entry(entry, true, |r| read_rows(r, on_row))?
}

/// A row shorter than a column Rocket.Chat reads with `.trim()` (a TypeError there).
fn missing_column(file: &str, line: u64, got: usize, needed: usize) -> ImportError {
    ImportError::plain(format!(
        "{file} line {line}: {got} column{} where {needed} are needed",
        if got == 1 { "" } else { "s" }
    ))
}

fn column<'r>(
    row: &'r Row<'_>,
    file: &str,
    i: usize,
    needed: usize,
) -> Result<&'r str, ImportError> {
    row.get(i)
        .ok_or_else(|| missing_column(file, row.line, row.fields.len(), needed))
}

/// `new Date(parseInt(ts))`.
fn message_ts(ts: Option<&str>) -> Value {
    js::date(ts.and_then(js::parse_int))
}

fn message(rid: &str, user: &str, ts: Option<&str>, text: Option<&str>) -> Value {
    let mut m = Map::new();
    m.insert("rid".into(), rid.into());
    m.insert("u".into(), json!({ "_id": user }));
    m.insert("ts".into(), message_ts(ts));
    if let Some(text) = text {
        m.insert("msg".into(), text.into());
    }
    Value::Object(m)
}

/// A sink and the last step sent to it (Rocket.Chat's `progress.step`).
pub(crate) struct Prep<'s> {
    pub(crate) sink: &'s mut dyn Sink,
    pub(crate) step: Option<&'static str>,
}

impl Prep<'_> {
    pub(crate) fn step(&mut self, step: &'static str) -> Result<(), ImportError> {
        self.step = Some(step);
        self.sink.send(Prepared::Step(step))
    }
    pub(crate) fn counts(&mut self, counts: Counts) -> Result<(), ImportError> {
        self.sink.send(Prepared::Counts(counts))
    }
    pub(crate) fn record(&mut self, kind: DataType, value: Value) -> Result<(), ImportError> {
        self.sink.send(Prepared::Record(kind, value))
    }
}

/// The CSV importer's `prepare` (a [`super::PrepareFn`]).
pub fn prepare(path: &Path, limits: &Limits, sink: &mut dyn Sink) -> Result<(), ImportError> {
    let mut archive = Archive::open(path, limits)?;
    let mut prep = Prep { sink, step: None };
    let mut messages = 0u64;
    let mut users = 0u64;
    let mut channels = 0u64;
    let mut contacts = 0u64;
    let mut dm_rooms: HashSet<String> = HashSet::new();
    let mut room_ids: HashMap<String, String> = HashMap::new();

    let files = archive.files().to_vec();
    for entry in &files {
        let lower = entry.name.to_lowercase();
        if lower == "channels.csv" {
            prep.step(PREPARING_CHANNELS)?;
            let name = entry.name.as_str();
            let rows = checked_rows(&mut archive, entry, |row| {
                let room = js::trim(column(&row, name, 0, 4)?).to_owned();
                let creator = js::trim(column(&row, name, 1, 4)?);
                let private = js::trim(column(&row, name, 2, 4)?).to_lowercase() == "private";
                let members: Vec<&str> = js::trim(column(&row, name, 3, 4)?)
                    .split(';')
                    .map(js::trim)
                    .filter(|m| !m.is_empty())
                    .collect();
                let id = room_ids
                    .entry(room.clone())
                    .or_insert_with(crate::domain::ids::new_meteor_id)
                    .clone();
                prep.record(
                    DataType::Channel,
                    json!({
                        "importIds": [id],
                        "u": { "_id": creator },
                        "name": room,
                        "users": members,
                        "t": if private { "p" } else { "c" },
                    }),
                )
            })?
            .map_err(ImportError::plain)?;
            channels = rows;
            prep.counts(Counts {
                channels: Some(channels),
                ..Counts::default()
            })?;
            continue;
        }
        if lower == "users.csv" {
            prep.step(PREPARING_USERS)?;
            let name = entry.name.as_str();
            let rows = checked_rows(&mut archive, entry, |row| {
                let username = js::trim(column(&row, name, 0, 3)?);
                let email = js::trim(column(&row, name, 1, 3)?);
                let full_name = js::trim(column(&row, name, 2, 3)?);
                prep.record(
                    DataType::User,
                    json!({
                        "type": "user",
                        "importIds": [username],
                        "emails": [email],
                        "username": username,
                        "name": full_name,
                    }),
                )
            })?
            .map_err(ImportError::plain)?;
            users = rows;
            prep.counts(Counts {
                users: Some(users),
                ..Counts::default()
            })?;
            continue;
        }
        if lower == "contacts.csv" {
            prep.step(PREPARING_CONTACTS)?;
            let mut header: Option<Vec<String>> = None;
            let mut accepted = 0u64;
            checked_rows(&mut archive, entry, |row| {
                let Some(columns) = &header else {
                    header = Some(row.fields.iter().map(str::to_owned).collect());
                    return Ok(());
                };
                if let Some(contact) = contact_record(columns, row.fields) {
                    accepted += 1;
                    prep.record(DataType::Contact, contact)?;
                }
                Ok(())
            })?
            .map_err(ImportError::plain)?;
            contacts = accepted;
            prep.counts(Counts {
                contacts: Some(contacts),
                ..Counts::default()
            })?;
            continue;
        }
        if entry.name.contains('/') {
            if prep.step != Some(PREPARING_MESSAGES) {
                prep.step(PREPARING_MESSAGES)?;
            }
            let mut parts = entry.name.split('/');
            let folder = parts.next().unwrap_or_default().to_owned();
            let group = parts
                .next()
                .unwrap_or_default()
                .split('.')
                .next()
                .unwrap_or_default()
                .to_owned();
            let checked = archive.read_entry(entry, true, |r| read_rows(r, |_| Ok(())))??;
            let rows = match checked {
                Ok(rows) => rows,
                Err(text) => {
                    tracing::warn!(entry = %entry.name, error = %text, "The file contains invalid syntax");
                    continue;
                }
            };
            messages += rows;
            prep.counts(Counts {
                messages_status: Some(Some(format!("{folder}/{group}"))),
                ..Counts::default()
            })?;
            if folder.to_lowercase() == "directmessages" {
                archive
                    .read_entry(entry, true, |r| {
                        read_rows(r, |row| {
                            let sender = row.get(0).unwrap_or_default();
                            let Some(other) = row.get(1).filter(|o| !o.is_empty()) else {
                                return Ok(());
                            };
                            let mut pair = [sender, other];
                            pair.sort_by(|a, b| js::cmp_utf16(a, b));
                            let id = pair.join("/");
                            if !dm_rooms.contains(&id) {
                                prep.record(
                                    DataType::Channel,
                                    json!({ "importIds": [id], "users": [sender, other], "t": "d" }),
                                )?;
                                dm_rooms.insert(id.clone());
                            }
                            prep.record(
                                DataType::Message,
                                message(&id, sender, row.get(2), row.get(3)),
                            )
                        })
                    })??
                    .map_err(ImportError::plain)?;
            } else {
                let rid = room_ids
                    .entry(folder.clone())
                    .or_insert_with(crate::domain::ids::new_meteor_id)
                    .clone();
                archive
                    .read_entry(entry, true, |r| {
                        read_rows(r, |row| {
                            prep.record(
                                DataType::Message,
                                message(
                                    &rid,
                                    row.get(0).unwrap_or_default(),
                                    row.get(1),
                                    row.get(2),
                                ),
                            )
                        })
                    })??
                    .map_err(ImportError::plain)?;
            }
            prep.counts(Counts {
                messages: Some(messages),
                messages_status: Some(None),
                ..Counts::default()
            })?;
        }
        // Anything else (`readme.txt`) is ignored.
    }

    prep.counts(Counts {
        add_total: messages + users + channels + contacts,
        ..Counts::default()
    })?;
    if users == 0 && channels == 0 && messages == 0 && contacts == 0 {
        tracing::error!("No valid record found in the import file.");
        prep.step(IMPORT_FAILED)?;
    }
    Ok(())
}

/// One row of `contacts.csv` as Rocket.Chat's contact importer reads it, or `None` for a row
/// with no name, e-mails or phones.
fn contact_record(columns: &[String], row: &::csv::StringRecord) -> Option<Value> {
    // Later columns of the same name replace earlier ones, in the first one's place.
    let mut data: Map<String, Value> = Map::new();
    for (i, value) in row.iter().enumerate() {
        let key = columns
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("column{i}"));
        data.insert(key, Value::String(value.to_owned()));
    }
    let present = |k: &str| {
        data.get(k)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    if !present("emails") && !present("phones") && !present("name") {
        return None;
    }
    let text = |data: &mut Map<String, Value>, k: &str| -> Option<String> {
        data.shift_remove(k)
            .map(|v| v.as_str().unwrap_or_default().to_owned())
    };
    let emails = text(&mut data, "emails").unwrap_or_default();
    let phones = text(&mut data, "phones").unwrap_or_default();
    let name = text(&mut data, "name").unwrap_or_default();
    let manager = text(&mut data, "manager");
    let id = text(&mut data, "id").unwrap_or_else(crate::domain::ids::new_meteor_id);
    let mut contact = Map::new();
    contact.insert("importIds".into(), json!([id]));
    contact.insert(
        "emails".into(),
        json!(emails.split(';').collect::<Vec<_>>()),
    );
    contact.insert(
        "phones".into(),
        json!(phones.split(';').collect::<Vec<_>>()),
    );
    contact.insert("name".into(), name.into());
    if let Some(manager) = manager {
        contact.insert("contactManager".into(), manager.into());
    }
    contact.insert("customFields".into(), Value::Object(data));
    Some(Value::Object(contact))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str) -> Result<Vec<(u64, Vec<String>)>, String> {
        let mut out = Vec::new();
        read_rows(text.as_bytes(), |row| {
            out.push((row.line, row.fields.iter().map(str::to_owned).collect()));
            Ok(())
        })
        .unwrap()
        .map(|_| out)
    }

    fn fields(text: &str) -> Vec<Vec<String>> {
        rows(text).unwrap().into_iter().map(|(_, f)| f).collect()
    }

    #[test]
    fn rows_as_csv_parse_reads_them() {
        assert_eq!(
            fields("a,b,c\n\"x,1\",\"he said \"\"hi\"\"\",\n"),
            [vec!["a", "b", "c"], vec!["x,1", "he said \"hi\"", ""]]
        );
        // Fields are not trimmed by the parser; CRLF and CR end rows.
        assert_eq!(
            fields(" a , b \r\nc,d\re,f"),
            [vec![" a ", " b "], vec!["c", "d"], vec!["e", "f"]]
        );
        assert_eq!(fields(""), Vec::<Vec<String>>::new());
        assert_eq!(
            fields("\"multi\nline\",x\ny,z"),
            [vec!["multi\nline", "x"], vec!["y", "z"]]
        );
        let lines: Vec<u64> = rows("a,b\n\"1\n2\",c\nd,e")
            .unwrap()
            .iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(lines, [1, 3, 4]);
    }

    #[test]
    fn csv_parse_error_texts() {
        assert_eq!(
            rows("a,b,c\nd,e").err().unwrap(),
            "Invalid Record Length: expect 3, got 2 on line 2"
        );
        assert_eq!(
            rows("a,b,c\nd,e,f\ng,h,i,j\n").err().unwrap(),
            "Invalid Record Length: expect 3, got 4 on line 3"
        );
        // A blank line is a row of one empty field.
        assert_eq!(
            rows("a,b\n\nc,d").err().unwrap(),
            "Invalid Record Length: expect 2, got 1 on line 2"
        );
        assert_eq!(
            rows("alice,1700000000000,\"unclosed").err().unwrap(),
            "Quote Not Closed: the parsing is finished with an opening quote at line 1"
        );
        assert_eq!(
            rows("a,b\"c\n").err().unwrap(),
            "Invalid Opening Quote: a quote is found on field 1 at line 1, value is \"b\""
        );
        assert_eq!(
            rows("a,\"b\"c\n").err().unwrap(),
            "Invalid Closing Quote: got \"c\" at line 1 instead of delimiter, record delimiter, trimable character (if activated) or comment"
        );
        // A trailing newline makes no row.
        assert_eq!(fields("a,b\n").len(), 1);
    }
}
