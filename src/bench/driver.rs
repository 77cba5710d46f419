//! The client threads of a bench phase. Each thread owns a few
//! non-blocking connections (`connection.rs`; opened by `wire.rs`): it
//! writes every request that is due (open loop) or that the pipeline has
//! room for (closed loop) in one `send` per connection, reads every answer
//! one `recv` brought, and matches answers to requests by request id (x700:
//! answers may come out of order) or by order (Redis). Buffers, request
//! slots and histograms are allocated once per connection: nothing is
//! allocated per request.
//!
//! Two I/O loops (`--io`): `uring.rs` puts every connection's sends and
//! receives of a turn into one io_uring submission (the default where the
//! kernel allows it); `drive_epoll` here is the `mio` (epoll) loop, one
//! system call per send, per receive and per wait. The clock is read once
//! per wake-up, not per answer.

use super::schedule::{Clock, End, Schedule, Window};
use super::tally::Tally;
use super::workload::Generator;
use mio::{Events, Interest, Poll, Token};
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::connection::Connection;
pub use super::wire::{connect, Wire};

/// How often in-flight requests are checked against the timeout.
pub(super) const TIMEOUT_SCAN_NS: u64 = 2_000_000;
/// Longest wait in one poll when nothing is due.
pub(super) const IDLE_WAIT: Duration = Duration::from_millis(2);
/// Open loop: waits shorter than this are spun (polling without
/// sleeping). A timed sleep and its wake-up cost tens of microseconds of
/// CPU on a virtual machine, more than polling for that long, and wake
/// late; the time spun is counted apart (`client_cpu.spin_s`) so it does
/// not read as load.
pub(super) const SPIN_NS: u64 = 200_000;
/// Timer slack asked of the kernel for the pacing sleeps.
pub(super) const TIMER_SLACK_NS: u64 = 1_000;
/// Poll events handled per wake-up.
const EVENTS_MAX: usize = 256;

/// Which system calls a client thread's loop uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Io {
    /// One io_uring submission per turn for every connection's sends and
    /// receives (falls back to `Epoll` where io_uring is unavailable).
    Uring,
    /// `mio`: epoll, then one `send` and `recv` per connection.
    Epoll,
}

impl Io {
    /// Parses `--io`.
    pub fn parse(text: &str) -> Result<Io, String> {
        match text {
            "uring" => Ok(Io::Uring),
            "epoll" => Ok(Io::Epoll),
            other => Err(format!("--io {other:?}: uring or epoll")),
        }
    }

    /// The flag's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Io::Uring => "uring",
            Io::Epoll => "epoll",
        }
    }
}

/// One phase of a run (a preload, or one measured load), for every thread.
pub struct Phase {
    /// The client threads' I/O loop.
    pub io: Io,
    /// The server.
    pub address: SocketAddr,
    /// The protocol.
    pub wire: Wire,
    /// HELLO credential (x700).
    pub token: String,
    /// Requests in flight per connection, at most (closed loop: always).
    pub pipeline: usize,
    /// Client threads.
    pub threads: usize,
    /// Open loop rate over all connections; `None` for a closed loop.
    pub rate_per_s: Option<f64>,
    /// Open loop: a thread sends at most once per this many ns, every
    /// request due by then in one `send` per connection (one send per
    /// request would cost the client and the server a system call each).
    /// Requests wait for it, and their latency, counted from their due
    /// time, shows it.
    pub send_quantum_ns: u64,
    /// Requests intended before this are not counted.
    pub warmup_ns: u64,
    /// When measuring ends (a count is split over the connections).
    pub end: End,
    /// Unanswered this long: a timeout.
    pub timeout_ns: u64,
    /// Answers received so far (for a progress bar).
    pub progress: Arc<AtomicU64>,
}

