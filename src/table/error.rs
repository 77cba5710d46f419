//! Why a table could not be created or opened. Each variant names the file
//! and, where it applies, the offset, so an operator knows where to look
//! (docs/OPERATIONS.md says what to do next).

use std::path::Path;

/// A table that cannot be opened or created.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// An I/O call failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The header is not what this file must hold.
    #[error("{path}: bad header: {reason}")]
    BadHeader {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Written by another format version.
    #[error("{path}: format version {found}, this build reads version {expected}")]
    WrongVersion {
        /// The file.
        path: String,
        /// Version found.
        found: u32,
        /// Version this build reads.
        expected: u32,
    },
    /// Shorter than its header and the shard's meta say it must be.
    #[error("{path}: truncated: {file_bytes} bytes, at least {needed_bytes} needed")]
    Truncated {
        /// The file.
        path: String,
        /// Its length.
        file_bytes: u64,
        /// The length it must have.
        needed_bytes: u64,
    },
    /// Data inside the file contradicts the format.
    #[error("{path}: corrupt at byte offset {offset}: {reason}")]
    Corrupt {
        /// The file.
        path: String,
        /// Offset of the bad item.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Another process holds the data directory.
    #[error("{path}: data directory is in use by another process ({holder})")]
    Locked {
        /// The data directory.
        path: String,
        /// Who holds it, as recorded in the directory's `LOCK` note.
        holder: String,
    },
    /// A directory that holds no x700 store.
    #[error("{path}: no x700 data directory here (create one with `x700 load` or any bind)")]
    Missing {
        /// The directory.
        path: String,
    },
}

impl TableError {
    /// Wraps an I/O error with its file.
    pub fn io(path: &Path, source: std::io::Error) -> TableError {
        TableError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
