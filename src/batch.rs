//! The one reader of batches: `ops load`'s operations and the files of a Rocket.Chat export.
//!
//! A batch is a JSON array of documents or JSON lines (one document a line, as `mongoexport`
//! writes; blank lines are skipped), told apart by its first byte that is not whitespace, after
//! an optional UTF-8 byte-order mark. It is read from any `Read` a record at a time, so memory
//! stays bounded whatever the input's size; faults name the record (`line N` or `record N`).
//! Operations are checked on a thread of their own and sent in chunks through a bounded
//! channel to the store, which writes them in one transaction as they arrive.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;

use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::domain::ejson::to_plain;
use crate::domain::ids::pack_document_id;
use crate::domain::operation::{InvalidOperation, Operation};
use crate::store::OperationChunks;

/// Operations per chunk sent to the store.
pub const CHUNK: usize = 1_000;
/// Chunks waiting for the store: enough to keep both sides busy, few enough to bound memory.
const CHUNKS_IN_FLIGHT: usize = 4;
/// Records between two progress reports.
const REPORT_EVERY: u64 = 1_000;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Where a record is in its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A line of JSON lines (1-based, blank lines counted).
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

/// Why a batch cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Reading failed, or the input is not UTF-8.
    #[error("{0}")]
    Io(#[source] io::Error),
    /// The input begins as a JSON array but is not one (serde_json's reason).
    #[error("the input is not a valid JSON array ({0})")]
    NotAnArray(String),
    /// A record that cannot be taken.
    #[error("{place}: {reason}")]
    Record { place: Place, reason: String },
}

/// Why a record handler refused a record.
#[derive(Debug)]
pub enum Refusal {
    /// The record is bad, for this reason: the batch fails.
    Invalid(String),
    /// Nothing more is wanted (the writer is gone): reading stops quietly.
    Cancelled,
}

impl From<String> for Refusal {
    fn from(reason: String) -> Self {
        Refusal::Invalid(reason)
    }
}

/// Told how far reading went (the command line draws a progress bar).
pub trait Progress: Send + Sync {
    /// Reading `step` begins; `bytes` is the input's size when known.
    fn start(&self, _step: &str, _bytes: Option<u64>) {}
    /// `records` more records and `bytes` more bytes were read.
    fn advance(&self, _records: u64, _bytes: u64) {}
}

/// No progress to show.
impl Progress for () {}

/// Reads every record of `input` in order and hands each to `each` with its place. The first
/// fault ends the reading. In an array, a malformed array is reported rather than a bad record
/// before the fault, as when the whole array was parsed first: after a bad record the rest is
/// still checked as JSON, without being kept.
pub fn read_records<R: Read>(
    input: R,
    progress: &dyn Progress,
    mut each: impl FnMut(Place, Value) -> Result<(), Refusal>,
) -> Result<(), BatchError> {
    let bytes = Cell::new(0);
    let mut input = Utf8Reader::new(input, &bytes);
    let (form, head) = sniff(&mut input).map_err(BatchError::Io)?;
    let input = BufReader::with_capacity(64 * 1024, head.chain(input));

    let mut reported = (0, 0);
    let mut records = 0;
    let mut report = |records: u64, force: bool| {
        if force || records - reported.0 >= REPORT_EVERY {
            progress.advance(records - reported.0, bytes.get() - reported.1);
            reported = (records, bytes.get());
        }
    };
    let mut counted = |place: Place, value: Value| {
        records += 1;
        report(records, false);
        each(place, value)
    };
    let result = match form {
        Form::Lines => read_lines(input, &mut counted),
        Form::Array => read_array(input, &mut counted),
    };
    report(records, true);
    result
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Array,
    Lines,
}

/// The bytes read to find the form: the whitespace before the first other byte, replayed as
/// newlines and spaces so that line and column numbers stay as in the input, then the rest.
type Head = io::Chain<io::Chain<io::Take<io::Repeat>, io::Take<io::Repeat>>, io::Cursor<Vec<u8>>>;

