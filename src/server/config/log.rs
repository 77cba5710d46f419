//! `[log]`: the durable log's group commit, checkpoints, the margin a
//! cluster member keeps for a peer that was down, and the proposal
//! deadline, with the bounds `Config::validate` holds each to.

use serde::Deserialize;

/// `[log]`: group commit and checkpoints.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// Longest the group commit waits for more writes before one
    /// `fdatasync`, microseconds (0: sync as soon as the last sync ends;
    /// writes arriving meanwhile share the next one).
    pub group_commit_wait_us: u64,
    /// A checkpoint is taken at least this often while writes arrive.
    pub checkpoint_interval_s: u64,
    /// ... or once the log's segments hold this many MiB.
    pub checkpoint_log_mb: u64,
    /// On a member of a cluster of several, the log keeps this many
    /// entries before its last checkpoint, so a member that was down a
    /// short while catches up from the log rather than by a snapshot of
    /// every table. A one-member node keeps none.
    pub margin_entries: u64,
    /// A write not answered this long after it was proposed is answered
    /// (`busy` if it never reached the log, `outcome_unknown` once it did),
    /// milliseconds; so is every pending write at once when this node
    /// stops leading.
    pub proposal_deadline_ms: u64,
}

impl Default for LogSettings {
    fn default() -> LogSettings {
        LogSettings {
            group_commit_wait_us: 0,
            checkpoint_interval_s: 60,
            checkpoint_log_mb: 512,
            margin_entries: crate::replication::LOG_MARGIN_ENTRIES_DEFAULT,
            proposal_deadline_ms: 10_000,
        }
    }
}

/// Largest log margin accepted: the log of a cluster member holds at
/// least this many entries, each up to a write batch, so the margin is a
/// bound on disk use too.
pub const LOG_MARGIN_ENTRIES_MAX: u64 = 10_000_000;

/// Shortest proposal deadline accepted: an election takes 150-300 ms,
/// and a commit through one must not be cut short.
pub const PROPOSAL_DEADLINE_MS_MIN: u64 = 1_000;
/// Longest proposal deadline accepted: a platform's write waits at most
/// this long for its answer.
pub const PROPOSAL_DEADLINE_MS_MAX: u64 = 600_000;

/// Longest group-commit wait accepted: a write's latency is at least this.
pub const GROUP_COMMIT_WAIT_US_MAX: u64 = 100_000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::config::Config;

    /// Guards an unbounded log margin: it bounds how much log a member
    /// keeps on disk.
    #[test]
    fn a_log_margin_past_the_limit_is_refused() {
        let mut config: Config = toml::from_str("[log]\nmargin_entries = 10000001\n").unwrap();
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("margin"));
        config.log.margin_entries = LOG_MARGIN_ENTRIES_MAX;
        config.validate().unwrap();
    }

    /// A proposal deadline shorter than an election would answer
    /// `outcome_unknown` to writes that were about to commit; a longer one
    /// than ten minutes leaves a platform's write hanging.
    #[test]
    fn a_proposal_deadline_out_of_range_is_refused() {
        for (deadline_ms, accepted) in [
            (999, false),
            (1000, true),
            (600_000, true),
            (600_001, false),
        ] {
            let mut config = Config::default();
            config.log.proposal_deadline_ms = deadline_ms;
            assert_eq!(config.validate().is_ok(), accepted, "{deadline_ms} ms");
        }
        let config: Config = toml::from_str("[log]\nproposal_deadline_ms = 2000\n").unwrap();
        assert_eq!(config.log.proposal_deadline_ms, 2000);
    }
}
