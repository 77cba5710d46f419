//! The data directory lock: one process at a time may use a directory. A
//! second gets a clear error naming the holder instead of mapping files
//! another process is writing.

use crate::table::TableError;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

/// Name of the lock file inside a data directory.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// Held for as long as the directory is open; released on drop (and by the
/// kernel if the process dies).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock or reports who holds it.
    pub fn acquire(dir: &Path) -> Result<DirLock, TableError> {
        let path = dir.join(LOCK_FILE_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| TableError::io(&path, e))?;
        if !crate::sys::try_lock_exclusive(&file) {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(TableError::Locked {
                path: path.display().to_string(),
                holder: holder.trim().to_string(),
            });
        }
        let me = format!(
            "pid {} ({})",
            std::process::id(),
            std::env::args().next().unwrap_or_default()
        );
        file.set_len(0).map_err(|e| TableError::io(&path, e))?;
        file.rewind().map_err(|e| TableError::io(&path, e))?;
        file.write_all(me.as_bytes())
            .map_err(|e| TableError::io(&path, e))?;
        Ok(DirLock { _file: file })
    }
}
