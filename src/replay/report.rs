//! The replay's report: what was sent and answered, latency percentiles,
//! the achieved rate, and the diff of replayed answers against captured
//! ones (counts by old and new status, the first examples). Printed as a
//! human summary or written as JSON; the JSON keys `requests_sent`,
//! `answers_compared`, `answers_changed`, `latency_us` (`p50`, `p99`,
//! `max`) and `achieved_rate_per_s` are a contract.

use super::diff::{hex, same_answer, status_of};
use super::plan::Plan;
use super::run::Replayed;
use crate::capture::CaptureError;
use crate::protocol::status;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// Changed answers kept as examples.
pub const EXAMPLES_MAX: usize = 10;

/// One changed answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    /// Captured connection number.
    pub connection: usize,
    /// Request id.
    pub request_id: u32,
    /// Opcode.
    pub opcode: u8,
    /// The captured answer frame.
    pub old: Vec<u8>,
    /// The replayed answer frame.
    pub new: Vec<u8>,
}

/// Everything a replay measured.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Connections replayed.
    pub connections: u64,
    /// Requests the plan held.
    pub requests_planned: u64,
    /// Requests written.
    pub requests_sent: u64,
    /// Answers read.
    pub answers_received: u64,
    /// Answers whose captured answer was there to compare with.
    pub answers_compared: u64,
    /// Of those, answers that differ.
    pub answers_changed: u64,
    /// Changed answers by (old status, new status).
    pub changes: BTreeMap<(u8, u8), u64>,
    /// The first changed answers.
    pub examples: Vec<Example>,
    /// Requests (UPDATE, UNBIND by id, QUERY) sent with their binding id
    /// rewritten to the one the replayed node gave.
    pub ids_remapped: u64,
    /// Such requests whose id no replayed BIND answer taught: sent as
    /// captured.
    pub ids_unmapped: u64,
    /// Latency percentiles, microseconds: p50, p99, max.
    pub latency_us: [u64; 3],
    /// Wall time of the replay.
    pub elapsed: Duration,
    /// Answers per second of wall time.
    pub achieved_rate_per_s: f64,
    /// Client CPU time (user + system), microseconds.
    pub client_cpu_us: u64,
    /// Connections that stopped early: (connection, why).
    pub connection_errors: Vec<(usize, String)>,
    /// Why reading the capture stopped early, if it did.
    pub capture_error: Option<CaptureError>,
}

/// The value at `fraction` of sorted `values` (0 when empty).
fn percentile(sorted: &[u64], fraction: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Builds the report of a replay from its plan and what it did.
pub fn report(
    plan: &Plan,
    replayed: &Replayed,
    exact: bool,
    elapsed: Duration,
    client_cpu_us: u64,
) -> Report {
    let outcomes = &replayed.outcomes;
    let mut report = Report {
        connections: outcomes.len() as u64,
        requests_planned: plan.requests(),
        ids_remapped: replayed.ids.remapped,
        ids_unmapped: replayed.ids.unmapped,
        elapsed,
        client_cpu_us,
        ..Report::default()
    };
    let mut latencies = Vec::new();
    for (connection, outcome) in plan.connections.iter().zip(outcomes.iter()) {
        report.requests_sent += outcome.sent;
        report.answers_received += outcome.answers.len() as u64;
        if let Some(error) = &outcome.error {
            report
                .connection_errors
                .push((outcome.connection, error.clone()));
        }
        let mut answers: Vec<_> = outcome.answers.iter().collect();
        answers.sort_by_key(|answer| answer.request);
        for answer in answers {
            latencies.push(answer.latency_us);
            let Some(request) = connection.requests.get(answer.request) else {
                continue;
            };
            let Some(old) = &request.captured_answer else {
                continue;
            };
            report.answers_compared += 1;
            if same_answer(old, &answer.bytes, exact, &replayed.ids.learned) {
                continue;
            }
            report.answers_changed += 1;
            let key = (
                status_of(old).unwrap_or(u8::MAX),
                status_of(&answer.bytes).unwrap_or(u8::MAX),
            );
            *report.changes.entry(key).or_default() += 1;
            if report.examples.len() < EXAMPLES_MAX {
                report.examples.push(Example {
                    connection: outcome.connection,
                    request_id: request.request_id,
                    opcode: request.opcode,
                    old: old.clone(),
                    new: answer.bytes.clone(),
                });
            }
        }
    }
    latencies.sort_unstable();
    report.latency_us = [
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0),
    ];
    let seconds = elapsed.as_secs_f64();
    report.achieved_rate_per_s = if seconds > 0.0 {
        report.answers_received as f64 / seconds
    } else {
        0.0
    };
    report
}

