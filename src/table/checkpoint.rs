//! Checkpoints: how a shard's in-memory state reaches its files, whole or
//! not at all.
//!
//! The tables are mapped privately, so the files hold the last checkpoint
//! and nothing newer. A checkpoint is taken in two halves:
//! 1. `Shard::capture` (in the shard's own thread, between two writes)
//!    copies every page written since the last checkpoint and the counters
//!    that describe them, including the last applied log index;
//! 2. `ShardImage::persist` (any thread) commits that image:
//!    - writes the *fresh* pages (beyond everything the previous checkpoint
//!      refers to: past its records, index buckets and overflow buckets in
//!      use) straight into the table files and syncs them: no checkpoint on
//!      disk refers to those bytes, so writing them cannot harm one;
//!    - writes the other pages and the new meta to `checkpoint.journal` and
//!      syncs it (and the directory): from here the checkpoint is
//!      committed, because a crash replays the journal;
//!    - writes those pages into the table files and syncs them;
//!    - writes the meta (counters, applied log index) into *both* copies of
//!      the meta file, one after the other, syncing each;
//!    - removes the journal.
//!
//! Every meta write happens under a journal, and once the journal is gone
//! both copies hold the newest checkpoint: a copy damaged later (bit rot,
//! a bad sector) leaves the other, equally new. The table files are
//! updated in place, so an older meta could never describe them again.
//!
//! A crash before the journal is whole leaves the files untouched (the old
//! checkpoint). A crash after it replays the journal at the next open
//! (`recover_journal`): page writes are idempotent, and a journal whose
//! meta sequence is not newer than the meta file's is stale and dropped.
//!
//! Journal layout (little-endian):
//!
//! | offset | width | field |
//! |---|---|---|
//! | 0 | 8 | magic `X700JRNL` |
//! | 8 | 4 | format version (1) |
//! | 12 | 4 | shard id |
//! | 16 | 8 | meta sequence this checkpoint commits |
//! | 24 | 4 | page runs |
//! | 28 | 4 | zero |
//! | 32 | 8 | bytes after this 64-byte header, trailer included |
//! | 40 | 20 | zero |
//! | 60 | 4 | CRC32C of bytes 0..60 |
//! | 64 | 128 | the `ShardMeta` copy to write (its own checksum set) |
//! | 192 | .. | runs: file kind u32, length u32, file offset u64, then the bytes |
//! | end-8 | 4 | CRC32C of bytes 64..end-8 |
//! | end-4 | 4 | `JEND` |

use super::error::TableError;
use super::layout::{FileKind, ShardMeta};
use super::mapped::DirtyPages;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Name of the journal inside a shard directory.
pub const JOURNAL_NAME: &str = "checkpoint.journal";
const MAGIC: [u8; 8] = *b"X700JRNL";
const END: [u8; 4] = *b"JEND";
const VERSION: u32 = 1;
const HEADER_BYTES: usize = 64;
const META_BYTES: usize = std::mem::size_of::<ShardMeta>();
const RUN_HEADER_BYTES: usize = 16;
/// Bytes between the meta file's two copies (see `meta_file`).
const META_COPY_STRIDE: u64 = 4096;

/// One file's part of an image.
pub struct FileImage {
    /// Which table file.
    pub kind: FileKind,
    /// A handle on it.
    pub file: File,
    /// Pages written since the last checkpoint that the previous
    /// checkpoint refers to: they go through the journal.
    pub pages: DirtyPages,
    /// Pages beyond what the previous checkpoint refers to: written in
    /// place directly.
    pub fresh: DirtyPages,
    /// A handle on its `.sum` file.
    pub sums_file: File,
    /// Runs of the `.sum` file (checksums of the pages above): journaled.
    pub sums: DirtyPages,
    /// The pages as the capture took them, until `collect` copies them
    /// out of the mapping into the fields above; and the end of what the
    /// previous checkpoint refers to.
    taken: Option<(super::file::TakenPages, u64)>,
}

/// Journal code of a file: 1-4 the table files, 101-104 their `.sum` files.
const SUMS_CODE: u32 = 100;

fn kind_of(code: u32) -> Option<FileKind> {
    match code {
        1 => Some(FileKind::Records),
        2 => Some(FileKind::Cold),
        3 => Some(FileKind::Index),
        4 => Some(FileKind::Overflow),
        _ => None,
    }
}

