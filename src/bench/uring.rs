//! The io_uring client loop (`x700 bench --io uring`, the default): one
//! `io_uring_enter` per turn carries every connection's sends and the
//! receives re-armed since the last turn, and waits for the next
//! completions, where the `mio` loop makes one system call per send, per
//! receive and per wait.
//!
//! Each connection has at most one receive and one send in flight. A
//! receive reads into the free end of the connection's input buffer; a
//! send writes the connection's unsent request bytes, and no request is
//! added to that buffer until the send completes. Both buffers are heap
//! allocations owned by the connection, never moved or reallocated while
//! the kernel may touch them (`Connection::input_room` moves bytes only
//! while no receive is in flight; `fill` only runs with no send in
//! flight). When the loop ends, every socket is shut down and every
//! operation in flight is reaped before the buffers can be freed; if some
//! never completes, the buffers are leaked rather than freed under the
//! kernel.
//!
//! What the loop does is `driver::drive`'s, turn for turn: requests that
//! are due (open loop, at most once per send quantum) or that fit (closed
//! loop), a timeout scan every 2 ms, waits until the next due time with
//! short waits spun (the spin is counted apart), one clock read per batch
//! of completions.
#![allow(unsafe_code)]

use super::connection::Connection;
use super::driver::{
    connections_of, unix_now_s, wake_ns, Phase, Wire, IDLE_WAIT, SPIN_NS, TIMEOUT_SCAN_NS,
    TIMER_SLACK_NS,
};
use super::schedule::Clock;
use super::tally::Tally;
use super::workload::Generator;
use io_uring::{opcode, types, IoUring};
use std::net::{Shutdown, TcpStream};
use std::os::unix::io::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Completion tag: the connection's index shifted left once, this bit set
/// for a send.
const SEND_BIT: u64 = 1;
/// Fewest submission queue entries of a ring.
const RING_ENTRIES_MIN: u32 = 8;
/// Longest wait for the operations in flight when the loop ends.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// What one connection has in flight.
#[derive(Clone, Copy, Debug, Default)]
struct InFlight {
    /// A receive is armed.
    receiving: bool,
    /// A send is in flight.
    sending: bool,
}

/// A ring with at most one receive and one send per connection in flight.
struct Ring {
    ring: IoUring,
    /// Completions of the current batch (user data, result), reaped before
    /// they are handled so that handling may queue new operations.
    reaped: Vec<(u64, i32)>,
    in_flight: Vec<InFlight>,
    /// Operations queued or in the kernel, not yet completed.
    pending: usize,
}

impl Ring {
    /// A ring for `connections` connections: room for two operations
    /// each, so the submission queue never fills.
    fn new(connections: usize) -> std::io::Result<Ring> {
        let entries = u32::try_from(2 * connections)
            .unwrap_or(u32::MAX)
            .next_power_of_two()
            .max(RING_ENTRIES_MIN);
        // Completions are posted at the next system call rather than by
        // interrupting the thread (the loop enters the kernel every turn
        // anyway); the flag tells a spinning loop when to enter. Kernels
        // before 5.19 lack these: a plain ring then.
        let ring = IoUring::builder()
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .setup_single_issuer()
            .build(entries)
            .or_else(|_| IoUring::new(entries))?;
        Ok(Ring {
            ring,
            reaped: Vec::with_capacity(2 * entries as usize),
            in_flight: vec![InFlight::default(); connections],
            pending: 0,
        })
    }

    fn push(&mut self, entry: &io_uring::squeue::Entry) -> Result<(), String> {
        // SAFETY: every entry pushed names a buffer of a connection that
        // stays allocated, unmoved and otherwise untouched until its
        // completion is reaped (the module's invariant, kept by
        // `arm_receive` and `send` and by `drain` at the end).
        unsafe { self.ring.submission().push(entry) }
            .map_err(|_| "io_uring submission queue full".to_string())?;
        self.pending += 1;
        Ok(())
    }

