//! Metrics. Each event loop counts in plain local integers (no atomics, no
//! locks on the hot path) and publishes them every tick into its own
//! `WorkerMetrics`; a prometheus-client collector sums the workers at
//! scrape time.
//!
//! The page is OpenMetrics 1.0 text (prometheus-client's text encoder ends
//! it with `# EOF`, and adds `_total` to counters' samples). The encoder
//! neither escapes label values nor HELP texts, so every label value and
//! help text here is a plain identifier or sentence with no `\`, `"` or
//! line break (a unit test checks it).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Opcodes with their own metric label, in slot order.
const OPCODES: [(u8, &str); 11] = [
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
const OPCODE_SLOTS: usize = OPCODES.len() + 1;
/// Status codes 0..=`status::BEHIND` plus "other" (the last slot).
const STATUS_SLOTS: usize = crate::protocol::status::BEHIND as usize + 2;
/// Upper bounds of the latency buckets, microseconds.
const LATENCY_BOUNDS_US: [u64; 11] = [5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000];
/// Buckets: the bounds plus +Inf.
const LATENCY_SLOTS: usize = LATENCY_BOUNDS_US.len() + 1;
/// The bound prometheus-client's text encoder writes as `le="+Inf"`. It
/// must be `f64::MAX`, not `f64::INFINITY`, which it writes as `le="inf"`:
/// a spelling OpenMetrics parsers reject.
const INF_BOUND: f64 = f64::MAX;

/// ENUM answer codes with their own slot (`frontend::enum_dns::rcode`),
/// plus "other" (the last slot).
const ENUM_RCODES: [u8; 7] = [0, 1, 2, 3, 4, 5, 16];
const ENUM_RCODE_SLOTS: usize = ENUM_RCODES.len() + 1;

/// Things a node refuses or cuts off to protect itself, each counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guard {
    /// A connection refused: the node holds `connections_max`.
    RefusedNodeFull,
    /// A connection refused: its source holds `connections_per_source_max`.
    RefusedPerSource,
    /// Closed: no HELLO within `hello_deadline_ms`.
    HelloDeadline,
    /// Closed: a session silent for `idle_timeout_s`.
    Idle,
    /// Closed: unread answers beyond `output_buffer_bytes_max`.
    UnreadOutput,
    /// A UDP lookup dropped by `udp_lookups_per_source_per_s`.
    UdpRateLimited,
    /// A request answered BUSY because the node's unsent output is beyond
    /// `output_bytes_total_max`.
    OutputFull,
}

/// Guards in slot order, with the metric and label each is reported under.
const GUARDS: [(Guard, &str, &str); 7] = [
    (
        Guard::RefusedNodeFull,
        "x700_connections_refused",
        "node_full",
    ),
    (
        Guard::RefusedPerSource,
        "x700_connections_refused",
        "per_source",
    ),
    (
        Guard::HelloDeadline,
        "x700_connections_closed",
        "hello_deadline",
    ),
    (Guard::Idle, "x700_connections_closed", "idle"),
    (
        Guard::UnreadOutput,
        "x700_connections_closed",
        "unread_output",
    ),
    (Guard::UdpRateLimited, "x700_udp_lookups_rate_limited", ""),
    (Guard::OutputFull, "x700_requests_refused_output_full", ""),
];

/// SIP response codes counted one by one: 100 to 699.
const SIP_CODES: std::ops::RangeInclusive<u16> = 100..=699;
/// Slots of the SIP response counts.
const SIP_CODE_SLOTS: usize = 600;

/// Why a SIP message got no answer, each counted
/// (`x700_sip_unanswered_total{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SipUnanswered {
    /// An ACK, absorbed.
    Ack,
    /// A response (x700 sends no requests).
    Response,
    /// No usable Via: nobody to answer.
    NoVia,
    /// From outside `switch_networks`.
    NotSwitchNetwork,
    /// Over `udp_lookups_per_source_per_s`.
    RateLimited,
}

/// Reasons in slot order, with their label.
const SIP_UNANSWERED: [(SipUnanswered, &str); 5] = [
    (SipUnanswered::Ack, "ack"),
    (SipUnanswered::Response, "response"),
    (SipUnanswered::NoVia, "no_via"),
    (SipUnanswered::NotSwitchNetwork, "not_switch_network"),
    (SipUnanswered::RateLimited, "rate_limited"),
];

fn opcode_slot(op: u8) -> usize {
    OPCODES
        .iter()
        .position(|&(code, _)| code == op)
        .unwrap_or(OPCODES.len())
}

