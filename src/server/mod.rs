//! The node: one pinned event loop per core, each owning its share of the
//! table shards, plus the admin HTTP endpoint. `Server::start` opens the
//! data directory and starts everything; `stop` drains and closes cleanly.
//! Beside it: the STATS and CLUSTER_STATUS answers (`stats`), the
//! listening sockets (`sockets`) and the checks the start makes around the
//! data directory (`start_checks`).

pub mod admin;
pub mod apply;
pub mod auth;
pub mod capture;
pub mod config;
pub mod conn;
pub mod cross;
pub mod dispatch;
pub mod limits;
pub mod metrics;
mod sockets;
mod start_checks;
mod stats;
pub mod worker;

pub(crate) use sockets::{tcp_listener, udp_socket};
pub use start_checks::DESCRIPTORS_RESERVED;
pub use stats::member_versions;

use crate::store::clock::Clock;
use crate::store::Store;
use config::{Config, ConfigError, Network};
use cross::Message;
use crossbeam_channel::Sender;
use metrics::{NodeMetrics, WorkerMetrics};
use mio::{Poll, Waker};
use sockets::{sip_front, socket_error};
use start_checks::{claim_member_ids, open_files_limit, spawn_page_checks};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::Duration;

/// State every event loop shares. Read-mostly: nothing here is touched per
/// request except the connection count at accept.
pub struct Shared {
    /// The configuration.
    pub config: Config,
    /// Event loops.
    pub workers: usize,
    /// Table shards in the data directory.
    pub table_shards: u16,
    /// UDP source networks.
    pub switch_networks: Vec<Network>,
    /// Each loop's inbox.
    pub senders: Vec<Sender<Message>>,
    /// Each loop's waker.
    pub wakers: Vec<Arc<Waker>>,
    /// Set on SIGTERM/SIGINT or `stop`.
    pub stopping: AtomicBool,
    /// Loops still answering in-flight requests during a stop.
    pub busy_workers: AtomicUsize,
    /// All loops meet here before closing their shards.
    pub barrier: Barrier,
    /// Open TCP connections, node-wide.
    pub connections: AtomicUsize,
    /// Open TCP connections per source address.
    pub sources: limits::SourceConnections,
    /// The loop the next accepted connection goes to (round robin).
    pub accept_next: AtomicUsize,
    /// Unsent answer bytes of every connection, as the loops last
    /// published them.
    pub output_bytes: AtomicUsize,
    /// The limit on `output_bytes` (resolved from the configuration).
    pub output_bytes_total_max: usize,
    /// UDP lookups per source and second, if limited.
    pub udp_rate: Option<limits::SourceRate>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Metrics of every loop.
    pub metrics: NodeMetrics,
    /// True once every loop runs.
    pub ready: AtomicBool,
    /// The write path, once it has started.
    pub replica: std::sync::OnceLock<Arc<crate::replication::Replica>>,
    /// Set once the replica has stopped: loops may close their shards.
    pub replica_stopped: AtomicBool,
    /// Whether applying the log waits for room (`apply::ApplyStall`).
    pub apply_stall: Arc<apply::ApplyStall>,
    /// Server-side capture of the client traffic (off unless configured).
    pub capture: Arc<capture::Capture>,
    /// The ENUM front-end's sockets and zone, if configured: every loop
    /// serves duplicates of the two sockets.
    pub enum_dns: Option<worker::EnumSockets>,
    /// The SIP redirect front-end, if configured.
    pub sip: Option<worker::SipFront>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data directory could not be opened.
    #[error(transparent)]
    Table(#[from] crate::table::TableError),
    /// The log could not be replayed or the write path could not start.
    #[error("{0}")]
    Recovery(String),
    /// A socket could not be opened.
    #[error("{what} {address}: {source}")]
    Socket {
        /// Which socket.
        what: &'static str,
        /// Its address.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// `io = "uring"`, and the kernel refused io_uring (disabled by
    /// `kernel.io_uring_disabled`, a seccomp filter or a container's
    /// policy, or a kernel too old for what the backend uses).
    #[error(
        "io = \"uring\": the kernel refused io_uring ({0}); check \
         /proc/sys/kernel/io_uring_disabled, the container's seccomp profile and the \
         kernel version (6.1 or newer), or serve with --io epoll"
    )]
    Uring(worker::RingError),
    /// The capture file's directory is missing or the writer could not
    /// start.
    #[error("capture {path}: {source}")]
    Capture {
        /// The capture file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A running node.
pub struct Server {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<Result<(), crate::table::TableError>>>,
    admin: Option<JoinHandle<()>>,
    /// The TCP address actually bound.
    pub tcp_address: SocketAddr,
    /// The UDP address actually bound.
    pub udp_address: Option<SocketAddr>,
    /// The ENUM front-end's address (UDP and TCP) actually bound.
    pub enum_address: Option<SocketAddr>,
    /// The SIP address actually bound (UDP and TCP).
    pub sip_address: Option<SocketAddr>,
    /// The admin address actually bound.
    pub admin_address: Option<SocketAddr>,
    /// The open-file limit the node runs with.
    pub open_files_limit: u64,
    /// The resolved limit on unsent output, bytes.
    pub output_bytes_total_max: usize,
}

impl Server {
    /// Opens the data directory (creating it if new), binds the sockets and
    /// starts one event loop per configured core.
    pub fn start(config: Config, clock: Arc<dyn Clock>) -> Result<Server, StartError> {
        let mut config = config;
        let resolved = config.validate()?;
        if config.io == config::IoBackend::Uring {
            worker::probe_uring().map_err(StartError::Uring)?;
        }
        crate::sys::return_large_blocks_to_the_kernel();
        let (open_files_limit, connections_max) = open_files_limit(config.limits.connections_max)?;
        config.limits.connections_max = connections_max;
        let peers = match resolved.raft {
            None => None,
            Some(listen) => {
                let secret = config.cluster_secret.as_deref().unwrap_or_default();
                let secret = crate::replication::peer::ClusterSecret::new(secret.as_bytes())
                    .ok_or_else(|| ConfigError::Invalid("cluster_secret is too short".into()))?;
                Some(crate::replication::peer::PeerConfig {
                    cluster_id: config.cluster_id,
                    secret,
                    listen,
                })
            }
        };
        let mut store =
            Store::open_or_create(&config.data, config.table_shards, Arc::clone(&clock))?;
        claim_member_ids(&config, peers.is_some())?;
        // The history holds every change up to the tables' checkpoint; the
        // log replay makes the rest again, held in memory until the replay
        // succeeded (a start that refuses writes nothing).
        let replay_from = store
            .shard_set()
            .owned()
            .map(crate::table::Shard::applied_log_index)
            .min()
            .unwrap_or(0);
        store.control().hold_history();
        for shard in 0..usize::from(store.shard_count()) {
            if let Some(s) = store.shard_set_mut().shard_mut(shard) {
                s.record_changes(true);
            }
        }
        let (log, recovered) = apply::recover(&mut store).map_err(StartError::Recovery)?;
        spawn_page_checks(store.take_page_checks());
        store
            .control()
            .open_history(config.history.history_config(), replay_from)
            .map_err(StartError::Recovery)?;
        if recovered.batches_replayed > 0 {
            eprintln!(
                "x700: recovery: replayed {} log entries ({} write batches)",
                recovered.entries_replayed, recovered.batches_replayed
            );
        }
        let table_shards = store.shard_count();
        let workers = resolved.workers;
        let control = Arc::clone(store.control());
        // The allocator and the tenants' counts start from the tables;
        // from here on every change the shards apply keeps them current.
        control.rebuild(config.pools.alloc_config(), store.shard_set().owned());
        let sets = store.split(workers);
        let mut polls = Vec::with_capacity(workers);
        let mut wakers = Vec::with_capacity(workers);
        for _ in 0..workers {
            let poll = Poll::new().map_err(socket_error("poll", resolved.listen))?;
            let waker = Waker::new(poll.registry(), worker::WAKER)
                .map_err(socket_error("waker", resolved.listen))?;
            polls.push(poll);
            wakers.push(Arc::new(waker));
        }
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..workers)
            .map(|_| crossbeam_channel::bounded(config.limits.queue_batches_max))
            .unzip();
        // One listening socket; each loop polls a duplicate descriptor.
        let first =
            tcp_listener(resolved.listen).map_err(socket_error("listen", resolved.listen))?;
        let tcp_address = first
            .local_addr()
            .map_err(socket_error("listen", resolved.listen))?;
        let mut listeners = Vec::with_capacity(workers);
        for _ in 1..workers {
            listeners.push(
                first
                    .try_clone()
                    .map_err(socket_error("listen", tcp_address))?,
            );
        }
        listeners.insert(0, first);
        let mut udp_sockets: Vec<Option<std::net::UdpSocket>> =
            (0..workers).map(|_| None).collect();
        let mut udp_address = None;
        if let Some(address) = resolved.udp {
            let first = udp_socket(address).map_err(socket_error("udp", address))?;
            let bound = first.local_addr().map_err(socket_error("udp", address))?;
            for slot in udp_sockets.iter_mut().skip(1) {
                *slot = Some(first.try_clone().map_err(socket_error("udp", bound))?);
            }
            udp_sockets[0] = Some(first);
            udp_address = Some(bound);
        }
        let enum_dns = match &resolved.enum_dns {
            Some((address, zone)) => Some(
                worker::EnumSockets::bind(*address, zone.clone())
                    .map_err(socket_error("enum", *address))?,
            ),
            None => None,
        };
        let enum_address = enum_dns.as_ref().map(|sockets| sockets.address);
        let sip = match resolved.sip {
            Some(address) => Some(sip_front(address, &config)?),
            None => None,
        };
        let sip_address = sip.as_ref().map(|front| front.address);
        let output_bytes_total_max = match config.limits.output_bytes_total_max {
            0 => config::output_bytes_total_default(crate::sys::memory_bytes()),
            bytes => bytes,
        };
        let output_bytes_total_max = usize::try_from(output_bytes_total_max).unwrap_or(usize::MAX);
        let udp_rate = match config.limits.udp_lookups_per_source_per_s {
            0 => None,
            per_s => Some(limits::SourceRate::new(per_s)),
        };
        let worker_metrics: Vec<Arc<WorkerMetrics>> = (0..workers)
            .map(|_| Arc::new(WorkerMetrics::default()))
            .collect();
        let capture = match &config.capture.file {
            Some(path) => {
                let capture_error = |source| StartError::Capture {
                    path: path.display().to_string(),
                    source,
                };
                capture::check_directory(path).map_err(capture_error)?;
                capture::Capture::start(
                    capture::Settings {
                        path: path.clone(),
                        max_bytes: config.capture.max_bytes,
                        files: config.capture.files,
                    },
                    config.capture.on_at_start,
                )
                .map_err(capture_error)?
            }
            None => capture::Capture::unconfigured(),
        };
        let shared = Arc::new(Shared {
            capture: Arc::new(capture),
            enum_dns,
            workers,
            table_shards,
            switch_networks: resolved.switch_networks.clone(),
            senders,
            wakers,
            stopping: AtomicBool::new(false),
            busy_workers: AtomicUsize::new(workers),
            barrier: Barrier::new(workers),
            connections: AtomicUsize::new(0),
            sources: limits::SourceConnections::default(),
            accept_next: AtomicUsize::new(0),
            output_bytes: AtomicUsize::new(0),
            output_bytes_total_max,
            udp_rate,
            clock,
            metrics: NodeMetrics {
                workers: worker_metrics.clone(),
                control: Some(Arc::clone(&control)),
            },
            ready: AtomicBool::new(false),
            replica: std::sync::OnceLock::new(),
            replica_stopped: AtomicBool::new(false),
            apply_stall: Arc::new(apply::ApplyStall::default()),
            sip,
            config,
        });
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        let mut handles = Vec::with_capacity(workers);
        let parts = polls
            .into_iter()
            .zip(listeners)
            .zip(udp_sockets)
            .zip(receivers)
            .zip(sets)
            .zip(worker_metrics)
            .enumerate();
        for (index, (((((poll, listener), udp), inbox), set), metrics)) in parts {
            let listener = mio::net::TcpListener::from_std(listener);
            let udp = udp.map(mio::net::UdpSocket::from_std);
            let worker = worker::Worker::new(
                index,
                Arc::clone(&shared),
                poll,
                listener,
                udp,
                inbox,
                set,
                metrics,
            )
            .map_err(|error| match error {
                worker::WorkerError::Register(source) => StartError::Socket {
                    what: "register",
                    address: tcp_address.to_string(),
                    source,
                },
                worker::WorkerError::Uring(cause) => StartError::Uring(cause),
            })?;
            let core =
                (shared.config.pin_cores && !cores.is_empty()).then(|| cores[index % cores.len()]);
            let handle = std::thread::Builder::new()
                .name(format!("x700-loop-{index}"))
                .spawn(move || {
                    if let Some(core) = core {
                        core_affinity::set_for_current(core);
                    }
                    worker.run()
                })
                .map_err(socket_error("thread", tcp_address))?;
            handles.push(handle);
        }
        let applier = Arc::new(apply::LoopApplier::new(
            shared.senders.clone(),
            shared.wakers.clone(),
            Arc::clone(&shared.apply_stall),
            control,
        ));
        let options = crate::replication::ReplicaOptions {
            node_id: u64::from(shared.config.node_id),
            group_commit_wait: Duration::from_micros(shared.config.log.group_commit_wait_us),
            checkpoint_interval: Duration::from_secs(shared.config.log.checkpoint_interval_s),
            checkpoint_log_bytes: shared.config.log.checkpoint_log_mb << 20,
            log_margin_entries: shared.config.log.margin_entries,
            proposal_deadline: Duration::from_millis(shared.config.log.proposal_deadline_ms),
            peers,
            ..crate::replication::ReplicaOptions::default()
        };
        let started = crate::replication::Replica::start(
            &shared.config.data,
            log,
            applier,
            &recovered,
            options,
            Arc::clone(&shared.clock),
        );
        let replica = match started {
            Ok(replica) => replica,
            Err(error) => {
                // Let the loops go before reporting.
                shared.stopping.store(true, Ordering::SeqCst);
                shared.replica_stopped.store(true, Ordering::SeqCst);
                for waker in &shared.wakers {
                    let _ = waker.wake();
                }
                for handle in handles {
                    let _ = handle.join();
                }
                return Err(StartError::Recovery(error.to_string()));
            }
        };
        let _ = shared.replica.set(Arc::new(replica));
        let (admin, admin_address) = match resolved.admin {
            Some(address) => {
                let (handle, bound) = admin::start(address, Arc::clone(&shared))
                    .map_err(socket_error("admin", address))?;
                (Some(handle), Some(bound))
            }
            None => (None, None),
        };
        shared.ready.store(true, Ordering::SeqCst);
        Ok(Server {
            shared,
            workers: handles,
            admin,
            tcp_address,
            udp_address,
            enum_address,
            sip_address,
            admin_address,
            open_files_limit,
            output_bytes_total_max,
        })
    }

    /// The raft address peers reach this node at (a cluster of several).
    pub fn raft_address(&self) -> Option<SocketAddr> {
        self.shared.replica.get().and_then(|r| r.raft_addr())
    }

    /// Event loops running.
    pub fn event_loops(&self) -> usize {
        self.shared.workers
    }

    /// The event loops' I/O backend.
    pub fn io(&self) -> config::IoBackend {
        self.shared.config.io
    }

    /// Table shards of the data directory.
    pub fn table_shards(&self) -> u16 {
        self.shared.table_shards
    }

    /// Stops accepting, answers what is in flight, flushes and closes every
    /// shard cleanly. Returns the first error of any loop.
    pub fn stop(self) -> Result<(), crate::table::TableError> {
        self.shared.ready.store(false, Ordering::SeqCst);
        self.shared.stopping.store(true, Ordering::SeqCst);
        for waker in &self.shared.wakers {
            let _ = waker.wake();
        }
        // In-flight requests are answered first (their writes need the
        // replica); then the replica takes its last checkpoint, which the
        // loops serve; then the loops close.
        while self.shared.busy_workers.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut first_error = None;
        if let Some(replica) = self.shared.replica.get() {
            if let Err(error) = replica.shutdown(self.shared.apply_stall.is_stalled()) {
                first_error.get_or_insert(crate::table::TableError::Io {
                    path: "replication".into(),
                    source: std::io::Error::other(error),
                });
            }
        }
        self.shared.replica_stopped.store(true, Ordering::SeqCst);
        for waker in &self.shared.wakers {
            let _ = waker.wake();
        }
        for handle in self.workers {
            match handle.join() {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    first_error.get_or_insert(error);
                }
                Err(_) => {
                    first_error.get_or_insert(crate::table::TableError::Io {
                        path: "event loop".into(),
                        source: std::io::Error::other("an event loop panicked"),
                    });
                }
            }
        }
        if let Some(admin) = self.admin {
            let _ = admin.join();
        }
        // Everything the loops captured is written before the node exits.
        self.shared.capture.finish();
        first_error.map_or(Ok(()), Err)
    }
}
