//! The traceability history: every binding's life (created, updated,
//! unbound, expired), append-only, kept for a retention period, answering
//! "which binding routed X at second T" and "which bindings did this order
//! have" in milliseconds at 100M records.
//!
//! The store is a pure function of the events appended in log order: every
//! member of a cluster applies the same log entries in the same order and
//! appends the same events, so the history is replicated by the log itself.
//!
//! # Design
//!
//! **Segments.** Events go into segment files of up to
//! `HistoryConfig::segment_records_max` records (default 2^19), named by the
//! log index of their first record. A segment is *open* while it takes
//! records: its data file grows by appends, its index lives in memory (a
//! hash map from key to the newest of a chain of record offsets). When it is full (and only at a log
//! entry boundary, so a log entry's events never straddle two segments) it
//! is *sealed*: a background thread fsyncs its data file, sorts its index
//! and writes it once to `<first index>.hidx`; until that is done queries
//! use the memory index. Sealing sorts ~700K entries (tens of ms), which is
//! why it is off the caller's path: `append` only encodes into a buffer and
//! writes it out in 64 KiB blocks (no fsync; `sync` fsyncs at checkpoints).
//!
//! **Records** are variable-length and self-contained given their segment's
//! header (times and log indexes are varint differences from the header's
//! base), each with its own CRC32C. Bytes per life: a `Created` record is
//! 67 bytes with a 21-byte order, an end 27, an update ~60; the index adds
//! 12 bytes per record (X) and 12 per `Created` (order): ~130-145 bytes per
//! life on disk (142 measured by perf/history-bench.sh, one life in five
//! updated once).
//!
//! **`at(x, T)`: lives that began long before T.** Every record's index
//! entry is keyed by X, ends included (the apply path should pass X and the
//! creation time on update and end events: the table record it changes
//! holds both; `append` fills them from the batch or the open segment when
//! it can, and otherwise stores the record under "no X": every query also
//! reads the X-less records of its window and joins them to their lives by
//! binding id, and a record without creation time sets D to "everything").
//! Every segment keeps `span_max_s`, the longest life span its records prove
//! (expiry or end minus creation). A life live at T was created at or after
//! T - D and its last event is at or before T + D, where D is the largest
//! `span_max_s` of all segments: so `at` reads the X entries of the segments
//! whose time range meets [T - D, T + D] only, folds them by binding and
//! keeps the lives live at T. Per sealed segment that is a binary search
//! over fences in memory and one or two 3 KiB `pread`s of index groups (page
//! cache), then one `pread` per record found. The cost grows with the events
//! X had within D of T and with the segments in that window: a very long
//! life (D of months) widens every window. That is the trade for keeping
//! no per-X or per-life state in memory.
//!
//! **`order(tenant, order)`.** `Created` and `Updated` records carrying an
//! order are indexed by `order_key` (FNV-1a 64 of tenant and order). Every
//! segment is probed (an order can be anywhere in time); for each binding
//! found, its other events come from X entries within [created, created + D].
//!
//! **Retention.** `purge(now)` deletes whole sealed segments whose newest
//! record is older than `now - retention_s`: two `unlink`s each, no rewrite.
//! A life whose `Created` went with a purged segment is no longer answered.
//!
//! **Crash behaviour.** Only the last segment can have a torn tail (appends
//! go to it only): on `open` its records are scanned, the first record that
//! is not whole with a matching CRC ends it and the file is cut there, and
//! so is every record with a log index at or past `durable_index` (the log
//! replays those; `append` skips events at or below the last log index
//! kept, so replay is idempotent; the caller must have synced every index
//! below `durable_index`). Segments wholly at or past `durable_index` are deleted; a
//! sealed segment that then ends the directory is reopened for appends. A
//! sealed segment whose index is missing or bad (a crash mid-seal) gets it
//! rebuilt from its data on open. Index groups are checked against their
//! fence CRC when a lookup reads them; records against their own CRC. A
//! segment that is not the last and does not decode to its end is
//! corruption: `open` refuses it rather than cut history silently.
//!
//! **Memory.** The open segment's index is sized up front for a full
//! segment (no rehash pause): ~15 bytes per distinct key, 8 per entry and
//! 26 per binding created, ~22 MB for 2^19 records; twice that while the
//! previous segment is being sealed. Sealed segments:
//! 16 bytes of fences per 256 index entries (~9 MB at 100M records), a few
//! hundred bytes and two file descriptors per segment (~190 segments at
//! 100M records). Nothing in memory grows with the number of lives kept.
//!
//! # On-disk format (all integers little-endian)
//!
//! Directory: `<first log index, 20 digits>.hlog` (data) and `.hidx`
//! (index, sealed segments only); `.hidx.tmp` is a seal cut short, deleted
//! on open.
//!
//! Data file header (64 bytes):
//!
//! | offset | width | field |
//! |---|---|---|
//! | 0 | 8 | magic `X700HST\0` |
//! | 8 | 4 | format version (1) |
//! | 12 | 4 | zero |
//! | 16 | 8 | `first_index`: log index of the first record |
//! | 24 | 4 | `base_at_s`: `at_s` of the first record |
//! | 28 | 32 | zero |
//! | 60 | 4 | CRC32C of bytes 0..60 |
//!
//! Then records back to back. A record:
//!
//! | width | field |
//! |---|---|
//! | 1 | `len`: payload bytes (1..=255; 0 never starts a record) |
//! | 1 | kind (bits 0-1: 0 Created, 1 Updated, 2 Unbound, 3 Expired), mode (bits 2-3: 0 AXB, 1 AXN, 2 AXE), bits 4-7 zero |
//! | varint | `log_index - first_index` |
//! | varint | zigzag(`at_s - base_at_s`) |
//! | 8 | binding id |
//! | 8 | X (8-byte BCD `Number`) |
//! | varint | not for Created: zigzag(`at_s - created_s`) |
//! | varint | Created/Updated: tenant |
//! | 8 + 8 | Created/Updated: A, B (`Number`, all zero: none) |
//! | varint | Created/Updated: zigzag(`expires_at_s - at_s`) |
//! | varint | Created/Updated: credential |
//! | 1 + n | Created/Updated: order length (0..=32), order bytes |
//! | 4 | CRC32C of the `len` byte and the payload |
//!
//! Varints are LEB128 (7 bits a byte, low first, high bit "more");
//! zigzag maps 0, -1, 1, -2 to 0, 1, 2, 3. Example: a Created record at
//! 1800000100 in a segment based at 1800000000, log index base + 7, binding
//! 0xABCDEF, tenant 7, X 700123456789012, order of 21 bytes is 67 bytes:
//! `3e 00 07 c8 01 ef cd ab 00 00 00 00 00 70 01 23 45 67 89 01 2f 07 ...`.
//!
//! Index file (`.hidx`), written once when the segment is sealed:
//!
//! | offset | width | field |
//! |---|---|---|
//! | 0 | 8 | magic `X700HIX\0` |
//! | 8 | 4 | format version (1) |
//! | 12 | 4 | CRC32C of the fence section |
//! | 16 | 8 | records in the segment (= X entries) |
//! | 24 | 8 | of which Created |
//! | 32 | 8 | log index of the last record |
//! | 40 | 8 | bytes of the data file covered (must equal its length) |
//! | 48 | 4 | smallest `at_s` |
//! | 52 | 4 | largest `at_s` |
//! | 56 | 4 | `span_max_s` (`u32::MAX`: unknown, queries scan everything) |
//! | 60 | 4 | CRC32C of bytes 0..60 |
//! | 64 | 12 n | X entries sorted by (key, offset): X as `u64::from_le_bytes` of its 8 bytes, record offset u32 |
//! | .. | 12 m | order entries sorted: `order_key(tenant, order)` u64, record offset u32 |
//! | .. | 12 g | fences, one per group of 256 entries (X groups, then order groups): first key u64, CRC32C of the group's bytes u32 |
//! | .. | 8 + 8 + 4 | trailer: n, m, CRC32C of these 16 bytes |