fn status_slot(status: u8) -> usize {
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
    requests: Vec<AtomicU64>,
    latency: Vec<AtomicU64>,
    latency_sum_ns: AtomicU64,
    guards: Vec<AtomicU64>,
    enum_answers: Vec<AtomicU64>,
    sip_responses: Vec<AtomicU64>,
    sip_unanswered: Vec<AtomicU64>,
    connections: AtomicU64,
    queue_depth: AtomicU64,
    bindings_live: AtomicU64,
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
    fn sum(&self, pick: impl Fn(&WorkerMetrics) -> u64) -> u64 {
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

    /// `x700_lookups_screened_total{status, tenant}`: lookups the registry
    /// refused (suspended tenant, blocked caller, rate limit), by status
    /// and the tenant of the binding that would have routed them.
    fn encode_screened(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(control) = &self.control else {
            return Ok(());
        };
        let mut family = encoder.encode_descriptor(
            "x700_lookups_screened",
            "Lookups refused by the tenant registry, by status and tenant.",
            None,
            MetricType::Counter,
        )?;
        for ((status, tenant), count) in control.screened() {
            let tenant = tenant.to_string();
            family
                .encode_family(&[
                    ("status", crate::protocol::status::name(status)),
                    ("tenant", tenant.as_str()),
                ])?
                .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
        }
        Ok(())
    }

    /// `x700_sip_responses_total{code}` (codes sent at least once) and
    /// `x700_sip_unanswered_total{reason}`.
    fn encode_sip(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "x700_sip_responses",
            "SIP responses sent by the redirect front-end, by status code.",
            None,
            MetricType::Counter,
        )?;
        for (slot, code) in SIP_CODES.enumerate() {
            let count = self.sum(|w| w.sip_responses[slot].load(Ordering::Relaxed));
            if count > 0 {
                let code = code.to_string();
                family
                    .encode_family(&[("code", code.as_str())])?
                    .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "x700_sip_unanswered",
            "SIP messages the redirect front-end did not answer, by reason.",
            None,
            MetricType::Counter,
        )?;
        for (slot, &(_, reason)) in SIP_UNANSWERED.iter().enumerate() {
            let count = self.sum(|w| w.sip_unanswered[slot].load(Ordering::Relaxed));
            family
                .encode_family(&[("reason", reason)])?
                .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
        }
        Ok(())
    }

    fn encode_guards(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let helps = [
            (
                "x700_connections_refused",
                "TCP connections closed at accept, by reason.",
            ),
            (
                "x700_connections_closed",
                "TCP connections closed by the node to protect itself, by reason.",
            ),
            (
                "x700_udp_lookups_rate_limited",
                "UDP lookups dropped by the per-source rate limit.",
            ),
            (
                "x700_requests_refused_output_full",
                "Requests answered BUSY while the node's unsent output was at its limit.",
            ),
        ];
        for (name, help) in helps {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for &(guard, _, reason) in GUARDS.iter().filter(|(_, n, _)| *n == name) {
                let count = self.guard_total(guard);
                if reason.is_empty() {
                    family.encode_counter::<NoLabelSet, _, u64>(&count, None)?;
                } else {
                    family
                        .encode_family(&[("reason", reason)])?
                        .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
                }
            }
        }
        Ok(())
    }
}

impl NodeMetrics {
    /// `x700_enum_answers_total{rcode}`: ENUM answers by DNS rcode (the
    /// codes seen so far).
    fn encode_enum_answers(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "x700_enum_answers",
            "ENUM (DNS) answers, by rcode.",
            None,
            MetricType::Counter,
        )?;
        for slot in 0..ENUM_RCODE_SLOTS {
            let count = self.sum(|w| w.enum_answers[slot].load(Ordering::Relaxed));
            if count > 0 {
                let name = ENUM_RCODES.get(slot).map_or("other", |&code| {
                    crate::frontend::enum_dns::rcode::name(code)
                });
                family
                    .encode_family(&[("rcode", name)])?
                    .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
            }
        }
        Ok(())
    }
}

fn status_label(slot: usize) -> &'static str {
    if slot == STATUS_SLOTS - 1 {
        return "other";
    }
    u8::try_from(slot).map_or("other", crate::protocol::status::name)
}

