//! Collectors that read this member's replication state when scraped:
//! the follower lag (`x700_follower_lag_entries`,
//! `x700_follower_lag_seconds`) and the apply stall (`x700_apply_stalled`,
//! `x700_apply_stalls`).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;
use std::sync::Arc;

/// The follower lag gauges (`Replica::lag`), read when scraped:
/// `x700_follower_lag_entries` and `x700_follower_lag_seconds`.
pub struct LagMetrics(pub Arc<crate::replication::Replica>);

impl std::fmt::Debug for LagMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LagMetrics")
    }
}

impl Collector for LagMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let lag = self.0.lag();
        encoder
            .encode_descriptor(
                "x700_follower_lag_entries",
                "Entries the leader has committed that this member has not applied (0 at the leader).",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&i64::try_from(lag.entries).unwrap_or(i64::MAX))?;
        // In seconds, as Prometheus names time (promtool refuses `_ms`);
        // STATS says `lag_ms`. No leader has reached this member since it
        // started: as far behind as can be, +Inf, so that an alert fires.
        // Milliseconds below 2^53 are exact in f64.
        #[allow(clippy::cast_precision_loss)]
        let seconds = lag.ms.map_or(f64::INFINITY, |ms| ms as f64 / 1e3);
        encoder
            .encode_descriptor(
                "x700_follower_lag",
                "Time since the leader's last append reached this member (0 at the leader).",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?
            .encode_gauge(&seconds)?;
        Ok(())
    }
}

/// `x700_apply_stalled` (1 while this member cannot make room to apply a
/// committed entry and waits, 0 otherwise) and `x700_apply_stalls` (stalls
/// begun since the start), read when scraped.
pub struct ApplyStallMetrics(pub Arc<crate::server::apply::ApplyStall>);

impl std::fmt::Debug for ApplyStallMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApplyStallMetrics")
    }
}

impl Collector for ApplyStallMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        encoder
            .encode_descriptor(
                "x700_apply_stalled",
                "1 while this member cannot make room to apply a committed entry and retries.",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&i64::from(self.0.is_stalled()))?;
        encoder
            .encode_descriptor(
                "x700_apply_stalls",
                "Times applying the log stalled for want of room since the start.",
                None,
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, _, u64>(&self.0.stalls(), None)?;
        Ok(())
    }
}
