//! One event loop's io_uring, and the only `unsafe` code of the io_uring
//! backend.
//!
//! The kernel reads and writes memory that Rust does not see it use: a
//! send's bytes until its completion, a provided buffer from the moment it
//! is in a buffer ring until a completion hands it back. This file keeps
//! both promises by owning that memory:
//!
//! - a send copies its bytes into a buffer held here (`sends`) until its
//!   completion arrives, whatever happens to the connection meanwhile;
//! - received bytes come out as a [`Chunk`], a view of one provided buffer
//!   that only [`Ring::recycle`] gives back to the kernel (consuming it),
//!   so no view of a buffer outlives its loan;
//! - dropping the ring cancels every request still in flight and waits
//!   (bounded) for their completions before the memory goes.
//!
//! Every request carries a tag (`user_data`): its kind in the top byte,
//! then what it is for (a connection's slot and generation, a send's
//! slot), so a completion that arrives after its connection closed is
//! recognised and only its memory is given back.

#![allow(unsafe_code)]

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use memmap2::MmapMut;
use slab::Slab;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Submission queue entries; a full queue is submitted early.
const SQ_ENTRIES: u32 = 1024;
/// Completion queue entries (the kernel keeps overflow, `IORING_FEAT_NODROP`).
const CQ_ENTRIES: u32 = 8192;
/// Provided buffers for TCP receives, and their size: one completion
/// carries at most one buffer; each is given back as soon as its bytes are
/// handled, in the iteration they arrive.
const TCP_BUFFERS: u16 = 256;
/// Bytes of one TCP receive buffer.
pub(super) const TCP_BUFFER_BYTES: usize = 16 * 1024;
/// Provided buffers for UDP datagrams.
const UDP_BUFFERS: u16 = 32;
/// A whole datagram (65,507 bytes at most) behind `recvmsg`'s header and
/// the source address.
const UDP_BUFFER_BYTES: usize = 68 * 1024;
/// Buffer group ids.
const TCP_GROUP: u16 = 0;
const UDP_GROUP: u16 = 1;
/// Send buffers kept for reuse, and the largest kept.
const SPARE_SENDS_MAX: usize = 1024;
const SPARE_SEND_BYTES_MAX: usize = 64 * 1024;
/// How long dropping the ring waits for cancelled requests to complete.
const DROP_WAIT: Duration = Duration::from_millis(500);

/// Connection slots the tag has room for.
pub(super) const TOKENS_MAX: usize = 1 << 24;

/// What a request is for (the top byte of its tag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    Accept = 1,
    Waker = 2,
    Datagram = 3,
    Receive = 4,
    Send = 5,
    Cancel = 6,
}

fn tag(kind: Kind, rest: u64) -> u64 {
    (u64::from(kind as u8) << 56) | (rest & ((1 << 56) - 1))
}

fn connection_tag(kind: Kind, token: usize, generation: u32) -> u64 {
    tag(kind, (u64::from(generation) << 24) | token as u64)
}

/// What a completion says.
pub(super) enum Completion {
    /// A connection accepted (`result` is its descriptor) or an error.
    Accepted { result: i32, more: bool },
    /// The inbox's waker fired.
    Woken { more: bool },
    /// A datagram (`chunk`: recvmsg's header, the source, the payload).
    Datagram {
        result: i32,
        chunk: Option<Chunk>,
        more: bool,
    },
    /// Bytes from connection `token` (`result`: their count, 0 at the end
    /// of the stream, or an error).
    Received {
        token: usize,
        generation: u32,
        result: i32,
        chunk: Option<Chunk>,
        more: bool,
    },
    /// A send of connection `token` completed: `result` bytes went.
    Sent {
        token: usize,
        generation: u32,
        result: i32,
    },
    /// A cancellation's own completion.
    Cancelled,
}

/// Memory the kernel fills: provided buffers of one group.
struct BufferMemory {
    map: MmapMut,
    base: *mut u8,
}

// SAFETY: `base` points into `map`, which this value owns; the memory is
// only reached through `Chunk`s, each the sole view of its buffer.
unsafe impl Send for BufferMemory {}
// SAFETY: as above: shared references never write.
unsafe impl Sync for BufferMemory {}