mod event;
mod index;
mod lookup;
mod open;
mod query;
mod record;
mod segment;
mod store;
mod write;

pub use event::{Event, EventKind, Life, ORDER_BYTES_MAX};
pub use index::order_key;

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use crate::number::Number;
use index::FileIndex;
use store::{Open, Sealed};

/// Default retention: 180 days.
pub const RETENTION_S_DEFAULT: u32 = 180 * 86_400;
/// Default records per segment.
pub const SEGMENT_RECORDS_DEFAULT: u64 = 1 << 19;
/// Most bytes a segment's data file may reach before it is sealed (record
/// offsets are u32; this keeps far below).
pub const SEGMENT_BYTES_MAX: u64 = 1 << 30;
/// Buffered record bytes written out in one go.
pub const WRITE_BLOCK_BYTES: usize = 64 << 10;

/// How a history is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryConfig {
    /// How long events are kept, seconds (default 180 days).
    pub retention_s: u32,
    /// Records per segment (default 2^19); at least 1.
    pub segment_records_max: u64,
}

impl HistoryConfig {
    /// Records the open segment's memory index is sized for up front.
    pub(crate) fn memory_index_records(&self) -> usize {
        // Cannot truncate: capped at 2^22 first.
        self.segment_records_max.min(1 << 22) as usize
    }
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            retention_s: RETENTION_S_DEFAULT,
            segment_records_max: SEGMENT_RECORDS_DEFAULT,
        }
    }
}

