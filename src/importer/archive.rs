//! Reading an uploaded zip archive safely (docs/compatibility.md, "Archives").
//!
//! The archive is read from its file, entry by entry, in the order of its central directory;
//! each entry is decompressed while it is read and nothing is written to disk. Before any
//! entry is read, every entry name is checked: an absolute name or one with a `..` component
//! stops the import. The bytes that come out of the entries, counted as they are read (not as
//! the headers claim), are bounded by `Limits::max_bytes` in all: an entry read twice counts
//! once. A fault of the archive itself (a damaged entry, too many bytes, text that is not
//! UTF-8 where text is expected) is an [`ImportError`] that stops the importer.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use zip::ZipArchive;
use zip::result::ZipError;

use super::{ImportError, Limits};

/// Rocket.Chat's answer for a file that is not a zip archive (adm-zip's message).
pub const NOT_A_ZIP: &str = "Invalid or unsupported zip format. No END header found";

/// The buffer between an entry's decompressed bytes and the parser reading them.
const READ_BUFFER: usize = 64 * 1024;

/// One entry of the archive, as the importers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its position in the archive (central directory order).
    pub index: usize,
    /// Its name as stored, `/`-separated (`general/2024-01-01.json`).
    pub name: String,
}

/// An open archive. [`Archive::files`] lists the entries the importers look at: not
/// directories, not `__MACOSX` entries.
pub struct Archive {
    zip: ZipArchive<BufReader<File>>,
    files: Vec<Entry>,
    budget: Budget,
}

struct Budget {
    /// The most bytes read so far from each entry (an entry read twice counts once).
    read: Vec<u64>,
    total: u64,
    max: u64,
    /// What stopped the last read, when the archive (not the content's syntax) was at fault.
    fault: Option<String>,
}

impl Archive {
    /// Opens the zip archive at `path` and checks every entry name.
    pub fn open(path: &Path, limits: &Limits) -> Result<Archive, ImportError> {
        let file = File::open(path)
            .map_err(|e| ImportError::plain(format!("The import file cannot be read: {e}")))?;
        let zip = ZipArchive::new(BufReader::new(file)).map_err(open_error)?;
        let mut files = Vec::new();
        for index in 0..zip.len() {
            let Some(name) = zip.name_for_index(index) else {
                return Err(ImportError::plain(format!(
                    "Invalid zip archive: entry {index} has no name"
                )));
            };
            check_name(name)?;
            if name.ends_with('/') || name.contains("__MACOSX") {
                continue;
            }
            files.push(Entry {
                index,
                name: name.to_owned(),
            });
        }
        let budget = Budget {
            read: vec![0; zip.len()],
            total: 0,
            max: limits.max_bytes,
            fault: None,
        };
        Ok(Archive { zip, files, budget })
    }

    /// The entries that are files, in archive order, `__MACOSX` ones left out.
    pub fn files(&self) -> &[Entry] {
        &self.files
    }

    /// The bytes read out of the archive's entries so far (each entry counted once).
    pub fn bytes_read(&self) -> u64 {
        self.budget.total
    }

    /// Reads entry `entry` through `f`, which gets the decompressed bytes as they come. With
    /// `text`, bytes that are not UTF-8 stop the read. Whatever `f` makes of its reader's
    /// errors, a fault of the archive (damaged entry, `max_bytes` passed, not UTF-8) is
    /// returned as the `Err`; `f`'s own result (e.g. a syntax error of the content) is the `Ok`.
    pub fn read_entry<T>(
        &mut self,
        entry: &Entry,
        text: bool,
        f: impl FnOnce(&mut dyn Read) -> T,
    ) -> Result<T, ImportError> {
        self.budget.fault = None;
        let file = match self.zip.by_index(entry.index) {
            Ok(file) => file,
            Err(e) => return Err(entry_error(&entry.name, e)),
        };
        let reader = EntryReader {
            name: &entry.name,
            in_zip: true,
            inner: file,
            pos: 0,
            index: entry.index,
            budget: &mut self.budget,
            utf8: text.then(Utf8Check::default),
        };
        // Parsers that read a byte at a time (serde_json) get them from a buffer, not each
        // through the decompressor and the checks.
        let mut buffered = BufReader::with_capacity(READ_BUFFER, reader);
        let out = f(&mut buffered);
        drop(buffered);
        match self.budget.fault.take() {
            Some(fault) => Err(ImportError::plain(fault)),
            None => Ok(out),
        }
    }
}

