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
use crate::table::snapshot;
use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, StorageError,
    StorageIOError, StoredMembership,
};
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

    /// The node's control state (tenants), kept with each checkpoint.
    fn control(&self) -> Arc<crate::tenant::Control>;

    /// Replaces every shard by its copy staged in `staging` (a snapshot
    /// from the leader, verified, adopted, its swap journal written). Must
    /// follow every earlier `apply`. A node that fails halfway stops (see
    /// `server::apply::SWAP_FAILED_EXIT_STATUS`).
    fn swap_in(&self, staging: PathBuf) -> oneshot::Receiver<Result<(), String>>;
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

/// Writes `meta` as the manifest of `data_dir` (or of a staging directory).
pub fn write_manifest(data_dir: &Path, meta: &SnapshotMeta<u64, BasicNode>) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(meta).map_err(std::io::Error::other)?;
    crate::sys::replace_file_durably(data_dir, MANIFEST_NAME, &bytes)
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
    /// Snapshots from the leader installed.
    pub installed: std::sync::atomic::AtomicU64,
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
    /// No snapshot was asked for yet. openraft's first ask comes from
    /// `Raft::new`, which reads only the snapshot's meta: it gets no image.
    first_ask: bool,
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
            first_ask: true,
        })
    }
}

/// Builds one checkpoint from captures taken in order with the applies.
pub struct CheckpointBuilder {
    _lock: tokio::sync::OwnedMutexGuard<()>,
    captured: Result<Vec<ShardImage>, String>,
    /// The registry as of the captured entries, and where it goes.
    registry: (Arc<crate::tenant::Registry>, Arc<crate::tenant::Control>),
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
        // The registry goes with the tables it was captured with, before
        // the manifest says the checkpoint is whole.
        let (registry, control) = self.registry.clone();
        let applied_next = self.meta.last_log_id.map_or(0, |l| l.index + 1);
        tokio::task::spawn_blocking(move || {
            // The history too holds everything up to here before the
            // manifest says the log may be purged.
            let now_s = crate::store::clock::Clock::now_s(&crate::store::clock::SystemClock);
            control
                .sync_history(now_s)
                .map_err(|e| format!("{}: {e}", crate::tenant::HISTORY_DIR))?;
            control
                .persist(&registry, applied_next)
                .map_err(|e| format!("{}: {e}", crate::tenant::REGISTRY_NAME))
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
                // The commit's page copies (one allocation per run of
                // pages, many of them single index pages) are freed now;
                // the allocator would keep that memory in its arenas.
                crate::sys::trim_heap();
                self.stats.count.fetch_add(1, Relaxed);
                self.stats.page_bytes.fetch_add(page_bytes, Relaxed);
                self.stats
                    .applied_next
                    .store(self.meta.last_log_id.map_or(0, |l| l.index + 1), Relaxed);
                Ok(Snapshot {
                    meta: self.meta.clone(),
                    snapshot: no_data().await?,
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
                    snapshot: no_data().await?,
                    meta: previous,
                })
            }
        }
    }
}

/// Snapshot data holding nothing (`/dev/null`): what openraft gets from a
/// checkpoint it has just built (it keeps only the meta; the checkpoint is
/// the table files) and, to a member that needs a snapshot, when the image
/// cannot be made (the member refuses it as malformed and the leader tries
/// again later; both are fatal to openraft as errors).
async fn no_data() -> Result<Box<tokio::fs::File>, StorageError<u64>> {
    tokio::fs::File::open("/dev/null")
        .await
        .map(Box::new)
        .map_err(|e| StorageIOError::read_snapshot(None, AnyError::error(e.to_string())).into())
}

/// The id of a checkpoint at `last`: the log id names one state in the
/// whole cluster (every member applies the same entries the same way).
fn snapshot_id(last: Option<LogId<u64>>) -> String {
    last.map_or_else(
        || "empty".to_string(),
        |l| {
            format!(
                "t{}-n{}-i{}",
                l.leader_id.term, l.leader_id.node_id, l.index
            )
        },
    )
}

/// Where a node keeps the image of its last checkpoint for members that
/// need a snapshot: `DIR/snapshot/<id>.image`, made on first demand and
/// removed when a newer checkpoint's is made.
pub const IMAGE_DIR_NAME: &str = "snapshot";

/// Where a member receives the leader's image before staging it.
pub const INCOMING_IMAGE_NAME: &str = "snapshot-incoming.image";

/// The staging directory of the snapshot `meta` names, in `data_dir`.
pub fn staging_dir(data_dir: &Path, meta: &SnapshotMeta<u64, BasicNode>) -> PathBuf {
    data_dir.join(format!(
        "{}-{}",
        snapshot::STAGING_NAME,
        meta.last_log_id.map_or(0, |l| l.index)
    ))
}

