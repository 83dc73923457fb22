//! The import folder (`--import-file-dir`): how uploaded and downloaded archives are named and
//! written, and which stored names and local paths may be read (docs/compatibility.md, section
//! 11.4).
//!
//! Nothing here writes or reads outside the folder: a stored name is one file name (no `/`,
//! no `\`), and every path read is checked, after `..` and symbolic links are resolved, to be
//! inside the folder.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

use super::ImportError;

/// Longest stored file name: most file systems refuse more than 255 bytes.
const MAX_NAME_BYTES: usize = 255;

/// Rocket.Chat's stored name, `${dateStr}_${userId}_${fileName}`: `dateStr` is the UTC year,
/// month counted from 0, day, hours, minutes and seconds of `now_ms`, concatenated without
/// padding (2026-01-05 10:03:07Z gives `2026051037`).
pub fn stored_name(now_ms: i64, user_id: &str, file_name: &str) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{}{}{}{}{}{}_{user_id}_{file_name}",
        at.year(),
        u8::from(at.month()) - 1,
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// The stored name of an upload or download, refused with `error-invalid-file-name` when it
/// would not be one plain file name inside the folder: Rocket.Chat joins `fileName` to its
/// folder as it is, so a `fileName` holding `/` writes elsewhere; importops refuses it (a
/// deliberate difference, docs/compatibility.md section 11.4). `details` names the method.
pub fn checked_stored_name(
    now_ms: i64,
    user_id: &str,
    file_name: &str,
    details: &str,
) -> Result<String, ImportError> {
    let name = stored_name(now_ms, user_id, file_name);
    if name.contains(['/', '\\', '\0']) || name.len() > MAX_NAME_BYTES {
        return Err(invalid_file_name(details));
    }
    Ok(name)
}

/// The file name Rocket.Chat gives a download: the part of `fileUrl` after its last `/`,
/// cut at the first `?` (`fileUrl.substring(fileUrl.lastIndexOf('/') + 1).split('?')[0]`).
pub fn url_file_name(file_url: &str) -> &str {
    let last = file_url.rfind('/').map_or(file_url, |i| &file_url[i + 1..]);
    last.split('?').next().unwrap_or_default()
}

fn invalid_file_name(details: &str) -> ImportError {
    ImportError::meteor("error-invalid-file-name", "Invalid file name", details)
}

/// The error of a file larger than `--import-max-bytes`.
pub fn too_large(max_bytes: u64) -> ImportError {
    ImportError::plain(format!(
        "The import file is larger than the limit of {max_bytes} bytes (--import-max-bytes)"
    ))
}

/// The 6-bit value of a base64 character in Node's table, which takes both alphabets
/// (`+` `/` and `-` `_`); `INVALID` for anything else, `PAD` for `=`.
const INVALID: u8 = 0xff;
const PAD: u8 = 0xfe;
static TABLE: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 26 {
        table[b'A' as usize + i] = i as u8;
        table[b'a' as usize + i] = 26 + i as u8;
        i += 1;
    }
    let mut d = 0;
    while d < 10 {
        table[b'0' as usize + d] = 52 + d as u8;
        d += 1;
    }
    table[b'+' as usize] = 62;
    table[b'-' as usize] = 62;
    table[b'/' as usize] = 63;
    table[b'_' as usize] = 63;
    table[b'=' as usize] = PAD;
    table
};