fn path_of(dir: &Path, code: u32) -> Option<PathBuf> {
    if code > SUMS_CODE {
        kind_of(code - SUMS_CODE).map(|kind| super::file::sums_path(dir, kind))
    } else {
        kind_of(code).map(|kind| dir.join(kind.file_name()))
    }
}

impl FileImage {
    /// A file's part of an image whose pages are still in the mapping:
    /// `persist` copies them out (`collect`) before it writes anything.
    pub fn taken(
        kind: FileKind,
        (file, sums_file): (File, File),
        taken: super::file::TakenPages,
        referenced_end: u64,
    ) -> FileImage {
        FileImage {
            kind,
            file,
            pages: DirtyPages::default(),
            fresh: DirtyPages::default(),
            sums_file,
            sums: DirtyPages::default(),
            taken: Some((taken, referenced_end)),
        }
    }

    /// Copies the taken pages out of the mapping and splits them.
    fn collect(&mut self) {
        if let Some((taken, referenced_end)) = self.taken.take() {
            let (pages, sums) = taken.collect();
            let (journaled, fresh) = split(pages, referenced_end);
            self.pages = journaled;
            self.fresh = fresh;
            self.sums = sums;
        }
    }
}

/// Splits a file's dirty pages at `referenced_end`, the end of what the
/// previous checkpoint refers to: (journaled, fresh).
fn split(pages: DirtyPages, referenced_end: u64) -> (DirtyPages, DirtyPages) {
    {
        let mut journaled = DirtyPages::default();
        let mut fresh = DirtyPages::default();
        for (offset, bytes) in pages.runs {
            let end = offset + bytes.len() as u64;
            if offset >= referenced_end {
                fresh.runs.push((offset, bytes));
            } else if end <= referenced_end {
                journaled.runs.push((offset, bytes));
            } else {
                // A run across the boundary: split on the page that holds it.
                let cut =
                    (referenced_end - offset).next_multiple_of(super::mapped::PAGE_BYTES as u64);
                let cut = usize::try_from(cut).unwrap_or(bytes.len()).min(bytes.len());
                journaled.runs.push((offset, bytes[..cut].to_vec()));
                if cut < bytes.len() {
                    fresh
                        .runs
                        .push((offset + cut as u64, bytes[cut..].to_vec()));
                }
            }
        }
        (journaled, fresh)
    }
}

/// Page ranges of an image that failed to persist, handed back to the
/// shard so its next capture takes them again.
pub type Remarks = std::sync::Arc<std::sync::Mutex<Vec<(FileKind, u64, u64)>>>;

/// The meta sequence of a shard's last committed checkpoint, shared by the
/// shard and its images: the shard gives pages back only once every image
/// it captured is committed (`Shard::give_back`).
pub type Committed = std::sync::Arc<std::sync::atomic::AtomicU64>;

/// A shard's state at one moment, ready to be committed to its files.
pub struct ShardImage {
    /// The shard's directory.
    pub dir: PathBuf,
    /// Its id.
    pub shard_id: u16,
    /// The meta to commit, checksum and sequence set.
    pub meta: ShardMeta,
    /// A handle on the meta file.
    pub meta_file: File,
    /// The table files' dirty pages.
    pub files: Vec<FileImage>,
    /// Where to hand the pages back if persisting fails.
    pub remarks: Remarks,
    /// Where to say the image is committed.
    pub committed: Committed,
    /// Live bindings per tenant at the capture (`tenant_counts`).
    pub tenants: super::tenant_counts::TenantCounts,
}

/// What committing an image wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PersistStats {
    /// Page bytes written (each twice: journal and file).
    pub page_bytes: u64,
    /// Page runs.
    pub runs: u64,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> TableError + '_ {
    move |e| TableError::io(path, e)
}

fn sync_dir(dir: &Path) -> Result<(), TableError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

fn write_both_meta_copies(file: &File, meta: &ShardMeta, dir: &Path) -> Result<(), TableError> {
    let path = dir.join(super::meta_file::META_FILE_NAME);
    for copy in [meta.sequence % 2, (meta.sequence + 1) % 2] {
        file.write_all_at(bytemuck::bytes_of(meta), copy * META_COPY_STRIDE)
            .and_then(|()| file.sync_data())
            .map_err(io(&path))?;
    }
    Ok(())
}

impl ShardImage {
    /// Page bytes in the image (once `persist` has copied them out).
    fn page_bytes(&self) -> u64 {
        self.files
            .iter()
            .flat_map(|f| f.pages.runs.iter().chain(f.fresh.runs.iter()))
            .map(|(_, bytes)| bytes.len() as u64)
            .sum()
    }

