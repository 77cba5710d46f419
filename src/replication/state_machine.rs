//! openraft's state machine: the shard tables. Applying an entry hands its
//! write batch to an `Applier` (the event loops that own the shards, or one
//! thread owning them all offline and in tests) and returns one answer
//! frame per write. A snapshot is a checkpoint: `get_snapshot_builder`
//! captures every shard at the last applied entry (in order with the
//! applies, so the capture is consistent), `build_snapshot` commits the
//! captures to the table files and records the position in the checkpoint
//! manifest; openraft then purges the log up to it.
//!
//! A checkpoint that fails (an I/O error, a full disk) is not an error to
//! openraft, which would stop its core for good: `build_snapshot` logs it,
//! counts it, and hands openraft the previous checkpoint again, which it
//! ignores (it is no newer), so nothing is purged. The table files still
//! hold the previous checkpoint (or a newer one for the shards whose commit
//! went through), the log still holds everything after it, and the pages
//! of the failed commit go back to their shard for the next capture.

use super::batch::WriteBatch;
use super::types::{Answers, TypeConfig};
use crate::table::checkpoint::ShardImage;
use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, StorageError,
    StorageIOError, StoredMembership,
};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Where the batches of applied entries go.
pub trait Applier: Send + Sync + 'static {
    /// Applies `batches` (log index, batch) in order; the receiver yields
    /// the answers to each batch, in order.
    fn apply(
        &self,
        batches: Vec<(u64, WriteBatch)>,
    ) -> oneshot::Receiver<Result<Vec<Answers>, String>>;

    /// Captures every shard, recording `applied_next` (the log index after
    /// the last applied entry) in each. Must follow every earlier `apply`.
    fn capture(&self, applied_next: u64) -> oneshot::Receiver<Result<Vec<ShardImage>, String>>;
}

/// The checkpoint manifest: the position and membership the table files'
/// last complete checkpoint holds. JSON, replaced atomically (write a temp
/// file, sync, rename, sync the directory).
pub const MANIFEST_NAME: &str = "checkpoint.json";

