//! The node's JSON answers about itself: STATS (`Shared::stats_json`:
//! loops, shards, bindings, connections, request times, and the log and
//! cluster lag once the write path runs) and CLUSTER_STATUS
//! (`Shared::cluster_status_json`), with the format versions a member must
//! share with the others (`member_versions`).

use super::Shared;
use std::sync::atomic::Ordering;

impl Shared {
    /// The STATS answer.
    pub fn stats_json(&self) -> String {
        let mut stats = serde_json::json!({
            "node_id": self.config.node_id,
            "event_loops": self.workers,
            "io": self.config.io.name(),
            "table_shards": self.table_shards,
            "bindings_live": self.metrics.bindings_live(),
            "connections": self.connections.load(Ordering::Relaxed),
            "request_time_us": self.metrics.request_time_json(),
        });
        if let Some(replica) = self.replica.get() {
            let health = replica.log_health();
            let syncs = health.syncs.load(Ordering::Relaxed);
            let appends = health.synced_appends.load(Ordering::Relaxed);
            let sync_us = health.sync_time_us.load(Ordering::Relaxed);
            stats["log"] = serde_json::json!({
                "syncs": syncs,
                "appends_synced": appends,
                "sync_time_us_mean": sync_us.checked_div(syncs).unwrap_or(0),
                "disk_full": health.disk_full.load(Ordering::Relaxed),
                "failed": health.failed.load(Ordering::Relaxed),
                "segment_bytes": replica.log_bytes(),
                "first_index": replica.log_first_index(),
                "applied_index": replica.applied_index(),
                "checkpoints": replica.checkpoints.count.load(Ordering::Relaxed),
                "checkpoint_page_bytes": replica.checkpoints.page_bytes.load(Ordering::Relaxed),
                "checkpoint_failures": replica.checkpoints.failures.load(Ordering::Relaxed),
                "snapshots_installed": replica.checkpoints.installed.load(Ordering::Relaxed),
                "apply_stalled": self.apply_stall.is_stalled(),
                "apply_stalls": self.apply_stall.stalls(),
            });
            let lag = replica.lag();
            stats["cluster"] = serde_json::json!({
                "lag_entries": lag.entries,
                "lag_ms": lag.ms,
            });
        }
        stats.to_string()
    }
}

/// The formats a member must share with the others to join them (log
/// entries are raw frames over tables of a fixed shard count): CLUSTER_STATUS
/// carries them, and `cluster init` and `add-node` compare them.
pub fn member_versions() -> serde_json::Value {
    serde_json::json!({
        "protocol": crate::protocol::VERSION,
        "table_format": crate::table::layout::FORMAT_VERSION,
        "log_format": crate::log::segment::FORMAT_VERSION,
        "peer": crate::replication::peer::codec::PEER_VERSION,
        "apply": crate::replication::batch::APPLY_VERSION,
    })
}

impl Shared {
    /// The CLUSTER_STATUS answer: the cluster as this node sees it.
    pub fn cluster_status_json(&self) -> String {
        let Some(replica) = self.replica.get() else {
            return serde_json::json!({ "node_id": self.config.node_id }).to_string();
        };
        let view = replica.status();
        let address_of = |id: Option<u64>| {
            id.and_then(|id| view.members.iter().find(|m| m.member.id == id))
                .map(|m| m.member.client_addr.clone())
        };
        let apply_stalled = self.apply_stall.is_stalled();
        // A member knows only whether its own apply waits: for the others
        // the field is null (ask them: `cluster status --server` theirs).
        let members: Vec<serde_json::Value> = view
            .members
            .iter()
            .map(|m| {
                serde_json::json!({
                    "id": m.member.id,
                    "raft_addr": m.member.raft_addr,
                    "client_addr": m.member.client_addr,
                    "role": m.role,
                    "applied_index": m.matched_index,
                    "apply_stalled": (m.member.id == view.node_id).then_some(apply_stalled),
                })
            })
            .collect();
        serde_json::json!({
            "node_id": view.node_id,
            "raft_addr": replica.raft_addr().map(|a| a.to_string()),
            "leader_id": view.leader_id,
            "leader_addr": address_of(view.leader_id),
            "term": view.term,
            "applied_index": view.applied_index,
            "apply_stalled": apply_stalled,
            "apply_stall_reason": self.apply_stall.reason(),
            "members": members,
            "table_shards": self.table_shards,
            "versions": member_versions(),
        })
        .to_string()
    }
}