impl Collector for NodeMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut requests = encoder.encode_descriptor(
            "x700_requests",
            "Requests answered, by opcode and status.",
            None,
            MetricType::Counter,
        )?;
        for op in 0..OPCODE_SLOTS {
            let op_name = OPCODES.get(op).map_or("other", |&(_, name)| name);
            for status in 0..STATUS_SLOTS {
                let count =
                    self.sum(|w| w.requests[op * STATUS_SLOTS + status].load(Ordering::Relaxed));
                if count > 0 {
                    let labels = [("opcode", op_name), ("status", status_label(status))];
                    requests
                        .encode_family(&labels)?
                        .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
                }
            }
        }
        // The text encoder accumulates the buckets itself: pass each
        // bucket's own count.
        let mut count = 0;
        let buckets: Vec<(f64, u64)> = (0..LATENCY_SLOTS)
            .map(|slot| {
                let in_bucket = self.sum(|w| w.latency[slot].load(Ordering::Relaxed));
                count += in_bucket;
                // Bounds are small integers: exact in f64.
                #[allow(clippy::cast_precision_loss)]
                let bound = LATENCY_BOUNDS_US
                    .get(slot)
                    .map_or(INF_BOUND, |&us| us as f64 / 1e6);
                (bound, in_bucket)
            })
            .collect();
        #[allow(clippy::cast_precision_loss)] // a sum of nanoseconds, reported in seconds
        let sum_s = self.sum(|w| w.latency_sum_ns.load(Ordering::Relaxed)) as f64 / 1e9;
        encoder
            .encode_descriptor(
                "x700_request_latency",
                "Time from reading a lookup to encoding its answer.",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?
            .encode_histogram::<NoLabelSet>(sum_s, count, &buckets, None)?;
        self.encode_guards(&mut encoder)?;
        self.encode_screened(&mut encoder)?;
        self.encode_enum_answers(&mut encoder)?;
        self.encode_sip(&mut encoder)?;
        let gauges: [(&str, &str, u64); 3] = [
            (
                "x700_connections",
                "Open TCP connections.",
                self.sum(|w| w.connections.load(Ordering::Relaxed)),
            ),
            (
                "x700_bindings_live",
                "Live bindings on this node.",
                self.bindings_live(),
            ),
            (
                "x700_queue_depth",
                "Batches waiting in the cross-core queues.",
                self.sum(|w| w.queue_depth.load(Ordering::Relaxed)),
            ),
        ];
        for (name, help, value) in gauges {
            let value = i64::try_from(value).unwrap_or(i64::MAX);
            encoder
                .encode_descriptor(name, help, None, MetricType::Gauge)?
                .encode_gauge(&value)?;
        }
        Ok(())
    }
}

/// The page in the Prometheus text format 0.0.4, made from the OpenMetrics
/// page the encoder writes, for scrapers that ask for `text/plain` and not
/// for OpenMetrics (`promtool check metrics` among them). The two formats
/// differ, for the metric types this page uses (counter, gauge, histogram),
/// in three ways only:
/// - a counter's HELP and TYPE lines name its samples, `_total` included
///   (OpenMetrics names the family, without it);
/// - there is no `# UNIT` line (the unit stays in the name);
/// - there is no `# EOF` terminator.
///
/// Sample lines are the same in both. Every other line is copied as it is.
pub fn prometheus_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let metadata = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|prefix| Some((prefix, line.strip_prefix(prefix)?)));
        match metadata {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                text.push_str(prefix);
                text.push_str(name);
                if counters.contains(&name) {
                    text.push_str("_total");
                }
                text.push(' ');
                text.push_str(tail);
            }
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

/// The follower lag gauges (`Replica::lag`), read when scraped:
/// `x700_follower_lag_entries` and `x700_follower_lag_seconds`.
pub struct LagMetrics(pub Arc<crate::replication::Replica>);

impl std::fmt::Debug for LagMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LagMetrics")
    }
}

impl Collector for LagMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let lag = self.0.lag();
        encoder
            .encode_descriptor(
                "x700_follower_lag_entries",
                "Entries the leader has committed that this member has not applied (0 at the leader).",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&i64::try_from(lag.entries).unwrap_or(i64::MAX))?;
        // In seconds, as Prometheus names time (promtool refuses `_ms`);
        // STATS says `lag_ms`. No leader has reached this member since it
        // started: as far behind as can be, +Inf, so that an alert fires.
        // Milliseconds below 2^53 are exact in f64.
        #[allow(clippy::cast_precision_loss)]
        let seconds = lag.ms.map_or(f64::INFINITY, |ms| ms as f64 / 1e3);
        encoder
            .encode_descriptor(
                "x700_follower_lag",
                "Time since the leader's last append reached this member (0 at the leader).",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?
            .encode_gauge(&seconds)?;
        Ok(())
    }
}

