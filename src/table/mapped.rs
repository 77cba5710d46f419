//! Memory-mapped table files. This module holds all of x700's `unsafe`.
//!
//! The mapping is *private* (`MAP_PRIVATE`): changes stay in memory and
//! never reach the file by themselves, so the file always holds the last
//! checkpoint, whole, whatever happens to the process. Every write goes
//! through `item_mut`, which marks its 4 KiB page dirty; a checkpoint takes
//! the dirty pages (`take_capture`), its commit thread copies them out
//! (`PageCapture`: a write to a page not copied yet copies it first) and
//! `table::checkpoint` writes them to the file through a journal. Once that
//! is committed, `give_back` drops the private copies of those pages not
//! written since, so the memory they held becomes page cache
//! (docs/STORAGE.md section 12).
//!
//! Each file is mapped once with a fixed *reserved* length far larger than
//! the file, so growing the file (with `posix_fallocate`, which reserves real
//! blocks and so reports a full disk as an error instead of a later SIGBUS)
//! never moves or remaps the mapping: binds and lookups carry on while a
//! table grows, and no pointer is ever invalidated. Only the first
//! `file_bytes` of the mapping are ever touched; the rest is address space.
#![allow(unsafe_code)]

use memmap2::{MmapMut, MmapOptions};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

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
    /// The mapping, shared with the commit thread of a checkpoint, which
    /// copies the captured pages out of it (`PageCapture`).
    map: Arc<MmapMut>,
    /// The last capture, while it has pages not copied out yet: a write to
    /// one of them copies it first.
    capture: Option<Arc<PageCapture>>,
    file_bytes: usize,
    /// One bit per page of `file_bytes`: written since the last checkpoint.
    dirty: Vec<u64>,
    /// Set while any bit of `dirty` may be set.
    any_dirty: bool,
    /// One bit per page: taken by a checkpoint (`take_capture`) and not given
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
        let map = Arc::new(unsafe { MmapOptions::new().len(reserved_bytes).map_copy(&file)? });
        Ok(MappedFile {
            path: path.to_path_buf(),
            file,
            map,
            capture: None,
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
        // SAFETY: the first `file_bytes` of the mapping are mapped and
        // backed by the file; the slice borrows `self`, so no write through
        // `item_mut` (which needs `&mut self`) overlaps it. The commit
        // thread only reads.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.file_bytes) }
    }

    /// The mapping's bytes `from..to`, writable (`from..to` within
    /// `file_bytes`; `&mut self` keeps every other reference out).
    fn bytes_mut(&mut self, from: usize, to: usize) -> &mut [u8] {
        assert!(from <= to && to <= self.file_bytes);
        // SAFETY: in bounds (above); the mapping is writable (a private
        // read-write mapping); `&mut self` means no other reference into
        // it exists; the commit thread reads only pages of a capture, and
        // only those not written since (the capture protocol).
        unsafe { std::slice::from_raw_parts_mut(self.map.as_ptr().cast_mut().add(from), to - from) }
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
        if let Some(capture) = &self.capture {
            if capture.left.load(Ordering::Acquire) == 0 {
                self.capture = None;
            } else {
                capture.before_write(page);
            }
        }
        self.dirty[page / 64] |= 1 << (page % 64);
        self.any_dirty = true;
        // SAFETY: `at + size <= file_bytes`, which is mapped and backed by
        // the file; `at` is aligned for T (checked above in debug builds:
        // items start at page-aligned offsets and T's size is a multiple of
        // its alignment); T is Pod, so any bytes are a valid T; the mutable
        // borrow of `self` makes this the only reference into the mapping.
        // A captured page not yet copied out was copied just above.
        unsafe { &mut *self.map.as_ptr().cast_mut().add(at).cast::<T>() }
    }

    /// Takes every page written since the last call for a checkpoint and
    /// clears the dirty map. Nothing is copied here, so the loop that owns
    /// the shard does not wait for it: the commit thread copies the pages
    /// out (`PageCapture::collect`), and a write to a page it has not
    /// copied yet copies that page first (`item_mut`).
    pub fn take_capture(&mut self) -> Arc<PageCapture> {
        // A capture whose commit never copied its pages out (an image
        // dropped on an error path) stops being protected here: copy what
        // is left of it now.
        if let Some(previous) = self.capture.take() {
            previous.save_all();
        }
        let words = self.dirty.len();
        let mut captured = vec![0u64; words];
        let mut pages = 0;
        if self.any_dirty {
            for (word, (dirty, unsaved)) in self.dirty.iter_mut().zip(&mut self.unsaved).enumerate()
            {
                let taken = std::mem::take(dirty);
                self.unsaved_pages += (taken & !*unsaved).count_ones() as usize;
                *unsaved |= taken;
                captured[word] = taken;
                pages += taken.count_ones() as usize;
            }
            self.any_dirty = false;
        }
        let capture = Arc::new(PageCapture {
            map: Arc::clone(&self.map),
            file_bytes: self.file_bytes,
            pending: captured.iter().map(|&w| AtomicU64::new(w)).collect(),
            captured,
            left: AtomicUsize::new(pages),
            saved: Mutex::new(HashMap::new()),
        });
        self.capture = (pages > 0).then(|| Arc::clone(&capture));
        capture
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
            let bytes = self.bytes_mut(start, end);
            if bytes.iter().any(|&b| b != 0) {
                bytes.fill(0);
                self.dirty[page / 64] |= 1 << (page % 64);
                self.any_dirty = true;
                zeroed += 1;
            }
        }
        zeroed
    }

    /// Asks the kernel to back the mapping with 2 MiB pages where it can
    /// (`MADV_HUGEPAGE`). On a file mapping this makes a fault read the file
    /// into a 2 MiB page-cache folio and map it with one page-table entry,
    /// so a random lookup misses the TLB far less often. Pages written
    /// privately are still copied 4 KiB at a time (and the 2 MiB entry over
    /// them is split), so anonymous memory does not grow. Kernels or file
    /// systems that cannot do it keep 4 KiB pages: a speed-up, never a
    /// requirement, so a refusal is ignored.
    pub fn prefer_huge_pages(&self) {
        // SAFETY: advice over the mapping's own reserved range; it changes
        // no content.
        let _ = unsafe {
            libc::madvise(
                self.map.as_ptr().cast_mut().cast(),
                self.map.len(),
                libc::MADV_HUGEPAGE,
            )
        };
    }

    /// Gives back to the kernel the private copies of pages taken by
    /// checkpoints (`take_capture`) and not written since, looking at most at
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
                self.map.as_ptr().cast_mut().add(first * PAGE_BYTES).cast(),
                (end - first) * PAGE_BYTES,
                libc::MADV_DONTNEED,
            )
        };
        // Failure only leaves the private copy in place: memory, not data.
        debug_assert_eq!(status, 0, "madvise: {}", io::Error::last_os_error());
    }

    /// True if page `page` was written since the last `take_capture`.
    pub fn is_page_dirty(&self, page: usize) -> bool {
        self.dirty
            .get(page / 64)
            .is_some_and(|word| word & (1 << (page % 64)) != 0)
    }

    /// True if a page was written since the last `take_capture`.
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

