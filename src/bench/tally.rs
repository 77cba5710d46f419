//! What one client thread counted: latency histograms per kind of request,
//! answers by status, wrong answers, timeouts, and how late the client
//! itself sent. Threads count apart (no sharing on the hot path) and the
//! tallies are merged at the end.

use super::workload::OpKind;
use hdrhistogram::Histogram;

/// Largest latency recorded exactly: an hour, in nanoseconds.
pub const LATENCY_NS_MAX: u64 = 3_600_000_000_000;
/// Significant figures of every histogram.
const SIGNIFICANT_FIGURES: u8 = 3;
/// Connection errors kept word for word.
pub const ERRORS_KEPT_MAX: usize = 8;

/// A histogram of nanoseconds, 1 ns to an hour at three significant figures.
pub fn histogram() -> Histogram<u64> {
    // Valid bounds (1 <= low, high >= 2 * low, 3 figures): cannot fail.
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, SIGNIFICANT_FIGURES)
        .unwrap_or_else(|_| unreachable!())
}

/// Counts of one thread (or, merged, of a whole run).
pub struct Tally {
    /// Latency from intended send time to answer, per kind (measured
    /// requests; timeouts are recorded at the time they were given up).
    pub latency_ns: [Histogram<u64>; 3],
    /// Answers by status code, per kind.
    pub by_status: [[u64; 256]; 3],
    /// Answers that were what the request expected, per kind.
    pub ok: [u64; 3],
    /// Answers that were not, per kind (wrong routes, misses of bound
    /// pairs, error statuses).
    pub failed: [u64; 3],
    /// Lookups answered with a lookup outcome other than the expected one.
    pub wrong_answers: u64,
    /// Binds answered ok that found an identical live binding (x700's
    /// `created` = 0: a repeat, nothing changed), among `ok`.
    pub binds_existing: u64,
    /// Requests unanswered after the timeout.
    pub timeouts: u64,
    /// Requests in flight on a connection that closed.
    pub lost: u64,
    /// Answers that came after their request timed out.
    pub late_answers: u64,
    /// Measured requests sent.
    pub sent: u64,
    /// Every answer, warm-up included (the client's CPU per request is
    /// its CPU over the whole phase divided by this).
    pub answers_all: u64,
    /// Open loop: send time minus intended time.
    pub send_lag_ns: Histogram<u64>,
    /// Open loop: requests sent more than `BEHIND_NS` late.
    pub behind: u64,
    /// Earliest intended time of a measured request.
    pub first_intended_ns: u64,
    /// Latest answer (or timeout) of a measured request.
    pub last_answer_ns: u64,
    /// Open loop: time spent spinning while nothing was due or arriving.
    pub spin_ns: u64,
    /// Connections that failed, and the first few reasons.
    pub connection_errors: u64,
    /// The first `ERRORS_KEPT_MAX` reasons.
    pub errors: Vec<String>,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            latency_ns: [histogram(), histogram(), histogram()],
            by_status: [[0; 256]; 3],
            ok: [0; 3],
            failed: [0; 3],
            wrong_answers: 0,
            binds_existing: 0,
            timeouts: 0,
            lost: 0,
            late_answers: 0,
            sent: 0,
            answers_all: 0,
            send_lag_ns: histogram(),
            behind: 0,
            first_intended_ns: u64::MAX,
            last_answer_ns: 0,
            spin_ns: 0,
            connection_errors: 0,
            errors: Vec::new(),
        }
    }
}

impl Tally {
    /// A measured request was sent.
    #[inline]
    pub fn sent(&mut self, intended_ns: u64, lag_ns: Option<u64>) {
        self.sent += 1;
        self.first_intended_ns = self.first_intended_ns.min(intended_ns);
        if let Some(lag_ns) = lag_ns {
            self.send_lag_ns.saturating_record(lag_ns.max(1));
            if lag_ns > super::schedule::BEHIND_NS {
                self.behind += 1;
            }
        }
    }

    /// A measured request was answered.
    #[inline]
    pub fn answered(
        &mut self,
        kind: OpKind,
        status: u8,
        correct: bool,
        latency_ns: u64,
        now_ns: u64,
    ) {
        let k = kind as usize;
        self.latency_ns[k].saturating_record(latency_ns.max(1));
        self.by_status[k][usize::from(status)] += 1;
        if correct {
            self.ok[k] += 1;
        } else {
            self.failed[k] += 1;
        }
        self.last_answer_ns = self.last_answer_ns.max(now_ns);
    }

    /// A measured request timed out.
    pub fn timed_out(&mut self, kind: OpKind, latency_ns: u64, now_ns: u64) {
        let k = kind as usize;
        self.latency_ns[k].saturating_record(latency_ns.max(1));
        self.failed[k] += 1;
        self.timeouts += 1;
        self.last_answer_ns = self.last_answer_ns.max(now_ns);
    }

    /// A connection failed with `requests` measured ones in flight.
    pub fn connection_failed(&mut self, reason: String, lost: &[(OpKind, u64)]) {
        self.connection_errors += 1;
        if self.errors.len() < ERRORS_KEPT_MAX {
            self.errors.push(reason);
        }
        for &(kind, count) in lost {
            self.failed[kind as usize] += count;
            self.lost += count;
        }
    }

    /// Adds another thread's counts.
    pub fn merge(&mut self, other: &Tally) {
        for kind in OpKind::ALL {
            let k = kind as usize;
            // Same bounds on both sides: adding cannot fail.
            let _ = self.latency_ns[k].add(&other.latency_ns[k]);
            for (mine, theirs) in self.by_status[k].iter_mut().zip(other.by_status[k]) {
                *mine += theirs;
            }
            self.ok[k] += other.ok[k];
            self.failed[k] += other.failed[k];
        }
        let _ = self.send_lag_ns.add(&other.send_lag_ns);
        self.wrong_answers += other.wrong_answers;
        self.binds_existing += other.binds_existing;
        self.timeouts += other.timeouts;
        self.lost += other.lost;
        self.late_answers += other.late_answers;
        self.sent += other.sent;
        self.answers_all += other.answers_all;
        self.behind += other.behind;
        self.first_intended_ns = self.first_intended_ns.min(other.first_intended_ns);
        self.last_answer_ns = self.last_answer_ns.max(other.last_answer_ns);
        self.spin_ns += other.spin_ns;
        self.connection_errors += other.connection_errors;
        for error in &other.errors {
            if self.errors.len() < ERRORS_KEPT_MAX {
                self.errors.push(error.clone());
            }
        }
    }

    /// Answers received (correct or not), every kind.
    pub fn answered_count(&self) -> u64 {
        self.by_status.iter().flatten().sum()
    }

    /// Correct answers, every kind.
    pub fn ok_count(&self) -> u64 {
        self.ok.iter().sum()
    }

    /// Failed requests, every kind.
    pub fn failed_count(&self) -> u64 {
        self.failed.iter().sum()
    }

    /// One histogram of every kind.
    pub fn latency_all_ns(&self) -> Histogram<u64> {
        let mut all = histogram();
        for histogram in &self.latency_ns {
            let _ = all.add(histogram);
        }
        all
    }
}
