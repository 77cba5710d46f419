//! Replication: the write path every change of state takes. Writes are
//! proposed to openraft (pinned to 0.9.25, wrapped here so nothing else
//! names it) as batches; openraft appends them to the durable log
//! (`log_store`), commits them and applies them to the tables
//! (`state_machine`), and only then does the client hear the answer. A
//! node started without peers is a one-member cluster that initialises
//! itself, so it takes the same path as a cluster. A node started with
//! peers (`ReplicaOptions::peers`) talks to them over `peer`, the TCP
//! transport, and waits to be initialised (`Replica::initialize`) or
//! contacted by a leader.

pub mod batch;
mod cluster;
mod log_store;
mod network;
pub mod peer;
pub mod recover;
mod start;
pub mod state_machine;
mod tasks;
pub mod types;

pub use cluster::{ClusterView, Lag, MemberView};
use start::{start_alone, start_with_peers};
use tasks::{checkpoint_now, housekeeping, propose};

pub use batch::WriteBatch;
pub use log_store::LogStore;
pub use peer::{ClusterSecret, Member, PeerConfig, PeerStats};
pub use recover::{replay, Recovered};
pub use state_machine::StateMachine;
pub use state_machine::{Applier, CheckpointStats};
pub use types::Answers;

use crate::log::{Flusher, Log, LogHealth};
use network::NoPeers;
use openraft::{BasicNode, Raft, SnapshotPolicy};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The storage pair openraft runs on, built over an open log and the tables
/// behind `applier` (which hold everything `recovered` says). `Replica`
/// builds the same pair; openraft's storage test suite
/// (tests/raft_storage.rs) builds it here.
pub fn storage(
    data_dir: &Path,
    log: Log,
    applier: Arc<dyn Applier>,
    recovered: &Recovered,
) -> Result<(LogStore, StateMachine), StartError> {
    build_storage(
        data_dir,
        log,
        applier,
        recovered,
        Duration::ZERO,
        Arc::new(CheckpointStats::default()),
    )
}

fn build_storage(
    data_dir: &Path,
    log: Log,
    applier: Arc<dyn Applier>,
    recovered: &Recovered,
    group_commit_wait: Duration,
    checkpoints: Arc<CheckpointStats>,
) -> Result<(LogStore, StateMachine), StartError> {
    let flusher = Arc::new(Flusher::start(log.health(), group_commit_wait).map_err(start_error)?);
    let state_machine = StateMachine::new(
        applier,
        data_dir,
        recovered.last_applied.map(types::log_id),
        recovered.membership.clone(),
        Arc::new(tokio::sync::Mutex::new(())),
        checkpoints,
    )
    .map_err(start_error)?;
    Ok((
        LogStore::new(Arc::new(Mutex::new(log)), flusher),
        state_machine,
    ))
}

/// How a write ended without its answers. Every variant but
/// `OutcomeUnknown` means that certainly nothing was done: the batch never
/// reached openraft, or openraft refused it before appending it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Too many proposals waiting (or one waited past its deadline before
    /// it could be handed to openraft): try again.
    Busy,
    /// No room for the log: writes resume by themselves when space is back.
    DiskFull,
    /// Writes are stopped on this node (stopping, or an fsync failed).
    Stopped,
    /// Another node leads; its id if known.
    NotLeader(Option<u64>),
    /// The batch reached openraft's log, and this node cannot tell whether
    /// it committed: its leadership ended, openraft stopped, or no answer
    /// came within the proposal deadline. The writes may yet apply on
    /// every member; the client reads them back before retrying.
    OutcomeUnknown,
}

/// Called once with the answers of a proposed batch, or why it failed.
pub type Done = Box<dyn FnOnce(Result<Answers, Refusal>) + Send>;

/// Settings of the write path.
#[derive(Clone, Debug)]
pub struct ReplicaOptions {
    /// This node's id.
    pub node_id: u64,
    /// Longest time the group commit waits for more appends before
    /// syncing (0: sync as soon as the previous sync ends).
    pub group_commit_wait: Duration,
    /// A checkpoint is taken at least this often while writes arrive.
    pub checkpoint_interval: Duration,
    /// ... or as soon as the log's segments grew by this many bytes since
    /// the last one.
    pub checkpoint_log_bytes: u64,
    /// With peers, the log keeps this many entries before the last
    /// checkpoint (openraft's `max_in_snapshot_log_to_keep`): a member down
    /// a short while catches up from the log. Alone, the log keeps none.
    pub log_margin_entries: u64,
    /// Proposals waiting for the Raft core at most; more answer BUSY.
    pub proposals_max: usize,
    /// A proposal not answered this long after it was submitted is
    /// answered: `Busy` if it was still queued (nothing done),
    /// `OutcomeUnknown` once openraft held it. Its slot is released, so a
    /// leader that cannot commit never sticks at BUSY.
    pub proposal_deadline: Duration,
    /// An expiry sweep entry is proposed this often (it reclaims expired
    /// bindings deterministically, at the time it carries).
    pub sweep_interval: Duration,
    /// `None` (the default): a one-member cluster, as a node started
    /// without `--raft`. `Some`: a member of a cluster of several, reached
    /// by its peers at `PeerConfig::listen`.
    pub peers: Option<PeerConfig>,
}