/// One provided buffer lent by the kernel with bytes in it. Give it back
/// with [`Ring::recycle`].
pub(super) struct Chunk {
    memory: Arc<BufferMemory>,
    group: u16,
    id: u16,
    offset: usize,
    len: usize,
}

impl Chunk {
    /// The bytes the kernel put in the buffer.
    pub(super) fn bytes(&self) -> &[u8] {
        debug_assert!(self.offset + self.len <= self.memory.map.len());
        // SAFETY: the range lies in the mapping (`Ring::chunk` clamps it to
        // the buffer), the mapping lives as long as `self.memory`, and the
        // kernel does not write this buffer again until `Ring::recycle`
        // has consumed this chunk and put the buffer back in its ring.
        unsafe { std::slice::from_raw_parts(self.memory.base.add(self.offset), self.len) }
    }
}

/// An entry of a provided-buffer ring (`struct io_uring_buf`); entry 0's
/// `resv` is the ring's tail.
#[repr(C)]
struct BufferEntry {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}
const _: () = assert!(std::mem::size_of::<BufferEntry>() == 16);

/// A ring of provided buffers (`IORING_REGISTER_PBUF_RING`).
struct BufferGroup {
    id: u16,
    entries: MmapMut,
    memory: Arc<BufferMemory>,
    buffer_bytes: usize,
    count: u16,
    tail: u16,
}