    fn journal(&self) -> Vec<u8> {
        let runs: usize = self
            .files
            .iter()
            .map(|f| f.pages.runs.len() + f.sums.runs.len())
            .sum();
        let payload = META_BYTES
            + self
                .files
                .iter()
                .flat_map(|f| f.pages.runs.iter().chain(f.sums.runs.iter()))
                .map(|(_, b)| RUN_HEADER_BYTES + b.len())
                .sum::<usize>()
            + 8;
        let mut out = Vec::with_capacity(HEADER_BYTES + payload);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&u32::from(self.shard_id).to_le_bytes());
        out.extend_from_slice(&self.meta.sequence.to_le_bytes());
        out.extend_from_slice(&u32::try_from(runs).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(payload as u64).to_le_bytes());
        out.resize(60, 0);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(bytemuck::bytes_of(&self.meta));
        for image in &self.files {
            let code = image.kind as u32;
            let runs = image
                .pages
                .runs
                .iter()
                .map(|run| (code, run))
                .chain(image.sums.runs.iter().map(|run| (SUMS_CODE + code, run)));
            for (code, (offset, bytes)) in runs {
                out.extend_from_slice(&code.to_le_bytes());
                out.extend_from_slice(
                    &u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes(),
                );
                out.extend_from_slice(&offset.to_le_bytes());
                out.extend_from_slice(bytes);
            }
        }
        let crc = crc32c::crc32c(&out[HEADER_BYTES..]);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&END);
        out
    }

    /// Commits the image to the shard's files (see the module comment).
    /// Only one image of a shard may be persisted at a time, in the order
    /// they were captured.
    pub fn persist(mut self) -> Result<PersistStats, TableError> {
        // The pages leave the mapping here, in the commit thread, not in
        // the loop that captured them.
        for image in &mut self.files {
            image.collect();
        }
        let result = self.write();
        if result.is_ok() {
            self.committed
                .fetch_max(self.meta.sequence, std::sync::atomic::Ordering::Release);
        } else {
            // Nothing is lost (the log still holds every change, and the
            // files still hold the previous checkpoint), but the next
            // capture must take these pages again.
            if let Ok(mut remarks) = self.remarks.lock() {
                for image in &self.files {
                    for (offset, bytes) in image.pages.runs.iter().chain(&image.fresh.runs) {
                        remarks.push((image.kind, *offset, bytes.len() as u64));
                    }
                    // Checksum entries are remade from their pages.
                    let page = super::mapped::PAGE_BYTES as u64;
                    for (offset, bytes) in &image.sums.runs {
                        remarks.push((
                            image.kind,
                            offset / 4 * page,
                            bytes.len() as u64 / 4 * page,
                        ));
                    }
                }
            }
        }
        result
    }

    fn write(&self) -> Result<PersistStats, TableError> {
        let stats = PersistStats {
            page_bytes: self.page_bytes(),
            runs: self
                .files
                .iter()
                .map(|f| (f.pages.runs.len() + f.fresh.runs.len()) as u64)
                .sum(),
        };
        for image in &self.files {
            if image.fresh.runs.is_empty() {
                continue;
            }
            let path = self.dir.join(image.kind.file_name());
            for (offset, bytes) in &image.fresh.runs {
                image.file.write_all_at(bytes, *offset).map_err(io(&path))?;
            }
            image.file.sync_data().map_err(io(&path))?;
        }
        let journal_path = self.dir.join(JOURNAL_NAME);
        {
            let journal = self.journal();
            let file = crate::sys::open_or_create_private(
                OpenOptions::new().write(true).truncate(true),
                &journal_path,
            )
            .map_err(io(&journal_path))?;
            file.write_all_at(&journal, 0)
                .and_then(|()| file.sync_data())
                .map_err(io(&journal_path))?;
            sync_dir(&self.dir)?;
            for image in &self.files {
                let path = self.dir.join(image.kind.file_name());
                for (offset, bytes) in &image.pages.runs {
                    image.file.write_all_at(bytes, *offset).map_err(io(&path))?;
                }
                if !image.pages.runs.is_empty() {
                    image.file.sync_data().map_err(io(&path))?;
                }
                let sums_path = super::file::sums_path(&self.dir, image.kind);
                for (offset, bytes) in &image.sums.runs {
                    image
                        .sums_file
                        .write_all_at(bytes, *offset)
                        .map_err(io(&sums_path))?;
                }
                if !image.sums.runs.is_empty() {
                    image.sums_file.sync_data().map_err(io(&sums_path))?;
                }
            }
        }
        super::tenant_counts::write(&self.dir, self.meta.sequence, &self.tenants)?;
        write_both_meta_copies(&self.meta_file, &self.meta, &self.dir)?;
        std::fs::remove_file(&journal_path).map_err(io(&journal_path))?;
        Ok(stats)
    }
}