    /// Arms a receive into connection `index`'s free input space.
    fn arm_receive(
        &mut self,
        index: usize,
        connection: &mut Connection,
        tally: &mut Tally,
    ) -> Result<(), String> {
        if self.in_flight[index].receiving || connection.closed() {
            return Ok(());
        }
        let fd = types::Fd(connection.stream.as_raw_fd());
        let Some(room) = connection.input_room(tally) else {
            return Ok(());
        };
        let len = u32::try_from(room.len()).unwrap_or(u32::MAX);
        let entry = opcode::Recv::new(fd, room.as_mut_ptr(), len)
            .build()
            .user_data((index as u64) << 1);
        self.push(&entry)?;
        self.in_flight[index].receiving = true;
        Ok(())
    }

    /// Sends connection `index`'s unsent bytes, if any.
    fn send(&mut self, index: usize, connection: &Connection) -> Result<(), String> {
        let unsent = connection.unsent();
        if self.in_flight[index].sending || unsent.is_empty() || connection.closed() {
            return Ok(());
        }
        let fd = types::Fd(connection.stream.as_raw_fd());
        let len = u32::try_from(unsent.len()).unwrap_or(u32::MAX);
        let entry = opcode::Send::new(fd, unsent.as_ptr(), len)
            .build()
            .user_data(((index as u64) << 1) | SEND_BIT);
        self.push(&entry)?;
        self.in_flight[index].sending = true;
        Ok(())
    }

    /// Submits what is queued and waits up to `wait` for one completion
    /// (`None`: do not wait), then takes every completion there is.
    fn submit(&mut self, wait: Option<Duration>) -> Result<(), String> {
        let result = match wait {
            None => self.ring.submit(),
            Some(wait) => {
                let timespec = types::Timespec::from(wait);
                let args = types::SubmitArgs::new().timespec(&timespec);
                self.ring.submitter().submit_with_args(1, &args)
            }
        };
        if let Err(e) = result {
            // ETIME: the wait ended without a completion; EINTR: a signal;
            // EBUSY: completions must be reaped first (below).
            if !matches!(
                e.raw_os_error(),
                Some(libc::ETIME | libc::EINTR | libc::EBUSY)
            ) {
                return Err(format!("io_uring_enter: {e}"));
            }
        }
        self.reaped.clear();
        for entry in self.ring.completion() {
            self.reaped.push((entry.user_data(), entry.result()));
        }
        self.pending = self.pending.saturating_sub(self.reaped.len());
        for &(user_data, _) in &self.reaped {
            let Ok(index) = usize::try_from(user_data >> 1) else {
                continue;
            };
            if let Some(in_flight) = self.in_flight.get_mut(index) {
                if user_data & SEND_BIT != 0 {
                    in_flight.sending = false;
                } else {
                    in_flight.receiving = false;
                }
            }
        }
        Ok(())
    }
}

/// One client thread on io_uring (see the module's comment). Falls back
/// to the `mio` loop if the kernel refuses a ring.
pub(super) fn drive(
    phase: &Phase,
    group: Vec<(usize, TcpStream, Generator)>,
    connection_count: usize,
    clock: &Clock,
) -> Result<Tally, String> {
    let mut ring = match Ring::new(group.len()) {
        Ok(ring) => ring,
        Err(_) => return super::driver::drive_epoll(phase, group, connection_count, clock),
    };
    crate::sys::set_timer_slack_ns(TIMER_SLACK_NS);
    let mut tally = Tally::default();
    let mut connections = connections_of(phase, group, connection_count);
    let result = turns(phase, clock, &mut ring, &mut connections, &mut tally);
    drain(&mut ring, &connections);
    if ring.pending > 0 {
        // Operations still in the kernel: freeing their buffers would let
        // it write into freed memory.
        std::mem::forget(connections);
        std::mem::forget(ring);
    }
    result.map(|()| tally)
}