/// Connects every connection of a phase, hands them to the phase's
/// threads and runs them; returns the merged tally and the clock's start.
pub fn run_phase(phase: &Phase, generators: Vec<Generator>) -> Result<Tally, String> {
    let connections = generators.len();
    let mut streams = Vec::with_capacity(connections);
    for _ in 0..connections {
        streams.push(connect(phase.address, &phase.wire, &phase.token)?);
    }
    let threads = phase.threads.clamp(1, connections.max(1));
    let mut groups: Vec<Vec<(usize, TcpStream, Generator)>> =
        (0..threads).map(|_| Vec::new()).collect();
    for (index, (stream, generator)) in streams.into_iter().zip(generators).enumerate() {
        groups[index % threads].push((index, stream, generator));
    }
    let clock = Clock::start();
    let tallies = std::thread::scope(|scope| {
        let handles: Vec<_> = groups
            .into_iter()
            .map(|group| {
                let clock = &clock;
                scope.spawn(move || match phase.io {
                    Io::Uring => super::uring::drive(phase, group, connections, clock),
                    Io::Epoll => drive_epoll(phase, group, connections, clock),
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| Err("a client thread panicked".into()))
            })
            .collect::<Vec<_>>()
    });
    let mut total = Tally::default();
    for tally in tallies {
        total.merge(&tally?);
    }
    Ok(total)
}

/// The connections of one client thread, each with its schedule (open
/// loop) and its share of the phase's requests.
pub(super) fn connections_of(
    phase: &Phase,
    group: Vec<(usize, TcpStream, Generator)>,
    connection_count: usize,
) -> Vec<Connection> {
    group
        .into_iter()
        .map(|(index, stream, generator)| {
            let schedule = phase
                .rate_per_s
                .map(|rate| Schedule::new(rate, connection_count, index));
            let end = match phase.end {
                End::At(ns) => End::At(ns),
                End::Count(total) => {
                    let count = connection_count as u64;
                    End::Count(total / count + u64::from((index as u64) < total % count))
                }
            };
            Connection::new(
                stream,
                generator,
                schedule,
                Window::new(phase.warmup_ns, end),
                phase.pipeline,
            )
        })
        .collect()
}

/// When a thread should wake next: the next timeout scan or, open loop,
/// the earliest due request of a connection with room (not before the
/// next send quantum).
pub(super) fn wake_ns(
    phase: &Phase,
    connections: &[Connection],
    next_scan_ns: u64,
    last_send_ns: u64,
) -> u64 {
    let mut wake_ns = next_scan_ns;
    if phase.rate_per_s.is_some() {
        let mut due_ns = u64::MAX;
        for connection in connections {
            if connection.has_room(phase.pipeline) {
                if let Some(schedule) = &connection.schedule {
                    due_ns = due_ns.min(schedule.due_ns());
                }
            }
        }
        wake_ns = wake_ns.min(due_ns.max(last_send_ns + phase.send_quantum_ns));
    }
    wake_ns
}

/// One client thread on `mio`: its connections until each has sent its
/// share and heard every answer (or given up on it).
pub(super) fn drive_epoll(
    phase: &Phase,
    group: Vec<(usize, TcpStream, Generator)>,
    connection_count: usize,
    clock: &Clock,
) -> Result<Tally, String> {
    crate::sys::set_timer_slack_ns(TIMER_SLACK_NS);
    let mut tally = Tally::default();
    let mut poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
    let mut connections = connections_of(phase, group, connection_count);
    for (token, connection) in connections.iter_mut().enumerate() {
        poll.registry()
            .register(
                &mut connection.stream,
                Token(token),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| format!("register: {e}"))?;
    }
    let mut events = Events::with_capacity(EVENTS_MAX);
    let mut next_scan_ns = TIMEOUT_SCAN_NS;
    let open_loop = phase.rate_per_s.is_some();
    let mut last_send_ns = 0;
    loop {
        let now_ns = clock.now_ns();
        // Open loop: requests go out at most once per quantum, so each
        // send carries every request due since the last one.
        if !open_loop || now_ns >= last_send_ns + phase.send_quantum_ns {
            last_send_ns = now_ns;
            let now_s = if matches!(phase.wire, Wire::Redis(_)) {
                unix_now_s()
            } else {
                0
            };
            for connection in &mut connections {
                connection.make_requests(phase, now_ns, now_s, &mut tally);
            }
        }
        if now_ns >= next_scan_ns {
            for connection in &mut connections {
                connection.expire(phase.timeout_ns, now_ns, &mut tally);
            }
            next_scan_ns = now_ns + TIMEOUT_SCAN_NS;
        }
        if connections.iter().all(Connection::finished) {
            break;
        }
        // Sleep until the next request is due, an answer comes, or the
        // next timeout scan; short waits are spun for precision.
        let wake_ns = wake_ns(phase, &connections, next_scan_ns, last_send_ns);
        let now_ns = clock.now_ns();
        let wait_ns = wake_ns.saturating_sub(now_ns);
        let mut spinning = false;
        let timeout = if open_loop {
            if wait_ns > SPIN_NS {
                crate::sys::wait_readable(&poll, Duration::from_nanos(wait_ns - SPIN_NS));
            } else {
                spinning = true;
            }
            Some(Duration::ZERO)
        } else {
            Some(IDLE_WAIT.min(Duration::from_nanos(wait_ns.max(1))))
        };
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() != ErrorKind::Interrupted {
                return Err(format!("poll: {e}"));
            }
        }
        let mut answers = 0;
        let woke_ns = clock.now_ns();
        for event in &events {
            let connection = &mut connections[event.token().0];
            if event.is_writable() {
                connection.flush(&mut tally);
            }
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                answers += connection.read_answers(phase, woke_ns, &mut tally);
            }
        }
        if spinning && events.is_empty() {
            tally.spin_ns += woke_ns.saturating_sub(now_ns);
        }
        if answers > 0 {
            phase.progress.fetch_add(answers, Ordering::Relaxed);
        }
    }
    Ok(tally)
}

/// The wall clock in seconds (binding expiry times in Redis values).
pub(super) fn unix_now_s() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}
