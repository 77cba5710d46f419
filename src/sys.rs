//! The few system calls outside the memory map that the standard library
//! does not wrap. Every `unsafe` block here is one plain call on a file
//! descriptor the caller owns; the memory map's own unsafe code stays in
//! `table::mapped`.
#![allow(unsafe_code)]

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// Mode of every file x700 creates in a data directory: read and write for
/// its owner only, because the files hold real phone numbers.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode of the data directory and of every directory x700 creates in it.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Takes an exclusive, non-blocking `flock` on the file (or directory). False
/// if another open file description holds it.
pub fn try_lock_exclusive(file: &File) -> bool {
    // SAFETY: flock on a descriptor the caller owns; no memory is involved.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Creates the file `path`, which must not exist, with `options` and mode
/// exactly `PRIVATE_FILE_MODE`. The umask only clears bits of the mode asked
/// for at creation (an odd umask could even clear the owner's), so the mode
/// is set again on the open descriptor (`fchmod`).
pub fn create_private(options: &OpenOptions, path: &Path) -> io::Result<File> {
    let file = options
        .clone()
        .create_new(true)
        .mode(PRIVATE_FILE_MODE)
        .open(path)?;
    file.set_permissions(Permissions::from_mode(PRIVATE_FILE_MODE))?;
    Ok(file)
}

/// Opens `path` with `options`, creating it as `create_private` does if it
/// is missing. A file that already exists keeps its mode: x700 never
/// changes what it did not create, it warns (`store::lock::warn_if_loose`).
pub fn open_or_create_private(options: &OpenOptions, path: &Path) -> io::Result<File> {
    match create_private(options, path) {
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => options
            .clone()
            .create(true)
            .mode(PRIVATE_FILE_MODE)
            .open(path),
        made => made,
    }
}

/// Creates the directory `dir` and any missing parents with mode
/// `PRIVATE_DIR_MODE`, and sets `dir`'s mode exactly (past the umask) if
/// this call created it. A directory that already exists keeps its mode.
pub fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)?;
    make_private_dir(dir)
}

/// Sets the directory's mode to exactly `PRIVATE_DIR_MODE`.
pub fn make_private_dir(dir: &Path) -> io::Result<()> {
    std::fs::set_permissions(dir, Permissions::from_mode(PRIVATE_DIR_MODE))
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

/// CPU time this process has used so far: (user, system) in microseconds,
/// from `getrusage(RUSAGE_SELF)`; zeros if the kernel cannot say.
pub fn process_cpu_us() -> (u64, u64) {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one `rusage` through the pointer, which
    // points at a live local.
    let status = unsafe { libc::getrusage(libc::RUSAGE_SELF, &raw mut usage) };
    if status != 0 {
        return (0, 0);
    }
    let micros = |time: libc::timeval| {
        u64::try_from(time.tv_sec).unwrap_or(0) * 1_000_000
            + u64::try_from(time.tv_usec).unwrap_or(0)
    };
    (micros(usage.ru_utime), micros(usage.ru_stime))
}

/// What the calling thread has waited for so far (`getrusage(RUSAGE_THREAD)`):
/// the counters `x700 load` uses to say why a bind was slow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadWaits {
    /// Times the thread gave up the CPU to wait (for I/O, a lock, a page).
    pub voluntary_switches: u64,
    /// Times the scheduler took the CPU from it for another thread.
    pub involuntary_switches: u64,
    /// Page faults that had to read from disk.
    pub major_faults: u64,
}

/// The calling thread's `ThreadWaits`; zeros if the kernel cannot say.
pub fn thread_waits() -> ThreadWaits {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one `rusage` through the pointer, which
    // points at a live local.
    let status = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &raw mut usage) };
    if status != 0 {
        return ThreadWaits::default();
    }
    let count = |value: libc::c_long| u64::try_from(value).unwrap_or(0);
    ThreadWaits {
        voluntary_switches: count(usage.ru_nvcsw),
        involuntary_switches: count(usage.ru_nivcsw),
        major_faults: count(usage.ru_majflt),
    }
}

/// Waits until `descriptor` is readable or `timeout` has passed, with
/// nanosecond precision (`ppoll`). The benchmark's open-loop pacing uses it
/// on its epoll descriptor, whose own timeout counts whole milliseconds.
/// Returns false on timeout or error.
pub fn wait_readable(descriptor: &impl AsRawFd, timeout: std::time::Duration) -> bool {
    let mut poll = libc::pollfd {
        fd: descriptor.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let timeout = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(timeout.subsec_nanos()),
    };
    // SAFETY: ppoll reads one pollfd and one timespec through pointers to
    // live locals and writes `revents` of that pollfd; no signal mask.
    let ready = unsafe { libc::ppoll(&raw mut poll, 1, &raw const timeout, std::ptr::null()) };
    ready > 0
}

