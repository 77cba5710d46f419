//! `[pools]`: how BIND_AXB_AUTO chooses X, turned into a
//! `pool::AllocConfig` (whose `check` `Config::validate` applies).

use serde::Deserialize;

/// `[pools]`: automatic X selection (`pool::Allocator`).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PoolSettings {
    /// Most live AXB pairs one X carries (default 200).
    pub max_pairs_per_x: u32,
    /// Seconds an X released by a pair waits before that pair's numbers
    /// use it again (default 0, at most 3600).
    pub cool_off_s: u32,
    /// Released pairs remembered, for cool-off and for giving a pair that
    /// binds again its previous X (default 65,536).
    pub sticky_pairs_max: u32,
}

impl Default for PoolSettings {
    fn default() -> PoolSettings {
        let defaults = crate::pool::AllocConfig::default();
        PoolSettings {
            max_pairs_per_x: defaults.max_pairs_per_x,
            cool_off_s: defaults.cool_off_s,
            sticky_pairs_max: defaults.sticky_pairs_max,
        }
    }
}

impl PoolSettings {
    /// The allocator's configuration.
    pub fn alloc_config(self) -> crate::pool::AllocConfig {
        crate::pool::AllocConfig {
            max_pairs_per_x: self.max_pairs_per_x,
            cool_off_s: self.cool_off_s,
            sticky_pairs_max: self.sticky_pairs_max,
        }
    }
}