/// The pages a checkpoint took from one file, still in the mapping: the
/// commit thread copies them out (`collect`); the shard's loop copies a
/// page first when it is about to write one not copied yet
/// (`before_write`). Either way each page is copied once, as it was at the
/// capture, under `saved`'s lock.
pub struct PageCapture {
    map: Arc<MmapMut>,
    /// The file's length at the capture.
    file_bytes: usize,
    /// One bit per page taken.
    captured: Vec<u64>,
    /// One bit per page taken and not copied yet.
    pending: Vec<AtomicU64>,
    /// Pages not copied yet.
    left: AtomicUsize,
    /// Pages the loop copied before writing them, by page number.
    saved: Mutex<HashMap<usize, Box<[u8]>>>,
}

impl PageCapture {
    fn is_pending(&self, page: usize) -> bool {
        self.pending
            .get(page / 64)
            .is_some_and(|word| word.load(Ordering::Acquire) & (1 << (page % 64)) != 0)
    }

    /// The page's bytes as the mapping holds them now, bounded by the
    /// file's length at the capture.
    fn copy_page(&self, page: usize) -> Box<[u8]> {
        let from = page * PAGE_BYTES;
        let to = (from + PAGE_BYTES).min(self.file_bytes);
        let mut copy = vec![0u8; to - from].into_boxed_slice();
        // SAFETY: `from..to` lies within the file's bytes at the capture,
        // which stay mapped (the mapping never moves or shrinks, and this
        // capture holds it alive). Nobody writes the page meanwhile: the
        // caller holds `saved`'s lock and the page is pending, and the loop
        // writes a pending page only after copying it under the same lock.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.map.as_ptr().add(from),
                copy.as_mut_ptr(),
                to - from,
            );
        }
        copy
    }

    /// Marks `page` copied (its bit was set).
    fn done(&self, page: usize) {
        self.pending[page / 64].fetch_and(!(1 << (page % 64)), Ordering::Release);
        self.left.fetch_sub(1, Ordering::AcqRel);
    }

    /// Called by the loop before it writes `page`: if the page is one of
    /// the capture's and not copied yet, copies it now.
    #[inline]
    fn before_write(&self, page: usize) {
        if self.is_pending(page) {
            self.save(page);
        }
    }

    #[cold]
    fn save(&self, page: usize) {
        let Ok(mut saved) = self.saved.lock() else {
            return;
        };
        if self.is_pending(page) {
            saved.insert(page, self.copy_page(page));
            self.done(page);
        }
    }

    /// Copies every page not copied yet (see `take_capture`).
    fn save_all(&self) {
        for (word, &bits) in self.captured.iter().enumerate() {
            let mut bits = bits;
            while bits != 0 {
                let page = word * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                self.before_write(page);
            }
        }
    }

    /// Copies out every page taken, as it was at the capture: runs of
    /// consecutive pages with their file offsets. Runs in the commit
    /// thread; the loop may write other pages meanwhile.
    pub fn collect(&self) -> DirtyPages {
        let mut pages = DirtyPages::default();
        let mut run: Option<(usize, Vec<u8>)> = None;
        for (word, &bits) in self.captured.iter().enumerate() {
            let mut bits = bits;
            while bits != 0 {
                let page = word * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let bytes = match self.saved.lock() {
                    Ok(mut saved) => {
                        if self.is_pending(page) {
                            let copy = self.copy_page(page);
                            self.done(page);
                            copy
                        } else {
                            saved.remove(&page).unwrap_or_else(|| self.copy_page(page))
                        }
                    }
                    // A loop that panicked holding the lock: the node is
                    // going down; copy what the mapping holds.
                    Err(_) => self.copy_page(page),
                };
                run = match run {
                    Some((first, mut data))
                        if first + data.len() / PAGE_BYTES == page
                            && data.len() % PAGE_BYTES == 0 =>
                    {
                        data.extend_from_slice(&bytes);
                        Some((first, data))
                    }
                    Some((first, data)) => {
                        pages.runs.push(((first * PAGE_BYTES) as u64, data));
                        Some((page, bytes.into_vec()))
                    }
                    None => Some((page, bytes.into_vec())),
                };
            }
        }
        if let Some((first, data)) = run {
            pages.runs.push(((first * PAGE_BYTES) as u64, data));
        }
        pages
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