/// Asks the kernel to wake this thread's timed sleeps within
/// `slack_ns` of their deadline (the default slack is 50 us, too coarse to
/// pace requests microseconds apart). Best effort.
pub fn set_timer_slack_ns(slack_ns: u64) {
    let slack = libc::c_ulong::try_from(slack_ns).unwrap_or(libc::c_ulong::MAX);
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and touches no
    // memory of ours.
    let _ = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, slack, 0, 0, 0) };
}

/// Sends SIGTERM to a process this program started. False if it is gone.
pub fn terminate(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill takes two integers and touches no memory of ours.
    unsafe { libc::kill(pid, libc::SIGTERM) == 0 }
}

/// Raises this process's open-file limit (`RLIMIT_NOFILE`) to its hard
/// maximum and returns the limit now in force.
pub fn raise_open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through the pointer, which
    // points at a live local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        return 1024;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads one `rlimit` through the pointer, which
        // points at a live local.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const raised) } == 0 {
            limit = raised;
        }
    }
    limit.rlim_cur
}

/// The machine's memory in bytes (`sysinfo`); 8 GiB if the kernel cannot
/// say.
pub fn memory_bytes() -> u64 {
    // SAFETY: an all-zero `sysinfo` is a valid value of this plain C struct.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: sysinfo writes one struct through the pointer, which points
    // at a live local.
    if unsafe { libc::sysinfo(&raw mut info) } != 0 {
        return 8 << 30;
    }
    #[allow(clippy::useless_conversion)] // `totalram` is a c_ulong: u32 on 32-bit targets
    u64::from(info.totalram).saturating_mul(u64::from(info.mem_unit))
}

/// Allocations of at least this many bytes get pages of their own from the
/// kernel, and give them back when freed.
pub const MMAP_THRESHOLD_BYTES: i32 = 256 * 1024;

/// Fixes glibc's mmap threshold at `MMAP_THRESHOLD_BYTES`. By default the
/// threshold rises after large blocks are freed, and later large blocks
/// (a connection's output after a burst) then come from the heap, which
/// keeps their memory after `free`: a burst of answers would pin memory
/// for the life of the process. Best effort.
pub fn return_large_blocks_to_the_kernel() {
    // SAFETY: mallopt takes two integers and touches no memory of ours.
    let _ = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) };
}

/// Bytes this process may still allocate on the file system holding
/// `path` (`statvfs`: available blocks times the fragment size); `None` if
/// the kernel cannot say.
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero `statvfs` is a valid value of this plain C struct.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs reads the NUL-terminated path, which lives until the
    // call returns, and writes one `statvfs` through the pointer, which
    // points at a live local.
    let status = unsafe { libc::statvfs(path.as_ptr(), &raw mut stats) };
    if status != 0 {
        return None;
    }
    Some(stats.f_bavail.saturating_mul(stats.f_frsize))
}

/// Replaces `dir/name` with `bytes` so that a crash leaves the old or the
/// new file whole: a private temporary file, synced, renamed over it, the
/// directory synced.
pub fn replace_file_durably(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let path = dir.join(name);
    let temporary = dir.join(format!("{name}.new"));
    {
        let file =
            open_or_create_private(OpenOptions::new().write(true).truncate(true), &temporary)?;
        io::Write::write_all(&mut &file, bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, &path)?;
    File::open(dir)?.sync_all()
}

/// Puts the calling thread at the lowest CPU priority (nice 19), for
/// background work that must not take time from the event loops. Failure
/// leaves the priority as it was.
pub fn lower_thread_priority() {
    // SAFETY: gettid has no preconditions; setpriority on our own thread
    // id changes only that thread's nice value.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid);
        #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19);
    }
}

/// A `kB` field of /proc/self/status (`RssAnon`, `VmHWM`, ...), in bytes.
pub fn process_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// Asks the kernel to drop `len` bytes of `file` from `offset` out of the
/// page cache (`POSIX_FADV_DONTNEED`): clean pages no mapping uses go. A
/// hint: failure changes nothing.
pub fn drop_cached(file: &File, offset: u64, len: u64) {
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return;
    };
    // SAFETY: one call on a descriptor the caller owns.
    let _ =
        unsafe { libc::posix_fadvise(file.as_raw_fd(), offset, len, libc::POSIX_FADV_DONTNEED) };
}

/// Returns the allocator's free memory to the kernel (glibc's
/// `malloc_trim`: the free pages of every arena, not only the top of the
/// calling thread's).
pub fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim has no preconditions; it only releases memory
    // the allocator holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Datagrams `send_datagrams` and `receive_datagrams` move per system call.
pub const DATAGRAMS_PER_CALL: usize = 64;