/// The image of checkpoint `id`, made if it is not there yet (the caller
/// holds off checkpoints, so the table files hold exactly that checkpoint;
/// applies do not write them). Images of older checkpoints are removed.
fn make_image(data_dir: &Path, id: &str) -> Result<PathBuf, String> {
    let root = data_dir.join(IMAGE_DIR_NAME);
    crate::sys::create_private_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    let name: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let path = root.join(format!("{name}.image"));
    if !path.exists() {
        let temporary = root.join(format!("{name}.image.new"));
        let file = crate::sys::open_or_create_private(
            std::fs::OpenOptions::new().write(true).truncate(true),
            &temporary,
        )
        .map_err(|e| format!("{}: {e}", temporary.display()))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        snapshot::write_image(data_dir, &mut out).map_err(|e| e.to_string())?;
        std::io::Write::flush(&mut out).map_err(|e| format!("{}: {e}", temporary.display()))?;
        std::fs::rename(&temporary, &path).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Ok(entries) = std::fs::read_dir(&root) {
        for entry in entries.flatten() {
            if entry.path() != path {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    Ok(path)
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
        // Every earlier apply has returned, control writes included.
        let control = self.applier.control();
        let registry = (control.registry(), control);
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id: snapshot_id(self.last_applied),
        };
        CheckpointBuilder {
            _lock: lock,
            captured,
            registry,
            meta,
            data_dir: self.data_dir.clone(),
            current: Arc::clone(&self.current),
            stats: Arc::clone(&self.stats),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<tokio::fs::File>, StorageError<u64>> {
        // Not called: the peer server receives snapshots itself
        // (`peer::server`), so it can check them before openraft sees them.
        no_data().await
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        _snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError<u64>> {
        // The peer server staged the image, checked every page, stamped it
        // as this directory's, wrote its manifest beside it and the swap
        // journal (`peer::snapshot_in`); here it goes in.
        use std::sync::atomic::Ordering::Relaxed;
        let _lock = Arc::clone(&self.checkpoint_lock).lock_owned().await;
        let staging = staging_dir(&self.data_dir, meta);
        let staged = read_manifest(&staging).map_err(sm_error)?;
        if staged.as_ref() != Some(meta) {
            return Err(sm_error(format!(
                "{}: no staged snapshot for {}",
                staging.display(),
                meta.snapshot_id
            )));
        }
        let started = std::time::Instant::now();
        // The image carries the leader's history: this member's closes
        // while its files are replaced.
        self.applier.control().close_history();
        // The swap journal names the staging directory already: openraft
        // purges the log up to the snapshot without waiting for this
        // install, so from its call on the swap must happen, now or at the
        // next start.
        self.applier
            .swap_in(staging)
            .await
            .map_err(sm_error)?
            .map_err(sm_error)?;
        let data_dir = self.data_dir.clone();
        tokio::task::spawn_blocking(move || snapshot::finish_swap(&data_dir))
            .await
            .map_err(sm_error)?
            .map_err(sm_error)?;
        // The image carried the leader's registry as of its checkpoint, and
        // its history; the entries after the snapshot are applied next.
        self.applier.control().reload().map_err(sm_error)?;
        let next = meta.last_log_id.map_or(0, |l| l.index + 1);
        self.applier
            .control()
            .reopen_history(next)
            .map_err(sm_error)?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        if let Ok(mut current) = self.current.lock() {
            *current = Some(meta.clone());
        }
        self.stats.installed.fetch_add(1, Relaxed);
        self.stats
            .applied_next
            .store(meta.last_log_id.map_or(0, |l| l.index + 1), Relaxed);
        eprintln!(
            "x700: installed the leader's snapshot at log index {} in {} ms",
            meta.last_log_id.map_or(0, |l| l.index),
            started.elapsed().as_millis()
        );
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        // No checkpoint commits while the image is made: the table files
        // then hold exactly the last checkpoint.
        let _lock = Arc::clone(&self.checkpoint_lock).lock_owned().await;
        let current = self.current.lock().map_err(sm_error)?.clone();
        let Some(meta) = current else {
            return Ok(None);
        };
        // At start openraft reads the current snapshot's meta and nothing
        // else: making the image (a copy of every table file) then would
        // cost a start the time to copy the tables and their size in disk.
        // The image is made when a member first needs one.
        if std::mem::take(&mut self.first_ask) {
            return Ok(Some(Snapshot {
                meta,
                snapshot: no_data().await?,
            }));
        }
        let data_dir = self.data_dir.clone();
        let id = meta.snapshot_id.clone();
        let made = tokio::task::spawn_blocking(move || make_image(&data_dir, &id))
            .await
            .map_err(|e| e.to_string())
            .and_then(|made| made);
        let snapshot = match made {
            Ok(path) => match tokio::fs::File::open(&path).await {
                Ok(file) => Box::new(file),
                Err(error) => {
                    eprintln!("x700: snapshot image {}: {error}", path.display());
                    no_data().await?
                }
            },
            Err(error) => {
                eprintln!("x700: the snapshot image could not be made: {error}");
                no_data().await?
            }
        };
        Ok(Some(Snapshot { meta, snapshot }))
    }
}