/// Skips a byte-order mark and finds the first byte that is not whitespace.
fn sniff(input: &mut impl Read) -> io::Result<(Form, Head)> {
    let (mut newlines, mut columns) = (0u64, 0u64);
    let mut head = Vec::new();
    let mut bom_checked = false;
    let mut form = Form::Lines;
    let mut buf = [0; 8 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        head.extend_from_slice(&buf[..n]);
        if !bom_checked {
            if head.len() < BOM.len() && BOM.starts_with(&head) {
                continue;
            }
            if head.starts_with(BOM) {
                head.drain(..BOM.len());
            }
            bom_checked = true;
        }
        match head.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => {
                form = if head[i] == b'[' {
                    Form::Array
                } else {
                    Form::Lines
                };
                break;
            }
            None => {
                // Only whitespace so far: keep where it ends, not the bytes.
                for &b in &head {
                    if b == b'\n' {
                        newlines += 1;
                        columns = 0;
                    } else {
                        columns += 1;
                    }
                }
                head.clear();
            }
        }
    }
    let replay = io::repeat(b'\n')
        .take(newlines)
        .chain(io::repeat(b' ').take(columns))
        .chain(io::Cursor::new(head));
    Ok((form, replay))
}

fn read_lines(
    mut input: impl BufRead,
    each: &mut impl FnMut(Place, Value) -> Result<(), Refusal>,
) -> Result<(), BatchError> {
    let mut line = Vec::new();
    let mut number = 0;
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line).map_err(BatchError::Io)? == 0 {
            return Ok(());
        }
        number += 1;
        let place = Place::Line(number);
        let text = std::str::from_utf8(&line).map_err(|e| BatchError::Io(not_utf8(e)))?;
        let text = match text.strip_suffix('\n') {
            Some(text) => text.strip_suffix('\r').unwrap_or(text),
            None => text,
        };
        if text.trim().is_empty() {
            continue;
        }
        let value = serde_json::from_str(text).map_err(|e| BatchError::Record {
            place,
            reason: format!("not a valid JSON document ({e})"),
        })?;
        match each(place, value) {
            Ok(()) => {}
            Err(Refusal::Invalid(reason)) => return Err(BatchError::Record { place, reason }),
            Err(Refusal::Cancelled) => return Ok(()),
        }
    }
}

fn read_array(
    input: impl Read,
    each: &mut impl FnMut(Place, Value) -> Result<(), Refusal>,
) -> Result<(), BatchError> {
    let mut de = serde_json::Deserializer::from_reader(input);
    let mut stop = Stop::None;
    let visitor = Elements {
        each,
        stop: &mut stop,
    };
    let parsed = serde::Deserializer::deserialize_seq(&mut de, visitor).and_then(|()| de.end());
    if let Stop::Cancelled = stop {
        // The rest was not read: whatever serde_json says of it does not count.
        return Ok(());
    }
    parsed.map_err(|e| {
        if e.is_io() {
            BatchError::Io(e.into())
        } else {
            BatchError::NotAnArray(e.to_string())
        }
    })?;
    match stop {
        Stop::Fault(fault) => Err(fault),
        Stop::None | Stop::Cancelled => Ok(()),
    }
}

/// Why the elements stopped being handed on before the end of the array.
enum Stop {
    None,
    Cancelled,
    Fault(BatchError),
}

/// Hands each element of the array to `each`, until it refuses one.
struct Elements<'a, F> {
    each: &'a mut F,
    stop: &'a mut Stop,
}

