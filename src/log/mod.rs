//! The durable log: every change of state is appended here and made
//! durable (group commit, `fdatasync`) before anyone hears "ok".
//!
//! Files, all under `<data>/log/` (byte layouts in `record.rs`,
//! `segment.rs`, `state_file.rs` and docs/STORAGE.md):
//! - `<first index, 20 digits>.seg`: segments of records, preallocated;
//! - `spare`: the next segment, preallocated ahead of need, so that a full
//!   disk is seen before an append could fail;
//! - `state`: the Raft vote, the last purged position and the last
//!   committed position.
//!
//! The log knows nothing of Raft or bindings: `replication` maps openraft's
//! entries onto `LogRecord`s, and the tables are its state machine.

mod flusher;
mod open;
pub mod record;
pub mod segment;
pub mod state_file;

pub use flusher::{Completion, Flusher, SyncJob};
pub use record::{LogRecord, RecordKind};
pub use state_file::{LogState, StoredVote};

use segment::{scan, Tail, HEADER_BYTES, SEGMENT_BYTES};
use state_file::StateFile;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Name of the log directory inside a data directory.
pub const LOG_DIR_NAME: &str = "log";
/// Name of the preallocated next segment.
const SPARE_NAME: &str = "spare";
/// Free bytes the data directory's file system must keep for the tables to
/// grow into, or new writes are refused (`disk_full`) before they reach the
/// log. Applying an entry must never fail for want of room (its answer
/// would then depend on this member's disk, docs/STORAGE.md "Deterministic
/// apply"), so the leader stops taking writes while the entries already
/// accepted can still grow the tables: a full 1 MiB batch of binds grows
/// them by about 1.5 MiB at most (96 record bytes and a few index bytes a
/// write), so this covers ten such batches in flight. A member whose
/// apply still finds no room stalls and retries instead of answering.
pub const TABLE_HEADROOM_BYTES: u64 = 16 << 20;
/// How often an append looks at the free space (one `statvfs`).
const HEADROOM_CHECK_INTERVAL: Duration = Duration::from_millis(50);
/// An append rolls to a new segment when it would leave less than this
/// room: enough for every write already accepted (see
/// `replication::batch::BATCH_BYTES_MAX` and the proposal queue bound).
pub const ROLL_HEADROOM_BYTES: u64 = 16 << 20;

/// A position in the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogPosition {
    /// Index.
    pub index: u64,
    /// Term.
    pub term: u64,
    /// Leader that wrote it.
    pub leader: u64,
}

/// Why the log cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// An I/O call failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The acknowledged part of the log is damaged.
    #[error("{path}: corrupt at byte offset {offset}: {reason}")]
    Corrupt {
        /// The file.
        path: String,
        /// Where.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// No room for the next segment.
    #[error("{path}: disk full: no room for the next log segment")]
    DiskFull {
        /// The segment that could not be created.
        path: String,
    },
    /// An earlier `fdatasync` failed; the log takes no more writes.
    #[error("the log stopped taking writes after an fdatasync failure")]
    Failed,
    /// A request the log cannot honour (a hole, a purged entry).
    #[error("log: {0}")]
    Invalid(String),
}

