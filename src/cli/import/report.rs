//! The import report: a small JSON file that says how far an import of one
//! file got, so that `--resume` can carry on where it stopped. It names the
//! file by its SHA-256: a resume against a different file is refused.
//!
//! It is written (to a temporary name, then renamed over the old one) after
//! every batch a running node has answered in full, and once at the end.
//! Offline, it is written only after the data directory was closed: until
//! then the batches exist only in memory and a crash would lose them.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

/// What `format` holds, so that a stray JSON file is not taken for one.
pub const FORMAT: &str = "x700-import-report-1";

/// A rejected row as the report and the JSON output show it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rejected {
    /// Line number in the file (1 is the header).
    pub line: u64,
    /// The column at fault (phase 1), if one is.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub column: Option<String>,
    /// Why.
    pub reason: String,
    /// Status name.
    pub status: String,
}

/// The report file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// `FORMAT`.
    pub format: String,
    /// The file imported, as given.
    pub file: String,
    /// Hex SHA-256 of its bytes.
    pub sha256: String,
    /// The tenant the rows were bound for.
    pub tenant: u32,
    /// Data rows in the file.
    pub rows: u64,
    /// Rows of the batches done, from the first: the next run starts after.
    pub rows_done: u64,
    /// Batches done.
    pub batches_done: u64,
    /// Bindings made by the batches done.
    pub created: u64,
    /// Rows of the batches done that an identical live binding answered.
    pub present: u64,
    /// Every row is in.
    pub complete: bool,
    /// Line of the first row not yet done (`null` when complete).
    pub resume_from_line: Option<u64>,
    /// The rows the last run's failed batch was refused for.
    pub rejected: Vec<Rejected>,
    /// Bindings the failed batch made that compensation could not remove.
    pub left_bound: Vec<u64>,
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut text, byte| {
            use std::fmt::Write as _;
            // Writing to a String cannot fail.
            let _ = write!(text, "{byte:02x}");
            text
        })
}

/// Reads a report; the error says why it cannot be used.
pub fn read(path: &Path) -> Result<Report, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the report {}: {e}", path.display()))?;
    let report: Report = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not an import report: {e}", path.display()))?;
    if report.format != FORMAT {
        return Err(format!(
            "{} is not an import report of this version ({:?})",
            path.display(),
            report.format
        ));
    }
    if report.rows_done > report.rows {
        return Err(format!(
            "{} says {} rows are done of {}",
            path.display(),
            report.rows_done,
            report.rows
        ));
    }
    Ok(report)
}

/// Writes `report` to `path` whole: to `path.tmp`, synced, renamed over.
pub fn write(path: &Path, report: &Report) -> Result<(), String> {
    let text = serde_json::to_string_pretty(report)
        .map_err(|e| format!("cannot encode the report: {e}"))?;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = std::path::PathBuf::from(temporary);
    let written = (|| -> std::io::Result<()> {
        use std::io::Write as _;
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    written.map_err(|e| format!("cannot write the report {}: {e}", path.display()))
}