/// Node's `Buffer.from(s, 'base64')`, written to `out` as it is decoded: characters outside
/// both alphabets are skipped, the first `=` ends the data, a last group of 2 or 3 characters
/// gives 1 or 2 bytes (of 1, none). Node reads the string's UTF-16 code units and looks each
/// up by its low byte, so `Ł` (U+0141) counts as `A` and an emoji's low surrogate
/// (`0xDE00`..) as whatever its low byte is; this does the same. A string that is not base64
/// therefore decodes to whatever its base64 characters say (often nothing), never to an error:
/// the importer later finds the file is not an archive. Past `max_bytes` bytes it stops with
/// [`too_large`]. Returns the number of bytes written.
pub fn decode_base64<W: Write>(
    input: &str,
    out: &mut W,
    max_bytes: u64,
) -> Result<u64, ImportError> {
    let mut buffer: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut written: u64 = 0;
    let mut quad: u32 = 0;
    let mut count = 0u8;
    let mut flush = |buffer: &mut Vec<u8>, written: &mut u64| -> Result<(), ImportError> {
        *written += buffer.len() as u64;
        if *written > max_bytes {
            return Err(too_large(max_bytes));
        }
        out.write_all(buffer).map_err(write_failed)?;
        buffer.clear();
        Ok(())
    };
    let bytes = input.as_bytes();
    let mut i = 0;
    'decode: while i < bytes.len() {
        let b = bytes[i];
        // The low bytes of the UTF-16 code units of this character.
        let mut units = [0u8; 2];
        let units: &[u8] = if b < 0x80 {
            i += 1;
            units[0] = b;
            &units[..1]
        } else {
            let c = input[i..].chars().next().unwrap_or_default();
            i += c.len_utf8();
            let mut utf16 = [0u16; 2];
            let encoded = c.encode_utf16(&mut utf16);
            for (unit, low) in encoded.iter().zip(units.iter_mut()) {
                *low = (*unit & 0xff) as u8;
            }
            &units[..encoded.len()]
        };
        for &unit in units {
            let value = TABLE[unit as usize];
            if value == PAD {
                break 'decode;
            }
            if value == INVALID {
                continue;
            }
            quad = (quad << 6) | u32::from(value);
            count += 1;
            if count == 4 {
                buffer.extend_from_slice(&[(quad >> 16) as u8, (quad >> 8) as u8, quad as u8]);
                quad = 0;
                count = 0;
                if buffer.len() >= 60 * 1024 {
                    flush(&mut buffer, &mut written)?;
                }
            }
        }
    }
    match count {
        2 => buffer.push((quad >> 4) as u8),
        3 => buffer.extend_from_slice(&[(quad >> 10) as u8, (quad >> 2) as u8]),
        _ => {}
    }
    flush(&mut buffer, &mut written)?;
    Ok(written)
}

/// [`decode_base64`] into a new file at `dest`, in chunks (the decoded content is never held
/// whole in memory). On any error, the partial file is removed. Blocking.
pub fn decode_base64_to_file(b64: &str, dest: &Path, max_bytes: u64) -> Result<u64, ImportError> {
    let file = File::create(dest).map_err(write_failed)?;
    let mut out = io::BufWriter::with_capacity(64 * 1024, file);
    let result = decode_base64(b64, &mut out, max_bytes)
        .and_then(|n| out.flush().map(|()| n).map_err(write_failed));
    drop(out);
    if result.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    result
}

/// A failure to write into the import folder, as the write stream's error would read.
pub fn write_failed(error: io::Error) -> ImportError {
    ImportError::plain(format!("The import file could not be written: {error}"))
}

/// `path` with `.` and `..` resolved without reading the file system (`..` above the root
/// stays at the root).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The folder itself, absolute, with its symbolic links resolved when it exists.
fn folder(file_dir: &Path) -> PathBuf {
    std::fs::canonicalize(file_dir).unwrap_or_else(|_| {
        let absolute = std::path::absolute(file_dir).unwrap_or_else(|_| file_dir.to_owned());
        lexical(&absolute)
    })
}

/// `candidate` (absolute) if it is strictly inside `root` once `..` and, where it exists,
/// symbolic links are resolved.
fn inside(root: &Path, candidate: &Path) -> Option<PathBuf> {
    let resolved = std::fs::canonicalize(candidate).unwrap_or_else(|_| lexical(candidate));
    (resolved != root && resolved.starts_with(root)).then_some(resolved)
}

/// The path of an operation's stored `file` (Rocket.Chat's getImportFileData): `file` as it
/// is when it names an existing path, else joined to the folder; refused with
/// `error-invalid-file-name` (details `getImportFileData`) when it resolves outside the
/// folder (`../../etc/passwd`, `/etc/passwd`, `..`), as the newer Rocket.Chat does.
pub fn resolve_stored(file_dir: &Path, file: &str) -> Result<PathBuf, ImportError> {
    let root = folder(file_dir);
    let given = Path::new(file);
    let candidate = if given.is_absolute() {
        given.to_owned()
    } else {
        root.join(given)
    };
    inside(&root, &candidate).ok_or_else(|| invalid_file_name("getImportFileData"))
}

