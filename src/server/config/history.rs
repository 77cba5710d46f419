//! `[history]`: how long the traceability history keeps every binding's
//! life, turned into a `history::HistoryConfig`.

use serde::Deserialize;

/// `[history]`: the traceability history (`history::History`).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct HistorySettings {
    /// Days every binding's life is kept (default 180, 1 to 3660).
    pub retention_days: u32,
}

impl Default for HistorySettings {
    fn default() -> HistorySettings {
        HistorySettings {
            retention_days: 180,
        }
    }
}

impl HistorySettings {
    /// The history's configuration.
    pub fn history_config(self) -> crate::history::HistoryConfig {
        crate::history::HistoryConfig {
            retention_s: self.retention_days.saturating_mul(86_400),
            ..crate::history::HistoryConfig::default()
        }
    }
}
