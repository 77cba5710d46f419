//! A typed table file: header page checked on open, then an array of `Pod`
//! items that grows in place.

use super::error::TableError;
use super::layout::{checksum_of, FileHeader, FileKind, FILE_MAGIC, FORMAT_VERSION, HEADER_BYTES};
use super::mapped::{DirtyPages, GrowError, MappedFile, PAGE_BYTES};
use super::page_check::PageCheck;
use bytemuck::Pod;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Identity every file of a shard must agree on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardIdentity {
    /// The shard.
    pub shard_id: u16,
    /// Shards in the directory.
    pub shard_count: u16,
    /// The directory's nonce.
    pub store_nonce: u64,
}

/// Growth step: at least this many bytes (one huge page's worth) ...
const GROW_BYTES_MIN: usize = 64 * 1024;
/// ... or 1/32 of the file, whichever is larger, so free space stays near 3%.
const GROW_FRACTION: usize = 32;

/// A table file of `T` items.
pub struct TableFile<T> {
    mapped: MappedFile,
    kind: FileKind,
    item: PhantomData<T>,
    /// CRC32C of each 4 KiB page as of the last checkpoint (the `.sum`
    /// file); pages past its end were never written and hold zeros. The
    /// commit thread of a checkpoint updates it (`TakenPages::collect`).
    sums: Arc<Mutex<Vec<u32>>>,
    /// Entries the `.sum` file holds (or will, once the last capture is
    /// persisted).
    sums_on_disk: usize,
    /// While pages are checked after the start (`arm_check`): what is
    /// left, checked on first touch by `item` and `item_mut`.
    check: Option<Arc<PageCheck>>,
}

/// CRC32C of a page of zeros: what an unwritten page must check to.
pub fn zero_page_sum() -> u32 {
    crc32c::crc32c(&[0u8; PAGE_BYTES])
}

/// The page-checksum file of a table file: `<name>.sum`, one little-endian
/// CRC32C per 4 KiB page of the table file, page 0 (the header) first.
/// Written only by checkpoints, through their journal.
pub fn sums_path(dir: &Path, kind: FileKind) -> std::path::PathBuf {
    dir.join(format!("{}.sum", kind.file_name()))
}

