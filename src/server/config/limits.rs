//! `[limits]`: what one node accepts before it refuses, closes or answers
//! BUSY (connections, frames, output, queues, UDP rate), each with its
//! default, and the bounds `Config::validate` holds the HELLO deadline and
//! the automatic output budget to.

use serde::Deserialize;

/// Limits, each with a default.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Open TCP connections per node; more are accepted and closed at once.
    /// At most the process's open-file limit (less a reserve for the data
    /// directory's files).
    pub connections_max: usize,
    /// Open TCP connections from one source address.
    pub connections_per_source_max: u32,
    /// A connection that has not completed HELLO this long after it was
    /// accepted is closed, without an answer.
    pub hello_deadline_ms: u64,
    /// A session that sends nothing for this long is closed (0: never).
    /// PING keeps a session alive.
    pub idle_timeout_s: u64,
    /// Largest request frame, header included.
    pub request_frame_bytes_max: u32,
    /// Requests one connection may have waiting on another core.
    pub in_flight_per_connection_max: u32,
    /// Unsent answer bytes per connection before it is cut off.
    pub output_buffer_bytes_max: usize,
    /// Unsent answer bytes of all connections together; past it, requests
    /// are answered BUSY until clients read (0: an eighth of the machine's
    /// memory, at most 4 GiB).
    pub output_bytes_total_max: u64,
    /// Batches queued from one core to another before BUSY.
    pub queue_batches_max: usize,
    /// UDP lookups answered per source address and second; beyond it
    /// datagrams are dropped unanswered (0: no limit).
    pub udp_lookups_per_source_per_s: u32,
    /// A follower this many committed entries behind the leader answers
    /// 503 on `/readyz` until it catches up (0: lag never makes it
    /// unready).
    pub ready_lag_entries_max: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            connections_max: 10_000,
            connections_per_source_max: 1000,
            hello_deadline_ms: 5000,
            idle_timeout_s: 300,
            request_frame_bytes_max: crate::protocol::limits::REQUEST_FRAME_BYTES_DEFAULT,
            in_flight_per_connection_max: 1024,
            output_buffer_bytes_max: 4 << 20,
            output_bytes_total_max: 0,
            queue_batches_max: 256,
            udp_lookups_per_source_per_s: 0,
            ready_lag_entries_max: 100_000,
        }
    }
}

/// Shortest and longest HELLO deadline accepted, milliseconds.
pub const HELLO_DEADLINE_MS_RANGE: std::ops::RangeInclusive<u64> = 100..=600_000;

/// The automatic `output_bytes_total_max`: an eighth of `memory_bytes`, at
/// least 64 MiB and at most 4 GiB.
pub fn output_bytes_total_default(memory_bytes: u64) -> u64 {
    (memory_bytes / 8).clamp(64 << 20, 4 << 30)
}

#[cfg(test)]
mod tests {
    use crate::server::config::Config;

    /// Guards `--max-frame-bytes 64`, which started a node that could not
    /// read a BIND.
    #[test]
    fn a_frame_limit_below_the_largest_request_is_refused() {
        let mut config = Config::default();
        config.limits.request_frame_bytes_max = 79;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("80"), "{error}");
        config.limits.request_frame_bytes_max = 80;
        config.validate().unwrap();
    }
}
