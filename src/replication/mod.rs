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
mod log_store;
mod network;
pub mod peer;
pub mod recover;
pub mod state_machine;
pub mod types;

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
use std::sync::atomic::{AtomicBool, Ordering};
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

/// Why a write was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Too many proposals waiting: try again.
    Busy,
    /// No room for the log: writes resume by themselves when space is back.
    DiskFull,
    /// Writes are stopped on this node (stopping, or an fsync failed).
    Stopped,
    /// Another node leads; its id if known.
    NotLeader(Option<u64>),
}

/// Called once with the answers of a proposed batch, or why it failed.
pub type Done = Box<dyn FnOnce(Result<Answers, Refusal>) + Send>;

/// The cluster as one member sees it (`Replica::status`).
#[derive(Clone, Debug)]
pub struct ClusterView {
    /// This node.
    pub node_id: u64,
    /// The current term.
    pub term: u64,
    /// The leader, if one is known.
    pub leader_id: Option<u64>,
    /// The last log index applied here.
    pub applied_index: Option<u64>,
    /// Every member of the membership in force.
    pub members: Vec<MemberView>,
}

/// One member in a `ClusterView`.
#[derive(Clone, Debug)]
pub struct MemberView {
    /// Its id and addresses.
    pub member: Member,
    /// `leader`, `follower` (a voter) or `learner`.
    pub role: &'static str,
    /// The last index known to be in its log: this node's own, or, at the
    /// leader, each follower's replicated index; `None` if unknown here.
    pub matched_index: Option<u64>,
}

/// How far a member's tables trail the leader's commits (`Replica::lag`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lag {
    /// Entries the leader had committed, as its last append said, that
    /// this member has not applied yet.
    pub entries: u64,
    /// Milliseconds since the last append from the leader (heartbeats
    /// come every 50 ms): what this member serves may miss writes
    /// committed since. `None` if no leader has reached it since start.
    pub ms: Option<u64>,
}

/// The lag rule: the leader (and a one-member node) lags by nothing; a
/// follower lags by the leader's last known commit index less its own
/// applied index, and by the time since the leader's last append.
fn lag(leads: bool, applied_index: u64, contact: Option<peer::LeaderContact>) -> Lag {
    if leads {
        return Lag {
            entries: 0,
            ms: Some(0),
        };
    }
    Lag {
        entries: contact.map_or(0, |c| c.commit_index.saturating_sub(applied_index)),
        ms: contact.map(|c| u64::try_from(c.at.elapsed().as_millis()).unwrap_or(u64::MAX)),
    }
}

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

