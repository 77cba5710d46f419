//! Limits per source address, shared by every event loop: open TCP
//! connections per source (`[limits] connections_per_source_max`), UDP
//! lookups per source and second (`[limits] udp_lookups_per_source_per_s`),
//! and a budget for log lines a client can provoke. None of them is touched
//! on the lookup path of a TCP session.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Open connections per source address, node-wide. Touched at accept and
/// close only, so a mutex is cheap enough.
#[derive(Debug, Default)]
pub struct SourceConnections {
    open: Mutex<HashMap<IpAddr, u32>>,
}

impl SourceConnections {
    /// Counts a new connection from `source`, unless it already has `max`:
    /// then false, and nothing is counted.
    pub fn admit(&self, source: IpAddr, max: u32) -> bool {
        let Ok(mut open) = self.open.lock() else {
            return true;
        };
        let count = open.entry(canonical(source)).or_insert(0);
        if *count >= max {
            if *count == 0 {
                open.remove(&canonical(source));
            }
            return false;
        }
        *count += 1;
        true
    }

    /// Forgets a closed connection from `source`.
    pub fn release(&self, source: IpAddr) {
        let Ok(mut open) = self.open.lock() else {
            return;
        };
        let key = canonical(source);
        if let Some(count) = open.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&key);
            }
        }
    }

    /// Open connections from `source`.
    pub fn count(&self, source: IpAddr) -> u32 {
        self.open
            .lock()
            .ok()
            .and_then(|open| open.get(&canonical(source)).copied())
            .unwrap_or(0)
    }
}

/// An IPv4 client seen on a `[::]` listener is the same source as seen on
/// an IPv4 listener.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// Slots of the UDP rate table: sources hash into them, and two sources in
/// one slot share its budget (a collision can only make the limit stricter,
/// never looser). 64 Ki slots of 8 bytes: 512 KiB, whatever the traffic.
const RATE_SLOTS: usize = 1 << 16;

/// Lookups per source address and second over UDP, node-wide, lock free:
/// each slot packs (second, count) into one atomic word.
#[derive(Debug)]
pub struct SourceRate {
    per_s: u32,
    slots: Box<[AtomicU64]>,
}

impl SourceRate {
    /// A limit of `per_s` lookups per source and second.
    pub fn new(per_s: u32) -> SourceRate {
        SourceRate {
            per_s,
            slots: (0..RATE_SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Takes up to `wanted` lookups from `source`'s budget for second
    /// `now_s`; returns how many are allowed (the rest are dropped).
    pub fn take(&self, source: IpAddr, now_s: u32, wanted: u32) -> u32 {
        let slot = &self.slots[slot_of(canonical(source))];
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let (second, used) = ((current >> 32) as u32, current as u32);
            let used = if second == now_s { used } else { 0 };
            let granted = wanted.min(self.per_s.saturating_sub(used));
            let next = (u64::from(now_s) << 32) | u64::from(used + granted);
            match slot.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return granted,
                Err(seen) => current = seen,
            }
        }
    }
}

fn slot_of(ip: IpAddr) -> usize {
    let bits = match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    };
    // Fold to 64 bits and mix (a multiplicative hash): neighbouring
    // addresses land far apart.
    let folded = (bits as u64) ^ ((bits >> 64) as u64);
    let mixed = folded.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 48) as usize % RATE_SLOTS
}

/// A budget for log lines that clients can provoke (a refused HELLO, a
/// refused connection): at most `per_s` lines a second, the rest counted
/// and reported with the next line that passes.
#[derive(Debug)]
pub struct LogBudget {
    per_s: u32,
    second: u32,
    used: u32,
    suppressed: u64,
}

impl LogBudget {
    /// At most `per_s` lines a second.
    pub fn new(per_s: u32) -> LogBudget {
        LogBudget {
            per_s,
            second: 0,
            used: 0,
            suppressed: 0,
        }
    }

    /// Whether a line may be written at `now_s`; if so, how many were
    /// suppressed since the last one written.
    pub fn admit(&mut self, now_s: u32) -> Option<u64> {
        if self.second != now_s {
            self.second = now_s;
            self.used = 0;
        }
        if self.used >= self.per_s {
            self.suppressed += 1;
            return None;
        }
        self.used += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_per_source_are_capped_and_released() {
        let sources = SourceConnections::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert!(sources.admit(a, 2));
        assert!(sources.admit(mapped, 2));
        assert!(!sources.admit(a, 2), "a third from the same source");
        assert!(sources.admit("10.0.0.2".parse().unwrap(), 2));
        sources.release(a);
        assert_eq!(sources.count(a), 1);
        assert!(sources.admit(a, 2));
        assert!(!sources.admit("10.0.0.9".parse().unwrap(), 0));
        assert_eq!(sources.count("10.0.0.9".parse().unwrap()), 0);
    }

    #[test]
    fn udp_budget_is_per_source_and_per_second() {
        let rate = SourceRate::new(100);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(rate.take(a, 7, 60), 60);
        assert_eq!(rate.take(a, 7, 60), 40);
        assert_eq!(rate.take(a, 7, 1), 0);
        assert_eq!(rate.take(b, 7, 100), 100, "another source has its own");
        assert_eq!(rate.take(a, 8, 30), 30, "a new second starts afresh");
    }

    #[test]
    fn log_budget_counts_what_it_suppresses() {
        let mut budget = LogBudget::new(2);
        assert_eq!(budget.admit(1), Some(0));
        assert_eq!(budget.admit(1), Some(0));
        assert_eq!(budget.admit(1), None);
        assert_eq!(budget.admit(1), None);
        assert_eq!(budget.admit(2), Some(2));
    }
}