/// Figures of a history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HistoryStats {
    /// Records (events) kept.
    pub records: u64,
    /// Of which `Created`: lives.
    pub lives: u64,
    /// Bytes on disk, data and index files.
    pub bytes: u64,
    /// Segments, sealed and open.
    pub segments: u64,
    /// The oldest `at_s` kept, if any.
    pub oldest_s: Option<u32>,
    /// Log index of the last record, if any.
    pub last_index: Option<u64>,
    /// The window half-width queries use (see the module docs).
    pub span_max_s: u32,
    /// Bytes cut from a torn tail by `open`.
    pub torn_bytes: u64,
    /// Memory the indexes hold, approximately: fences of sealed segments
    /// and the memory indexes of the open segment and one being sealed.
    pub index_memory_bytes: u64,
}

/// What `purge` dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Segments deleted.
    pub segments: u64,
    /// Records they held.
    pub records: u64,
    /// Bytes freed.
    pub bytes: u64,
}

/// Why a history operation failed.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A file is not what it must be.
    #[error("{path}: corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An appended event breaks the contract (nothing of its batch was
    /// appended).
    #[error("history event for binding {binding_id} at log index {log_index}: {reason}")]
    Invalid {
        /// The binding.
        binding_id: u64,
        /// Its log index.
        log_index: u64,
        /// What is wrong.
        reason: &'static str,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HistoryError + '_ {
    move |source| HistoryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> HistoryError {
    HistoryError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// A seal in progress: the segment (by first index) and the thread.
#[derive(Debug)]
struct Pending {
    first_index: u64,
    thread: JoinHandle<std::io::Result<FileIndex>>,
}

/// An append-only history of binding lives in a directory.
#[derive(Debug)]
pub struct History {
    dir: PathBuf,
    config: HistoryConfig,
    sealed: Vec<Sealed>,
    open: Option<Open>,
    pending: Option<Pending>,
    /// Events below this log index are already here: `append` skips them.
    floor: u64,
    last_index: Option<u64>,
    torn_bytes: u64,
    /// A sealed segment's memory index, emptied, for the next segment.
    spare: Option<index::MemIndex>,
}

// The node may share a history between its apply path (append) and its
// query path (at, order) behind a lock: it must be Send and Sync.
const _: fn() = || {
    fn shareable<T: Send + Sync>() {}
    shareable::<History>();
};

/// What one event needs filled in before it is written.
struct Fill {
    x: Number,
    created_s: Option<u32>,
}
