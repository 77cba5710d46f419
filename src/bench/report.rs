//! What a run reports: percentiles from the merged histograms (reported in
//! microseconds), target versus achieved rate, answers by status name,
//! failures, timeouts, how late the client sent and how much CPU it used;
//! as a short human summary and as JSON (the key names are a contract with
//! scripts: `achieved_rate_per_s`, `requests_ok`, `requests_failed`,
//! `latency_us.{p50,p90,p99,p999,p9999,max}`, ...).

use super::tally::Tally;
use super::workload::OpKind;
use crate::protocol::status;
use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};
use std::fmt::Write as _;

/// The client counts as saturated above this share of its threads' CPU.
pub const SATURATED_SHARE: f64 = 0.9;

/// CPU the client used during one measured phase (`getrusage`).
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuUse {
    /// User time, seconds.
    pub user_s: f64,
    /// System time, seconds.
    pub system_s: f64,
    /// Wall time of the phase, seconds.
    pub wall_s: f64,
    /// Client threads.
    pub threads: usize,
    /// Open loop: seconds spent spinning idle (waiting for a due time).
    pub spin_s: f64,
}

impl CpuUse {
    /// Cores' worth of CPU used on average.
    pub fn cores_used(&self) -> f64 {
        (self.user_s + self.system_s) / self.wall_s.max(1e-9)
    }

    /// Cores' worth of CPU used for work: spinning idle excluded.
    pub fn cores_working(&self) -> f64 {
        (self.user_s + self.system_s - self.spin_s).max(0.0) / self.wall_s.max(1e-9)
    }

    /// CPU seconds the client used, user and system.
    pub fn cpu_s(&self) -> f64 {
        self.user_s + self.system_s
    }

    /// Microseconds of the client's working CPU (spinning idle excluded)
    /// per answer, over `answers` (every answer of the phase, warm-up
    /// included, as the CPU is); 0 without answers.
    pub fn us_per_request(&self, answers: u64) -> f64 {
        if answers == 0 {
            return 0.0;
        }
        // Counts below 2^53: exact in f64.
        #[allow(clippy::cast_precision_loss)]
        let per = (self.cpu_s() - self.spin_s).max(0.0) * 1e6 / answers as f64;
        per
    }

    /// True if the client threads were busy nearly all the time (idle
    /// spinning excluded): then the client, not the server, may have set
    /// the rate or added to the latencies.
    pub fn saturated(&self) -> bool {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        // Thread and core counts are small: exact in f64.
        #[allow(clippy::cast_precision_loss)]
        let usable = self.threads.min(cores).max(1) as f64;
        self.cores_working() >= SATURATED_SHARE * usable
    }
}

/// The figures of one measured phase.
pub struct Figures {
    /// Open-loop target; `None` for a closed loop.
    pub target_rate_per_s: Option<f64>,
    /// Counts.
    pub tally: Tally,
    /// When measuring was to end (ns from the phase's start), if by time.
    pub end_ns: Option<u64>,
    /// Client CPU.
    pub cpu: CpuUse,
    /// Latency above which a request counts as slow.
    pub slow_threshold_ns: u64,
}

fn micros(nanos: u64) -> f64 {
    // Latencies far below 2^52 ns: exact in f64.
    #[allow(clippy::cast_precision_loss)]
    let micros = nanos as f64 / 1000.0;
    (micros * 10.0).round() / 10.0
}

/// Percentiles of a histogram of nanoseconds, in microseconds.
pub fn percentiles_us(histogram: &Histogram<u64>) -> Value {
    let at = |q: f64| {
        if histogram.is_empty() {
            0.0
        } else {
            micros(histogram.value_at_quantile(q))
        }
    };
    json!({
        "p50": at(0.5),
        "p90": at(0.9),
        "p99": at(0.99),
        "p999": at(0.999),
        "p9999": at(0.9999),
        "max": micros(histogram.max()),
        "mean": (histogram.mean() / 100.0).round() / 10.0,
        "count": histogram.len(),
    })
}

/// Counts by status name (`status_N` for a code without one), the
/// statuses never seen left out.
pub fn by_status(counts: &[u64; 256]) -> Map<String, Value> {
    let mut map = Map::new();
    for (code, &count) in counts.iter().enumerate() {
        if count > 0 {
            // code < 256: fits u8.
            let name = status::name(u8::try_from(code).unwrap_or(u8::MAX));
            let name = if name == "unknown_status" {
                format!("status_{code}")
            } else {
                name.to_string()
            };
            map.insert(name, Value::from(count));
        }
    }
    map
}