/// Reads the file at `path` (not an archive) as [`Archive::read_entry`] reads an entry of
/// text: bounded by `max_bytes`, and stopped by bytes that are not UTF-8.
pub fn read_text_file<T>(
    path: &Path,
    limits: &Limits,
    f: impl FnOnce(&mut dyn Read) -> T,
) -> Result<T, ImportError> {
    let file = File::open(path)
        .map_err(|e| ImportError::plain(format!("The import file cannot be read: {e}")))?;
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let mut budget = Budget {
        read: vec![0],
        total: 0,
        max: limits.max_bytes,
        fault: None,
    };
    let reader = EntryReader {
        name: &name,
        in_zip: false,
        inner: BufReader::new(file),
        pos: 0,
        index: 0,
        budget: &mut budget,
        utf8: Some(Utf8Check::default()),
    };
    let mut buffered = BufReader::with_capacity(READ_BUFFER, reader);
    let out = f(&mut buffered);
    drop(buffered);
    match budget.fault.take() {
        Some(fault) => Err(ImportError::plain(fault)),
        None => Ok(out),
    }
}

/// "Not a zip" and "truncated" both lose the end of central directory record: Rocket.Chat's
/// adm-zip message. Other damage names what the zip reader found.
fn open_error(e: ZipError) -> ImportError {
    match e {
        ZipError::Io(e) => ImportError::plain(format!("The import file cannot be read: {e}")),
        ZipError::InvalidArchive(detail) => {
            let lower = detail.to_ascii_lowercase();
            if lower.contains("end of central directory") || lower.contains("eocd") {
                ImportError::plain(NOT_A_ZIP)
            } else {
                ImportError::plain(format!(
                    "Invalid or unsupported zip format: {detail} (the file is damaged or truncated)"
                ))
            }
        }
        other => ImportError::plain(format!("Invalid or unsupported zip format: {other}")),
    }
}

fn entry_error(name: &str, e: ZipError) -> ImportError {
    match e {
        ZipError::CompressionMethodNotSupported(method) => ImportError::plain(format!(
            "The zip entry {name} uses compression method {method}: only stored and deflated entries can be read"
        )),
        ZipError::UnsupportedArchive(what) => {
            ImportError::plain(format!("The zip entry {name} cannot be read: {what}"))
        }
        other => ImportError::plain(format!(
            "The zip entry {name} is damaged or truncated: {other}"
        )),
    }
}

/// Refuses names that would leave the archive if it were extracted: absolute (`/x`, `\x`,
/// `C:x`) or with a `..` component (either separator).
fn check_name(name: &str) -> Result<(), ImportError> {
    let bytes = name.as_bytes();
    let absolute = name.starts_with('/')
        || name.starts_with('\\')
        || (bytes.len() >= 2 && bytes[1] == b':' && bytes[0].is_ascii_alphabetic());
    if absolute {
        return Err(ImportError::plain(format!(
            "The archive holds an entry with an absolute path ({name}): refused"
        )));
    }
    if name.split(['/', '\\']).any(|part| part == "..") {
        return Err(ImportError::plain(format!(
            "The archive holds an entry whose path leaves the archive ({name}): refused"
        )));
    }
    if name.contains('\0') {
        return Err(ImportError::plain(
            "The archive holds an entry whose name contains a NUL character: refused",
        ));
    }
    Ok(())
}

struct EntryReader<'a, R: Read> {
    name: &'a str,
    /// An entry of a zip archive, or a file of its own.
    in_zip: bool,
    inner: R,
    /// Bytes read from this entry in this read.
    pos: u64,
    index: usize,
    budget: &'a mut Budget,
    utf8: Option<Utf8Check>,
}

impl<R: Read> EntryReader<'_, R> {
    fn fault(&mut self, message: String) -> io::Error {
        self.budget.fault = Some(message.clone());
        io::Error::new(io::ErrorKind::InvalidData, message)
    }
}

impl<R: Read> Read for EntryReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(fault) = &self.budget.fault {
            return Err(io::Error::new(io::ErrorKind::InvalidData, fault.clone()));
        }
        // Never read more than one byte past the budget, whatever the buffer's size.
        let seen = self.budget.read[self.index];
        let allowance =
            seen.saturating_sub(self.pos) + self.budget.max.saturating_sub(self.budget.total) + 1;
        let len = buf
            .len()
            .min(usize::try_from(allowance).unwrap_or(usize::MAX));
        let buf = &mut buf[..len];
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                let message = format!("The zip entry {} is damaged or truncated: {e}", self.name);
                return Err(self.fault(message));
            }
        };
        self.pos += n as u64;
        let seen = &mut self.budget.read[self.index];
        if self.pos > *seen {
            self.budget.total += self.pos - *seen;
            *seen = self.pos;
            if self.budget.total > self.budget.max {
                let message = if self.in_zip {
                    format!(
                        "The archive holds more than {} bytes once uncompressed (the import limit): refused at {}",
                        self.budget.max, self.name
                    )
                } else {
                    format!(
                        "The file {} holds more than {} bytes (the import limit): refused",
                        self.name, self.budget.max
                    )
                };
                return Err(self.fault(message));
            }
        }
        if let Some(check) = &mut self.utf8 {
            let outcome = if n == 0 {
                check.finish()
            } else {
                check.feed(&buf[..n])
            };
            if let Err(at) = outcome {
                let message = format!(
                    "The file {} is not UTF-8 text (invalid byte sequence at byte {at})",
                    self.name
                );
                return Err(self.fault(message));
            }
        }
        Ok(n)
    }
}