impl<'de, F> Visitor<'de> for Elements<'_, F>
where
    F: FnMut(Place, Value) -> Result<(), Refusal>,
{
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut n = 0;
        while let Some(value) = seq.next_element::<Value>()? {
            n += 1;
            let place = Place::Record(n);
            match (self.each)(place, value) {
                Ok(()) => {}
                Err(Refusal::Invalid(reason)) => {
                    *self.stop = Stop::Fault(BatchError::Record { place, reason });
                    while seq.next_element::<IgnoredAny>()?.is_some() {}
                    return Ok(());
                }
                Err(Refusal::Cancelled) => {
                    *self.stop = Stop::Cancelled;
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

fn not_utf8(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Passes on only valid UTF-8 (an input that is not UTF-8 cannot be read, as
/// `read_to_string` would say), counting the bytes read.
struct Utf8Reader<'a, R> {
    inner: R,
    buf: Box<[u8]>,
    /// `buf[start..valid]` is checked and not yet passed on; `buf[valid..end]` is the start of
    /// a character whose other bytes are still to come.
    start: usize,
    valid: usize,
    end: usize,
    bytes: &'a Cell<u64>,
}

impl<'a, R: Read> Utf8Reader<'a, R> {
    fn new(inner: R, bytes: &'a Cell<u64>) -> Self {
        Utf8Reader {
            inner,
            buf: vec![0; 64 * 1024].into_boxed_slice(),
            start: 0,
            valid: 0,
            end: 0,
            bytes,
        }
    }
}

impl<R: Read> Read for Utf8Reader<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.start == self.valid {
            // Keep the unfinished character at the front, then fill the rest.
            self.buf.copy_within(self.valid..self.end, 0);
            self.end -= self.valid;
            self.start = 0;
            self.valid = 0;
            let n = match self.inner.read(&mut self.buf[self.end..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.bytes.set(self.bytes.get() + n as u64);
            if n == 0 {
                if self.end > 0 {
                    return Err(not_utf8(StreamNotUtf8));
                }
                return Ok(0);
            }
            self.end += n;
            self.valid = match std::str::from_utf8(&self.buf[..self.end]) {
                Ok(_) => self.end,
                Err(e) if e.error_len().is_none() => e.valid_up_to(),
                Err(_) => return Err(not_utf8(StreamNotUtf8)),
            };
        }
        let n = out.len().min(self.valid - self.start);
        out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        Ok(n)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("stream did not contain valid UTF-8")]
struct StreamNotUtf8;

/// The `_id`s of one batch and where each was first seen: 24 bytes an id (see
/// `pack_document_id`), so that millions fit. The batch is of one form, so only the number
/// of the place is kept.
#[derive(Default)]
pub struct SeenIds {
    packed: HashMap<[u64; 2], usize>,
    other: HashMap<String, usize>,
}

impl SeenIds {
    /// Where `id` was first seen, if it was; otherwise remembers `place` for it.
    pub fn first_use(&mut self, id: &str, place: Place) -> Option<Place> {
        let (Place::Line(n) | Place::Record(n)) = place;
        let first = match pack_document_id(id) {
            Some(packed) => *self
                .packed
                .entry([(packed >> 64) as u64, packed as u64])
                .or_insert(n),
            None => *self.other.entry(id.to_owned()).or_insert(n),
        };
        (first != n).then_some(match place {
            Place::Line(_) => Place::Line(first),
            Place::Record(_) => Place::Record(first),
        })
    }
}

/// Checks one operation record of a batch: Extended JSON is accepted, and an `_id` given
/// twice is a fault.
pub fn check_operation(
    seen: &mut SeenIds,
    place: Place,
    value: Value,
    now_ms: i64,
) -> Result<Operation, String> {
    let op = to_plain(value).and_then(|v| Operation::from_document(v, now_ms).map_err(|e| e.0))?;
    if let Some(first) = seen.first_use(&op.id, place) {
        return Err(format!("_id {} was already used by {first}", op.id));
    }
    Ok(op)
}

/// Parses a whole batch of operations held in memory (the demo data, tests).
pub fn parse_batch(text: &str, now_ms: i64) -> Result<Vec<Operation>, InvalidOperation> {
    let mut seen = SeenIds::default();
    let mut ops = Vec::new();
    read_records(text.as_bytes(), &(), |place, value| {
        ops.push(check_operation(&mut seen, place, value, now_ms)?);
        Ok(())
    })
    .map_err(|e| InvalidOperation(e.to_string()))?;
    Ok(ops)
}

/// Reads and checks the operations of `input` on a thread of its own and sends them in chunks
/// of `CHUNK`, for `Store::upsert_operation_stream` or `Store::import_rocketchat`. The channel
/// closes once the input is complete; a fault is sent as the last item (a panic too, as an
/// I/O error, since a closed channel would commit what came before).
pub fn operation_chunks(
    input: impl Read + Send + 'static,
    now_ms: i64,
    progress: Arc<dyn Progress>,
) -> Result<OperationChunks<BatchError>, BatchError> {
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    std::thread::Builder::new()
        .name("batch-reader".into())
        .spawn(move || {
            let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                send_operations(input, now_ms, &*progress, &tx)
            }));
            let outcome = match read {
                Ok(outcome) => outcome,
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    Err(BatchError::Io(io::Error::other(format!(
                        "the reader stopped unexpectedly: {what}"
                    ))))
                }
            };
            if let Err(e) = outcome {
                // The writer may be gone already (it failed): nothing to tell then.
                let _ = tx.blocking_send(Err(e));
            }
        })
        .map_err(BatchError::Io)?;
    Ok(rx)
}

fn send_operations(
    input: impl Read,
    now_ms: i64,
    progress: &dyn Progress,
    tx: &mpsc::Sender<Result<Vec<Operation>, BatchError>>,
) -> Result<(), BatchError> {
    let mut seen = SeenIds::default();
    let mut chunk = Vec::with_capacity(CHUNK);
    read_records(input, progress, |place, value| {
        chunk.push(check_operation(&mut seen, place, value, now_ms)?);
        if chunk.len() == CHUNK {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
            tx.blocking_send(Ok(full)).map_err(|_| Refusal::Cancelled)?;
        }
        Ok(())
    })?;
    if !chunk.is_empty() {
        let _ = tx.blocking_send(Ok(chunk));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OP: &str =
        r#"{"type":"A","importerKey":"csv","status":"importer_new","valid":true,"user":"u"}"#;

    fn op(id: &str) -> String {
        format!(
            r#"{{"_id":"{id}","type":"A","importerKey":"csv","status":"importer_new","valid":true,"user":"u"}}"#
        )
    }

    /// Every record of `input` as (place, compact JSON), or the fault's message.
    fn records(input: &[u8]) -> Result<Vec<(Place, String)>, String> {
        let mut out = Vec::new();
        read_records(input, &(), |place, value| {
            out.push((place, value.to_string()));
            Ok(())
        })
        .map_err(|e| e.to_string())?;
        Ok(out)
    }

    #[test]
    fn arrays_and_json_lines() {
        assert_eq!(
            records(b" \n[{\"a\":1}, {\"b\":2}]\n").unwrap(),
            [
                (Place::Record(1), r#"{"a":1}"#.to_owned()),
                (Place::Record(2), r#"{"b":2}"#.to_owned())
            ]
        );
        assert_eq!(
            records(b"\n{\"a\":1}\r\n  \n\t{\"b\":2}").unwrap(),
            [
                (Place::Line(2), r#"{"a":1}"#.to_owned()),
                (Place::Line(4), r#"{"b":2}"#.to_owned())
            ]
        );
        assert_eq!(records(b"").unwrap(), []);
        assert_eq!(records(b" \n\n ").unwrap(), []);
        assert_eq!(records(b"[]").unwrap(), []);
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        assert_eq!(
            records(b"\xEF\xBB\xBF[{\"a\":1}]").unwrap(),
            [(Place::Record(1), r#"{"a":1}"#.to_owned())]
        );
        assert_eq!(
            records(b"\xEF\xBB\xBF{\"a\":1}\n").unwrap(),
            [(Place::Line(1), r#"{"a":1}"#.to_owned())]
        );
        assert_eq!(records(b"\xEF\xBB\xBF").unwrap(), []);
        // Only at the start.
        let err = records(b"{\"a\":1}\n\xEF\xBB\xBF{\"a\":1}\n").unwrap_err();
        assert!(
            err.starts_with("line 2: not a valid JSON document"),
            "{err}"
        );
    }

    #[test]
    fn a_byte_order_mark_arriving_a_byte_at_a_time_is_skipped() {
        /// Hands out one byte per read, as a slow pipe might.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                let Some((first, rest)) = self.0.split_first() else {
                    return Ok(0);
                };
                out[0] = *first;
                self.0 = rest;
                Ok(1)
            }
        }
        let mut places = Vec::new();
        read_records(
            Trickle(b"\xEF\xBB\xBF\n[{\"a\":\"\xC3\xA9\"}]"),
            &(),
            |p, v| {
                places.push((p, v));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(places, [(Place::Record(1), serde_json::json!({"a": "é"}))]);
    }

    #[test]
    fn faults_name_the_record() {
        let err = records(b"{\"a\":1}\n\n{nope\n").unwrap_err();
        assert!(
            err.starts_with("line 3: not a valid JSON document ("),
            "{err}"
        );
        let mut seen = 0;
        let err = read_records(&b"[{},{},{}]"[..], &(), |_, _| {
            seen += 1;
            if seen == 2 {
                Err("no".to_owned().into())
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "record 2: no");
        assert!(matches!(
            err,
            BatchError::Record {
                place: Place::Record(2),
                ..
            }
        ));
    }

    #[test]
    fn an_array_not_closed_or_followed_by_garbage_is_not_an_array() {
        for input in [
            &b"[{\"a\":1},"[..],
            b"[{\"a\":1}",
            b"[{\"a\":1}] x",
            b"[1 2]",
            b"[",
        ] {
            let err = records(input).unwrap_err();
            assert!(
                err.starts_with("the input is not a valid JSON array ("),
                "{input:?}: {err}"
            );
        }
        // Positions are the input's, whitespace before the array included.
        let err = records(b"\n\n  [1,").unwrap_err();
        assert!(err.contains("at line 3 column 5"), "{err}");
        // JSON lines do not end well either with something after a document.
        let err = records(b"{\"a\":1} x\n").unwrap_err();
        assert!(
            err.starts_with("line 1: not a valid JSON document"),
            "{err}"
        );
    }

    #[test]
    fn a_malformed_array_wins_over_a_bad_record_before_it() {
        let err = read_records(&b"[1, 2, 3"[..], &(), |_, _| Err("bad".to_owned().into()));
        assert!(matches!(err, Err(BatchError::NotAnArray(_))), "{err:?}");
        let err = read_records(&b"[1, 2, 3]"[..], &(), |_, _| Err("bad".to_owned().into()));
        assert_eq!(err.unwrap_err().to_string(), "record 1: bad");
    }

    #[test]
    fn input_that_is_not_utf8_cannot_be_read() {
        for input in [
            &b"{\"a\":\"\xFF\"}\n"[..],
            b"[\"\xC3\"]",
            b"{\"a\":1}\n\xC3",
        ] {
            let err = read_records(input, &(), |_, _| Ok(())).unwrap_err();
            assert!(matches!(err, BatchError::Io(_)), "{input:?}: {err:?}");
            assert_eq!(err.to_string(), "stream did not contain valid UTF-8");
        }
    }

    #[test]
    fn cancelling_stops_quietly() {
        for input in [&b"[{},{},{}]"[..], b"{}\n{}\n{}\n"] {
            let mut seen = 0;
            read_records(input, &(), |_, _| {
                seen += 1;
                Err(Refusal::Cancelled)
            })
            .unwrap();
            assert_eq!(seen, 1);
        }
    }

    #[test]
    fn progress_counts_records_and_bytes() {
        use std::sync::atomic::{AtomicU64, Ordering};
        #[derive(Default)]
        struct Count(AtomicU64, AtomicU64);
        impl Progress for Count {
            fn advance(&self, records: u64, bytes: u64) {
                self.0.fetch_add(records, Ordering::Relaxed);
                self.1.fetch_add(bytes, Ordering::Relaxed);
            }
        }
        let text: String = (0..2_500).map(|_| format!("{OP}\n")).collect();
        let count = Count::default();
        read_records(text.as_bytes(), &count, |_, _| Ok(())).unwrap();
        assert_eq!(count.0.load(Ordering::Relaxed), 2_500);
        assert_eq!(count.1.load(Ordering::Relaxed), text.len() as u64);
    }

    #[test]
    fn operation_batches() {
        let array = format!("[{}]", op("MJxTRZsYdho8Ww2qq"));
        let lines = "\n{\"type\":\"A\",\"importerKey\":\"csv\",\"status\":\"importer_new\",\"valid\":true,\"user\":\"u\",\"ts\":{\"$date\":{\"$numberLong\":\"0\"}}}\n";
        assert_eq!(parse_batch(&array, 0).unwrap()[0].id, "MJxTRZsYdho8Ww2qq");
        let ops = parse_batch(lines, 0).unwrap();
        assert_eq!(ops.len(), 1);
        assert!(ops[0].doc.contains(r#""ts":"1970-01-01T00:00:00.000Z""#));
        assert_eq!(parse_batch("", 0).unwrap(), vec![]);
        assert_eq!(
            parse_batch(&format!("\u{feff}{array}"), 0).unwrap().len(),
            1
        );
    }

    #[test]
    fn a_bad_operation_batch_names_the_record() {
        let id = "MJxTRZsYdho8Ww2qq";
        let twice = format!("[{},\n{OP},\n{}]", op(id), op(id));
        assert_eq!(
            parse_batch(&twice, 0).unwrap_err().0,
            format!("record 3: _id {id} was already used by record 1")
        );
        let oid = "64d69545ee8ae821983005f5";
        let thrice = format!("{}\n{}\n\n{}\n", op(oid), op(oid), op(oid));
        let mut seen = SeenIds::default();
        let mut faults = Vec::new();
        let _ = read_records(thrice.as_bytes(), &(), |place, value| {
            if let Err(e) = check_operation(&mut seen, place, value, 0) {
                faults.push(format!("{place}: {e}"));
            }
            Ok(())
        });
        assert_eq!(
            faults,
            [
                format!("line 2: _id {oid} was already used by line 1"),
                format!("line 4: _id {oid} was already used by line 1"),
            ]
        );
        assert!(
            parse_batch("{\"type\":1}\n", 0)
                .unwrap_err()
                .0
                .starts_with("line 1: type")
        );
        assert!(
            parse_batch("{nope", 0)
                .unwrap_err()
                .0
                .starts_with("line 1: not a valid JSON")
        );
        assert!(
            parse_batch("[1,", 0)
                .unwrap_err()
                .0
                .contains("not a valid JSON array")
        );
    }

    #[tokio::test]
    async fn operations_come_in_chunks_then_the_channel_closes() {
        let text: String = (0..2_500).map(|_| format!("{OP}\n")).collect();
        let mut rx = operation_chunks(io::Cursor::new(text), 0, Arc::new(())).unwrap();
        let mut sizes = Vec::new();
        while let Some(chunk) = rx.recv().await {
            sizes.push(chunk.unwrap().len());
        }
        assert_eq!(sizes, [1_000, 1_000, 500]);

        let mut text: String = (0..1_500).map(|_| format!("{OP}\n")).collect();
        text.push_str("{\"type\":2}\n");
        let mut rx = operation_chunks(io::Cursor::new(text), 0, Arc::new(())).unwrap();
        let mut items = Vec::new();
        while let Some(item) = rx.recv().await {
            items.push(item);
        }
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].as_ref().unwrap().len(), 1_000);
        let err = items[1].as_ref().unwrap_err().to_string();
        assert!(err.starts_with("line 1501: type"), "{err}");
    }
}
