//! When requests are due. Open loop (wrk2's model): each connection sends
//! on a fixed schedule, its share of the target rate, whatever the server
//! does; a request's latency counts from its *intended* send time, so a
//! stall delays every request due during it and all of them show it
//! (coordinated omission corrected). If the client falls behind (in-flight
//! cap reached, socket full, CPU short) it still stamps intended times and
//! reports how late it sent. Closed loop: a request is due when an earlier
//! one is answered; its intended time is its send time.

use std::time::{Duration, Instant};

/// A request sent later than this after its due time counts as the client
/// falling behind.
pub const BEHIND_NS: u64 = 1_000_000;

/// Nanoseconds since the start of a run: one clock for every thread.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    /// A clock starting now.
    pub fn start() -> Clock {
        Clock {
            epoch: Instant::now(),
        }
    }

    /// Nanoseconds since the start.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The instant `ns` after the start.
    pub fn instant(&self, ns: u64) -> Instant {
        self.epoch + Duration::from_nanos(ns)
    }
}

/// The open-loop schedule of one connection: request k is due at
/// `phase + k * interval`.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    interval_ns: f64,
    phase_ns: f64,
    next: u64,
}

impl Schedule {
    /// Connection `connection` of `connections` sharing `rate_per_s`: each
    /// sends every `connections / rate` seconds, the connections staggered
    /// evenly so the server sees an even stream.
    pub fn new(rate_per_s: f64, connections: usize, connection: usize) -> Schedule {
        // Connection counts are small (CONNECTIONS_MAX): exact in f64.
        #[allow(clippy::cast_precision_loss)]
        let (connections, connection) = (connections.max(1) as f64, connection as f64);
        let interval_ns = 1e9 * connections / rate_per_s;
        Schedule {
            interval_ns,
            phase_ns: interval_ns * connection / connections,
            next: 0,
        }
    }

    /// When the next request is due.
    #[inline]
    pub fn due_ns(&self) -> u64 {
        // Request counts below 2^53: exact; the product is a time in ns
        // below a day, far inside u64.
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let due = (self.phase_ns + self.next as f64 * self.interval_ns) as u64;
        due
    }

    /// The next request was sent.
    #[inline]
    pub fn advance(&mut self) {
        self.next += 1;
    }
}

/// When measuring ends for one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// No request intended at or after this time (ns since the start).
    At(u64),
    /// After this many measured requests.
    Count(u64),
}

/// Which requests of one connection are warm-up, measured, or past the end.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    warmup_ns: u64,
    end: End,
    measured: u64,
}

/// Where a request falls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// Before the warm-up ends: sent, answered, not counted.
    Warmup,
    /// Counted.
    Measured,
    /// The run is over for this connection: do not send.
    Over,
}

impl Window {
    /// Requests intended before `warmup_ns` warm up; measuring ends at `end`.
    pub fn new(warmup_ns: u64, end: End) -> Window {
        Window {
            warmup_ns,
            end,
            measured: 0,
        }
    }

    /// Where a request intended at `intended_ns` falls; counts it if
    /// measured.
    #[inline]
    pub fn place(&mut self, intended_ns: u64) -> Place {
        if intended_ns < self.warmup_ns {
            return Place::Warmup;
        }
        match self.end {
            End::At(end_ns) if intended_ns >= end_ns => Place::Over,
            End::Count(count) if self.measured >= count => Place::Over,
            _ => {
                self.measured += 1;
                Place::Measured
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_share_the_rate_evenly() {
        let mut due = Vec::new();
        for connection in 0..4 {
            let mut schedule = Schedule::new(4000.0, 4, connection);
            for _ in 0..10 {
                due.push(schedule.due_ns());
                schedule.advance();
            }
        }
        due.sort_unstable();
        // 4000/s overall: one request every 250 us, no two at once.
        for (k, ns) in due.iter().enumerate() {
            assert!(ns.abs_diff(k as u64 * 250_000) <= 1, "{k}: {ns}");
        }
    }

    #[test]
    fn window_places_requests() {
        let mut window = Window::new(100, End::At(200));
        assert_eq!(window.place(99), Place::Warmup);
        assert_eq!(window.place(100), Place::Measured);
        assert_eq!(window.place(199), Place::Measured);
        assert_eq!(window.place(200), Place::Over);
        let mut counted = Window::new(0, End::Count(2));
        assert_eq!(counted.place(5), Place::Measured);
        assert_eq!(counted.place(6), Place::Measured);
        assert_eq!(counted.place(7), Place::Over);
    }
}
