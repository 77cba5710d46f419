//! The few system calls outside the memory map that the standard library
//! does not wrap. Every `unsafe` block here is one plain call on a file
//! descriptor the caller owns; the memory map's own unsafe code stays in
//! `table::mapped`.
#![allow(unsafe_code)]

use std::os::unix::io::AsRawFd;

/// Takes an exclusive, non-blocking `flock` on the file. False if another
/// process holds it.
pub fn try_lock_exclusive(file: &std::fs::File) -> bool {
    // SAFETY: flock on a descriptor the caller owns; no memory is involved.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Bytes a TCP socket has queued but the peer has not yet acknowledged
/// (`TIOCOUTQ`); `None` if the kernel cannot say.
pub fn unacknowledged_bytes(socket: &impl AsRawFd) -> Option<usize> {
    let mut queued: libc::c_int = 0;
    // SAFETY: TIOCOUTQ writes one c_int through the pointer, which points
    // at a live local; the descriptor is owned by the caller.
    let status = unsafe { libc::ioctl(socket.as_raw_fd(), libc::TIOCOUTQ, &raw mut queued) };
    (status == 0).then(|| usize::try_from(queued).unwrap_or(0))
}

/// `posix_fallocate`: reserves real blocks for `offset..offset + length`.
/// Returns 0 or the error number (ENOSPC when the disk is full).
pub fn fallocate(fd: std::os::unix::io::RawFd, offset: libc::off_t, length: libc::off_t) -> i32 {
    // SAFETY: a plain system call on a descriptor the caller owns.
    unsafe { libc::posix_fallocate(fd, offset, length) }
}
