//! Memory-mapped table files. This module holds all of x700's `unsafe`.
//!
//! The mapping is *private* (`MAP_PRIVATE`): changes stay in memory and
//! never reach the file by themselves, so the file always holds the last
//! checkpoint, whole, whatever happens to the process. Every write goes
//! through `item_mut`, which marks its 4 KiB page dirty; a checkpoint copies
//! the dirty pages out (`take_dirty`) and `table::checkpoint` writes them to
//! the file through a journal. Once that is committed, `give_back` drops
//! the private copies of those pages not written since, so the memory they
//! held becomes page cache (docs/STORAGE.md section 12).
//!
//! Each file is mapped once with a fixed *reserved* length far larger than
//! the file, so growing the file (with `posix_fallocate`, which reserves real
//! blocks and so reports a full disk as an error instead of a later SIGBUS)
//! never moves or remaps the mapping: binds and lookups carry on while a
//! table grows, and no pointer is ever invalidated. Only the first
//! `file_bytes` of the mapping are ever touched; the rest is address space.
#![allow(unsafe_code)]

use memmap2::{MmapMut, MmapOptions};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Why a file could not grow.
#[derive(Debug)]
pub enum GrowError {
    /// The file system is full (ENOSPC or EDQUOT).
    DiskFull,
    /// The request is beyond the file's reserved mapping.
    BeyondReservation,
    /// Any other failure.
    Io(io::Error),
}

/// A table file mapped read-write with room to grow in place.
pub struct MappedFile {
    path: PathBuf,
    file: File,
    map: MmapMut,
    file_bytes: usize,
    /// One bit per page of `file_bytes`: written since the last checkpoint.
    dirty: Vec<u64>,
    /// Set while any bit of `dirty` may be set.
    any_dirty: bool,
    /// One bit per page: taken by a checkpoint (`take_dirty`) and not given
    /// back yet. Once that checkpoint is committed, the file holds the same
    /// bytes, and `give_back` drops the private copy.
    unsaved: Vec<u64>,
    /// Pages marked in `unsaved`.
    unsaved_pages: usize,
    /// The word of `unsaved` where the next `give_back` goes on.
    give_back_cursor: usize,
}

/// Page size the dirty map tracks.
pub const PAGE_BYTES: usize = 4096;

/// Pages copied out of a mapping for a checkpoint: runs of consecutive
/// dirty pages, each with its file offset.
#[derive(Debug, Default)]
pub struct DirtyPages {
    /// (file offset, bytes) of each run.
    pub runs: Vec<(u64, Vec<u8>)>,
}

impl MappedFile {
    /// Creates a new file holding `first_page` and maps it. Fails if the file
    /// exists.
    pub fn create(path: &Path, first_page: &[u8], reserved_bytes: usize) -> io::Result<MappedFile> {
        let file = crate::sys::create_private(OpenOptions::new().read(true).write(true), path)?;
        let length = libc::off_t::try_from(first_page.len())
            .map_err(|_| io::Error::other("first page too large"))?;
        match crate::sys::fallocate(file.as_raw_fd(), 0, length) {
            0 => {}
            libc::ENOSPC | libc::EDQUOT => {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
            }
            errno => return Err(io::Error::from_raw_os_error(errno)),
        }
        // The first page goes to the file itself: the private mapping would
        // keep it in memory only.
        std::os::unix::fs::FileExt::write_all_at(&file, first_page, 0)?;
        file.sync_all()?;
        MappedFile::map(path, file, reserved_bytes)
    }

