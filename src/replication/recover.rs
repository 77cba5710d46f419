//! Recovery: replays the log after the tables' checkpoint, before openraft
//! starts. Each shard records the log index after the last entry it holds
//! (`applied_log_index` in its meta), so a replay that starts at the oldest
//! shard's position applies each write exactly once to each shard.
//!
//! On a one-member cluster every durable entry is committed (the member is
//! the whole quorum), so the whole log is replayed. Multi-node replication
//! (step 6) will replay only up to the stored commit index and leave the
//! rest to the leader.

use super::batch::WriteBatch;
use super::state_machine::read_manifest;
use super::types::log_id;
use crate::log::{Log, LogPosition, RecordKind};
use openraft::{BasicNode, Membership, StoredMembership};
use std::path::Path;

/// Records read per step of the replay.
const REPLAY_CHUNK: u64 = 4096;

/// What recovery found and did.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    /// The last entry the tables now hold.
    pub last_applied: Option<LogPosition>,
    /// The membership in force at that entry.
    pub membership: StoredMembership<u64, BasicNode>,
    /// Log entries read.
    pub entries_replayed: u64,
    /// Write batches handed to `apply`.
    pub batches_replayed: u64,
}

/// Replays `log` into the tables. `shards_applied_next` is the smallest
/// `applied_log_index` of the shards; `apply(index, batch)` applies one batch
/// to every shard that does not hold it yet.
pub fn replay(
    data_dir: &Path,
    log: &Log,
    shards_applied_next: u64,
    apply: &mut dyn FnMut(u64, &WriteBatch),
) -> Result<Recovered, String> {
    let manifest = read_manifest(data_dir)?;
    let mut recovered = Recovered {
        last_applied: manifest
            .as_ref()
            .and_then(|m| m.last_log_id.as_ref().map(super::types::position)),
        membership: manifest
            .as_ref()
            .map(|m| m.last_membership.clone())
            .unwrap_or_default(),
        ..Recovered::default()
    };
    let first = log.first_index();
    let Some(last) = log.last() else {
        return Ok(recovered);
    };
    let manifest_next = recovered.last_applied.map_or(0, |p| p.index + 1);
    if shards_applied_next < first && log.state().purged.is_some() {
        return Err(format!(
            "the tables' checkpoint ends before log index {shards_applied_next}, but the log \
             starts at {first}: entries in between are lost (a table file or the meta was \
             replaced by an older copy?)"
        ));
    }
    let mut index = shards_applied_next.min(manifest_next).max(first);
    while index <= last.index {
        let records = log
            .read(index, (index + REPLAY_CHUNK).min(last.index + 1))
            .map_err(|e| e.to_string())?;
        if records.is_empty() {
            break;
        }
        for record in &records {
            let position = LogPosition {
                index: record.index,
                term: record.term,
                leader: record.leader,
            };
            match record.kind {
                RecordKind::Blank => {}
                RecordKind::Membership => {
                    let membership: Membership<u64, BasicNode> =
                        serde_json::from_slice(&record.payload)
                            .map_err(|e| format!("log record {}: membership: {e}", record.index))?;
                    recovered.membership =
                        StoredMembership::new(Some(log_id(position)), membership);
                }
                RecordKind::Writes if record.index >= shards_applied_next => {
                    let batch = WriteBatch::decode(&record.payload).ok_or_else(|| {
                        format!("log record {}: malformed write batch", record.index)
                    })?;
                    apply(record.index, &batch);
                    recovered.batches_replayed += 1;
                }
                RecordKind::Writes => {}
            }
            recovered.entries_replayed += 1;
            if recovered
                .last_applied
                .is_none_or(|p| p.index < position.index)
            {
                recovered.last_applied = Some(position);
            }
            index = record.index + 1;
        }
    }
    Ok(recovered)
}