impl Figures {
    /// Seconds measured: from the first intended request to the end of the
    /// window or the last answer, whichever is later.
    pub fn elapsed_s(&self) -> f64 {
        if self.tally.first_intended_ns == u64::MAX {
            return 0.0;
        }
        let until = self.end_ns.unwrap_or(0).max(self.tally.last_answer_ns);
        // Durations in ns below 2^53: exact in f64.
        #[allow(clippy::cast_precision_loss)]
        let seconds = until.saturating_sub(self.tally.first_intended_ns) as f64 / 1e9;
        seconds
    }

    /// Answers per second over the measured time.
    pub fn achieved_rate_per_s(&self) -> f64 {
        let elapsed = self.elapsed_s();
        if elapsed <= 0.0 {
            return 0.0;
        }
        // Counts below 2^53: exact in f64.
        #[allow(clippy::cast_precision_loss)]
        let rate = self.tally.answered_count() as f64 / elapsed;
        rate
    }

    /// The figures as JSON.
    pub fn json(&self) -> Value {
        let tally = &self.tally;
        let all = tally.latency_all_ns();
        let mut by_op = Map::new();
        for kind in OpKind::ALL {
            let k = kind as usize;
            if tally.latency_ns[k].is_empty() && tally.failed[k] == 0 {
                continue;
            }
            let mut entry = percentiles_us(&tally.latency_ns[k]);
            if let Value::Object(map) = &mut entry {
                map.insert("requests_ok".into(), Value::from(tally.ok[k]));
                map.insert("requests_failed".into(), Value::from(tally.failed[k]));
                map.insert(
                    "by_status".into(),
                    Value::Object(by_status(&tally.by_status[k])),
                );
            }
            by_op.insert(kind.as_str().into(), entry);
        }
        let mut statuses = [0u64; 256];
        for counts in &tally.by_status {
            for (total, count) in statuses.iter_mut().zip(counts) {
                *total += count;
            }
        }
        let open = self.target_rate_per_s.is_some();
        json!({
            "mode": if open { "open" } else { "closed" },
            "target_rate_per_s": self.target_rate_per_s,
            "achieved_rate_per_s": self.achieved_rate_per_s().round(),
            "elapsed_s": (self.elapsed_s() * 1000.0).round() / 1000.0,
            "requests_sent": tally.sent,
            "requests_answered": tally.answered_count(),
            "requests_ok": tally.ok_count(),
            "requests_failed": tally.failed_count(),
            "wrong_answers": tally.wrong_answers,
            "timeouts": tally.timeouts,
            "lost_on_close": tally.lost,
            "late_answers": tally.late_answers,
            "latency_us": percentiles_us(&all),
            "latency_us_by_op": Value::Object(by_op),
            "by_status": Value::Object(by_status(&statuses)),
            "slow_threshold_ms": micros(self.slow_threshold_ns) / 1000.0,
            "slow_requests": all.count_between(self.slow_threshold_ns, u64::MAX),
            "client_send_lag_us": if open { percentiles_us(&tally.send_lag_ns) } else { Value::Null },
            "client_fell_behind": if open { Value::from(tally.behind) } else { Value::Null },
            "client_cpu_s": (self.cpu.cpu_s() * 1000.0).round() / 1000.0,
            "client_cpu_us_per_request": (self.cpu.us_per_request(tally.answers_all) * 1000.0).round() / 1000.0,
            "client_cpu": {
                "user_s": (self.cpu.user_s * 1000.0).round() / 1000.0,
                "system_s": (self.cpu.system_s * 1000.0).round() / 1000.0,
                "wall_s": (self.cpu.wall_s * 1000.0).round() / 1000.0,
                "cores_used": (self.cpu.cores_used() * 1000.0).round() / 1000.0,
                "spin_s": (self.cpu.spin_s * 1000.0).round() / 1000.0,
                "cores_working": (self.cpu.cores_working() * 1000.0).round() / 1000.0,
                "threads": self.cpu.threads,
                "saturated": self.cpu.saturated(),
                "us_per_request": (self.cpu.us_per_request(tally.answers_all) * 1000.0).round() / 1000.0,
                "answers_all": tally.answers_all,
            },
            "connection_errors": tally.connection_errors,
            "errors": tally.errors,
        })
    }

