//! The data the event loops update: `LocalMetrics` (one loop's plain
//! counters and latency histogram, no atomics), `WorkerMetrics` (the
//! snapshot a loop publishes into each tick) and `NodeMetrics` (every
//! loop's snapshot, summed when read), with the slots they count in.

use super::reasons::{Guard, SipUnanswered, GUARDS, SIP_UNANSWERED};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Opcodes with their own metric label, in slot order.
pub(super) const OPCODES: [(u8, &str); 11] = [
    (crate::protocol::opcode::HELLO, "hello"),
    (crate::protocol::opcode::PING, "ping"),
    (crate::protocol::opcode::STATS, "stats"),
    (crate::protocol::opcode::LOOKUP, "lookup"),
    (crate::protocol::opcode::BIND_AXB, "bind_axb"),
    (crate::protocol::opcode::BIND_AXN, "bind_axn"),
    (crate::protocol::opcode::BIND_AXE, "bind_axe"),
    (crate::protocol::opcode::UPDATE, "update"),
    (crate::protocol::opcode::UNBIND, "unbind"),
    (crate::protocol::opcode::QUERY, "query"),
    (crate::protocol::opcode::WAIT_INDEX, "wait_index"),
];
/// Slots: the opcodes above plus "other".
pub(super) const OPCODE_SLOTS: usize = OPCODES.len() + 1;
/// Status codes 0..=`status::BEHIND` plus "other" (the last slot).
pub(super) const STATUS_SLOTS: usize = crate::protocol::status::BEHIND as usize + 2;
/// Upper bounds of the latency buckets, microseconds.
pub(super) const LATENCY_BOUNDS_US: [u64; 11] =
    [5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000];
/// Buckets: the bounds plus +Inf.
pub(super) const LATENCY_SLOTS: usize = LATENCY_BOUNDS_US.len() + 1;

/// ENUM answer codes with their own slot (`frontend::enum_dns::rcode`),
/// plus "other" (the last slot).
pub(super) const ENUM_RCODES: [u8; 7] = [0, 1, 2, 3, 4, 5, 16];
/// Slots of the ENUM answer counts.
pub(super) const ENUM_RCODE_SLOTS: usize = ENUM_RCODES.len() + 1;

/// SIP response codes counted one by one: 100 to 699.
pub(super) const SIP_CODES: std::ops::RangeInclusive<u16> = 100..=699;
/// Slots of the SIP response counts.
pub(super) const SIP_CODE_SLOTS: usize = 600;

/// The slot of opcode `op`: its place in `OPCODES`, else "other".
pub(super) fn opcode_slot(op: u8) -> usize {
    OPCODES
        .iter()
        .position(|&(code, _)| code == op)
        .unwrap_or(OPCODES.len())
}

/// The slot of status `status`: itself, else "other" (the last slot).
pub(super) fn status_slot(status: u8) -> usize {
    usize::from(status).min(STATUS_SLOTS - 1)
}

/// One event loop's counters, owned and updated by that loop only.
pub struct LocalMetrics {
    requests: [[u64; STATUS_SLOTS]; OPCODE_SLOTS],
    latency: [u64; LATENCY_SLOTS],
    latency_sum_ns: u64,
    guards: [u64; GUARDS.len()],
    enum_answers: [u64; ENUM_RCODE_SLOTS],
    sip_responses: [u64; SIP_CODE_SLOTS],
    sip_unanswered: [u64; SIP_UNANSWERED.len()],
    /// Open connections.
    pub connections: u64,
}

impl Default for LocalMetrics {
    fn default() -> LocalMetrics {
        LocalMetrics {
            requests: [[0; STATUS_SLOTS]; OPCODE_SLOTS],
            latency: [0; LATENCY_SLOTS],
            latency_sum_ns: 0,
            guards: [0; GUARDS.len()],
            enum_answers: [0; ENUM_RCODE_SLOTS],
            sip_responses: [0; SIP_CODE_SLOTS],
            sip_unanswered: [0; SIP_UNANSWERED.len()],
            connections: 0,
        }
    }
}

impl LocalMetrics {
    /// Counts one answered request.
    #[inline(always)]
    pub fn answered(&mut self, op: u8, status: u8) {
        self.requests[opcode_slot(op)][status_slot(status)] += 1;
    }

    /// Counts `count` requests answered `latency_ns` after they were read.
    #[inline]
    pub fn latency(&mut self, latency_ns: u64, count: u64) {
        let micros = latency_ns / 1000;
        let slot = LATENCY_BOUNDS_US
            .iter()
            .position(|&b| micros <= b)
            .unwrap_or(LATENCY_SLOTS - 1);
        self.latency[slot] += count;
        self.latency_sum_ns += latency_ns * count;
    }

    /// Counts `count` guard events.
    #[inline]
    pub fn guard(&mut self, guard: Guard, count: u64) {
        self.guards[guard as usize] += count;
    }

    /// Counts one ENUM answer with DNS rcode `code`.
    #[inline]
    pub fn enum_answered(&mut self, code: u8) {
        let slot = ENUM_RCODES
            .iter()
            .position(|&c| c == code)
            .unwrap_or(ENUM_RCODES.len());
        self.enum_answers[slot] += 1;
    }

    /// Counts one SIP response sent, by status code.
    #[inline]
    pub fn sip_answered(&mut self, code: u16) {
        if SIP_CODES.contains(&code) {
            self.sip_responses[usize::from(code - SIP_CODES.start())] += 1;
        }
    }

