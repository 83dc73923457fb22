//! Which file a SQLite database is: its (device, inode), remembered at the first open. A file
//! replaced while serving (another database renamed over it) has the same path but another
//! identity; pooled connections keep the old one open and would go on serving its data and
//! its revoked tokens. It is not reopened either: while any connection to the old file lives,
//! a new one would share the old file's `-wal` and `-shm` (found by name) and read the two
//! databases' pages mixed. So a replaced file is refused like a removed one, 503 until a
//! restart (RELIABILITY.md: SQLite file replaced or deleted).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// (device, inode); elsewhere than Unix only whether the file exists.
pub(super) type FileId = (u64, u64);

fn file_id(path: &Path) -> Option<FileId> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        Some((0, 0))
    }
}

/// The database file and the identity it had when first looked at. Clones share it.
#[derive(Debug, Clone)]
pub(super) struct WatchedFile {
    path: PathBuf,
    first: Arc<OnceLock<FileId>>,
}

impl WatchedFile {
    pub(super) fn new(path: PathBuf) -> Self {
        WatchedFile {
            path,
            first: Arc::default(),
        }
    }

    /// Whether the path still names the file first seen there: one `stat`, cheap enough for
    /// every acquire from the pool.
    pub(super) fn intact(&self) -> bool {
        file_id(&self.path).is_some_and(|now| *self.first.get_or_init(|| now) == now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_removed_or_renamed_over_is_no_longer_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        std::fs::write(&path, "one").unwrap();
        let file = WatchedFile::new(path.clone());
        assert!(file.intact());
        assert!(file.intact(), "the same file, looked at again");

        let other = dir.path().join("other");
        std::fs::write(&other, "two").unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert!(!file.intact(), "another file at the path");

        std::fs::remove_file(&path).unwrap();
        assert!(!file.intact(), "no file");
        let fresh = WatchedFile::new(path);
        assert!(!fresh.intact(), "never there");
    }
}
