//! The OpenMetrics page `/metrics` writes: the prometheus-client
//! collector over `NodeMetrics` (requests by opcode and status, the
//! latency histogram, guards, screened lookups, ENUM and SIP answers,
//! gauges) and the labels it gives each slot.

use super::counters::{
    NodeMetrics, ENUM_RCODES, ENUM_RCODE_SLOTS, LATENCY_BOUNDS_US, LATENCY_SLOTS, OPCODES,
    OPCODE_SLOTS, SIP_CODES, STATUS_SLOTS,
};
use super::reasons::{GUARDS, SIP_UNANSWERED};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;
use std::sync::atomic::Ordering;

/// The bound prometheus-client's text encoder writes as `le="+Inf"`. It
/// must be `f64::MAX`, not `f64::INFINITY`, which it writes as `le="inf"`:
/// a spelling OpenMetrics parsers reject.
const INF_BOUND: f64 = f64::MAX;

impl NodeMetrics {
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

#[cfg(test)]
pub(super) mod tests {
    //! Proves the page's spelling where prometheus-client leaves it to us:
    //! the histogram's last bucket and the characters of label values.
    use super::*;
    use crate::server::metrics::counters::{opcode_slot, status_slot, LocalMetrics, WorkerMetrics};
    use prometheus_client::registry::Registry;
    use std::sync::Arc;

    /// One event loop that answered one lookup in 3 us and one in 1 s.
    pub(in crate::server::metrics) fn page() -> String {
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