impl Default for ReplicaOptions {
    fn default() -> ReplicaOptions {
        ReplicaOptions {
            node_id: 1,
            group_commit_wait: Duration::ZERO,
            checkpoint_interval: Duration::from_secs(60),
            checkpoint_log_bytes: 512 << 20,
            log_margin_entries: LOG_MARGIN_ENTRIES_DEFAULT,
            proposals_max: 1024,
            proposal_deadline: PROPOSAL_DEADLINE_DEFAULT,
            sweep_interval: Duration::from_secs(1),
            peers: None,
        }
    }
}

/// The default log margin of a member with peers: the sweep proposes one
/// entry a second on an idle cluster, and a loaded one batches many writes
/// per entry, so 100,000 entries cover from hours down to a minute or so
/// of downtime; past it a member catches up by snapshot.
pub const LOG_MARGIN_ENTRIES_DEFAULT: u64 = 100_000;

/// The default proposal deadline: far above a healthy commit (milliseconds,
/// even through an election of 150-300 ms), well below what a platform
/// waits before giving up on an order.
pub const PROPOSAL_DEADLINE_DEFAULT: Duration = Duration::from_secs(10);

struct Proposal {
    batch: WriteBatch,
    done: Done,
    /// When the proposal is answered at the latest (see
    /// `ReplicaOptions::proposal_deadline`).
    deadline: tokio::time::Instant,
}

/// The node's write path, running.
pub struct Replica {
    runtime: tokio::runtime::Runtime,
    raft: Raft<types::TypeConfig>,
    proposals: tokio::sync::mpsc::Sender<Proposal>,
    health: Arc<LogHealth>,
    log: Arc<Mutex<Log>>,
    stopping: Arc<AtomicBool>,
    /// Checkpoint counters.
    pub checkpoints: Arc<CheckpointStats>,
    node_id: u64,
    peer_server: Option<peer::PeerServer>,
    peer_stats: Arc<PeerStats>,
    proposal_deadline: Duration,
    /// The highest log index whose answers this node handed to a client
    /// (it applied it first): openraft's metrics may report the apply a
    /// moment after the answer left.
    acknowledged_index: Arc<AtomicU64>,
}

/// Why the write path could not start.
#[derive(Debug, thiserror::Error)]
#[error("replication: {0}")]
pub struct StartError(pub String);

fn start_error(error: impl ToString) -> StartError {
    StartError(error.to_string())
}