/// A local source of downloadPublicImportFile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalSource {
    /// A file, copied into the folder under its stored name.
    File(PathBuf),
    /// A folder, which becomes the operation's `file` as it is.
    Directory(PathBuf),
}

/// A `fileUrl` of downloadPublicImportFile that does not start with `http`: a path on the
/// server. Rocket.Chat takes any existing path; importops takes only paths inside the import
/// folder (relative ones are relative to it), and answers any other, existing or not, as
/// Rocket.Chat answers a missing one: `"<fileUrl> [error-import-file-missing]"`, details
/// `downloadPublicImportFile` (docs/compatibility.md section 11.4).
pub fn local_source(file_dir: &Path, file_url: &str) -> Result<LocalSource, ImportError> {
    let missing = || {
        ImportError::meteor(
            "error-import-file-missing",
            file_url,
            "downloadPublicImportFile",
        )
    };
    if file_url.is_empty() {
        return Err(missing());
    }
    let root = folder(file_dir);
    let given = Path::new(file_url);
    let candidate = if given.is_absolute() {
        given.to_owned()
    } else {
        root.join(given)
    };
    let path = inside(&root, &candidate).ok_or_else(missing)?;
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_dir() => Ok(LocalSource::Directory(path)),
        Ok(_) => Ok(LocalSource::File(path)),
        Err(_) => Err(missing()),
    }
}