/// Checks that a stream of bytes is UTF-8, chunk by chunk (a character may span two reads).
#[derive(Default)]
pub(crate) struct Utf8Check {
    /// The start of a character the last chunk ended in the middle of.
    carry: Vec<u8>,
    /// Bytes checked before `carry`.
    offset: u64,
}

impl Utf8Check {
    /// `Err(offset)` of the first byte that cannot be UTF-8.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<(), u64> {
        let mut rest = chunk;
        if !self.carry.is_empty() {
            // Complete the carried character with at most 3 more bytes.
            let take = rest.len().min(4 - self.carry.len());
            let mut joined = std::mem::take(&mut self.carry);
            joined.extend_from_slice(&rest[..take]);
            match std::str::from_utf8(&joined) {
                Ok(_) => {
                    self.offset += joined.len() as u64;
                    rest = &rest[take..];
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    let carried = joined.len() - take;
                    if valid == 0 {
                        if e.error_len().is_none() && take == rest.len() {
                            // Still incomplete: the chunk was tiny.
                            self.carry = joined;
                            return Ok(());
                        }
                        return Err(self.offset);
                    }
                    // The carried character is complete; go on after it.
                    self.offset += valid as u64;
                    rest = &rest[valid - carried..];
                }
            }
        }
        match std::str::from_utf8(rest) {
            Ok(_) => {
                self.offset += rest.len() as u64;
                Ok(())
            }
            Err(e) => {
                let valid = e.valid_up_to();
                if e.error_len().is_some() {
                    return Err(self.offset + valid as u64);
                }
                self.offset += valid as u64;
                self.carry = rest[valid..].to_vec();
                Ok(())
            }
        }
    }

    /// The end of the stream: a character left unfinished is an error.
    pub(crate) fn finish(&mut self) -> Result<(), u64> {
        if self.carry.is_empty() {
            Ok(())
        } else {
            Err(self.offset)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use zip::write::SimpleFileOptions;

    fn zip_of(entries: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut w = zip::ZipWriter::new(file.reopen().unwrap());
        let options =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, content) in entries {
            if name.ends_with('/') {
                w.add_directory(*name, options).unwrap();
            } else {
                w.start_file(*name, options).unwrap();
                w.write_all(content).unwrap();
            }
        }
        w.finish().unwrap();
        file
    }

    fn limits(max_bytes: u64) -> Limits {
        Limits { max_bytes }
    }

    fn read_all(archive: &mut Archive, entry: &Entry, text: bool) -> Result<Vec<u8>, ImportError> {
        archive
            .read_entry(entry, text, |r| {
                let mut out = Vec::new();
                r.read_to_end(&mut out).map(|_| out)
            })?
            .map_err(|e| ImportError::plain(e.to_string()))
    }

    #[test]
    fn entries_in_order_without_directories_or_macosx() {
        let f = zip_of(&[
            ("b.csv", b"1"),
            ("dir/", b""),
            ("__MACOSX/._b.csv", b"x"),
            ("dir/a.csv", b"22"),
        ]);
        let mut archive = Archive::open(f.path(), &limits(1000)).unwrap();
        let names: Vec<_> = archive.files().iter().map(|e| e.name.clone()).collect();
        assert_eq!(names, ["b.csv", "dir/a.csv"]);
        let entries = archive.files().to_vec();
        assert_eq!(read_all(&mut archive, &entries[1], true).unwrap(), b"22");
        // Reading an entry again counts its bytes once.
        assert_eq!(read_all(&mut archive, &entries[1], true).unwrap(), b"22");
        assert_eq!(archive.bytes_read(), 2);
    }

    #[test]
    fn not_a_zip_and_truncated_zip_are_plain_errors() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"username,email,name\nalice,a@example.com,Alice\n")
            .unwrap();
        let err = Archive::open(f.path(), &limits(1000)).err().unwrap();
        assert_eq!(err.to_string(), NOT_A_ZIP);

        let empty = tempfile::NamedTempFile::new().unwrap();
        let err = Archive::open(empty.path(), &limits(1000)).err().unwrap();
        assert_eq!(err.to_string(), NOT_A_ZIP);

        let good = zip_of(&[("users.csv", b"alice,a@example.com,Alice\n")]);
        let bytes = std::fs::read(good.path()).unwrap();
        for cut in [bytes.len() - 10, bytes.len() / 2, 30] {
            let mut t = tempfile::NamedTempFile::new().unwrap();
            t.write_all(&bytes[..cut]).unwrap();
            let err = Archive::open(t.path(), &limits(1000)).err().unwrap();
            assert!(matches!(err, ImportError::Plain(_)));
            assert!(err.to_string().contains("zip format"), "{err}");
        }
    }

    #[test]
    fn damaged_entry_data_is_a_fault() {
        let good = zip_of(&[("users.csv", &[b'a'; 4000])]);
        let mut bytes = std::fs::read(good.path()).unwrap();
        // Flip bytes inside the compressed data (after the local header).
        for b in &mut bytes[40..60] {
            *b ^= 0x5a;
        }
        let mut t = tempfile::NamedTempFile::new().unwrap();
        t.write_all(&bytes).unwrap();
        let mut archive = Archive::open(t.path(), &limits(100_000)).unwrap();
        let entry = archive.files()[0].clone();
        let err = read_all(&mut archive, &entry, false).err().unwrap();
        assert!(err.to_string().contains("damaged"), "{err}");
    }

    #[test]
    fn absolute_and_parent_names_are_refused() {
        for name in [
            "../evil.csv",
            "a/../../evil.csv",
            "/etc/passwd",
            "\\evil.csv",
            "C:evil.csv",
            "a\\..\\b.csv",
        ] {
            let f = zip_of(&[("users.csv", b"a,b,c"), (name, b"x")]);
            let err = Archive::open(f.path(), &limits(1000)).err().unwrap();
            assert!(err.to_string().contains("refused"), "{name}: {err}");
        }
        // A name that only looks like one is fine.
        let f = zip_of(&[("a..b/c.csv", b"x")]);
        assert!(Archive::open(f.path(), &limits(1000)).is_ok());
    }

    #[test]
    fn a_zip_bomb_stops_at_the_limit() {
        let zeros = vec![b'0'; 4 << 20];
        let f = zip_of(&[("users.csv", &zeros)]);
        let compressed = std::fs::metadata(f.path()).unwrap().len();
        assert!(compressed < 64 * 1024, "{compressed}");
        let mut archive = Archive::open(f.path(), &limits(1 << 20)).unwrap();
        let entry = archive.files()[0].clone();
        let err = read_all(&mut archive, &entry, true).err().unwrap();
        assert!(err.to_string().contains("more than 1048576 bytes"), "{err}");
        assert_eq!(archive.bytes_read(), (1 << 20) + 1);
    }

    #[test]
    fn non_utf8_text_is_a_fault_only_when_text_is_expected() {
        let f = zip_of(&[("users.csv", b"caf\xe9,x\n")]);
        let mut archive = Archive::open(f.path(), &limits(1000)).unwrap();
        let entry = archive.files()[0].clone();
        let err = read_all(&mut archive, &entry, true).err().unwrap();
        assert_eq!(
            err.to_string(),
            "The file users.csv is not UTF-8 text (invalid byte sequence at byte 3)"
        );
        assert_eq!(
            read_all(&mut archive, &entry, false).unwrap(),
            b"caf\xe9,x\n"
        );
    }

    #[test]
    fn utf8_check_across_chunks() {
        let text = "añb€c😀d".as_bytes();
        for split in 0..text.len() {
            let mut c = Utf8Check::default();
            c.feed(&text[..split]).unwrap();
            c.feed(&text[split..]).unwrap();
            c.finish().unwrap();
        }
        // One byte at a time.
        let mut c = Utf8Check::default();
        for b in text {
            c.feed(std::slice::from_ref(b)).unwrap();
        }
        c.finish().unwrap();
        // Cut in the middle of a character.
        let mut c = Utf8Check::default();
        c.feed(&text[..2]).unwrap();
        assert_eq!(c.finish(), Err(1));
        // A bad continuation after a carried start.
        let mut c = Utf8Check::default();
        c.feed(b"ab\xe2").unwrap();
        assert_eq!(c.feed(b"\x82x"), Err(2));
        let mut c = Utf8Check::default();
        assert_eq!(c.feed(b"ab\xffcd"), Err(2));
    }
}