impl LogError {
    /// Wraps an I/O error with its file.
    pub fn io(path: &Path, source: std::io::Error) -> LogError {
        LogError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Shared flags and counters, read by the write path and metrics.
#[derive(Debug, Default)]
pub struct LogHealth {
    /// No spare segment could be made: new writes are refused (`disk_full`)
    /// until one can.
    pub disk_full: AtomicBool,
    /// An `fdatasync` failed: writes are stopped for good on this node.
    pub failed: AtomicBool,
    /// Syncs done.
    pub syncs: AtomicU64,
    /// Appends made durable.
    pub synced_appends: AtomicU64,
    /// Total time in `fdatasync`, microseconds.
    pub sync_time_us: AtomicU64,
}

impl LogHealth {
    fn record_sync(&self, took: Duration, appends: usize) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.synced_appends
            .fetch_add(appends as u64, Ordering::Relaxed);
        self.sync_time_us.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

struct Segment {
    first_index: u64,
    path: PathBuf,
    file: Arc<File>,
    offsets: Vec<u32>,
    end: u64,
}

impl Segment {
    fn last_index(&self) -> Option<u64> {
        (!self.offsets.is_empty()).then(|| self.first_index + self.offsets.len() as u64 - 1)
    }
}

/// What opening the log found and did.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Torn tails cut off: segment path and offset.
    pub torn_tails_cut: Vec<(String, u64)>,
    /// Records present.
    pub records: u64,
}

/// The log of one data directory.
pub struct Log {
    dir: PathBuf,
    nonce: u64,
    segments: Vec<Segment>,
    spare: Option<File>,
    state_file: StateFile,
    state: LogState,
    last: Option<LogPosition>,
    buffer: Vec<u8>,
    health: Arc<LogHealth>,
    /// When an append last looked at the free space.
    headroom_checked: Option<std::time::Instant>,
}

/// Flushes a directory so that files created or removed in it stay so.
pub fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LogError::io(dir, e))
}

fn segment_name(first_index: u64) -> String {
    format!("{first_index:020}.seg")
}

fn preallocate(file: &File, path: &Path) -> Result<(), LogError> {
    let length = libc::off_t::try_from(SEGMENT_BYTES).unwrap_or(libc::off_t::MAX);
    match crate::sys::fallocate(file.as_raw_fd(), 0, length) {
        0 => Ok(()),
        libc::ENOSPC | libc::EDQUOT => Err(LogError::DiskFull {
            path: path.display().to_string(),
        }),
        errno => Err(LogError::io(path, std::io::Error::from_raw_os_error(errno))),
    }
}