/// Copies a local file into `dest`, at most `max_bytes` of it (past that, [`too_large`] and
/// the partial copy removed). Blocking.
pub fn copy_bounded(source: &Path, dest: &Path, max_bytes: u64) -> Result<u64, ImportError> {
    let result = (|| {
        let input = File::open(source)
            .map_err(|e| ImportError::plain(format!("The import file could not be read: {e}")))?;
        let mut out = File::create(dest).map_err(write_failed)?;
        // One byte past the limit tells a file at the limit from a larger one.
        let mut limited = io::Read::take(input, max_bytes.saturating_add(1));
        let copied = io::copy(&mut limited, &mut out).map_err(write_failed)?;
        if copied > max_bytes {
            return Err(too_large(max_bytes));
        }
        out.flush().map_err(write_failed)?;
        Ok(copied)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        decode_base64(s, &mut out, u64::MAX).unwrap();
        out
    }

    #[test]
    fn stored_names_are_rocket_chats() {
        // 2026-01-05T10:03:07Z: month 0, nothing padded.
        let ms = 1_767_607_387_000;
        assert_eq!(stored_name(ms, "u1", "a.zip"), "2026051037_u1_a.zip");
        // 2026-12-31T23:59:59.999Z
        assert_eq!(
            stored_name(1_798_761_599_999, "x", "b.csv"),
            "20261131235959_x_b.csv"
        );
        assert_eq!(stored_name(0, "u", "f"), "197001000_u_f");
    }

    #[test]
    fn names_leaving_the_folder_are_refused() {
        for bad in ["../x.zip", "a/b.zip", "..\\x", "/etc/passwd"] {
            let e = checked_stored_name(0, "u", bad, "uploadImportFile").unwrap_err();
            assert_eq!(
                e.to_string(),
                "Invalid file name [error-invalid-file-name]",
                "{bad}"
            );
        }
        let long = "x".repeat(300);
        assert!(checked_stored_name(0, "u", &long, "uploadImportFile").is_err());
        // `..` after the prefix is one plain name.
        assert_eq!(
            checked_stored_name(0, "u", "..", "d").unwrap(),
            "197001000_u_.."
        );
    }

    #[test]
    fn url_file_names_are_the_last_segment_before_the_query() {
        assert_eq!(url_file_name("http://h/a/b.zip?x=1"), "b.zip");
        assert_eq!(url_file_name("http://h/a/b.zip?x=/y"), "y");
        assert_eq!(url_file_name("http://h/"), "");
        assert_eq!(url_file_name("http://h/..%2F..%2Fetc"), "..%2F..%2Fetc");
        assert_eq!(url_file_name("http://h/.."), "..");
    }

    // Expected bytes computed with Node 20's `Buffer.from(s, 'base64')` (hex); the test of
    // tests/import_files.rs compares many more against node itself when it is installed.
    #[test]
    fn base64_is_decoded_as_node_decodes_it() {
        let vectors: &[(&str, &str)] = &[
            ("QUJD", "414243"),
            ("QUJ", "4142"),
            ("QU", "41"),
            ("Q", ""),
            ("QQ==QUJD", "41"),
            ("QU JD", "414243"),
            ("Q!U@J#D", "414243"),
            ("-_-_", "fbffbf"),
            ("+/+/", "fbffbf"),
            ("QUJDRA", "41424344"),
            ("QUJDRA===", "41424344"),
            ("=QUJD", ""),
            ("QUJ=D", "4142"),
            ("not base64!", "9e8b5b6ac7ba"),
            ("", ""),
            ("QUJD\nRUZH", "414243454647"),
            ("\u{141}\u{141}\u{141}\u{141}", "000000"),
            ("\u{141}BCD", "001083"),
            ("QUJD\u{100}", "414243"),
            ("\u{e9}", ""),
            ("\u{1F600}QUJD", ""),
            ("QUJD\u{1F600}", "414243"),
            ("Q\u{13d}JD", ""),
        ];
        for (input, hex) in vectors {
            let got: String = decode(input).iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(&got, hex, "{input:?}");
        }
    }

    #[test]
    fn a_long_input_is_decoded_in_chunks_and_bounded() {
        use base64::Engine;
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
        assert_eq!(decode(&b64), data);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f");
        assert_eq!(
            decode_base64_to_file(&b64, &dest, data.len() as u64).unwrap(),
            data.len() as u64
        );
        assert_eq!(std::fs::read(&dest).unwrap(), data);
        let e = decode_base64_to_file(&b64, &dest, data.len() as u64 - 1).unwrap_err();
        assert!(e.to_string().contains("larger than the limit"), "{e}");
        assert!(!dest.exists(), "the partial file is removed");
    }

    #[test]
    fn stored_files_outside_the_folder_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::write(root.join("2026010_user-id_import.zip"), b"x").unwrap();
        assert_eq!(
            resolve_stored(&root, "2026010_user-id_import.zip").unwrap(),
            root.join("2026010_user-id_import.zip")
        );
        for bad in [
            "2026010_user-id_../../../etc/passwd",
            "/etc/passwd",
            "..",
            "",
            ".",
        ] {
            let e = resolve_stored(&root, bad).unwrap_err();
            assert_eq!(
                e.to_string(),
                "Invalid file name [error-invalid-file-name]",
                "{bad}"
            );
        }
        // An absolute path inside the folder (a local folder import) is kept.
        std::fs::create_dir(root.join("export")).unwrap();
        let inner = root.join("export");
        assert_eq!(
            resolve_stored(&root, inner.to_str().unwrap()).unwrap(),
            inner
        );
        // A symbolic link out of the folder is outside it.
        std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
        assert!(resolve_stored(&root, "link/passwd").is_err());
    }

    #[test]
    fn local_paths_only_inside_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::write(root.join("a.zip"), b"zip").unwrap();
        std::fs::create_dir(root.join("slack")).unwrap();
        assert_eq!(
            local_source(&root, "a.zip").unwrap(),
            LocalSource::File(root.join("a.zip"))
        );
        assert_eq!(
            local_source(&root, root.join("slack").to_str().unwrap()).unwrap(),
            LocalSource::Directory(root.join("slack"))
        );
        for bad in ["/etc/passwd", "../x", "missing.zip", "/", ""] {
            let e = local_source(&root, bad).unwrap_err();
            assert_eq!(e.to_string(), format!("{bad} [error-import-file-missing]"));
        }
        let dest = root.join("copy");
        assert_eq!(copy_bounded(&root.join("a.zip"), &dest, 3).unwrap(), 3);
        assert!(copy_bounded(&root.join("a.zip"), &dest, 2).is_err());
        assert!(!dest.exists());
    }
}