/// `x700_apply_stalled` (1 while this member cannot make room to apply a
/// committed entry and waits, 0 otherwise) and `x700_apply_stalls` (stalls
/// begun since the start), read when scraped.
pub struct ApplyStallMetrics(pub Arc<super::apply::ApplyStall>);

impl std::fmt::Debug for ApplyStallMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApplyStallMetrics")
    }
}

impl Collector for ApplyStallMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        encoder
            .encode_descriptor(
                "x700_apply_stalled",
                "1 while this member cannot make room to apply a committed entry and retries.",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&i64::from(self.0.is_stalled()))?;
        encoder
            .encode_descriptor(
                "x700_apply_stalls",
                "Times applying the log stalled for want of room since the start.",
                None,
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, _, u64>(&self.0.stalls(), None)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! Proves the page's spelling where prometheus-client leaves it to us:
    //! the histogram's last bucket and the characters of label values.
    use super::*;
    use prometheus_client::registry::Registry;

    /// One event loop that answered one lookup in 3 us and one in 1 s.
    fn page() -> String {
        let worker = Arc::new(WorkerMetrics::default());
        let mut local = LocalMetrics::default();
        local.answered(crate::protocol::opcode::LOOKUP, crate::protocol::status::OK);
        local.answered(crate::protocol::opcode::LOOKUP, crate::protocol::status::OK);
        local.latency(3_000, 1);
        local.latency(1_000_000_000, 1);
        local.publish(&worker, 0, 0);
        let mut registry = Registry::default();
        registry.register_collector(Box::new(NodeMetrics {
            workers: vec![worker],
            control: None,
        }));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        text
    }

    /// Guards the bug where the last bucket read `le="inf"` (the bound was
    /// `f64::INFINITY`), which OpenMetrics parsers reject.
    #[test]
    fn the_last_latency_bucket_is_plus_inf() {
        let text = page();
        assert!(
            text.contains("x700_request_latency_seconds_bucket{le=\"+Inf\"} 2\n"),
            "{text}"
        );
        assert!(!text.contains("le=\"inf\""), "{text}");
        assert!(
            text.contains("# UNIT x700_request_latency_seconds seconds\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    /// Counters' metadata takes the samples' name; UNIT and EOF go; the
    /// rest is copied.
    #[test]
    fn the_prometheus_text_names_counters_by_their_samples() {
        let text = prometheus_text(&page());
        assert!(
            text.starts_with(
                "# HELP x700_requests_total Requests answered, by opcode and status.\n\
                 # TYPE x700_requests_total counter\n\
                 x700_requests_total{opcode=\"lookup\",status=\"ok\"} 2\n\
                 # HELP x700_request_latency_seconds Time from reading a lookup to encoding its answer.\n\
                 # TYPE x700_request_latency_seconds histogram\n\
                 x700_request_latency_seconds_sum 1.000003\n"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("# TYPE x700_queue_depth gauge\nx700_queue_depth 0\n"),
            "{text}"
        );
        assert!(
            !text.contains("# UNIT") && !text.contains("# EOF"),
            "{text}"
        );
    }

    /// Guards the labels of the statuses after `INTERNAL`: 41 and above
    /// were all counted under the last slot, labelled `unavailable`.
    #[test]
    fn every_status_has_its_own_label_and_unknown_ones_are_other() {
        use crate::protocol::status;
        for code in [status::UNAVAILABLE, status::OUTCOME_UNKNOWN, status::BEHIND] {
            assert_eq!(status_label(status_slot(code)), status::name(code));
        }
        assert_eq!(status_label(status_slot(200)), "other");
        assert_eq!(
            OPCODES[opcode_slot(crate::protocol::opcode::WAIT_INDEX)].1,
            "wait_index"
        );
    }

    /// The text encoder writes label values as they are: none may hold a
    /// character OpenMetrics would need escaped.
    #[test]
    fn label_values_need_no_escaping() {
        let opcodes = OPCODES.iter().map(|&(_, name)| name).chain(["other"]);
        let statuses = (0..STATUS_SLOTS).map(status_label);
        for value in opcodes.chain(statuses) {
            assert!(
                !value.is_empty()
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "label value {value:?}"
            );
        }
    }
}