/// The loop proper, until every connection is finished.
fn turns(
    phase: &Phase,
    clock: &Clock,
    ring: &mut Ring,
    connections: &mut [Connection],
    tally: &mut Tally,
) -> Result<(), String> {
    for (index, connection) in connections.iter_mut().enumerate() {
        ring.arm_receive(index, connection, tally)?;
    }
    let open_loop = phase.rate_per_s.is_some();
    let redis = matches!(phase.wire, Wire::Redis(_));
    let mut next_scan_ns = TIMEOUT_SCAN_NS;
    let mut last_send_ns = 0;
    let mut now_ns = clock.now_ns();
    loop {
        if !open_loop || now_ns >= last_send_ns + phase.send_quantum_ns {
            last_send_ns = now_ns;
            let now_s = if redis { unix_now_s() } else { 0 };
            for (index, connection) in connections.iter_mut().enumerate() {
                if !ring.in_flight[index].sending {
                    connection.fill(phase, now_ns, now_s, tally);
                    ring.send(index, connection)?;
                }
            }
        }
        if now_ns >= next_scan_ns {
            for connection in connections.iter_mut() {
                connection.expire(phase.timeout_ns, now_ns, tally);
            }
            next_scan_ns = now_ns + TIMEOUT_SCAN_NS;
        }
        if connections.iter().all(Connection::finished) {
            return Ok(());
        }
        let wait_ns =
            wake_ns(phase, connections, next_scan_ns, last_send_ns).saturating_sub(now_ns);
        let spinning = open_loop && wait_ns <= SPIN_NS;
        let wait = if spinning {
            None
        } else if open_loop {
            Some(Duration::from_nanos(wait_ns - SPIN_NS))
        } else {
            Some(IDLE_WAIT.min(Duration::from_nanos(wait_ns.max(1))))
        };
        ring.submit(wait)?;
        let woke_ns = clock.now_ns();
        if spinning && ring.reaped.is_empty() {
            tally.spin_ns += woke_ns.saturating_sub(now_ns);
        }
        let mut answers = 0;
        for k in 0..ring.reaped.len() {
            let (user_data, result) = ring.reaped[k];
            let Some(index) = usize::try_from(user_data >> 1)
                .ok()
                .filter(|&i| i < connections.len())
            else {
                continue;
            };
            let connection = &mut connections[index];
            if user_data & SEND_BIT != 0 {
                match result {
                    0 => connection.fail("the server stopped reading".into(), tally),
                    n if n > 0 => {
                        // n > 0: fits usize.
                        connection.wrote(usize::try_from(n).unwrap_or(0));
                        ring.send(index, connection)?;
                    }
                    n if n == -libc::EAGAIN || n == -libc::EINTR => {
                        ring.send(index, connection)?;
                    }
                    n => connection.fail(
                        format!("write: {}", std::io::Error::from_raw_os_error(-n)),
                        tally,
                    ),
                }
            } else {
                match result {
                    0 => connection.fail("the server closed the connection".into(), tally),
                    n if n > 0 => {
                        answers += connection.received(
                            usize::try_from(n).unwrap_or(0),
                            &phase.wire,
                            woke_ns,
                            tally,
                        );
                        ring.arm_receive(index, connection, tally)?;
                    }
                    n if n == -libc::EAGAIN || n == -libc::EINTR => {
                        ring.arm_receive(index, connection, tally)?;
                    }
                    n => connection.fail(
                        format!("read: {}", std::io::Error::from_raw_os_error(-n)),
                        tally,
                    ),
                }
            }
        }
        if answers > 0 {
            phase.progress.fetch_add(answers, Ordering::Relaxed);
        }
        now_ns = woke_ns;
    }
}

/// Shuts every socket down (a receive in flight then completes at once)
/// and reaps until nothing is in flight, for at most `DRAIN_TIMEOUT`.
fn drain(ring: &mut Ring, connections: &[Connection]) {
    for connection in connections {
        // Already shut or closed by the peer: nothing to do either way.
        let _ = connection.stream.shutdown(Shutdown::Both);
    }
    let started = Instant::now();
    while ring.pending > 0 && started.elapsed() < DRAIN_TIMEOUT {
        if ring.submit(Some(IDLE_WAIT)).is_err() {
            break;
        }
    }
}