    /// Opens and maps an existing file. Its length is checked by the caller
    /// against what its header and the shard meta say it must hold.
    pub fn open(path: &Path, reserved_bytes: usize) -> io::Result<MappedFile> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        MappedFile::map(path, file, reserved_bytes)
    }

    fn map(path: &Path, file: File, reserved_bytes: usize) -> io::Result<MappedFile> {
        let file_bytes = usize::try_from(file.metadata()?.len())
            .map_err(|_| io::Error::other("file larger than the address space"))?;
        if file_bytes > reserved_bytes {
            return Err(io::Error::other(format!(
                "file is {file_bytes} bytes, more than the {reserved_bytes} this build maps"
            )));
        }
        // SAFETY: the mapping is private (copy on write) over a file that
        // only this process writes. The file changes only at a checkpoint,
        // which writes pages whose private copies this mapping already
        // holds, so what the mapping shows never changes under it. Bytes
        // beyond `file_bytes` are never accessed (every accessor slices to
        // `file_bytes`), so the reservation past the end of the file cannot
        // raise SIGBUS.
        //
        // What keeps other writers out, and what does not:
        // - the data directory's lock (`store::lock`: an `flock` on the
        //   directory, held for the process's life) excludes every other
        //   x700 process, serving or offline, since each takes it before
        //   opening a table; deleting the `LOCK` note does not release it;
        // - the directory's `0700` and files' `0600` modes keep other users
        //   out;
        // - nothing here stops a process that ignores the lock and runs as
        //   the same user or as root: `truncate(1)`, an editor, a restore
        //   copied over a live file. A file shortened under the mapping makes
        //   the next access to a page past its new end raise SIGBUS, which
        //   kills the node: a crash, not a wrong answer. A process that
        //   writes into a file instead may change pages this mapping has not
        //   copied yet; the lock and the modes exist to keep such processes
        //   out, and the next start verifies every page against its
        //   checksum before serving. docs/OPERATIONS.md says what to do.
        let map = unsafe { MmapOptions::new().len(reserved_bytes).map_copy(&file)? };
        Ok(MappedFile {
            path: path.to_path_buf(),
            file,
            map,
            file_bytes,
            dirty: vec![0; file_bytes.div_ceil(PAGE_BYTES).div_ceil(64)],
            any_dirty: false,
            unsaved: vec![0; file_bytes.div_ceil(PAGE_BYTES).div_ceil(64)],
            unsaved_pages: 0,
            give_back_cursor: 0,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's current length.
    pub fn file_bytes(&self) -> usize {
        self.file_bytes
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map[..self.file_bytes]
    }

    /// The whole `T` items stored from byte `offset` to the end of the file.
    /// The hot path: no checks beyond a debug assertion, because every
    /// condition was established when the file was opened or grown.
    #[inline(always)]
    pub fn items<T: bytemuck::Pod>(&self, offset: usize) -> &[T] {
        debug_assert!(
            offset <= self.file_bytes && offset.is_multiple_of(std::mem::align_of::<T>())
        );
        let count = (self.file_bytes - offset) / std::mem::size_of::<T>();
        // SAFETY: the mapping starts page-aligned and `offset` is a multiple
        // of T's alignment (table files put items at 4096), so the pointer is
        // aligned; `count` whole items lie within `file_bytes`, which are
        // mapped and backed by the file; T is Pod, so any bytes are a valid
        // T; the slice borrows `self`, so the mapping outlives it.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(offset).cast::<T>(), count) }
    }

    /// Item `index` of the `T` items stored from byte `offset`, writable;
    /// marks its page dirty for the next checkpoint.
    ///
    /// # Panics
    /// If the item lies beyond the file (a broken invariant: callers reserve
    /// room first).
    #[inline(always)]
    pub fn item_mut<T: bytemuck::Pod>(&mut self, offset: usize, index: usize) -> &mut T {
        let size = std::mem::size_of::<T>();
        let at = offset + index * size;
        assert!(at + size <= self.file_bytes, "item {index} beyond the file");
        debug_assert!(at.is_multiple_of(std::mem::align_of::<T>()));
        // Items never straddle pages (sizes divide 4096 and start at 4096).
        debug_assert_eq!(at / PAGE_BYTES, (at + size - 1) / PAGE_BYTES);
        let page = at / PAGE_BYTES;
        self.dirty[page / 64] |= 1 << (page % 64);
        self.any_dirty = true;
        // SAFETY: `at + size <= file_bytes`, which is mapped and backed by
        // the file; `at` is aligned for T (checked above in debug builds:
        // items start at page-aligned offsets and T's size is a multiple of
        // its alignment); T is Pod, so any bytes are a valid T; the mutable
        // borrow of `self` makes this the only reference into the mapping.
        unsafe { &mut *self.map.as_mut_ptr().add(at).cast::<T>() }
    }

    /// Copies out every page written since the last call and clears the
    /// dirty map: the checkpoint's image of this file.
    pub fn take_dirty(&mut self) -> DirtyPages {
        let mut pages = DirtyPages::default();
        if !self.any_dirty {
            return pages;
        }
        let page_count = self.file_bytes.div_ceil(PAGE_BYTES);
        let mut page = 0;
        while page < page_count {
            if self.dirty[page / 64] & (1 << (page % 64)) == 0 {
                page += 1;
                continue;
            }
            let start = page;
            while page < page_count && self.dirty[page / 64] & (1 << (page % 64)) != 0 {
                page += 1;
            }
            let from = start * PAGE_BYTES;
            let to = (page * PAGE_BYTES).min(self.file_bytes);
            pages.runs.push((from as u64, self.map[from..to].to_vec()));
        }
        for (unsaved, dirty) in self.unsaved.iter_mut().zip(&mut self.dirty) {
            let taken = std::mem::take(dirty);
            self.unsaved_pages += (taken & !*unsaved).count_ones() as usize;
            *unsaved |= taken;
        }
        self.any_dirty = false;
        pages
    }

    /// Marks `bytes` from `offset` dirty again (a checkpoint that failed).
    pub fn mark_dirty(&mut self, offset: u64, bytes: u64) {
        let first = usize::try_from(offset).unwrap_or(usize::MAX) / PAGE_BYTES;
        let end = usize::try_from(offset + bytes)
            .unwrap_or(usize::MAX)
            .min(self.file_bytes);
        for page in first..end.div_ceil(PAGE_BYTES) {
            self.dirty[page / 64] |= 1 << (page % 64);
            self.any_dirty = true;
        }
    }

    /// Zeroes, in the mapping, every page from byte `from` (rounded up to a
    /// page) to the end of the file that does not hold zeros already, and
    /// marks it dirty; returns how many pages it zeroed.
    pub fn zero_pages_from(&mut self, from: usize) -> usize {
        let first = from.div_ceil(PAGE_BYTES);
        let page_count = self.file_bytes.div_ceil(PAGE_BYTES);
        let mut zeroed = 0;
        for page in first..page_count {
            let start = page * PAGE_BYTES;
            let end = (start + PAGE_BYTES).min(self.file_bytes);
            let bytes = &mut self.map[start..end];
            if bytes.iter().any(|&b| b != 0) {
                bytes.fill(0);
                self.dirty[page / 64] |= 1 << (page % 64);
                self.any_dirty = true;
                zeroed += 1;
            }
        }
        zeroed
    }

    /// Gives back to the kernel the private copies of pages taken by
    /// checkpoints (`take_dirty`) and not written since, looking at most at
    /// `budget` of them; returns the pages looked at. Call it only once
    /// every checkpoint taken so far is committed to the file: the kernel
    /// then maps the file's page, with the same bytes, on the next touch,
    /// and the memory becomes page cache it can reclaim instead of
    /// anonymous memory it cannot. A page written since its checkpoint is
    /// kept (its next checkpoint takes it again).
    pub fn give_back(&mut self, budget: usize) -> usize {
        let mut looked = 0;
        let mut run: Option<(usize, usize)> = None;
        while self.unsaved_pages > 0 && looked < budget {
            if self.give_back_cursor >= self.unsaved.len() {
                self.give_back_cursor = 0;
            }
            let word = self.give_back_cursor;
            self.give_back_cursor += 1;
            let taken = std::mem::take(&mut self.unsaved[word]);
            let pages = taken.count_ones() as usize;
            self.unsaved_pages -= pages;
            // An empty word still costs a little: counted as one page, so
            // a budget bounds the time a call takes.
            looked += pages.max(1);
            let mut clean = taken & !self.dirty[word];
            while clean != 0 {
                let page = word * 64 + clean.trailing_zeros() as usize;
                clean &= clean - 1;
                run = match run {
                    Some((first, end)) if end == page => Some((first, page + 1)),
                    Some((first, end)) => {
                        self.drop_private_pages(first, end);
                        Some((page, page + 1))
                    }
                    None => Some((page, page + 1)),
                };
            }
        }
        if let Some((first, end)) = run {
            self.drop_private_pages(first, end);
        }
        looked
    }

    /// True while pages taken by a checkpoint wait for `give_back`.
    pub fn has_unsaved(&self) -> bool {
        self.unsaved_pages > 0
    }

    /// Drops the private copies of pages `first..end`: `MADV_DONTNEED` on
    /// a private file mapping makes the next access map the file's page.
    fn drop_private_pages(&mut self, first: usize, end: usize) {
        let end = end.min(self.file_bytes.div_ceil(PAGE_BYTES));
        if first >= end {
            return;
        }
        // SAFETY: the range lies within the mapping (pages of `file_bytes`,
        // which the reservation covers) and `&mut self` guarantees no
        // reference into it is alive. The pages were not written since a
        // committed checkpoint wrote the same bytes to the file, so what
        // the mapping shows afterwards is what it showed before.
        let status = unsafe {
            libc::madvise(
                self.map.as_mut_ptr().add(first * PAGE_BYTES).cast(),
                (end - first) * PAGE_BYTES,
                libc::MADV_DONTNEED,
            )
        };
        // Failure only leaves the private copy in place: memory, not data.
        debug_assert_eq!(status, 0, "madvise: {}", io::Error::last_os_error());
    }

    /// True if page `page` was written since the last `take_dirty`.
    pub fn is_page_dirty(&self, page: usize) -> bool {
        self.dirty
            .get(page / 64)
            .is_some_and(|word| word & (1 << (page % 64)) != 0)
    }

    /// True if a page was written since the last `take_dirty`.
    pub fn is_dirty(&self) -> bool {
        self.any_dirty
    }

    /// A second handle on the file, for writing a checkpoint from another
    /// thread.
    pub fn file_handle(&self) -> io::Result<File> {
        self.file.try_clone()
    }

    /// Grows the file to at least `bytes`, allocating real blocks. Does
    /// nothing if it is already that long.
    pub fn grow_to(&mut self, bytes: usize) -> Result<(), GrowError> {
        if bytes <= self.file_bytes {
            return Ok(());
        }
        if bytes > self.map.len() {
            return Err(GrowError::BeyondReservation);
        }
        let offset =
            libc::off_t::try_from(self.file_bytes).map_err(|_| GrowError::BeyondReservation)?;
        let length = libc::off_t::try_from(bytes - self.file_bytes)
            .map_err(|_| GrowError::BeyondReservation)?;
        let status = crate::sys::fallocate(self.file.as_raw_fd(), offset, length);
        match status {
            0 => {
                self.file_bytes = bytes;
                let words = bytes.div_ceil(PAGE_BYTES).div_ceil(64);
                self.dirty.resize(words, 0);
                self.unsaved.resize(words, 0);
                Ok(())
            }
            libc::ENOSPC | libc::EDQUOT => Err(GrowError::DiskFull),
            errno => Err(GrowError::Io(io::Error::from_raw_os_error(errno))),
        }
    }
}

/// Hints the CPU to start loading the cache line holding `value`.
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: prefetch never faults and has no architectural effect; the
        // pointer comes from a live reference.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(value).cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