/// Reads the manifest, if there is one.
pub fn read_manifest(data_dir: &Path) -> Result<Option<SnapshotMeta<u64, BasicNode>>, String> {
    let path = data_dir.join(MANIFEST_NAME);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn write_manifest(data_dir: &Path, meta: &SnapshotMeta<u64, BasicNode>) -> std::io::Result<()> {
    let path = data_dir.join(MANIFEST_NAME);
    let temporary = data_dir.join(format!("{MANIFEST_NAME}.new"));
    let bytes = serde_json::to_vec_pretty(meta).map_err(std::io::Error::other)?;
    {
        let file = crate::sys::open_or_create_private(
            std::fs::OpenOptions::new().write(true).truncate(true),
            &temporary,
        )?;
        std::io::Write::write_all(&mut &file, &bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, &path)?;
    std::fs::File::open(data_dir)?.sync_all()
}

/// What the checkpoints have done, for metrics and the closing figures.
#[derive(Debug, Default)]
pub struct CheckpointStats {
    /// Checkpoints committed.
    pub count: std::sync::atomic::AtomicU64,
    /// Page bytes they wrote.
    pub page_bytes: std::sync::atomic::AtomicU64,
    /// Index after the last checkpointed entry.
    pub applied_next: std::sync::atomic::AtomicU64,
    /// Checkpoints that failed (the previous one was kept).
    pub failures: std::sync::atomic::AtomicU64,
}

/// The state machine.
pub struct StateMachine {
    applier: Arc<dyn Applier>,
    data_dir: PathBuf,
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    /// One checkpoint at a time, from capture to commit.
    checkpoint_lock: Arc<tokio::sync::Mutex<()>>,
    current: Arc<Mutex<Option<SnapshotMeta<u64, BasicNode>>>>,
    stats: Arc<CheckpointStats>,
}

fn sm_error(error: impl ToString) -> StorageError<u64> {
    StorageIOError::write_state_machine(AnyError::error(error.to_string())).into()
}

impl StateMachine {
    /// A state machine whose tables already hold everything up to
    /// `last_applied` (recovery replayed the log before openraft starts).
    pub fn new(
        applier: Arc<dyn Applier>,
        data_dir: &Path,
        last_applied: Option<LogId<u64>>,
        membership: StoredMembership<u64, BasicNode>,
        checkpoint_lock: Arc<tokio::sync::Mutex<()>>,
        stats: Arc<CheckpointStats>,
    ) -> Result<StateMachine, String> {
        let current = read_manifest(data_dir)?;
        Ok(StateMachine {
            applier,
            data_dir: data_dir.to_path_buf(),
            last_applied,
            membership,
            checkpoint_lock,
            current: Arc::new(Mutex::new(current)),
            stats,
        })
    }
}

/// Builds one checkpoint from captures taken in order with the applies.
pub struct CheckpointBuilder {
    _lock: tokio::sync::OwnedMutexGuard<()>,
    captured: Result<Vec<ShardImage>, String>,
    meta: SnapshotMeta<u64, BasicNode>,
    data_dir: PathBuf,
    current: Arc<Mutex<Option<SnapshotMeta<u64, BasicNode>>>>,
    stats: Arc<CheckpointStats>,
}

impl CheckpointBuilder {
    /// Commits the captures and writes the manifest; returns the page
    /// bytes written.
    async fn commit(&mut self) -> Result<u64, String> {
        let images = std::mem::replace(&mut self.captured, Ok(Vec::new()))?;
        let page_bytes = tokio::task::spawn_blocking(move || -> Result<u64, String> {
            // Every image is persisted even after one fails: each shard's
            // commit stands alone, and an image dropped unpersisted would
            // lose its pages (a failed `persist` hands them back to its
            // shard; a skipped one would not).
            let mut bytes = 0;
            let mut first_error = None;
            for image in images {
                match image.persist() {
                    Ok(stats) => bytes += stats.page_bytes,
                    Err(error) => {
                        first_error.get_or_insert(error.to_string());
                    }
                }
            }
            first_error.map_or(Ok(bytes), Err)
        })
        .await
        .map_err(|e| e.to_string())??;
        write_manifest(&self.data_dir, &self.meta)
            .map_err(|e| format!("{}: {e}", self.data_dir.join(MANIFEST_NAME).display()))?;
        Ok(page_bytes)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for CheckpointBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        use std::sync::atomic::Ordering::Relaxed;
        match self.commit().await {
            Ok(page_bytes) => {
                if let Ok(mut current) = self.current.lock() {
                    *current = Some(self.meta.clone());
                }
                self.stats.count.fetch_add(1, Relaxed);
                self.stats.page_bytes.fetch_add(page_bytes, Relaxed);
                self.stats
                    .applied_next
                    .store(self.meta.last_log_id.map_or(0, |l| l.index + 1), Relaxed);
                Ok(Snapshot {
                    meta: self.meta.clone(),
                    snapshot: Box::new(Cursor::new(manifest_bytes(&self.meta))),
                })
            }
            Err(error) => {
                eprintln!(
                    "x700: checkpoint at log index {} failed, the previous one is kept and the \
                     log with it: {error}",
                    self.meta.last_log_id.map_or(0, |l| l.index)
                );
                self.stats.failures.fetch_add(1, Relaxed);
                // openraft keeps a snapshot only if it is newer than the one
                // it has: the previous checkpoint (or an empty meta, when
                // there is none) changes nothing and purges nothing.
                let previous = self
                    .current
                    .lock()
                    .ok()
                    .and_then(|current| current.clone())
                    .unwrap_or_default();
                Ok(Snapshot {
                    snapshot: Box::new(Cursor::new(manifest_bytes(&previous))),
                    meta: previous,
                })
            }
        }
    }
}

fn manifest_bytes(meta: &SnapshotMeta<u64, BasicNode>) -> Vec<u8> {
    serde_json::to_vec(meta).unwrap_or_default()
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = CheckpointBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Answers>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut answers = Vec::new();
        let mut batches = Vec::new();
        let mut positions = Vec::new();
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => answers.push(Answers::default()),
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), membership);
                    answers.push(Answers::default());
                }
                EntryPayload::Normal(batch) => {
                    positions.push(answers.len());
                    answers.push(Answers::default());
                    batches.push((entry.log_id.index, batch));
                }
            }
        }
        if !batches.is_empty() {
            let applied = self
                .applier
                .apply(batches)
                .await
                .map_err(sm_error)?
                .map_err(sm_error)?;
            for (position, answer) in positions.into_iter().zip(applied) {
                answers[position] = answer;
            }
        }
        Ok(answers)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let lock = Arc::clone(&self.checkpoint_lock).lock_owned().await;
        let applied_next = self.last_applied.map_or(0, |l| l.index + 1);
        let captured = match self.applier.capture(applied_next).await {
            Ok(result) => result,
            Err(_) => Err("the shards' owners stopped".into()),
        };
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id: format!("checkpoint-{applied_next}"),
        };
        CheckpointBuilder {
            _lock: lock,
            captured,
            meta,
            data_dir: self.data_dir.clone(),
            current: Arc::clone(&self.current),
            stats: Arc::clone(&self.stats),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        _meta: &SnapshotMeta<u64, BasicNode>,
        _snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        // A follower that fell behind the purged log needs the leader's
        // table files; shipping them arrives with multi-node replication
        // (step 6). A one-member cluster never installs a snapshot.
        Err(sm_error(
            "installing a snapshot from another node is not supported before multi-node replication",
        ))
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        let current = self.current.lock().map_err(sm_error)?.clone();
        Ok(current.map(|meta| Snapshot {
            snapshot: Box::new(Cursor::new(manifest_bytes(&meta))),
            meta,
        }))
    }
}
