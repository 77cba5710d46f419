//! Time, injected: the engine asks a `Clock` for the current second, so
//! tests drive expiry with a `FakeClock` instead of waiting.
//!
//! Writes do not run at a clock reading, though: they run at the *applied
//! clock* (`applied_now_s`), a pure function of the log that every member
//! and every replay computes alike (docs/STORAGE.md section 17).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// A source of the current time in whole seconds since the Unix epoch.
pub trait Clock: Send + Sync {
    /// Now, in seconds since the Unix epoch (valid until 2106).
    fn now_s(&self) -> u32;
}

/// The system's real-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_s(&self) -> u32 {
        let seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        u32::try_from(seconds).unwrap_or(u32::MAX)
    }
}

/// A clock that moves only when told to. Clones share the same time.
#[derive(Debug, Clone)]
pub struct FakeClock(Arc<AtomicU32>);

impl FakeClock {
    /// A clock standing at `now_s`.
    pub fn new(now_s: u32) -> FakeClock {
        FakeClock(Arc::new(AtomicU32::new(now_s)))
    }

    /// Moves the clock forward.
    pub fn advance(&self, seconds: u32) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }

    /// Sets the clock.
    pub fn set(&self, now_s: u32) {
        self.0.store(now_s, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now_s(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The most one log entry may move the applied clock forward, seconds.
///
/// The leader proposes an entry at least once a second (an empty sweep
/// entry when nothing else is written), so a healthy clock moves about one
/// second per entry and never meets this limit; 60 s leaves room for a
/// leader stalled for a minute (a long pause, a slow disk). A proposer
/// whose clock jumps a day ahead moves the applied clock by at most a
/// minute per entry instead, so a sweep reclaims only bindings whose end
/// is at most a minute past the time the cluster agreed on so far.
pub const STEP_MAX_S: u32 = 60;

/// The time a log entry applies at, from the clock applied so far (the
/// previous entry's time, persisted with the shards) and the proposer's
/// clock reading carried in the entry (`WriteBatch::now_s`):
/// `max(applied_so_far_s, min(proposed_s, applied_so_far_s + STEP_MAX_S))`.
///
/// - Time never goes backwards: a proposer whose clock is behind applies at
///   the time already reached, so a binding that expired stays expired.
/// - Time never jumps: one entry advances it by at most `STEP_MAX_S`.
/// - `applied_so_far_s == 0` means no entry was ever applied (an empty
///   store, or a directory written before the applied clock was kept): the
///   entry takes the proposer's time as it is.
///
/// A pure function of the log, so every member and every replay of the
/// same entries from the same checkpoint reaches the same time.
pub fn applied_now_s(applied_so_far_s: u32, proposed_s: u32) -> u32 {
    if applied_so_far_s == 0 {
        return proposed_s;
    }
    proposed_s
        .min(applied_so_far_s.saturating_add(STEP_MAX_S))
        .max(applied_so_far_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u32 = 1_800_000_000;

    #[test]
    fn the_first_entry_takes_the_proposers_time() {
        assert_eq!(applied_now_s(0, T), T);
        assert_eq!(applied_now_s(0, 0), 0);
    }

    #[test]
    fn a_clock_moving_normally_is_followed_exactly() {
        assert_eq!(applied_now_s(T, T), T);
        assert_eq!(applied_now_s(T, T + 1), T + 1);
        assert_eq!(applied_now_s(T, T + STEP_MAX_S), T + STEP_MAX_S);
    }

    #[test]
    fn a_clock_behind_never_moves_time_back() {
        assert_eq!(applied_now_s(T, T - 1), T);
        assert_eq!(applied_now_s(T, T - 3600), T);
        assert_eq!(applied_now_s(T, 1), T);
    }

    #[test]
    fn a_clock_ahead_advances_time_by_one_step_at_most() {
        assert_eq!(applied_now_s(T, T + STEP_MAX_S + 1), T + STEP_MAX_S);
        assert_eq!(applied_now_s(T, T + 86_400), T + STEP_MAX_S);
        assert_eq!(applied_now_s(T, u32::MAX), T + STEP_MAX_S);
    }

    #[test]
    fn time_saturates_at_the_end_of_u32() {
        assert_eq!(applied_now_s(u32::MAX - 1, u32::MAX), u32::MAX);
        assert_eq!(applied_now_s(u32::MAX, 5), u32::MAX);
    }

    #[test]
    fn a_day_ahead_needs_many_entries_to_be_reached() {
        let mut now_s = T;
        let mut entries = 0u32;
        while now_s < T + 86_400 {
            let next = applied_now_s(now_s, T + 86_400);
            assert!(next > now_s && next - now_s <= STEP_MAX_S);
            now_s = next;
            entries += 1;
        }
        assert_eq!(entries, 86_400 / STEP_MAX_S);
    }
}
