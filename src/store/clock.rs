//! Time, injected: the engine asks a `Clock` for the current second, so
//! tests drive expiry with a `FakeClock` instead of waiting.

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