impl Log {
    /// Flags and counters shared with the write path.
    pub fn health(&self) -> Arc<LogHealth> {
        Arc::clone(&self.health)
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True while the file system keeps `TABLE_HEADROOM_BYTES` free (or
    /// cannot say how much it has).
    fn has_headroom(&self) -> bool {
        crate::sys::free_bytes(&self.dir).is_none_or(|free| free >= TABLE_HEADROOM_BYTES)
    }

    /// Makes sure a preallocated spare segment is ready and the tables have
    /// their headroom. Clears or sets the disk-full flag accordingly;
    /// returns whether a spare is ready.
    pub fn prepare_spare(&mut self) -> bool {
        if self.spare.is_some() {
            self.health
                .disk_full
                .store(!self.has_headroom(), Ordering::SeqCst);
            return true;
        }
        let path = self.dir.join(SPARE_NAME);
        let made = crate::sys::open_or_create_private(
            OpenOptions::new().read(true).write(true).truncate(false),
            &path,
        )
        .map_err(|e| LogError::io(&path, e))
        .and_then(|file| preallocate(&file, &path).map(|()| file));
        match made {
            Ok(file) => {
                self.spare = Some(file);
                self.health
                    .disk_full
                    .store(!self.has_headroom(), Ordering::SeqCst);
                true
            }
            Err(error) => {
                if !matches!(error, LogError::DiskFull { .. }) {
                    eprintln!("x700: log: cannot prepare the next segment: {error}");
                }
                self.health.disk_full.store(true, Ordering::SeqCst);
                false
            }
        }
    }

    fn new_segment(&mut self, first_index: u64) -> Result<Segment, LogError> {
        let path = self.dir.join(segment_name(first_index));
        let file = match self.spare.take() {
            Some(file) => {
                std::fs::rename(self.dir.join(SPARE_NAME), &path)
                    .map_err(|e| LogError::io(&path, e))?;
                file
            }
            None => {
                let file =
                    crate::sys::create_private(OpenOptions::new().read(true).write(true), &path)
                        .map_err(|e| LogError::io(&path, e))?;
                if let Err(error) = preallocate(&file, &path) {
                    let _ = std::fs::remove_file(&path);
                    return Err(error);
                }
                file
            }
        };
        file.write_all_at(&segment::header(self.nonce, first_index), 0)
            .and_then(|()| file.sync_data())
            .map_err(|e| LogError::io(&path, e))?;
        sync_dir(&self.dir)?;
        Ok(Segment {
            first_index,
            path,
            file: Arc::new(file),
            offsets: Vec::new(),
            end: HEADER_BYTES as u64,
        })
    }

    fn restart_at(&mut self, first_index: u64) -> Result<(), LogError> {
        let Some(active) = self.segments.last_mut() else {
            return Err(LogError::Invalid("no segment".into()));
        };
        if !active.offsets.is_empty() {
            return Err(LogError::Invalid(
                "only an empty segment can start elsewhere".into(),
            ));
        }
        let path = self.dir.join(segment_name(first_index));
        active
            .file
            .write_all_at(&segment::header(self.nonce, first_index), 0)
            .and_then(|()| active.file.sync_data())
            .and_then(|()| std::fs::rename(&active.path, &path))
            .map_err(|e| LogError::io(&path, e))?;
        active.path = path;
        active.first_index = first_index;
        sync_dir(&self.dir)
    }

    /// The last record's position (or the last purged one if none is left).
    pub fn last(&self) -> Option<LogPosition> {
        self.last
    }

    /// The stored vote, purge position and committed position (the last
    /// clamped to the log when it opened).
    pub fn state(&self) -> LogState {
        self.state
    }

    /// Index of the first record still present.
    pub fn first_index(&self) -> u64 {
        let first = self.segments.first().map_or(0, |s| s.first_index);
        self.state.purged.map_or(first, |p| first.max(p.index + 1))
    }

    /// Saves the vote durably.
    pub fn save_vote(&mut self, vote: StoredVote) -> Result<(), LogError> {
        let mut state = self.state;
        state.vote = Some(vote);
        self.state_file.write(&state)?;
        self.state = state;
        Ok(())
    }

    /// Saves the committed position, without `fdatasync`
    /// (`StateFile::write_committed` says why that is safe).
    pub fn save_committed(&mut self, committed: Option<LogPosition>) -> Result<(), LogError> {
        self.state_file.write_committed(committed)?;
        self.state.committed = committed;
        Ok(())
    }

    /// The files of the segments holding records from `index` on: what an
    /// append retried after a failure part-way must sync besides what the
    /// retry itself wrote.
    pub fn files_from(&self, index: u64) -> Vec<Arc<File>> {
        self.segments
            .iter()
            .filter(|segment| segment.last_index().is_some_and(|last| last >= index))
            .map(|segment| Arc::clone(&segment.file))
            .collect()
    }

    /// Writes `records` (which must follow the last record without a hole)
    /// and returns the files to sync before they count as durable. The
    /// bytes are written, not yet synced: hand the files to the flusher.
    pub fn append(&mut self, records: &[LogRecord]) -> Result<Vec<Arc<File>>, LogError> {
        if self.health.failed.load(Ordering::SeqCst) {
            return Err(LogError::Failed);
        }
        // Records at or below the purge point are already in the
        // checkpoint: there is nothing to keep of them.
        let purged = self.state.purged.map(|p| p.index);
        let skip = records
            .iter()
            .take_while(|r| purged.is_some_and(|p| r.index <= p))
            .count();
        let records = &records[skip..];
        let Some(first) = records.first() else {
            return Ok(Vec::new());
        };
        let mut next = self.last.map_or(self.first_index(), |p| p.index + 1);
        if self.last.is_none() && first.index != next {
            // An empty log (nothing appended, nothing purged) may start
            // anywhere: openraft's own storage tests start at index 1.
            next = first.index;
        }
        // An empty active segment starts where the next record goes (after
        // a purge past everything, it was created for an earlier index).
        if first.index == next
            && self
                .segments
                .last()
                .is_some_and(|s| s.offsets.is_empty() && s.first_index != next)
        {
            self.restart_at(next)?;
        }
        if first.index != next {
            return Err(LogError::Invalid(format!(
                "append at index {} would leave a hole: next index is {next}",
                first.index
            )));
        }
        if records.windows(2).any(|w| w[1].index != w[0].index + 1) {
            return Err(LogError::Invalid("records out of order".into()));
        }
        // A follower appends what the leader sends, up to hundreds of
        // entries at once, which may not fit what is left of the active
        // segment (or even one whole segment): the records go in groups,
        // each filling the active segment, rolling to a new one between
        // groups. Only a single record larger than a segment is refused.
        let mut files = Vec::with_capacity(2);
        let mut buffer = std::mem::take(&mut self.buffer);
        let mut starts = Vec::with_capacity(records.len());
        let mut at = 0;
        while at < records.len() {
            let active_end = self.segments.last().map_or(0, |s| s.end);
            let active_has_records = self.segments.last().is_some_and(|s| !s.offsets.is_empty());
            let room = SEGMENT_BYTES.saturating_sub(active_end + ROLL_HEADROOM_BYTES);
            buffer.clear();
            starts.clear();
            let mut end = at;
            while end < records.len() {
                let before = buffer.len();
                records[end].encode(&mut buffer);
                if buffer.len() as u64 > room && end > at {
                    buffer.truncate(before);
                    break;
                }
                starts.push(before);
                end += 1;
            }
            if buffer.len() as u64 > room && active_has_records {
                // Not even the first record of the group fits: roll, and
                // encode the group again against the new segment's room.
                if let Some(active) = self.segments.last() {
                    files.push(Arc::clone(&active.file));
                }
                match self.new_segment(records[at].index) {
                    Ok(segment) => self.segments.push(segment),
                    Err(error) => {
                        self.buffer = buffer;
                        return Err(error);
                    }
                }
                self.prepare_spare();
                continue;
            }
            let Some(active) = self.segments.last_mut() else {
                self.buffer = buffer;
                return Err(LogError::Invalid("no active segment".into()));
            };
            if active.end + buffer.len() as u64 > SEGMENT_BYTES {
                self.buffer = buffer;
                return Err(LogError::Invalid("a record larger than a segment".into()));
            }
            if let Err(error) = active.file.write_all_at(&buffer, active.end) {
                let error = LogError::io(&active.path, error);
                self.buffer = buffer;
                return Err(error);
            }
            for &start in &starts {
                active
                    .offsets
                    .push(u32::try_from(active.end + start as u64).unwrap_or(u32::MAX));
            }
            active.end += buffer.len() as u64;
            files.push(Arc::clone(&active.file));
            let last = &records[end - 1];
            self.last = Some(LogPosition {
                index: last.index,
                term: last.term,
                leader: last.leader,
            });
            at = end;
        }
        files.dedup_by(|a, b| Arc::ptr_eq(a, b));
        self.buffer = buffer;
        // The tables' headroom, checked now and then: once it is gone new
        // writes are refused until housekeeping's `prepare_spare` sees it
        // back.
        if self
            .headroom_checked
            .is_none_or(|at| at.elapsed() >= HEADROOM_CHECK_INTERVAL)
        {
            self.headroom_checked = Some(std::time::Instant::now());
            if !self.has_headroom() {
                self.health.disk_full.store(true, Ordering::SeqCst);
            }
        }
        Ok(files)
    }

    /// Records `from..to` that are present (purged ones are skipped).
    pub fn read(&self, from: u64, to: u64) -> Result<Vec<LogRecord>, LogError> {
        let mut records = Vec::new();
        let from = from.max(self.first_index());
        for segment in &self.segments {
            let Some(last) = segment.last_index() else {
                continue;
            };
            let start = from.max(segment.first_index);
            let stop = to.min(last + 1);
            if start >= stop {
                continue;
            }
            let first_at = u64::from(segment.offsets[(start - segment.first_index) as usize]);
            let stop_at = if stop > last {
                segment.end
            } else {
                u64::from(segment.offsets[(stop - segment.first_index) as usize])
            };
            let mut bytes = vec![0u8; (stop_at - first_at) as usize];
            segment
                .file
                .read_exact_at(&mut bytes, first_at)
                .map_err(|e| LogError::io(&segment.path, e))?;
            let mut at = 0;
            for index in start..stop {
                match record::decode(&bytes[at..]) {
                    record::Decoded::Record(record, length) if record.index == index => {
                        records.push(record);
                        at += length;
                    }
                    _ => {
                        return Err(LogError::Corrupt {
                            path: segment.path.display().to_string(),
                            offset: first_at + at as u64,
                            reason: format!("record {index} no longer reads back"),
                        })
                    }
                }
            }
        }
        Ok(records)
    }

    /// Removes every record from `index` on, durably.
    pub fn truncate(&mut self, index: u64) -> Result<(), LogError> {
        while self.segments.len() > 1
            && self.segments.last().is_some_and(|s| s.first_index >= index)
        {
            if let Some(gone) = self.segments.pop() {
                std::fs::remove_file(&gone.path).map_err(|e| LogError::io(&gone.path, e))?;
            }
        }
        sync_dir(&self.dir)?;
        let Some(active) = self.segments.last_mut() else {
            return Ok(());
        };
        if index < active.first_index + active.offsets.len() as u64 {
            let keep = index.saturating_sub(active.first_index) as usize;
            let cut = if keep < active.offsets.len() {
                u64::from(active.offsets[keep])
            } else {
                active.end
            };
            let zeros = vec![0u8; (active.end - cut) as usize];
            active
                .file
                .write_all_at(&zeros, cut)
                .and_then(|()| active.file.sync_data())
                .map_err(|e| LogError::io(&active.path, e))?;
            active.offsets.truncate(keep);
            active.end = cut;
        }
        self.last = self.read_last()?;
        if self.last.is_none() {
            self.last = self.state.purged;
        }
        // Raft never truncates a committed entry; should it happen anyway,
        // the committed position is forgotten rather than left naming an
        // entry that is gone (openraft then starts from what is applied).
        if self.state.committed.is_some_and(|c| c.index >= index) {
            self.state.committed = None;
        }
        Ok(())
    }

    /// Forgets every record up to and including `upto`: records the purge
    /// durably, then removes whole segments that hold nothing newer.
    pub fn purge(&mut self, upto: LogPosition) -> Result<(), LogError> {
        if self.state.purged.is_some_and(|p| p.index >= upto.index) {
            return Ok(());
        }
        let mut state = self.state;
        state.purged = Some(upto);
        self.state_file.write(&state)?;
        self.state = state;
        if self.last.is_none_or(|l| l.index < upto.index) {
            self.last = Some(upto);
        }
        // A purge at or past every record (a member that installed a
        // snapshot ahead of its log): the active segment holds only purged
        // records, and the next append, at `upto + 1`, would land behind
        // them where no offset finds it. A fresh segment starts at the next
        // index; the old one goes with the others below (a crash between
        // the two leaves it for `open`, which finishes interrupted purges).
        if self
            .segments
            .last()
            .and_then(Segment::last_index)
            .is_some_and(|last| last <= upto.index)
        {
            let segment = self.new_segment(upto.index + 1)?;
            self.segments.push(segment);
            self.prepare_spare();
        }
        let mut removed = false;
        while self.segments.len() > 1
            && self.segments[0]
                .last_index()
                .is_none_or(|last| last <= upto.index)
        {
            let gone = self.segments.remove(0);
            std::fs::remove_file(&gone.path).map_err(|e| LogError::io(&gone.path, e))?;
            removed = true;
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Bytes of log files on disk (segments, preallocated room included).
    pub fn disk_bytes(&self) -> u64 {
        self.segments.len() as u64 * SEGMENT_BYTES
    }
}