fn read_sums(dir: &Path, kind: FileKind) -> Result<Vec<u32>, TableError> {
    let path = sums_path(dir, kind);
    let bytes = std::fs::read(&path).map_err(|e| TableError::io(&path, e))?;
    if !bytes.len().is_multiple_of(4) {
        return Err(TableError::Truncated {
            path: path.display().to_string(),
            file_bytes: bytes.len() as u64,
            needed_bytes: bytes.len().next_multiple_of(4) as u64,
        });
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

impl<T: Pod> TableFile<T> {
    /// Creates the file with its header page and no items.
    pub fn create(
        dir: &Path,
        kind: FileKind,
        identity: ShardIdentity,
        created_at_s: u64,
    ) -> Result<TableFile<T>, TableError> {
        assert_eq!(kind.item_bytes(), std::mem::size_of::<T>());
        let path = dir.join(kind.file_name());
        let mut header = FileHeader {
            magic: FILE_MAGIC,
            format_version: FORMAT_VERSION,
            file_kind: kind as u32,
            header_bytes: HEADER_BYTES as u32,
            item_bytes: kind.item_bytes() as u32,
            shard_id: u32::from(identity.shard_id),
            shard_count: u32::from(identity.shard_count),
            store_nonce: identity.store_nonce,
            created_at_s,
            reserved: [0; 12],
            checksum: 0,
        };
        header.checksum = checksum_of(&header);
        let mut page = vec![0u8; HEADER_BYTES];
        page[..64].copy_from_slice(bytemuck::bytes_of(&header));
        let mapped = MappedFile::create(&path, &page, reserved_bytes(kind))
            .map_err(|source| TableError::io(&path, source))?;
        if kind.is_lookup_path() {
            mapped.prefer_huge_pages();
        }
        let sums = vec![crc32c::crc32c(&page)];
        let sums_file = sums_path(dir, kind);
        crate::sys::open_or_create_private(
            std::fs::OpenOptions::new().write(true).truncate(true),
            &sums_file,
        )
        .and_then(|mut f| {
            std::io::Write::write_all(&mut f, &sums[0].to_le_bytes())?;
            f.sync_all()
        })
        .map_err(|source| TableError::io(&sums_file, source))?;
        Ok(TableFile {
            mapped,
            kind,
            item: PhantomData,
            sums_on_disk: sums.len(),
            sums: Arc::new(Mutex::new(sums)),
            check: None,
        })
    }

    /// Opens the file and checks its header against what the shard expects.
    /// Never maps a file blindly: wrong magic, version, kind, sizes, identity
    /// or checksum are each refused with the reason.
    pub fn open(
        dir: &Path,
        kind: FileKind,
        identity: ShardIdentity,
    ) -> Result<TableFile<T>, TableError> {
        let path = dir.join(kind.file_name());
        let mapped = MappedFile::open(&path, reserved_bytes(kind))
            .map_err(|source| TableError::io(&path, source))?;
        if kind.is_lookup_path() {
            // Before the first touch: the start's page check faults the
            // file in, and what it faults in as 2 MiB stays so.
            mapped.prefer_huge_pages();
        }
        if mapped.file_bytes() < HEADER_BYTES {
            return Err(TableError::Truncated {
                path: path.display().to_string(),
                file_bytes: mapped.file_bytes() as u64,
                needed_bytes: HEADER_BYTES as u64,
            });
        }
        let header: FileHeader = bytemuck::pod_read_unaligned(&mapped.bytes()[..64]);
        let bad = |reason: String| TableError::BadHeader {
            path: path.display().to_string(),
            reason,
        };
        if header.magic != FILE_MAGIC {
            return Err(bad(format!(
                "magic is {:02x?}, not an x700 table file",
                header.magic
            )));
        }
        if header.checksum != checksum_of(&header) {
            return Err(bad(format!(
                "header checksum {:#010x} does not match its contents ({:#010x})",
                header.checksum,
                checksum_of(&header)
            )));
        }
        if header.format_version != FORMAT_VERSION {
            return Err(TableError::WrongVersion {
                path: path.display().to_string(),
                found: header.format_version,
                expected: FORMAT_VERSION,
            });
        }
        if header.file_kind != kind as u32
            || header.header_bytes as usize != HEADER_BYTES
            || header.item_bytes as usize != kind.item_bytes()
        {
            return Err(bad(format!(
                "kind {} / header {} / item {} bytes; expected kind {} / {} / {}",
                header.file_kind,
                header.header_bytes,
                header.item_bytes,
                kind as u32,
                HEADER_BYTES,
                kind.item_bytes()
            )));
        }
        if header.shard_id != u32::from(identity.shard_id)
            || header.shard_count != u32::from(identity.shard_count)
            || header.store_nonce != identity.store_nonce
        {
            return Err(bad(format!(
                "belongs to shard {}/{} of store {:#x}, expected shard {}/{} of store {:#x}",
                header.shard_id,
                header.shard_count,
                header.store_nonce,
                identity.shard_id,
                identity.shard_count,
                identity.store_nonce
            )));
        }
        if !(mapped.file_bytes() - HEADER_BYTES).is_multiple_of(kind.item_bytes()) {
            return Err(bad(format!(
                "length {} is not the header plus whole {}-byte items",
                mapped.file_bytes(),
                kind.item_bytes()
            )));
        }
        let sums = read_sums(dir, kind)?;
        Ok(TableFile {
            mapped,
            kind,
            item: PhantomData,
            sums_on_disk: sums.len(),
            sums: Arc::new(Mutex::new(sums)),
            check: None,
        })
    }

    /// Items the file has room for.
    pub fn capacity(&self) -> u32 {
        let items = (self.mapped.file_bytes() - HEADER_BYTES) / std::mem::size_of::<T>();
        // Reservations keep every file under 2^32 items (see reserved_bytes).
        u32::try_from(items).unwrap_or(u32::MAX)
    }

    /// Fails with `Truncated` unless the file holds at least `items`.
    pub fn require(&self, items: u32) -> Result<(), TableError> {
        if items > self.capacity() {
            return Err(TableError::Truncated {
                path: self.mapped.path().display().to_string(),
                file_bytes: self.mapped.file_bytes() as u64,
                needed_bytes: (HEADER_BYTES + items as usize * std::mem::size_of::<T>()) as u64,
            });
        }
        Ok(())
    }

    /// The items.
    #[inline]
    pub fn items(&self) -> &[T] {
        self.mapped.items(HEADER_BYTES)
    }

    /// Item `index`, writable (its page is marked for the next checkpoint).
    /// While pages are checked after the start, its page is checked first.
    #[inline]
    pub fn item_mut(&mut self, index: usize) -> &mut T {
        if self.check.as_ref().is_some_and(|check| !check.is_done()) {
            self.check_page_of(index);
        }
        self.mapped.item_mut(HEADER_BYTES, index)
    }

    /// The file's bytes as the mapping holds them (tests).
    #[cfg(test)]
    pub fn mapped_bytes(&self) -> &[u8] {
        self.mapped.bytes()
    }

    /// Item `index`. While pages are checked after the start, its page is
    /// checked first.
    #[inline]
    pub fn item(&self, index: usize) -> &T {
        if self.check.as_ref().is_some_and(|check| !check.is_done()) {
            self.check_page_of(index);
        }
        &self.items()[index]
    }

    /// Checks the page holding item `index` now; a damaged page stops the
    /// process (`page_check::refuse`).
    #[cold]
    fn check_page_of(&self, index: usize) {
        let page = (HEADER_BYTES + index * std::mem::size_of::<T>()) / PAGE_BYTES;
        self.check_page(page);
    }

    fn check_page(&self, page: usize) {
        let Some(check) = &self.check else { return };
        if check.is_checked(page) {
            return;
        }
        let bytes = self.mapped.bytes();
        let start = (page * PAGE_BYTES).min(bytes.len());
        let end = (start + PAGE_BYTES).min(bytes.len());
        if let Err(error) = check.check(page, &bytes[start..end]) {
            super::page_check::refuse(&error);
        }
    }

    /// From now on, pages are checked on first touch instead of all at
    /// once (pages written since the checkpoint need none); returns the
    /// check, for a background thread to finish (`PageCheck::check_all`).
    pub fn arm_check(&mut self) -> Arc<PageCheck> {
        let pages = self.mapped.file_bytes().div_ceil(PAGE_BYTES);
        let dir = self.mapped.path().parent().unwrap_or(Path::new("."));
        let check = Arc::new(PageCheck::new(
            self.mapped.path().to_path_buf(),
            sums_path(dir, self.kind),
            &self
                .sums
                .lock()
                .map(|sums| sums.clone())
                .unwrap_or_default(),
            pages,
            |page| self.mapped.is_page_dirty(page),
        ));
        self.check = Some(Arc::clone(&check));
        check
    }

    /// Checks, here and now, every page the armed check has not checked
    /// yet (before something reads the whole file).
    pub fn finish_check(&self) {
        if self.check.as_ref().is_some_and(|check| !check.is_done()) {
            for page in 0..self.mapped.file_bytes().div_ceil(PAGE_BYTES) {
                self.check_page(page);
            }
        }
    }

    /// The pages written since the last call, for a checkpoint (see
    /// `MappedFile::take_capture`): copied out, with the runs of the `.sum`
    /// file that describe them, by `TakenPages::collect` in the commit
    /// thread.
    pub fn take_pages(&mut self) -> TakenPages {
        let capture = self.mapped.take_capture();
        let page_count = self.mapped.file_bytes().div_ceil(PAGE_BYTES);
        let sums_on_disk = self.sums_on_disk;
        self.sums_on_disk = sums_on_disk.max(page_count);
        TakenPages {
            capture,
            sums: Arc::clone(&self.sums),
            sums_on_disk,
            page_count,
        }
    }

    /// Checks every page of the file (except those written since the last
    /// checkpoint) against its checksum: the first page that does not match
    /// is reported with its offset.
    pub fn verify_pages(&self) -> Result<(), TableError> {
        let sums = self
            .sums
            .lock()
            .map(|sums| sums.clone())
            .unwrap_or_default();
        let bytes = self.mapped.bytes();
        let zero = zero_page_sum();
        for (page, content) in bytes.chunks(PAGE_BYTES).enumerate() {
            // A page written since the last checkpoint has no checksum yet.
            if self.mapped.is_page_dirty(page) {
                continue;
            }
            let expected = sums.get(page).copied().unwrap_or(zero);
            if page_sum(content) != expected {
                return Err(TableError::Corrupt {
                    path: self.mapped.path().display().to_string(),
                    offset: (page * PAGE_BYTES) as u64,
                    reason: format!(
                        "page {page} does not match its checksum in {} (damaged on disk)",
                        sums_path(
                            self.mapped.path().parent().unwrap_or(Path::new(".")),
                            self.kind
                        )
                        .display()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Clears what lies past `referenced_end`, the end of what the
    /// checkpoint refers to: nothing there belongs to it, and the tables
    /// take that space as zeros. A checkpoint that failed after writing its
    /// fresh pages in place (`checkpoint` module: a full disk at the
    /// journal) leaves them there, without their checksums; they are zeroed
    /// here, in the mapping, and written with their checksums by the next
    /// checkpoint. Returns the pages cleared.
    pub fn clear_unreferenced(&mut self, referenced_end: u64) -> usize {
        self.mapped
            .zero_pages_from(usize::try_from(referenced_end).unwrap_or(usize::MAX))
    }

    /// Gives back private copies of committed pages (see
    /// `MappedFile::give_back`); returns the pages looked at.
    pub fn give_back(&mut self, budget: usize) -> usize {
        self.mapped.give_back(budget)
    }

    /// Marks a byte range dirty again (see `MappedFile::mark_dirty`).
    pub fn mark_dirty(&mut self, offset: u64, bytes: u64) {
        self.mapped.mark_dirty(offset, bytes);
    }

    /// A write handle on the `.sum` file, for the checkpoint writer.
    pub fn sums_handle(&self) -> Result<std::fs::File, TableError> {
        let dir = self.mapped.path().parent().unwrap_or(Path::new("."));
        let path = sums_path(dir, self.kind);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| TableError::io(&path, e))
    }

    /// True if an item was written since the last `take_capture`.
    pub fn is_dirty(&self) -> bool {
        self.mapped.is_dirty()
    }

    /// A second handle on the file, for the checkpoint writer.
    pub fn file_handle(&self) -> Result<std::fs::File, TableError> {
        self.mapped
            .file_handle()
            .map_err(|source| TableError::io(self.mapped.path(), source))
    }

    /// Makes room for at least `items`, growing by a step that keeps growth
    /// rare and free space small. New items are zero. Near the end of the
    /// reservation or of the disk it settles for exactly what is needed, so
    /// a nearly full disk fails a growth only when `items` themselves do
    /// not fit, not when the step does.
    pub fn reserve(&mut self, items: u32) -> Result<(), GrowError> {
        if items <= self.capacity() {
            return Ok(());
        }
        let needed = HEADER_BYTES + items as usize * std::mem::size_of::<T>();
        let current = self.mapped.file_bytes();
        let step = (current / GROW_FRACTION).max(GROW_BYTES_MIN);
        let item = std::mem::size_of::<T>();
        let target = needed.max(current + step);
        let target = HEADER_BYTES + (target - HEADER_BYTES).div_ceil(item) * item;
        match self.mapped.grow_to(target) {
            Err(GrowError::BeyondReservation | GrowError::DiskFull) => self.mapped.grow_to(needed),
            other => other,
        }
    }

    /// The most items this file can ever hold (its reserved mapping).
    pub fn items_max(&self) -> u32 {
        let items = (reserved_bytes(self.kind) - HEADER_BYTES) / std::mem::size_of::<T>();
        u32::try_from(items).unwrap_or(u32::MAX)
    }

    /// Bytes the file occupies.
    pub fn file_bytes(&self) -> u64 {
        self.mapped.file_bytes() as u64
    }

    /// Path, for messages.
    pub fn path(&self) -> &Path {
        self.mapped.path()
    }

    /// What the file holds.
    pub fn kind(&self) -> FileKind {
        self.kind
    }
}

/// Address space reserved per file: enough for the largest shard the 24-bit
/// slot numbers allow, so a file never needs remapping.
fn reserved_bytes(kind: FileKind) -> usize {
    let slots = 1usize << 24;
    HEADER_BYTES
        + match kind {
            FileKind::Records => slots * kind.item_bytes(),
            FileKind::Cold => slots * kind.item_bytes(),
            // Two index entries per slot at most, 16 per bucket, load >= 0.5.
            FileKind::Index => slots / 4 * kind.item_bytes(),
            // Overflow bucket numbers are 24 bits.
            FileKind::Overflow => slots * kind.item_bytes(),
        }
}

/// CRC32C of one page; a short last page counts as if padded with zeros.
pub(super) fn page_sum(page: &[u8]) -> u32 {
    if page.len() == PAGE_BYTES {
        crc32c::crc32c(page)
    } else {
        crc32c::crc32c_append(crc32c::crc32c(page), &vec![0u8; PAGE_BYTES - page.len()])
    }
}

/// A file's pages taken by a checkpoint (`TableFile::take_pages`), still to
/// be copied out of the mapping.
pub struct TakenPages {
    capture: Arc<super::mapped::PageCapture>,
    sums: Arc<Mutex<Vec<u32>>>,
    /// Entries the `.sum` file held before this checkpoint.
    sums_on_disk: usize,
    /// Pages of the file at the capture.
    page_count: usize,
}

impl TakenPages {
    /// Copies the pages out (in the commit thread) and makes the runs of
    /// the `.sum` file that describe them (offset in the sum file,
    /// little-endian CRCs); the file's in-memory sums are updated.
    pub fn collect(self) -> (DirtyPages, DirtyPages) {
        let pages = self.capture.collect();
        let mut sum_runs = DirtyPages::default();
        let Ok(mut sums) = self.sums.lock() else {
            return (pages, sum_runs);
        };
        for (offset, bytes) in &pages.runs {
            let first = usize::try_from(*offset).unwrap_or(usize::MAX) / PAGE_BYTES;
            let mut run = Vec::with_capacity(bytes.len() / PAGE_BYTES * 4 + 4);
            for (i, page) in bytes.chunks(PAGE_BYTES).enumerate() {
                let sum = page_sum(page);
                let at = first + i;
                if sums.len() <= at {
                    sums.resize(at + 1, zero_page_sum());
                }
                sums[at] = sum;
                run.extend_from_slice(&sum.to_le_bytes());
            }
            sum_runs.runs.push((first as u64 * 4, run));
        }
        // The file grew: its new pages (zeros unless written) get their
        // entries too, so the sum file never has a hole.
        if sums.len() < self.page_count {
            sums.resize(self.page_count, zero_page_sum());
        }
        if self.sums_on_disk < sums.len() {
            let tail: Vec<u8> = sums[self.sums_on_disk..]
                .iter()
                .flat_map(|s| s.to_le_bytes())
                .collect();
            sum_runs.runs.push((self.sums_on_disk as u64 * 4, tail));
        }
        (pages, sum_runs)
    }
}