struct Proposal {
    batch: WriteBatch,
    done: Done,
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
                    store,
                    state_machine,
                )?;
                (raft, Some(server))
            }
        };
        let (proposals, inbox) = tokio::sync::mpsc::channel(options.proposals_max.max(1));
        let stopping = Arc::new(AtomicBool::new(false));
        runtime.spawn(propose(raft.clone(), inbox));
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
        })
    }

    /// The address peers reach this node at; `None` on a one-member node.
    pub fn raft_addr(&self) -> Option<std::net::SocketAddr> {
        self.peer_server.as_ref().map(peer::PeerServer::local_addr)
    }

    /// The transport's counters (handshakes refused either way, connections,
    /// failed requests).
    pub fn peer_stats(&self) -> Arc<PeerStats> {
        Arc::clone(&self.peer_stats)
    }

    /// Initialises a new cluster whose first voters are `members` (this node
    /// among them), as `x700 cluster init` does; run it on one member only.
    /// Fails if this node's log already holds a membership, or if a node id
    /// appears twice.
    pub fn initialize(&self, members: &[Member]) -> Result<(), String> {
        let mut nodes = BTreeMap::new();
        for member in members {
            if nodes.insert(member.id, member.node()).is_some() {
                return Err(format!("node id {} named twice", member.id));
            }
        }
        if !nodes.contains_key(&self.node_id) {
            return Err(format!(
                "this node ({}) is not among the members",
                self.node_id
            ));
        }
        self.runtime
            .block_on(self.raft.initialize(nodes))
            .map_err(|e| e.to_string())
    }

    /// The cluster as this node sees it: term, leader, and every member
    /// with its role and (at the leader) how far its log matches.
    pub fn status(&self) -> ClusterView {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
        let matched = metrics.replication.clone().unwrap_or_default();
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let role = if metrics.current_leader == Some(*id) {
                    "leader"
                } else if voters.contains(id) {
                    "follower"
                } else {
                    "learner"
                };
                let matched_index = if *id == self.node_id {
                    metrics.last_log_index
                } else {
                    matched.get(id).and_then(|m| m.map(|log_id| log_id.index))
                };
                MemberView {
                    member: Member::of(*id, node),
                    role,
                    matched_index,
                }
            })
            .collect();
        ClusterView {
            node_id: self.node_id,
            term: metrics.current_term,
            leader_id: metrics.current_leader,
            applied_index: metrics.last_applied.map(|log_id| log_id.index),
            members,
        }
    }

    /// The leader this node knows of, if any.
    pub fn leader_id(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }

    /// The cluster's members as this node last applied or appended them.
    pub fn members(&self) -> Vec<Member> {
        let metrics = self.raft.metrics().borrow().clone();
        metrics
            .membership_config
            .membership()
            .nodes()
            .map(|(id, node)| Member::of(*id, node))
            .collect()
    }

    /// Adds `member` as a learner (it receives the log, does not vote) and
    /// waits until it has caught up, when `wait` says so; at the leader only.
    pub fn add_learner(&self, member: &Member, wait: bool) -> Result<(), String> {
        self.runtime
            .block_on(self.raft.add_learner(member.id, member.node(), wait))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Adds `member` as a learner, waits (up to `catch_up`) until its log
    /// matches the leader's, then makes it a voter; at the leader only. A
    /// member that does not catch up in time stays a learner, and the
    /// error says so.
    pub fn add_member(&self, member: &Member, catch_up: Duration) -> Result<(), String> {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        if membership.voter_ids().any(|id| id == member.id) {
            return Err(format!("node {} is already a voter", member.id));
        }
        self.runtime.block_on(async {
            let added = tokio::time::timeout(
                catch_up,
                self.raft.add_learner(member.id, member.node(), true),
            )
            .await;
            match added {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => return Err(error.to_string()),
                Err(_) => {
                    return Err(format!(
                        "node {} did not catch up within {} s: it stays a learner",
                        member.id,
                        catch_up.as_secs()
                    ))
                }
            }
            let promoted = std::collections::BTreeSet::from([member.id]);
            self.raft
                .change_membership(openraft::ChangeMembers::AddVoterIds(promoted), true)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }

    /// Removes node `id` from the cluster (voter or learner); at the leader
    /// only. Returns once the change is committed. The last voter cannot
    /// be removed.
    pub fn remove_member(&self, id: u64) -> Result<(), String> {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        if !membership.nodes().any(|(node, _)| *node == id) {
            return Err(format!("node {id} is not a member"));
        }
        let is_voter = membership.voter_ids().any(|voter| voter == id);
        if is_voter && membership.voter_ids().count() == 1 {
            return Err(format!("node {id} is the last voter"));
        }
        let ids = std::collections::BTreeSet::from([id]);
        let change = if is_voter {
            openraft::ChangeMembers::RemoveVoters(ids)
        } else {
            openraft::ChangeMembers::RemoveNodes(ids)
        };
        // retain = false: a removed voter leaves the membership altogether.
        self.runtime
            .block_on(self.raft.change_membership(change, false))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Makes `voters` the cluster's voters (learners not named stay
    /// learners); at the leader only. Returns once the change is committed.
    pub fn change_voters(&self, voters: &[u64]) -> Result<(), String> {
        let voters: std::collections::BTreeSet<u64> = voters.iter().copied().collect();
        self.runtime
            .block_on(self.raft.change_membership(voters, true))
            .map(|_| ())
            .map_err(|e| e.to_string())
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
        match self.proposals.try_send(Proposal { batch, done }) {
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

    /// Index of the last applied entry, as openraft last reported it.
    pub fn applied_index(&self) -> u64 {
        self.raft
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |l| l.index)
    }

    /// How far this member's tables trail the leader's commits (`Lag`).
    pub fn lag(&self) -> Lag {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let applied_index = metrics.last_applied.map_or(0, |log_id| log_id.index);
        let leads = metrics.current_leader == Some(self.node_id);
        lag(leads, applied_index, self.peer_stats.leader_contact())
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

    /// Stops taking writes, waits for those in flight, takes a last
    /// checkpoint (so the next start replays nothing) and stops openraft.
    /// The shards' owners must keep serving `Applier` calls until this
    /// returns.
    pub fn shutdown(&self) -> Result<(), String> {
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
            let result = if self.health.failed.load(Ordering::SeqCst) {
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

/// Starts openraft on a one-member node, exactly as before peers existed:
/// initialise on first start, then elect itself and wait until it leads.
fn start_alone(
    runtime: &tokio::runtime::Runtime,
    node_id: u64,
    config: openraft::Config,
    store: LogStore,
    state_machine: StateMachine,
) -> Result<Raft<types::TypeConfig>, StartError> {
    let raft = runtime
        .block_on(Raft::new(
            node_id,
            Arc::new(config),
            NoPeers,
            store,
            state_machine,
        ))
        .map_err(start_error)?;
    runtime.block_on(async {
        if raft.is_initialized().await.map_err(start_error)? {
            raft.trigger().elect().await.map_err(start_error)?;
        } else {
            let members = BTreeMap::from([(node_id, BasicNode::default())]);
            raft.initialize(members).await.map_err(start_error)?;
        }
        raft.wait(Some(Duration::from_secs(10)))
            .current_leader(node_id, "one-member cluster elects itself")
            .await
            .map_err(start_error)?;
        Ok::<(), StartError>(())
    })?;
    Ok(raft)
}

/// Starts openraft on a member of a cluster of several: binds the raft
/// address, serves peers there and returns at once. The node neither
/// initialises itself nor forces an election: it waits for
/// `Replica::initialize` or for a leader's messages, and elects by
/// openraft's timeouts.
fn start_with_peers(
    runtime: &tokio::runtime::Runtime,
    node_id: u64,
    config: openraft::Config,
    peers: &PeerConfig,
    stats: Arc<PeerStats>,
    store: LogStore,
    state_machine: StateMachine,
) -> Result<(Raft<types::TypeConfig>, peer::PeerServer), StartError> {
    let refusals = Arc::new(peer::RefusalLog::default());
    let network = peer::PeerNetwork::new(
        node_id,
        peers.clone(),
        Arc::clone(&stats),
        Arc::clone(&refusals),
    );
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(peers.listen)
            .await
            .map_err(|e| StartError(format!("raft address {}: {e}", peers.listen)))?;
        let raft = Raft::new(node_id, Arc::new(config), network, store, state_machine)
            .await
            .map_err(start_error)?;
        let server = peer::PeerServer::start(
            listener,
            raft.clone(),
            node_id,
            peers.clone(),
            stats,
            refusals,
        )
        .map_err(start_error)?;
        Ok((raft, server))
    })
}

/// Takes a checkpoint and waits until openraft holds one at or past what
/// is applied now, or until this one failed (the state machine keeps the
/// previous checkpoint and counts the failure in `checkpoints`).
async fn checkpoint_now(
    raft: &Raft<types::TypeConfig>,
    checkpoints: &CheckpointStats,
) -> Result<(), String> {
    let applied = raft.metrics().borrow().last_applied;
    let Some(applied) = applied else {
        return Ok(());
    };
    let done = |raft: &Raft<types::TypeConfig>| {
        raft.metrics()
            .borrow()
            .snapshot
            .is_some_and(|s| s.index >= applied.index)
    };
    if done(raft) {
        return Ok(());
    }
    let failures = checkpoints.failures.load(Ordering::SeqCst);
    raft.trigger().snapshot().await.map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    let mut metrics = raft.metrics();
    loop {
        // A later entry may have been included: any snapshot at or past
        // `applied` will do.
        if done(raft) {
            return Ok(());
        }
        if checkpoints.failures.load(Ordering::SeqCst) != failures {
            return Err("checkpoint failed; the previous one and the log are kept".into());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err("checkpoint did not complete".into());
        }
        // The failure counter is not in openraft's metrics: look again at
        // least every 50 ms.
        if let Ok(Err(_)) = tokio::time::timeout(Duration::from_millis(50), metrics.changed()).await
        {
            return Err("openraft stopped before the checkpoint completed".into());
        }
    }
}

/// Entries this node has handed to openraft and not yet heard back about.
/// openraft 0.9 makes each append durable before it takes the next, so
/// everything that arrives meanwhile is merged into the next entry: one
/// append, one `fdatasync`, one apply for all of it (group commit at the
/// proposal level). Two in flight keep the next entry ready while one syncs.
const ENTRIES_IN_FLIGHT_MAX: usize = 2;

async fn propose(raft: Raft<types::TypeConfig>, mut inbox: tokio::sync::mpsc::Receiver<Proposal>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(ENTRIES_IN_FLIGHT_MAX));
    let mut carried: Option<Proposal> = None;
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let first = match carried.take() {
            Some(proposal) => proposal,
            None => match inbox.recv().await {
                Some(proposal) => proposal,
                None => return,
            },
        };
        // Merge whatever else is waiting, up to one batch's bytes.
        let mut merged = first.batch;
        let mut parts = vec![(merged.count, first.done)];
        while let Ok(next) = inbox.try_recv() {
            if !merged.append(&next.batch) {
                carried = Some(next);
                break;
            }
            parts.push((next.batch.count, next.done));
        }
        match raft.client_write_ff(merged).await {
            Ok(receiver) => {
                tokio::spawn(async move {
                    let outcome = match receiver.await {
                        Ok(Ok(response)) => Ok(response.data),
                        Ok(Err(openraft::error::ClientWriteError::ForwardToLeader(forward))) => {
                            Err(Refusal::NotLeader(forward.leader_id))
                        }
                        Ok(Err(_)) | Err(_) => Err(Refusal::Stopped),
                    };
                    drop(permit);
                    split_answers(outcome, parts);
                });
            }
            Err(_) => {
                drop(permit);
                split_answers(Err(Refusal::Stopped), parts);
            }
        }
    }
}

/// Hands each merged proposal its own answers (one frame per write, in
/// order).
fn split_answers(outcome: Result<Answers, Refusal>, parts: Vec<(u32, Done)>) {
    let frames = match outcome {
        Ok(Answers(frames)) => frames,
        Err(refusal) => {
            for (_, done) in parts {
                done(Err(refusal));
            }
            return;
        }
    };
    let mut at = 0usize;
    for (count, done) in parts {
        let start = at;
        for _ in 0..count {
            let length = frames
                .get(at..at + 4)
                .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
            if length < crate::protocol::frame::HEADER_BYTES || at + length > frames.len() {
                break;
            }
            at += length;
        }
        done(Ok(Answers(frames[start..at].to_vec())));
    }
}

/// After a failed checkpoint, the next waits this long: each attempt
/// copies every dirty page, and a full disk does not empty in 100 ms.
const CHECKPOINT_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Whether a checkpoint is due: `checkpoint_interval` passed with entries
/// applied since the last one, or the log grew by `checkpoint_log_bytes`
/// since it. Growth, not size: with a log margin the log never shrinks
/// below the margin, which may itself hold more than `checkpoint_log_bytes`,
/// and a size test would then checkpoint at every tick.
fn checkpoint_due(
    options: &ReplicaOptions,
    since_checkpoint: Duration,
    applied_since: bool,
    log_bytes_grown: u64,
) -> bool {
    applied_since
        && (since_checkpoint >= options.checkpoint_interval
            || log_bytes_grown >= options.checkpoint_log_bytes)
}

async fn housekeeping(
    raft: Raft<types::TypeConfig>,
    checkpoints: Arc<CheckpointStats>,
    log: Arc<Mutex<Log>>,
    proposals: tokio::sync::mpsc::Sender<Proposal>,
    options: ReplicaOptions,
    clock: Arc<dyn crate::store::clock::Clock>,
    stopping: Arc<AtomicBool>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut since_checkpoint = Duration::ZERO;
    let mut since_sweep = Duration::ZERO;
    let mut since_failure: Option<Duration> = None;
    let mut log_bytes_after_checkpoint = 0;
    while !stopping.load(Ordering::SeqCst) {
        tick.tick().await;
        since_checkpoint += Duration::from_millis(100);
        since_sweep += Duration::from_millis(100);
        let (disk_full, log_bytes) = match log.lock() {
            Ok(mut log) => {
                let disk_full = log.health().disk_full.load(Ordering::SeqCst);
                if disk_full {
                    log.prepare_spare();
                }
                (disk_full, log.disk_bytes())
            }
            Err(_) => (false, 0),
        };
        if since_sweep >= options.sweep_interval && !disk_full {
            since_sweep = Duration::ZERO;
            let _ = proposals.try_send(Proposal {
                batch: WriteBatch::new(clock.now_s()),
                done: Box::new(|_| {}),
            });
        }
        let metrics = raft.metrics().borrow().clone();
        let applied = metrics.last_applied.map_or(0, |l| l.index);
        let checkpointed = metrics.snapshot.map_or(0, |s| s.index);
        // The purge after a checkpoint lowers the log's size: follow it down.
        log_bytes_after_checkpoint = log_bytes_after_checkpoint.min(log_bytes);
        let due = checkpoint_due(
            &options,
            since_checkpoint,
            applied > checkpointed,
            log_bytes.saturating_sub(log_bytes_after_checkpoint),
        );
        let retry_wait_over = since_failure.is_none_or(|t| t >= CHECKPOINT_RETRY_AFTER);
        since_failure = since_failure.map(|t| t + Duration::from_millis(100));
        if due && retry_wait_over && !stopping.load(Ordering::SeqCst) {
            since_checkpoint = Duration::ZERO;
            since_failure = None;
            if let Err(error) = checkpoint_now(&raft, &checkpoints).await {
                eprintln!("x700: checkpoint: {error}");
                since_failure = Some(Duration::ZERO);
            }
            log_bytes_after_checkpoint = log.lock().map_or(0, |log| log.disk_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn the_leader_lags_by_nothing_whatever_it_last_heard() {
        let old = peer::LeaderContact {
            at: Instant::now(),
            commit_index: 900,
        };
        let lagging = lag(true, 10, Some(old));
        assert_eq!(
            lagging,
            Lag {
                entries: 0,
                ms: Some(0)
            }
        );
    }

    #[test]
    fn a_follower_lags_by_the_leaders_commits_it_has_not_applied() {
        let contact = peer::LeaderContact {
            at: Instant::now(),
            commit_index: 900,
        };
        assert_eq!(lag(false, 100, Some(contact)).entries, 800);
        // Applied past what the last append said (a later append is on
        // its way): no lag, never an underflow.
        assert_eq!(lag(false, 950, Some(contact)).entries, 0);
        assert!(lag(false, 100, Some(contact)).ms.is_some());
    }

    #[test]
    fn a_follower_no_leader_has_reached_has_no_measure_in_ms() {
        assert_eq!(
            lag(false, 0, None),
            Lag {
                entries: 0,
                ms: None
            }
        );
    }
}

#[cfg(test)]
mod checkpoint_trigger_tests {
    //! The checkpoint trigger.

    use super::{checkpoint_due, ReplicaOptions};
    use std::time::Duration;

    /// Guards against checkpointing at every tick once a log margin keeps
    /// more bytes than `checkpoint_log_bytes`: the trigger looks at growth
    /// since the last checkpoint and needs something applied since it.
    #[test]
    fn the_log_size_trigger_counts_growth_since_the_last_checkpoint() {
        let options = ReplicaOptions {
            checkpoint_log_bytes: 1000,
            checkpoint_interval: Duration::from_secs(60),
            ..ReplicaOptions::default()
        };
        let short = Duration::from_secs(1);
        assert!(!checkpoint_due(&options, short, true, 999));
        assert!(checkpoint_due(&options, short, true, 1000));
        assert!(!checkpoint_due(&options, short, false, 5000));
        assert!(checkpoint_due(&options, Duration::from_secs(60), true, 0));
        assert!(!checkpoint_due(&options, Duration::from_secs(60), false, 0));
    }
}
