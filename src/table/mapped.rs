//! Memory-mapped table files. This module holds all of x700's `unsafe`.
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
}

impl MappedFile {
    /// Creates a new file holding `first_page` and maps it. Fails if the file
    /// exists.
    pub fn create(path: &Path, first_page: &[u8], reserved_bytes: usize) -> io::Result<MappedFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        let mut mapped = MappedFile::map(path, file, reserved_bytes)?;
        match mapped.grow_to(first_page.len()) {
            Ok(()) => {}
            Err(GrowError::Io(error)) => return Err(error),
            Err(GrowError::DiskFull) => {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
            }
            Err(GrowError::BeyondReservation) => {
                return Err(io::Error::other("first page beyond reservation"))
            }
        }
        mapped.bytes_mut()[..first_page.len()].copy_from_slice(first_page);
        Ok(mapped)
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
        // SAFETY: the mapping is shared with the file, which only this process
        // writes: the data directory's LOCK (store::lock) excludes every other
        // x700 process, and the files are not meant to be touched by anything
        // else while locked. Bytes beyond `file_bytes` are never accessed
        // (every accessor slices to `file_bytes`), so the reservation past the
        // end of the file cannot raise SIGBUS.
        let map = unsafe { MmapOptions::new().len(reserved_bytes).map_mut(&file)? };
        Ok(MappedFile {
            path: path.to_path_buf(),
            file,
            map,
            file_bytes,
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

    /// The file's bytes, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.map[..self.file_bytes]
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

    /// The whole `T` items from byte `offset` to the end, writable.
    #[inline(always)]
    pub fn items_mut<T: bytemuck::Pod>(&mut self, offset: usize) -> &mut [T] {
        debug_assert!(
            offset <= self.file_bytes && offset.is_multiple_of(std::mem::align_of::<T>())
        );
        let count = (self.file_bytes - offset) / std::mem::size_of::<T>();
        // SAFETY: as in `items`; the mutable borrow of `self` makes this the
        // only reference into the mapping.
        unsafe {
            std::slice::from_raw_parts_mut(self.map.as_mut_ptr().add(offset).cast::<T>(), count)
        }
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
        // SAFETY: plain system call on a file descriptor this struct owns.
        let status = unsafe { libc::posix_fallocate(self.file.as_raw_fd(), offset, length) };
        match status {
            0 => {
                self.file_bytes = bytes;
                Ok(())
            }
            libc::ENOSPC | libc::EDQUOT => Err(GrowError::DiskFull),
            errno => Err(GrowError::Io(io::Error::from_raw_os_error(errno))),
        }
    }

    /// Writes dirty pages to disk and waits (msync), then syncs the file's
    /// length.
    pub fn flush(&self) -> io::Result<()> {
        self.map.flush_range(0, self.file_bytes)?;
        self.file.sync_data()
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