    /// A few lines for people.
    pub fn summary(&self) -> String {
        let tally = &self.tally;
        let all = tally.latency_all_ns();
        let mut text = String::new();
        let target = self.target_rate_per_s.map_or_else(
            || "closed loop".to_string(),
            |r| format!("target {}/s", group(r)),
        );
        let _ = writeln!(
            text,
            "  {target}: achieved {}/s over {:.2} s; {} ok, {} failed ({} wrong answers, {} timeouts, {} lost)",
            group(self.achieved_rate_per_s()),
            self.elapsed_s(),
            tally.ok_count(),
            tally.failed_count(),
            tally.wrong_answers,
            tally.timeouts,
            tally.lost,
        );
        let q = |q: f64| {
            if all.is_empty() {
                0.0
            } else {
                micros(all.value_at_quantile(q))
            }
        };
        let _ = writeln!(
            text,
            "  latency us: p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}",
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            q(0.9999),
            micros(all.max())
        );
        for kind in OpKind::ALL {
            let k = kind as usize;
            let histogram = &tally.latency_ns[k];
            if histogram.is_empty() || histogram.len() == all.len() {
                continue;
            }
            let _ = writeln!(
                text,
                "    {}: {} answers, p50 {} us, p99 {} us, max {} us",
                kind.as_str(),
                histogram.len(),
                micros(histogram.value_at_quantile(0.5)),
                micros(histogram.value_at_quantile(0.99)),
                micros(histogram.max())
            );
        }
        let mut statuses = [0u64; 256];
        for counts in &tally.by_status {
            for (total, count) in statuses.iter_mut().zip(counts) {
                *total += count;
            }
        }
        let names: Vec<String> = by_status(&statuses)
            .into_iter()
            .map(|(name, count)| format!("{name} {count}"))
            .collect();
        let _ = writeln!(text, "  answers: {}", names.join(", "));
        let spin = if self.target_rate_per_s.is_some() {
            format!(
                " ({:.2} working, the rest spinning for due times)",
                self.cpu.cores_working()
            )
        } else {
            String::new()
        };
        let mut client = format!(
            "  client: {:.2} cores used{spin} by {} thread(s), {:.2} CPU s, {:.3} us of CPU per request{}",
            self.cpu.cores_used(),
            self.cpu.threads,
            self.cpu.cpu_s(),
            self.cpu.us_per_request(tally.answers_all),
            match (self.cpu.saturated(), self.target_rate_per_s.is_some()) {
                (true, false) => " - SATURATED: the client may have set this rate",
                (true, true) => " - SATURATED: its own delays are in these latencies",
                _ => "",
            }
        );
        if self.target_rate_per_s.is_some() {
            let _ = write!(
                client,
                "; sent late by p99 {} us; fell behind (> 1 ms) on {} requests",
                if tally.send_lag_ns.is_empty() {
                    0.0
                } else {
                    micros(tally.send_lag_ns.value_at_quantile(0.99))
                },
                tally.behind
            );
        }
        let _ = writeln!(text, "{client}");
        for error in &tally.errors {
            let _ = writeln!(text, "  connection error: {error}");
        }
        text
    }
}

/// A rate with thousands separators, rounded.
pub fn group(value: f64) -> String {
    // Rates far below 2^63: the cast is exact after rounding.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let digits = (value.max(0.0).round() as u64).to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// The machine the client runs on: cores, CPU model, kernel, memory, load.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map_or("unknown", |(_, model)| model.trim())
        .to_string();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".to_string(), |k| k.trim().to_string());
    let memory_kib: Option<u64> = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    });
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    json!({
        "cores": std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        "cpu_model": model,
        "kernel": kernel,
        "memory_gib": memory_kib.map(|k| ((k as f64) / 1024.0 / 1024.0 * 10.0).round() / 10.0),
        "load_average": load,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_grouped() {
        assert_eq!(group(2_310_456.4), "2,310,456");
        assert_eq!(group(999.0), "999");
        assert_eq!(group(1000.0), "1,000");
    }

    #[test]
    fn figures_measure_from_first_intended_request() {
        let mut tally = Tally::default();
        tally.sent(1_000_000_000, Some(5_000));
        for i in 0..2000 {
            tally.sent(1_000_000_000 + i * 500_000, None);
            tally.answered(
                OpKind::Lookup,
                status::NOT_BOUND,
                true,
                20_000_000,
                1_000_000_000 + i * 500_000 + 20_000_000,
            );
        }
        let figures = Figures {
            target_rate_per_s: Some(2000.0),
            tally,
            end_ns: Some(2_000_000_000),
            cpu: CpuUse::default(),
            slow_threshold_ns: 100_000_000,
        };
        // 2000 answers over [1 s, 2.0195 s]: ~1963/s; p50 20 ms.
        let json = figures.json();
        assert_eq!(json["requests_ok"], 2000);
        assert_eq!(json["by_status"]["not_bound"], 2000);
        assert!((json["latency_us"]["p50"].as_f64().unwrap() - 20_000.0).abs() < 20.0);
        let rate = json["achieved_rate_per_s"].as_f64().unwrap();
        assert!((1950.0..1970.0).contains(&rate), "{rate}");
        assert_eq!(json["slow_requests"], 0);
    }
}