/// Sends datagrams from a UDP socket with `sendmmsg`, up to
/// `DATAGRAMS_PER_CALL` per call: `bytes[start..end]` to `peer` for each
/// `(peer, start, end)`. Returns how many went; it stops at the first error
/// (a full socket buffer), and the caller drops the rest, as UDP may.
pub fn send_datagrams(
    socket: &impl AsRawFd,
    bytes: &[u8],
    datagrams: &[(std::net::SocketAddr, usize, usize)],
) -> usize {
    let mut sent = 0;
    while sent < datagrams.len() {
        let chunk = &datagrams[sent..(sent + DATAGRAMS_PER_CALL).min(datagrams.len())];
        // SAFETY: all-zero bytes are valid values of these plain C structs.
        let mut names: [libc::sockaddr_storage; DATAGRAMS_PER_CALL] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut iovecs: [libc::iovec; DATAGRAMS_PER_CALL] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut headers: [libc::mmsghdr; DATAGRAMS_PER_CALL] = unsafe { std::mem::zeroed() };
        for (i, &(peer, start, end)) in chunk.iter().enumerate() {
            let address = socket2::SockAddr::from(peer);
            let name_bytes = address.len();
            names[i] = address.as_storage();
            let payload = &bytes[start..end];
            iovecs[i] = libc::iovec {
                iov_base: payload.as_ptr() as *mut libc::c_void,
                iov_len: payload.len(),
            };
            headers[i].msg_hdr.msg_name = std::ptr::addr_of_mut!(names[i]).cast();
            headers[i].msg_hdr.msg_namelen = name_bytes;
            headers[i].msg_hdr.msg_iov = std::ptr::addr_of_mut!(iovecs[i]);
            headers[i].msg_hdr.msg_iovlen = 1;
        }
        // At most DATAGRAMS_PER_CALL (64): fits u32.
        let count = chunk.len() as libc::c_uint;
        // SAFETY: `headers[..count]` point into `names` and `iovecs`, which
        // live on this frame until the call returns, and each iovec into
        // `bytes`, which the kernel only reads; the descriptor is the
        // caller's open socket.
        let result = unsafe {
            libc::sendmmsg(
                socket.as_raw_fd(),
                headers.as_mut_ptr(),
                count,
                libc::MSG_DONTWAIT,
            )
        };
        let Ok(went) = usize::try_from(result) else {
            break;
        };
        if went == 0 {
            break;
        }
        sent += went;
    }
    sent
}

/// Receives up to `DATAGRAMS_PER_CALL` datagrams with one `recvmmsg` into
/// `buffer`, cut into slots of `slot_bytes`: datagram `i` lands at
/// `i * slot_bytes`, and `arrived[i]` gets its source and length (a length
/// above `slot_bytes` never shows: a longer datagram is cut, and its
/// length then equals `slot_bytes`). Returns how many arrived; `Err` with
/// `WouldBlock` when none waits.
pub fn receive_datagrams(
    socket: &impl AsRawFd,
    buffer: &mut [u8],
    slot_bytes: usize,
    arrived: &mut [(std::net::SocketAddr, usize); DATAGRAMS_PER_CALL],
) -> io::Result<usize> {
    let slots = (buffer.len() / slot_bytes.max(1)).min(DATAGRAMS_PER_CALL);
    if slots == 0 {
        return Ok(0);
    }
    // SAFETY: all-zero bytes are valid values of these plain C structs.
    let mut names: [libc::sockaddr_storage; DATAGRAMS_PER_CALL] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut iovecs: [libc::iovec; DATAGRAMS_PER_CALL] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut headers: [libc::mmsghdr; DATAGRAMS_PER_CALL] = unsafe { std::mem::zeroed() };
    for (i, slot) in buffer.chunks_exact_mut(slot_bytes).take(slots).enumerate() {
        iovecs[i] = libc::iovec {
            iov_base: slot.as_mut_ptr().cast(),
            iov_len: slot.len(),
        };
        headers[i].msg_hdr.msg_name = std::ptr::addr_of_mut!(names[i]).cast();
        headers[i].msg_hdr.msg_namelen =
            std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        headers[i].msg_hdr.msg_iov = std::ptr::addr_of_mut!(iovecs[i]);
        headers[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: each header points at a name and an iovec on this frame and
    // each iovec at its own slot of `buffer`, borrowed mutably for the
    // call; the kernel writes at most each one's length.
    let result = unsafe {
        libc::recvmmsg(
            socket.as_raw_fd(),
            headers.as_mut_ptr(),
            slots as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    let Ok(count) = usize::try_from(result) else {
        return Err(io::Error::last_os_error());
    };
    let mut kept = 0;
    for i in 0..count {
        // SAFETY: the kernel filled `names[i]` and set its length.
        let address = unsafe { socket2::SockAddr::new(names[i], headers[i].msg_hdr.msg_namelen) };
        if let Some(peer) = address.as_socket() {
            let length = (headers[i].msg_len as usize).min(slot_bytes);
            // Keep datagram i in slot `kept`: move it down if one before
            // it had no usable source address.
            if kept != i {
                buffer.copy_within(i * slot_bytes..i * slot_bytes + length, kept * slot_bytes);
            }
            arrived[kept] = (peer, length);
            kept += 1;
        }
    }
    Ok(kept)
}
