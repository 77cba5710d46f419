//! Recovery: replays the log after the tables' checkpoint, before openraft
//! starts. Each shard records the log index after the last entry it holds
//! (`applied_log_index` in its meta), so a replay that starts at the oldest
//! shard's position applies each write exactly once to each shard.
//!
//! Only committed entries are applied: an entry past the commit index may
//! be replaced by another leader's, and a table that applied it would
//! differ from every other member's for good. Committed are the entries up
//! to the committed position the log stores (`Log::state`, saved by
//! openraft before each apply, clamped to the log when it opens), and those
//! the tables or their checkpoint already hold. The rest is left in the
//! log: openraft commits it (or a leader replaces it) once it runs.
//!
//! One exception keeps a single node as it was: an entry whose membership
//! (the last one at or before it, which openraft follows from the moment
//! it is appended) has one voter and no other node is committed as soon as
//! it is durable, because that voter is the whole quorum. The stored
//! position is written without a sync and can lag acknowledged writes
//! after a power loss; such entries are replayed all the same. (A node
//! removed from a cluster whose remaining config names only the leader
//! would replay its tail too; a removed node's tables do not count, and a
//! wiped member rejoins under a new id.)

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
    /// The committed position the log stored (clamped to the log), if any.
    pub stored_committed: Option<LogPosition>,
    /// Entries replayed past every known commit position because a
    /// one-member cluster wrote them (see the module comment).
    pub entries_past_committed: u64,
    /// Entries after `last_applied` left in the log for Raft to commit or
    /// replace.
    pub entries_left: u64,
}

/// Whether `membership` makes one node the whole cluster: its sole voter
/// commits an entry by making it durable.
fn is_one_member(membership: &Membership<u64, BasicNode>) -> bool {
    membership.voter_ids().count() == 1 && membership.nodes().count() == 1
}

/// Replays the committed part of `log` into the tables (see the module
/// comment for what counts as committed). `shards_applied_next` is the
/// smallest `applied_log_index` of the shards; `apply(index, batch)`
/// applies one batch to every shard that does not hold it yet.
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
        stored_committed: log.state().committed,
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
    // What the tables hold was applied, so it was committed: the stored
    // position may lag it (it is saved without a sync).
    let committed_upto = [
        recovered.stored_committed.map(|p| p.index),
        recovered.last_applied.map(|p| p.index),
        shards_applied_next.checked_sub(1),
    ]
    .into_iter()
    .flatten()
    .max();
    let mut index = shards_applied_next.min(manifest_next).max(first);
    'replay: while index <= last.index {
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
            let membership = match record.kind {
                RecordKind::Membership => Some(
                    serde_json::from_slice::<Membership<u64, BasicNode>>(&record.payload)
                        .map_err(|e| format!("log record {}: membership: {e}", record.index))?,
                ),
                _ => None,
            };
            if committed_upto.is_none_or(|c| record.index > c) {
                let in_force = membership
                    .as_ref()
                    .unwrap_or_else(|| recovered.membership.membership());
                if !is_one_member(in_force) {
                    recovered.entries_left = last.index + 1 - record.index;
                    break 'replay;
                }
                recovered.entries_past_committed += 1;
            }
            match record.kind {
                RecordKind::Blank => {}
                RecordKind::Membership => {
                    if let Some(membership) = membership {
                        recovered.membership =
                            StoredMembership::new(Some(log_id(position)), membership);
                    }
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
