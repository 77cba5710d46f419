//! The openraft type configuration and the conversions between openraft's
//! entries and the log's records. Nothing outside `replication` names
//! openraft.

use super::batch::WriteBatch;
use crate::log::{LogPosition, LogRecord, RecordKind};
use openraft::{BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId};
use serde::{Deserialize, Serialize};

/// The answers to one batch: one answer frame per write, in order, back to
/// back (each frame carries its own length).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answers(pub Vec<u8>);

openraft::declare_raft_types!(
    /// x700's Raft types.
    pub TypeConfig:
        D = WriteBatch,
        R = Answers,
        NodeId = u64,
        Node = BasicNode,
        Entry = Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
);

/// A log id from a log position.
pub fn log_id(position: LogPosition) -> LogId<u64> {
    LogId::new(
        CommittedLeaderId::new(position.term, position.leader),
        position.index,
    )
}

/// A log position from a log id.
pub fn position(log_id: &LogId<u64>) -> LogPosition {
    LogPosition {
        index: log_id.index,
        term: log_id.leader_id.term,
        leader: log_id.leader_id.node_id,
    }
}

/// Encodes an openraft entry as a log record.
pub fn record_of(entry: &Entry<TypeConfig>) -> LogRecord {
    let at = position(&entry.log_id);
    let (kind, payload) = match &entry.payload {
        EntryPayload::Blank => (RecordKind::Blank, Vec::new()),
        EntryPayload::Normal(batch) => (RecordKind::Writes, batch.encode()),
        EntryPayload::Membership(membership) => (
            RecordKind::Membership,
            // A membership always serialises (plain maps and sets).
            serde_json::to_vec(membership).unwrap_or_default(),
        ),
    };
    LogRecord {
        index: at.index,
        term: at.term,
        leader: at.leader,
        kind,
        payload,
    }
}

/// Decodes a log record into an openraft entry.
pub fn entry_of(record: &LogRecord) -> Result<Entry<TypeConfig>, String> {
    let log_id = log_id(LogPosition {
        index: record.index,
        term: record.term,
        leader: record.leader,
    });
    let payload = match record.kind {
        RecordKind::Blank => EntryPayload::Blank,
        RecordKind::Writes => EntryPayload::Normal(
            WriteBatch::decode(&record.payload)
                .ok_or_else(|| format!("log record {}: malformed write batch", record.index))?,
        ),
        RecordKind::Membership => EntryPayload::Membership(
            serde_json::from_slice(&record.payload)
                .map_err(|e| format!("log record {}: membership: {e}", record.index))?,
        ),
    };
    Ok(Entry { log_id, payload })
}
