//! `[capture]`: where and how much of the client traffic the node writes
//! as pcapng (`server::capture` holds the writer and its bounds).

use serde::Deserialize;
use std::path::PathBuf;

/// `[capture]`: the client listeners' traffic written as pcapng
/// (`server::capture`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    /// The capture file (none: the node cannot capture, not even at run
    /// time through the admin port).
    pub file: Option<PathBuf>,
    /// A file is rotated before it passes this size, bytes.
    pub max_bytes: u64,
    /// Files kept, the one in hand included.
    pub files: usize,
    /// Capture from the start (else from `POST /capture/start`).
    pub on_at_start: bool,
}

impl Default for CaptureConfig {
    fn default() -> CaptureConfig {
        CaptureConfig {
            file: None,
            max_bytes: crate::server::capture::FILE_BYTES_DEFAULT,
            files: crate::server::capture::FILES_DEFAULT,
            on_at_start: true,
        }
    }
}
