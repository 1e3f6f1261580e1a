//! The state database: which inputs were already scanned, for `scan --resume` and `watch`.
//!
//! SQLite (WAL mode), one row per finished input, keyed by what decides its result: the file's
//! path and content (BLAKE3), the model (its weights' BLAKE3, as in the JSON line) and the
//! settings that change scores or lines ([`settings_key`]). The pipeline writes a row only
//! after the input's line was written and flushed, in its own transaction: a kill at any
//! moment loses no printed result (at worst the last printed one has no row yet and is
//! scanned again) and leaves no half-written row.
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use rusqlite::{params, Connection};


/// Raised when the table layout changes; older files are migrated or refused by it.
const LAYOUT_VERSION: i64 = 1;

/// How long a connection waits for another process's write before it gives up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// What must match for an earlier scan to stand for this one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanKey {
    /// The canonical path, as raw bytes (names need not be UTF-8).
    pub path: Vec<u8>,
    /// BLAKE3 of the file, in hex.
    pub content: String,
    /// `model.blake3` of the JSON line.
    pub model: String,
    pub settings: String,
}

impl ScanKey {
    /// Hashes the file at `path`. None when it is not a regular file or cannot be read: it is
    /// scanned anyway (and reports why it failed), but never recorded.
    pub fn for_file(path: &Path, model: &str, settings: &str) -> Option<Self> {
        // Only regular files: hashing a FIFO would block, a device would never end.
        if !std::fs::metadata(path).ok()?.is_file() {
            return None;
        }
        let content = content_hash(path).ok()?;
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        Some(Self { path: canonical.as_os_str().as_bytes().to_vec(), content, model: model.into(), settings: settings.into() })
    }
}

/// BLAKE3 of a file's bytes, in hex.
pub fn content_hash(path: &Path) -> io::Result<String> {
    let file = std::fs::File::open(path)?;
    Ok(blake3::Hasher::new().update_reader(file)?.finalize().to_hex().to_string())
}

/// `$XDG_STATE_HOME/dfscan/state.sqlite3` (`~/.local/state/...`), or the local data
/// directory where a platform has no state directory.
pub fn default_path() -> Option<PathBuf> {
    dirs::state_dir().or_else(dirs::data_local_dir).map(|dir| dir.join("dfscan").join("state.sqlite3"))
}

/// One connection to the database; open one per thread.
pub struct StateDb {
    conn: Connection,
    path: PathBuf,
    durable: bool,
}

impl std::fmt::Debug for StateDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateDb").field("path", &self.path).field("durable", &self.durable).finish()
    }
}

impl StateDb {
    /// Opens (creating it and its folder if needed) the database at `path`. `durable`: each
    /// commit is fsynced (`watch --fsync`); otherwise a commit survives a killed process but
    /// the last few may be lost to a power cut.
    pub fn open(path: &Path, durable: bool) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let conn = Connection::open(path).with_context(|| format!("opening the state database {}", path.display()))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let setup = || -> rusqlite::Result<()> {
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", if durable { "FULL" } else { "NORMAL" })?;
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS scans (
                    path BLOB NOT NULL,
                    content_blake3 TEXT NOT NULL,
                    model_blake3 TEXT NOT NULL,
                    settings TEXT NOT NULL,
                    status TEXT NOT NULL,
                    line TEXT NOT NULL,
                    scanned_at INTEGER NOT NULL,
                    PRIMARY KEY (path, content_blake3, model_blake3, settings)
                 )",
            )
        };
        setup().with_context(|| format!("setting up the state database {}", path.display()))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        match version {
            0 => conn.pragma_update(None, "user_version", LAYOUT_VERSION)?,
            LAYOUT_VERSION => {}
            v => anyhow::bail!("{} has layout {v}, this dfscan knows {LAYOUT_VERSION}: use another --state", path.display()),
        }
        Ok(Self { conn, path: path.to_path_buf(), durable })
    }

    /// Another connection to the same database, for another thread.
    pub fn reopen(&self) -> Result<Self> {
        Self::open(&self.path, self.durable)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether an input with this key was already scanned.
    pub fn contains(&self, key: &ScanKey) -> Result<bool> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT 1 FROM scans WHERE path = ?1 AND content_blake3 = ?2 AND model_blake3 = ?3 AND settings = ?4",
        )?;
        Ok(stmt.exists(params![key.path, key.content, key.model, key.settings])?)
    }

    /// Records a finished input and the line printed for it, in one transaction.
    pub fn record(&mut self, key: &ScanKey, status: &str, line: &str) -> Result<()> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO scans (path, content_blake3, model_blake3, settings, status, line, scanned_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![key.path, key.content, key.model, key.settings, status, line, now],
        )?;
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &str, content: &str) -> ScanKey {
        ScanKey { path: path.as_bytes().to_vec(), content: content.into(), model: "m".into(), settings: "s".into() }
    }

    #[test]
    fn a_recorded_key_is_found_and_only_that_key() {
        let tmp = tempfile::tempdir().unwrap();
        let mut db = StateDb::open(&tmp.path().join("sub/state.sqlite3"), false).unwrap();
        db.record(&key("/a.mp4", "c1"), "ok", "{}").unwrap();
        let other = db.reopen().unwrap();
        assert!(other.contains(&key("/a.mp4", "c1")).unwrap());
        assert!(!other.contains(&key("/a.mp4", "c2")).unwrap(), "changed content");
        assert!(!other.contains(&key("/b.mp4", "c1")).unwrap(), "another path");
        assert!(!other.contains(&ScanKey { model: "m2".into(), ..key("/a.mp4", "c1") }).unwrap(), "another model");
        assert!(!other.contains(&ScanKey { settings: "s2".into(), ..key("/a.mp4", "c1") }).unwrap(), "other settings");
    }

    #[test]
    fn a_newer_layout_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state.sqlite3");
        drop(StateDb::open(&path, false).unwrap());
        Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
        let err = StateDb::open(&path, false).unwrap_err().to_string();
        assert!(err.contains("layout 99"), "{err}");
    }
}