impl BufferGroup {
    fn new(ring: &IoUring, id: u16, count: u16, buffer_bytes: usize) -> std::io::Result<Self> {
        assert!(count.is_power_of_two());
        let entries = MmapMut::map_anon(usize::from(count) * size_of::<BufferEntry>())?;
        let mut map = MmapMut::map_anon(usize::from(count) * buffer_bytes)?;
        let base = map.as_mut_ptr();
        // SAFETY: the entries' mapping is page aligned and lives in this
        // group, which the ring's owner drops only after the ring.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(entries.as_ptr() as u64, count, id, 0)?;
        }
        let mut group = BufferGroup {
            id,
            entries,
            memory: Arc::new(BufferMemory { map, base }),
            buffer_bytes,
            count,
            tail: 0,
        };
        for buffer in 0..count {
            group.put(buffer);
        }
        group.publish();
        Ok(group)
    }

    /// Writes buffer `id` at the tail (seen by the kernel once published).
    fn put(&mut self, id: u16) {
        let index = usize::from(self.tail & (self.count - 1));
        let addr = self.memory.base as u64 + (usize::from(id) * self.buffer_bytes) as u64;
        let len = u32::try_from(self.buffer_bytes).unwrap_or(u32::MAX);
        let entries = self.entries.as_mut_ptr().cast::<BufferEntry>();
        // SAFETY: `index` < count, inside the entries' mapping; the kernel
        // reads only entries between its head and the published tail, and
        // this one is past the tail. Fields are written one by one so that
        // entry 0's `resv` (the tail, which the kernel reads) is not touched.
        unsafe {
            let entry = entries.add(index);
            std::ptr::addr_of_mut!((*entry).addr).write(addr);
            std::ptr::addr_of_mut!((*entry).len).write(len);
            std::ptr::addr_of_mut!((*entry).bid).write(id);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Lets the kernel see every buffer put since the last publish.
    fn publish(&mut self) {
        let entries = self.entries.as_mut_ptr().cast::<BufferEntry>();
        // SAFETY: entry 0's `resv` field is the ring's tail, a naturally
        // aligned u16 the kernel reads with acquire ordering.
        let tail = unsafe { &*std::ptr::addr_of_mut!((*entries).resv).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }

    fn chunk(&self, id: u16, len: usize) -> Option<Chunk> {
        if id >= self.count {
            return None;
        }
        Some(Chunk {
            memory: Arc::clone(&self.memory),
            group: self.id,
            id,
            offset: usize::from(id) * self.buffer_bytes,
            len: len.min(self.buffer_bytes),
        })
    }
}

/// Keeps a finished send's buffer for the next send, unless a burst made
/// it large.
fn keep_spare(spare: &mut Vec<Vec<u8>>, bytes: Vec<u8>) {
    if spare.len() < SPARE_SENDS_MAX && bytes.capacity() <= SPARE_SEND_BYTES_MAX {
        spare.push(bytes);
    }
}

/// A send in flight: its bytes stay here until its completion.
struct SendInFlight {
    bytes: Vec<u8>,
    token: usize,
    generation: u32,
}

/// Why io_uring cannot serve: the cause, for the start error.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct RingError {
    what: &'static str,
    #[source]
    source: std::io::Error,
}

fn failed(what: &'static str) -> impl Fn(std::io::Error) -> RingError {
    move |source| RingError { what, source }
}

/// One event loop's ring.
pub(super) struct Ring {
    // Dropped first (after `Drop::drop` cancelled what was in flight): the
    // memory below outlives the ring.
    ring: IoUring,
    tcp: BufferGroup,
    udp: BufferGroup,
    sends: Slab<SendInFlight>,
    spare: Vec<Vec<u8>>,
    /// `recvmsg`'s template: room for the source address, no control data.
    message: Box<libc::msghdr>,
    /// Requests submitted and not finished (a multishot one finishes with
    /// its last completion).
    in_flight: usize,
}

// SAFETY: the ring and its buffers are used by one thread at a time (the
// event loop that owns them, after `Server::start` built them); the raw
// pointers inside point into memory this value owns.
unsafe impl Send for Ring {}

impl Ring {
    /// Builds a ring disabled until [`Ring::enable`] (called on the event
    /// loop's own thread, the only one that submits), with its two groups
    /// of provided buffers. Fails if the kernel refuses io_uring or lacks
    /// what the backend uses.
    pub(super) fn new() -> Result<Ring, RingError> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_r_disabled()
            .setup_submit_all()
            .setup_cqsize(CQ_ENTRIES)
            .build(SQ_ENTRIES)
            .map_err(failed("io_uring_setup"))?;
        let mut probe = io_uring::Probe::new();
        ring.submitter()
            .register_probe(&mut probe)
            .map_err(failed("io_uring probe"))?;
        for (code, name) in [
            (opcode::AcceptMulti::CODE, "accept"),
            (opcode::RecvMulti::CODE, "recv"),
            (opcode::RecvMsgMulti::CODE, "recvmsg"),
            (opcode::Send::CODE, "send"),
            (opcode::PollAdd::CODE, "poll"),
            (opcode::AsyncCancel::CODE, "cancel"),
        ] {
            if !probe.is_supported(code) {
                return Err(RingError {
                    what: name,
                    source: std::io::Error::from_raw_os_error(libc::EOPNOTSUPP),
                });
            }
        }
        let tcp = BufferGroup::new(&ring, TCP_GROUP, TCP_BUFFERS, TCP_BUFFER_BYTES)
            .map_err(failed("provided buffer ring"))?;
        let udp = BufferGroup::new(&ring, UDP_GROUP, UDP_BUFFERS, UDP_BUFFER_BYTES)
            .map_err(failed("provided buffer ring"))?;
        // SAFETY: an all-zero msghdr is valid (no name, no iovec, no
        // control data).
        let mut message: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        message.msg_namelen = u32::try_from(size_of::<libc::sockaddr_storage>()).unwrap_or(128);
        Ok(Ring {
            ring,
            tcp,
            udp,
            sends: Slab::new(),
            spare: Vec::new(),
            message,
            in_flight: 0,
        })
    }

    /// Enables the ring for the calling thread, the only one that may
    /// submit from now on.
    pub(super) fn enable(&self) -> std::io::Result<()> {
        self.ring.submitter().register_enable_rings()
    }

    /// Queues `entry`; a full submission queue is submitted first.
    fn push(&mut self, entry: &squeue::Entry) -> std::io::Result<()> {
        for _ in 0..2 {
            // SAFETY: every entry built here refers to memory this ring
            // owns until the entry's completion (sends, buffer groups, the
            // msghdr) or to none.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                self.in_flight += 1;
                return Ok(());
            }
            self.ring.submit()?;
        }
        Err(std::io::Error::from_raw_os_error(libc::EBUSY))
    }

    /// Accepts on `listener` until cancelled or it fails.
    pub(super) fn accept(&mut self, listener: RawFd) -> std::io::Result<()> {
        let entry = opcode::AcceptMulti::new(types::Fd(listener))
            .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            .build()
            .user_data(tag(Kind::Accept, 0));
        self.push(&entry)
    }

    /// Reports each readiness of `fd` (the loop's waker) until cancelled.
    pub(super) fn watch_waker(&mut self, fd: RawFd) -> std::io::Result<()> {
        let entry = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(tag(Kind::Waker, 0));
        self.push(&entry)
    }

    /// Receives datagrams on `socket` into the UDP buffers.
    pub(super) fn receive_datagrams(&mut self, socket: RawFd) -> std::io::Result<()> {
        let entry =
            opcode::RecvMsgMulti::new(types::Fd(socket), &raw const *self.message, UDP_GROUP)
                .build()
                .user_data(tag(Kind::Datagram, 0));
        self.push(&entry)
    }

    /// Receives connection `token`'s bytes into the TCP buffers until the
    /// end of its stream, an error or a cancel.
    pub(super) fn receive(
        &mut self,
        fd: RawFd,
        token: usize,
        generation: u32,
    ) -> std::io::Result<()> {
        debug_assert!(token < TOKENS_MAX);
        let entry = opcode::RecvMulti::new(types::Fd(fd), TCP_GROUP)
            .build()
            .user_data(connection_tag(Kind::Receive, token, generation));
        self.push(&entry)
    }

    /// Sends a copy of `bytes` to connection `token`; the copy stays here
    /// until the send completes, whatever happens to the connection.
    pub(super) fn send(
        &mut self,
        fd: RawFd,
        token: usize,
        generation: u32,
        bytes: &[u8],
    ) -> std::io::Result<()> {
        let mut copy = self.spare.pop().unwrap_or_default();
        copy.clear();
        let len = bytes.len().min(u32::MAX as usize);
        copy.extend_from_slice(&bytes[..len]);
        let key = self.sends.vacant_key();
        let entry = opcode::Send::new(
            types::Fd(fd),
            copy.as_ptr(),
            u32::try_from(len).unwrap_or(u32::MAX),
        )
        .flags(libc::MSG_NOSIGNAL)
        .build()
        .user_data(tag(Kind::Send, key as u64));
        // Moving the Vec into the slab leaves its heap buffer in place.
        self.sends.insert(SendInFlight {
            bytes: copy,
            token,
            generation,
        });
        if let Err(error) = self.push(&entry) {
            let send = self.sends.remove(key);
            keep_spare(&mut self.spare, send.bytes);
            return Err(error);
        }
        Ok(())
    }

    /// Cancels connection `token`'s receive (its last completion follows).
    pub(super) fn cancel_receive(&mut self, token: usize, generation: u32) {
        self.cancel(connection_tag(Kind::Receive, token, generation));
    }

    /// Cancels every send of connection `token` still in flight.
    pub(super) fn cancel_sends(&mut self, token: usize, generation: u32) {
        let keys: Vec<usize> = self
            .sends
            .iter()
            .filter(|(_, s)| s.token == token && s.generation == generation)
            .map(|(key, _)| key)
            .collect();
        for key in keys {
            self.cancel(tag(Kind::Send, key as u64));
        }
    }

    /// Cancels the accept.
    pub(super) fn cancel_accept(&mut self) {
        self.cancel(tag(Kind::Accept, 0));
    }

    /// Cancels the datagram receive.
    pub(super) fn cancel_datagrams(&mut self) {
        self.cancel(tag(Kind::Datagram, 0));
    }

    fn cancel(&mut self, target: u64) {
        let entry = opcode::AsyncCancel::new(target)
            .build()
            .user_data(tag(Kind::Cancel, 0));
        // A cancel that finds no room is dropped: the request it aims at
        // then ends on its own (end of stream, error, or the ring's drop).
        let _ = self.push(&entry);
    }

    /// Submits everything queued and waits up to `timeout` for a
    /// completion: one `io_uring_enter`.
    pub(super) fn submit_and_wait(&mut self, timeout: Duration) -> std::io::Result<()> {
        let timespec = types::Timespec::from(timeout);
        let args = types::SubmitArgs::new().timespec(&timespec);
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => Ok(()),
            Err(error)
                if matches!(
                    error.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ) =>
            {
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// Takes every completion that arrived. A finished send's copy is kept
    /// for reuse; received bytes come as chunks to recycle.
    pub(super) fn complete(&mut self, into: &mut Vec<Completion>) {
        let Ring {
            ring,
            tcp,
            udp,
            sends,
            spare,
            in_flight,
            ..
        } = self;
        for entry in ring.completion() {
            let (user_data, result, flags) = (entry.user_data(), entry.result(), entry.flags());
            let more = cqueue::more(flags);
            if !more {
                *in_flight = in_flight.saturating_sub(1);
            }
            let rest = user_data & ((1 << 56) - 1);
            let token = (rest & ((1 << 24) - 1)) as usize;
            let generation = u32::try_from(rest >> 24).unwrap_or(0);
            let length = usize::try_from(result).unwrap_or(0);
            let buffer = cqueue::buffer_select(flags);
            let completion = match (user_data >> 56) as u8 {
                k if k == Kind::Accept as u8 => Completion::Accepted { result, more },
                k if k == Kind::Waker as u8 => Completion::Woken { more },
                k if k == Kind::Datagram as u8 => Completion::Datagram {
                    result,
                    chunk: buffer.and_then(|id| udp.chunk(id, length)),
                    more,
                },
                k if k == Kind::Receive as u8 => Completion::Received {
                    token,
                    generation,
                    result,
                    chunk: buffer.and_then(|id| tcp.chunk(id, length)),
                    more,
                },
                k if k == Kind::Send as u8 => {
                    let Some(send) = sends.try_remove(usize::try_from(rest).unwrap_or(usize::MAX))
                    else {
                        continue;
                    };
                    keep_spare(spare, send.bytes);
                    Completion::Sent {
                        token: send.token,
                        generation: send.generation,
                        result,
                    }
                }
                _ => Completion::Cancelled,
            };
            into.push(completion);
        }
    }

    /// Gives a chunk's buffer back to the kernel (seen at the next
    /// [`Ring::publish`]).
    pub(super) fn recycle(&mut self, chunk: Chunk) {
        let Chunk { group, id, .. } = chunk;
        if group == TCP_GROUP {
            self.tcp.put(id);
        } else {
            self.udp.put(id);
        }
    }

    /// Lets the kernel see the buffers recycled since the last call.
    pub(super) fn publish(&mut self) {
        self.tcp.publish();
        self.udp.publish();
    }

    /// The source address and payload of a datagram chunk.
    pub(super) fn datagram<'a>(&self, chunk: &'a Chunk) -> Option<(&'a [u8], &'a [u8])> {
        let bytes = chunk.bytes();
        let out = types::RecvMsgOut::parse(bytes, &self.message).ok()?;
        if out.is_payload_truncated() || out.is_name_data_truncated() {
            return None;
        }
        // recvmsg's header, the name field (its full room), then the payload.
        // `struct io_uring_recvmsg_out`: four u32 fields.
        let header = 16;
        let name_room = self.message.msg_namelen as usize;
        let name_len = (out.incoming_name_len() as usize).min(name_room);
        let payload_start = header + name_room;
        let payload_len = out.payload_data().len();
        Some((
            bytes.get(header..header + name_len)?,
            bytes.get(payload_start..payload_start + payload_len)?,
        ))
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // The kernel may still write a provided buffer or read a send's
        // copy: cancel everything and wait for it before the memory goes.
        let entry = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(tag(Kind::Cancel, 0));
        // SAFETY: a cancel refers to no memory.
        if unsafe { self.ring.submission().push(&entry) }.is_err() {
            let _ = self.ring.submit();
            // SAFETY: as above.
            let _ = unsafe { self.ring.submission().push(&entry) };
        }
        self.in_flight += 1;
        let deadline = std::time::Instant::now() + DROP_WAIT;
        let mut completions = Vec::new();
        while self.in_flight > 0 && std::time::Instant::now() < deadline {
            if self.submit_and_wait(Duration::from_millis(10)).is_err() {
                break;
            }
            self.complete(&mut completions);
            completions.clear();
        }
    }
}

/// The connection an accept completion handed over.
pub(super) fn accepted_stream(fd: RawFd) -> mio::net::TcpStream {
    use std::os::fd::FromRawFd;
    // SAFETY: `fd` is the result of an accept completion: a descriptor the
    // kernel just opened for this process and nobody else owns.
    let stream = unsafe { std::net::TcpStream::from_raw_fd(fd) };
    mio::net::TcpStream::from_std(stream)
}