/// What `recover_journal` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalOutcome {
    /// No journal.
    None,
    /// A whole journal newer than the meta: its pages and meta were written.
    Replayed {
        /// Page bytes written.
        page_bytes: u64,
    },
    /// An incomplete journal (a crash while writing it) or a stale one: the
    /// files already hold a whole checkpoint; it was removed.
    Discarded,
}

/// Finishes a checkpoint that a crash interrupted, before the shard's files
/// are opened. `meta_sequence` is the sequence of the newest valid meta
/// copy.
pub fn recover_journal(dir: &Path, meta_sequence: u64) -> Result<JournalOutcome, TableError> {
    let path = dir.join(JOURNAL_NAME);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(JournalOutcome::None),
        Err(e) => return Err(TableError::io(&path, e)),
    };
    let Some(parsed) = parse(&bytes, dir) else {
        std::fs::remove_file(&path).map_err(io(&path))?;
        sync_dir(dir)?;
        return Ok(JournalOutcome::Discarded);
    };
    if parsed.meta.sequence <= meta_sequence {
        std::fs::remove_file(&path).map_err(io(&path))?;
        sync_dir(dir)?;
        return Ok(JournalOutcome::Discarded);
    }
    let mut page_bytes = 0;
    let mut touched: Vec<PathBuf> = Vec::new();
    for (file_path, offset, run) in &parsed.runs {
        let file = OpenOptions::new()
            .write(true)
            .open(file_path)
            .map_err(io(file_path))?;
        file.write_all_at(run, *offset).map_err(io(file_path))?;
        page_bytes += run.len() as u64;
        if !touched.contains(file_path) {
            touched.push(file_path.clone());
        }
    }
    for file_path in touched {
        File::open(&file_path)
            .and_then(|f| f.sync_data())
            .map_err(io(&file_path))?;
    }
    let meta_path = dir.join(super::meta_file::META_FILE_NAME);
    let meta_file = OpenOptions::new()
        .write(true)
        .open(&meta_path)
        .map_err(io(&meta_path))?;
    write_both_meta_copies(&meta_file, &parsed.meta, dir)?;
    std::fs::remove_file(&path).map_err(io(&path))?;
    sync_dir(dir)?;
    Ok(JournalOutcome::Replayed { page_bytes })
}

struct Parsed<'a> {
    meta: ShardMeta,
    runs: Vec<(PathBuf, u64, &'a [u8])>,
}

fn parse<'a>(bytes: &'a [u8], dir: &Path) -> Option<Parsed<'a>> {
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    let u64_at = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
    };
    if bytes.get(..8)? != MAGIC || u32_at(8)? != VERSION {
        return None;
    }
    if crc32c::crc32c(bytes.get(..60)?) != u32_at(60)? {
        return None;
    }
    let payload = usize::try_from(u64_at(32)?).ok()?;
    if bytes.len() != HEADER_BYTES.checked_add(payload)? || payload < META_BYTES + 8 {
        return None;
    }
    let end = bytes.len();
    if bytes[end - 4..] != END || crc32c::crc32c(&bytes[HEADER_BYTES..end - 8]) != u32_at(end - 8)?
    {
        return None;
    }
    let meta: ShardMeta =
        bytemuck::pod_read_unaligned(&bytes[HEADER_BYTES..HEADER_BYTES + META_BYTES]);
    if meta.sequence != u64_at(16)? || meta.checksum != super::layout::checksum_of(&meta) {
        return None;
    }
    let mut runs = Vec::new();
    let mut at = HEADER_BYTES + META_BYTES;
    for _ in 0..u32_at(24)? {
        let path = path_of(dir, u32_at(at)?)?;
        let length = u32_at(at + 4)? as usize;
        let offset = u64_at(at + 8)?;
        let run = bytes.get(at + RUN_HEADER_BYTES..at + RUN_HEADER_BYTES + length)?;
        runs.push((path, offset, run));
        at += RUN_HEADER_BYTES + length;
    }
    (at == end - 8).then_some(Parsed { meta, runs })
}