    /// Counts one SIP message that got no answer.
    #[inline]
    pub fn sip_unanswered(&mut self, why: SipUnanswered) {
        self.sip_unanswered[why as usize] += 1;
    }

    /// Copies the counters into the shared snapshot.
    pub fn publish(&self, shared: &WorkerMetrics, queue_depth: u64, bindings_live: u64) {
        for (slot, &count) in self.enum_answers.iter().enumerate() {
            shared.enum_answers[slot].store(count, Ordering::Relaxed);
        }
        for (op, row) in self.requests.iter().enumerate() {
            for (status, &count) in row.iter().enumerate() {
                shared.requests[op * STATUS_SLOTS + status].store(count, Ordering::Relaxed);
            }
        }
        for (slot, &count) in self.latency.iter().enumerate() {
            shared.latency[slot].store(count, Ordering::Relaxed);
        }
        shared
            .latency_sum_ns
            .store(self.latency_sum_ns, Ordering::Relaxed);
        for (slot, &count) in self.guards.iter().enumerate() {
            shared.guards[slot].store(count, Ordering::Relaxed);
        }
        for (slot, &count) in self.sip_responses.iter().enumerate() {
            if count > 0 {
                shared.sip_responses[slot].store(count, Ordering::Relaxed);
            }
        }
        for (slot, &count) in self.sip_unanswered.iter().enumerate() {
            shared.sip_unanswered[slot].store(count, Ordering::Relaxed);
        }
        shared
            .connections
            .store(self.connections, Ordering::Relaxed);
        shared.queue_depth.store(queue_depth, Ordering::Relaxed);
        shared.bindings_live.store(bindings_live, Ordering::Relaxed);
    }
}

/// The published snapshot of one event loop.
#[derive(Debug)]
pub struct WorkerMetrics {
    pub(super) requests: Vec<AtomicU64>,
    pub(super) latency: Vec<AtomicU64>,
    pub(super) latency_sum_ns: AtomicU64,
    pub(super) guards: Vec<AtomicU64>,
    pub(super) enum_answers: Vec<AtomicU64>,
    pub(super) sip_responses: Vec<AtomicU64>,
    pub(super) sip_unanswered: Vec<AtomicU64>,
    pub(super) connections: AtomicU64,
    pub(super) queue_depth: AtomicU64,
    pub(super) bindings_live: AtomicU64,
}

impl Default for WorkerMetrics {
    fn default() -> WorkerMetrics {
        WorkerMetrics {
            requests: (0..OPCODE_SLOTS * STATUS_SLOTS)
                .map(|_| AtomicU64::new(0))
                .collect(),
            latency: (0..LATENCY_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            latency_sum_ns: AtomicU64::new(0),
            guards: (0..GUARDS.len()).map(|_| AtomicU64::new(0)).collect(),
            enum_answers: (0..ENUM_RCODE_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            sip_responses: (0..SIP_CODE_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            sip_unanswered: (0..SIP_UNANSWERED.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            connections: AtomicU64::new(0),
            queue_depth: AtomicU64::new(0),
            bindings_live: AtomicU64::new(0),
        }
    }
}

/// All event loops' metrics, as one prometheus collector.
#[derive(Debug, Clone, Default)]
pub struct NodeMetrics {
    /// One per event loop.
    pub workers: Vec<Arc<WorkerMetrics>>,
    /// The registry, whose screening counts lookups refused by tenant.
    pub control: Option<Arc<crate::tenant::Control>>,
}

impl NodeMetrics {
    pub(super) fn sum(&self, pick: impl Fn(&WorkerMetrics) -> u64) -> u64 {
        self.workers.iter().map(|w| pick(w)).sum()
    }

    /// Total live bindings across loops.
    pub fn bindings_live(&self) -> u64 {
        self.sum(|w| w.bindings_live.load(Ordering::Relaxed))
    }

    /// The node's own time per lookup, read to answer (the histogram
    /// `x700_request_latency_seconds`), for STATS: how many, the mean, and
    /// the bucket bounds under which half and 99% of them fall. Beside a
    /// benchmark client's figures it tells a slow node from a saturated
    /// client.
    pub fn request_time_json(&self) -> serde_json::Value {
        let counts: Vec<u64> = (0..LATENCY_SLOTS)
            .map(|slot| self.sum(|w| w.latency[slot].load(Ordering::Relaxed)))
            .collect();
        let total: u64 = counts.iter().sum();
        let bound_of = |share: u64| -> serde_json::Value {
            let mut seen = 0;
            for (slot, &count) in counts.iter().enumerate() {
                seen += count;
                if total > 0 && seen * 100 >= total * share {
                    return LATENCY_BOUNDS_US
                        .get(slot)
                        .map_or(serde_json::Value::Null, |&us| us.into());
                }
            }
            serde_json::Value::Null
        };
        let sum_ns = self.sum(|w| w.latency_sum_ns.load(Ordering::Relaxed));
        // Nanosecond sums and counts below 2^52: exact enough in f64.
        #[allow(clippy::cast_precision_loss)]
        let mean_us = if total == 0 {
            0.0
        } else {
            (sum_ns as f64 / total as f64 / 100.0).round() / 10.0
        };
        serde_json::json!({
            "lookups": total,
            "mean_us": mean_us,
            "p50_at_most_us": bound_of(50),
            "p99_at_most_us": bound_of(99),
        })
    }
}

impl NodeMetrics {
    /// Total count of one guard across loops.
    pub fn guard_total(&self, guard: Guard) -> u64 {
        self.sum(|w| w.guards[guard as usize].load(Ordering::Relaxed))
    }
}