impl Replica {
    /// Starts openraft over `log` and the tables behind `applier`, which
    /// already hold everything `recovered` says; becomes leader of its
    /// one-member cluster (initialising it on first start) and returns once
    /// it takes writes. `clock` stamps proposals.
    pub fn start(
        data_dir: &Path,
        log: Log,
        applier: Arc<dyn Applier>,
        recovered: &Recovered,
        options: ReplicaOptions,
        clock: Arc<dyn crate::store::clock::Clock>,
    ) -> Result<Replica, StartError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("x700-raft")
            .enable_all()
            .build()
            .map_err(start_error)?;
        let health = log.health();
        let config = openraft::Config {
            cluster_name: "x700".into(),
            election_timeout_min: 150,
            election_timeout_max: 300,
            heartbeat_interval: 50,
            snapshot_policy: SnapshotPolicy::Never,
            // Alone, nobody needs the log before the checkpoint: purge it
            // all. With peers, keep a margin for members that were away.
            max_in_snapshot_log_to_keep: if options.peers.is_some() {
                options.log_margin_entries
            } else {
                0
            },
            purge_batch_size: 1,
            // A snapshot travels in 8 MiB chunks (under the 16 MiB peer
            // frame). The last chunk's answer waits until the follower has
            // checked every page and swapped the shards in: seconds for
            // tens of millions of bindings.
            snapshot_max_chunk_size: 8 << 20,
            install_snapshot_timeout: 120_000,
            // `add_learner(.., true)` waits until the learner is this close to the leader's
            // log (openraft's default, 5,000 entries, let an empty node become a voter at once).
            replication_lag_threshold: 100,
            ..openraft::Config::default()
        }
        .validate()
        .map_err(start_error)?;
        let checkpoints = Arc::new(CheckpointStats::default());
        let (store, state_machine) = build_storage(
            data_dir,
            log,
            applier,
            recovered,
            options.group_commit_wait,
            Arc::clone(&checkpoints),
        )?;
        let log = store.log();
        let node_id = options.node_id;
        let peer_stats = Arc::new(PeerStats::default());
        let (raft, peer_server) = match &options.peers {
            None => (
                start_alone(&runtime, node_id, config, store, state_machine)?,
                None,
            ),
            Some(peers) => {
                let (raft, server) = start_with_peers(
                    &runtime,
                    node_id,
                    config,
                    peers,
                    Arc::clone(&peer_stats),
                    (store, state_machine),
                    data_dir,
                )?;
                (raft, Some(server))
            }
        };
        let (proposals, inbox) = tokio::sync::mpsc::channel(options.proposals_max.max(1));
        let stopping = Arc::new(AtomicBool::new(false));
        let proposal_deadline = options.proposal_deadline;
        let acknowledged_index = Arc::new(AtomicU64::new(0));
        runtime.spawn(propose(
            raft.clone(),
            inbox,
            Arc::clone(&acknowledged_index),
        ));
        runtime.spawn(housekeeping(
            raft.clone(),
            Arc::clone(&checkpoints),
            Arc::clone(&log),
            proposals.clone(),
            options,
            clock,
            Arc::clone(&stopping),
        ));
        Ok(Replica {
            runtime,
            raft,
            proposals,
            health,
            log,
            stopping,
            checkpoints,
            node_id,
            peer_server,
            peer_stats,
            proposal_deadline,
            acknowledged_index,
        })
    }

    /// Proposes a batch; `done` hears the answers once the batch is durable
    /// and applied. A refusal returns `done` unused.
    pub fn submit(&self, batch: WriteBatch, done: Done) -> Result<(), (Refusal, Done)> {
        if self.stopping.load(Ordering::SeqCst) || self.health.failed.load(Ordering::SeqCst) {
            return Err((Refusal::Stopped, done));
        }
        if self.health.disk_full.load(Ordering::SeqCst) {
            return Err((Refusal::DiskFull, done));
        }
        let deadline = tokio::time::Instant::now() + self.proposal_deadline;
        let proposal = Proposal {
            batch,
            done,
            deadline,
        };
        match self.proposals.try_send(proposal) {
            Ok(()) => Ok(()),
            Err(tokio::sync::mpsc::error::TrySendError::Full(p)) => Err((Refusal::Busy, p.done)),
            Err(tokio::sync::mpsc::error::TrySendError::Closed(p)) => {
                Err((Refusal::Stopped, p.done))
            }
        }
    }

    /// Flags of the log (disk full, failed) and its sync counters.
    pub fn log_health(&self) -> Arc<LogHealth> {
        Arc::clone(&self.health)
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// Index of the last applied entry: as openraft last reported it, or
    /// the last one whose answers this node gave, if that is later. Every
    /// write acknowledged by this node is at or below it.
    pub fn applied_index(&self) -> u64 {
        let reported = self
            .raft
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |l| l.index);
        reported.max(self.acknowledged_index.load(Ordering::SeqCst))
    }

    /// Takes a checkpoint of everything applied so far and waits for it
    /// (and the log purge it allows).
    pub fn checkpoint(&self) -> Result<(), String> {
        self.runtime
            .block_on(checkpoint_now(&self.raft, &self.checkpoints))
    }

    /// Bytes of log segments on disk.
    pub fn log_bytes(&self) -> u64 {
        self.log.lock().map_or(0, |log| log.disk_bytes())
    }

    /// Index of the first log entry still on disk: those before it were
    /// purged after a checkpoint, so a member that lacks them catches up by
    /// snapshot.
    pub fn log_first_index(&self) -> u64 {
        self.log.lock().map_or(0, |log| log.first_index())
    }

    /// Stops taking writes, waits for those in flight, takes a last
    /// checkpoint (so the next start replays nothing) and stops openraft.
    /// The shards' owners must keep serving `Applier` calls until this
    /// returns. `apply_stalled`: the shards cannot take a committed entry
    /// (a full disk): no last checkpoint, which would wait behind it; the
    /// next start replays the log.
    pub fn shutdown(&self, apply_stalled: bool) -> Result<(), String> {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let result = self.runtime.block_on(async {
            // Proposals already queued drain first: a blank wait on the
            // queue's capacity shows when the proposer has taken them all.
            let _ = self
                .proposals
                .reserve_many(self.proposals.max_capacity())
                .await;
            let result = if self.health.failed.load(Ordering::SeqCst) || apply_stalled {
                Ok(())
            } else {
                checkpoint_now(&self.raft, &self.checkpoints).await
            };
            if let Some(server) = &self.peer_server {
                server.stop();
            }
            let _ = self.raft.shutdown().await;
            result
        });
        result
    }
}