impl Report {
    /// The report as JSON; `opcode_name` names opcodes.
    pub fn to_json(&self, opcode_name: fn(u8) -> &'static str) -> Value {
        let changes: Vec<Value> = self
            .changes
            .iter()
            .map(|(&(old, new), count)| {
                json!({ "old_status": status::name(old), "new_status": status::name(new), "count": count })
            })
            .collect();
        let examples: Vec<Value> = self
            .examples
            .iter()
            .map(|example| {
                json!({
                    "connection": example.connection,
                    "request_id": example.request_id,
                    "opcode": opcode_name(example.opcode),
                    "old_status": status::name(status_of(&example.old).unwrap_or(u8::MAX)),
                    "new_status": status::name(status_of(&example.new).unwrap_or(u8::MAX)),
                    "old": hex(&example.old),
                    "new": hex(&example.new),
                })
            })
            .collect();
        let errors: Vec<Value> = self
            .connection_errors
            .iter()
            .map(|(connection, error)| json!({ "connection": connection, "error": error }))
            .collect();
        let [p50, p99, max] = self.latency_us;
        let mut object = json!({
            "connections": self.connections,
            "requests_planned": self.requests_planned,
            "requests_sent": self.requests_sent,
            "answers_received": self.answers_received,
            "answers_compared": self.answers_compared,
            "answers_changed": self.answers_changed,
            "ids_remapped": self.ids_remapped,
            "ids_unmapped": self.ids_unmapped,
            "latency_us": { "p50": p50, "p99": p99, "max": max },
            "achieved_rate_per_s": self.achieved_rate_per_s,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "client_cpu_s": self.client_cpu_us as f64 / 1e6,
            "changes": changes,
            "examples": examples,
            "connection_errors": errors,
        });
        if let (Some(error), Value::Object(map)) = (&self.capture_error, &mut object) {
            map.insert(
                "capture_error".into(),
                json!({ "packet": error.packet, "reason": error.reason }),
            );
        }
        object
    }

    /// The human summary, several lines.
    pub fn to_text(&self, opcode_name: fn(u8) -> &'static str) -> String {
        let [p50, p99, max] = self.latency_us;
        let mut text = format!(
            "connections {}  requests sent {}/{}  answers {}\n\
             latency us p50 {p50}  p99 {p99}  max {max}\n\
             achieved {:.0}/s over {:.3}s  client cpu {:.3}s\n\
             answers compared {}  changed {}\n\
             binding ids rewritten {}  sent as captured (not learned) {}\n",
            self.connections,
            self.requests_sent,
            self.requests_planned,
            self.answers_received,
            self.achieved_rate_per_s,
            self.elapsed.as_secs_f64(),
            self.client_cpu_us as f64 / 1e6,
            self.answers_compared,
            self.answers_changed,
            self.ids_remapped,
            self.ids_unmapped,
        );
        for (&(old, new), count) in &self.changes {
            text += &format!(
                "  {} -> {}: {count}\n",
                status::name(old),
                status::name(new)
            );
        }
        for example in &self.examples {
            text += &format!(
                "  e.g. connection {} request {} {}: {} -> {}\n",
                example.connection,
                example.request_id,
                opcode_name(example.opcode),
                hex(&example.old),
                hex(&example.new)
            );
        }
        for (connection, error) in &self.connection_errors {
            text += &format!("connection {connection}: {error}\n");
        }
        if let Some(error) = &self.capture_error {
            text += &format!(
                "capture stopped at packet {}: {}; the requests before it were replayed\n",
                error.packet, error.reason
            );
        }
        text
    }
}
