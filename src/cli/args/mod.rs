//! Command-line arguments (clap). Names here are a contract: users' scripts
//! and checks call `x700 bind axb --data DIR --x X --a A --b B ...`.

mod tenancy;

pub use tenancy::*;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// x700: translation engine for the 700 privacy-number range.
#[derive(Parser, Debug)]
#[command(name = "x700", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a binding (AXB, AXN or AXE).
    #[command(subcommand)]
    Bind(BindCommand),
    /// Ask where a call from CALLER to X goes.
    Lookup(LookupArgs),
    /// Remove a binding, by id or by X plus a party.
    Unbind(UnbindArgs),
    /// Change a binding's expiry, direction, recording flag or B.
    Update(UpdateArgs),
    /// Show a binding by id.
    Query(QueryArgs),
    /// Bind synthetic AXB bindings: into a data directory, or over the
    /// wire to a running node (--server).
    Load(LoadArgs),
    /// Counts and sizes of a data directory, or a running node's STATS.
    Stats(StatsArgs),
    /// Read every record and index entry of a data directory and verify them.
    Check(CheckArgs),
    /// Load and look up bindings in a local data directory, to see x700 work.
    Demo(DemoArgs),
    /// Run a node: the binary protocol over TCP (and UDP), admin HTTP.
    Serve(Box<ServeArgs>),
    /// Load benchmark over the wire (open or closed loop), against a node
    /// or Redis.
    Bench(Box<BenchArgs>),
    /// A cluster of several nodes: initialise it, see its members.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Print the x700 frames of a packet capture (pcap or pcapng), one
    /// line each.
    Decode(DecodeArgs),
    /// Send a capture's requests again to a server and compare its answers
    /// with the captured ones.
    Replay(ReplayArgs),
    /// Bind the rows of a CSV file (a migration from another platform):
    /// the whole file checked first, then sent in batches, each undone if
    /// any of its rows is refused.
    Import(super::import::ImportArgs),
    /// Tenants (business users): add, change, suspend, resume, show, list.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Caller blocklists: a tenant's (--tenant) or the global one.
    #[command(subcommand)]
    Block(BlockCommand),
    /// Number pools: the ranges of 700 numbers a tenant binds on.
    #[command(subcommand)]
    Pool(PoolCommand),
    /// Ask the traceability history: which binding routed X at a time
    /// (--x, --at), or an order's bindings (--tenant, --order).
    Trace(TraceArgs),
}

/// `x700 cluster ...`: against a running member (`--server`), as admin.
#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Initialise a new cluster with its first members (run once, against
    /// any one of them; every member started with `--raft`).
    Init(ClusterInitArgs),
    /// The cluster as this member sees it: leader, term, members.
    Status(ClusterArgs),
    /// Add a member: checked (node id, table shards, versions), added as a
    /// learner, promoted to voter once caught up (sent to the leader).
    AddNode(ClusterAddNodeArgs),
    /// Remove a member (sent to the leader).
    RemoveNode(ClusterRemoveNodeArgs),
    /// Every member's table checksum at one log index, and whether they
    /// agree (exit 1 if not).
    Verify(ClusterArgs),
}

/// `x700 cluster add-node`.
#[derive(Args, Debug)]
pub struct ClusterAddNodeArgs {
    /// Common options.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The new member, ID=RAFT_ADDR=CLIENT_ADDR (a new id: ids are never
    /// reused).
    #[arg(long = "member", value_name = "ID=RAFT_ADDR=CLIENT_ADDR")]
    pub member: String,
}

/// `x700 cluster remove-node`.
#[derive(Args, Debug)]
pub struct ClusterRemoveNodeArgs {
    /// Common options.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The member to remove.
    #[arg(long, value_name = "ID")]
    pub node_id: u64,
}

/// Options of every cluster command.
#[derive(Args, Debug)]
pub struct ClusterArgs {
    /// A member's TCP (client) address.
    #[arg(long, value_name = "ADDR")]
    pub server: String,
    /// An admin credential (empty: protected mode, loopback only).
    #[arg(long, value_name = "T", default_value = "")]
    pub token: String,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `x700 cluster init`.
#[derive(Args, Debug)]
pub struct ClusterInitArgs {
    /// Common options.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// A first member, ID=RAFT_ADDR=CLIENT_ADDR (repeat for each).
    #[arg(
        long = "member",
        value_name = "ID=RAFT_ADDR=CLIENT_ADDR",
        required = true
    )]
    pub members: Vec<String>,
}

impl Command {
    /// Whether to print JSON.
    pub fn json(&self) -> bool {
        match self {
            Command::Bind(BindCommand::Axb(b)) => b.common.store.json,
            Command::Bind(BindCommand::Axn(b)) => b.common.store.json,
            Command::Bind(BindCommand::Axe(b)) => b.common.store.json,
            Command::Lookup(a) => a.store.json,
            Command::Unbind(a) => a.store.json,
            Command::Update(a) => a.store.json,
            Command::Query(a) => a.store.json,
            Command::Load(a) => a.store.json,
            Command::Stats(a) => a.store.json,
            Command::Check(a) => a.json,
            Command::Demo(a) => a.json,
            Command::Cluster(ClusterCommand::Init(a)) => a.cluster.json,
            Command::Cluster(ClusterCommand::Status(a) | ClusterCommand::Verify(a)) => a.json,
            Command::Cluster(ClusterCommand::AddNode(a)) => a.cluster.json,
            Command::Cluster(ClusterCommand::RemoveNode(a)) => a.cluster.json,
            Command::Decode(a) => a.json,
            Command::Import(a) => a.store.json,
            Command::Tenant(TenantCommand::Add(a) | TenantCommand::Set(a)) => a.json,
            Command::Tenant(
                TenantCommand::Suspend(a) | TenantCommand::Resume(a) | TenantCommand::Show(a),
            ) => a.store.json,
            Command::Tenant(TenantCommand::List(a)) => a.store.json,
            Command::Block(BlockCommand::Add(a) | BlockCommand::Remove(a)) => a.store.json,
            Command::Pool(PoolCommand::Add(a)) => a.store.json,
            Command::Pool(PoolCommand::Remove(a)) => a.store.json,
            Command::Pool(PoolCommand::Show(a)) => a.store.json,
            Command::Trace(a) => a.store.json,
            Command::Serve(_) | Command::Bench(_) | Command::Replay(_) => false,
        }
    }
}

/// Options every data command takes: a local data directory (offline) or
/// a running node (`--server`).
#[derive(Args, Debug)]
pub struct StoreArgs {
    /// The data directory (offline use).
    #[arg(long, value_name = "DIR", required_unless_present = "server")]
    pub data: Option<PathBuf>,
    /// A running node's TCP address (instead of --data).
    #[arg(long, value_name = "ADDR", conflicts_with = "data")]
    pub server: Option<String>,
    /// Credential for --server (empty: protected mode, loopback only).
    #[arg(long, value_name = "T", default_value = "")]
    pub token: String,
    /// Role to ask for with --server: switch, platform or admin (default:
    /// switch for lookup, admin for stats, platform otherwise).
    #[arg(long)]
    pub role: Option<String>,
    /// Shards of a data directory this command creates (ignored if it exists).
    #[arg(long, default_value_t = crate::store::SHARDS_DEFAULT, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub shards: u16,
    /// Accept legacy (non-700) virtual numbers: only during the regulator's
    /// transition period.
    #[arg(long)]
    pub allow_legacy_x: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

impl StoreArgs {
    /// The options of an offline command on `data`, every other one at its
    /// default.
    pub fn offline(data: PathBuf, json: bool) -> StoreArgs {
        StoreArgs {
            data: Some(data),
            server: None,
            token: String::new(),
            role: None,
            shards: crate::store::SHARDS_DEFAULT,
            allow_legacy_x: false,
            json,
        }
    }
}

/// `x700 bind <mode>`.
#[derive(Subcommand, Debug)]
pub enum BindCommand {
    /// A and B bound on X: each reaches the other through X.
    Axb(BindAxbArgs),
    /// X belongs to A: anyone calling X reaches A.
    Axn(BindAxnArgs),
    /// X plus an extension reaches A.
    Axe(BindAxeArgs),
}

/// Options shared by every bind.
#[derive(Args, Debug)]
pub struct BindCommon {
    /// Store options.
    #[command(flatten)]
    pub store: StoreArgs,
    /// The virtual number (700 + 12 digits). For AXB it may be left out
    /// with --area: the node chooses X in the tenant's pool.
    #[arg(long, value_name = "X")]
    pub x: Option<String>,
    /// Party A (the owner for AXN and AXE).
    #[arg(long, value_name = "A")]
    pub a: String,
    /// Tenant (business user) id.
    #[arg(long)]
    pub tenant: u32,
    /// Order reference, 1 to 32 bytes.
    #[arg(long)]
    pub order: String,
    /// Lifetime in seconds.
    #[arg(long = "ttl-s", value_name = "S")]
    pub ttl_s: u32,
    /// both, a2b or b2a.
    #[arg(long, default_value = "both")]
    pub direction: String,
    /// Record calls on this binding.
    #[arg(long)]
    pub record: bool,
}

/// `x700 bind axb`.
#[derive(Args, Debug)]
pub struct BindAxbArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: BindCommon,
    /// Party B.
    #[arg(long, value_name = "B")]
    pub b: String,
    /// Instead of --x: the node chooses X in this area (code) of the
    /// tenant's pool; the answer carries it.
    #[arg(long, value_name = "CODE", conflicts_with = "x")]
    pub area: Option<String>,
    /// With --area: where X may come from when the area has none free:
    /// province (same province), then any (any area of the pool).
    #[arg(long, value_name = "province|any", requires = "area")]
    pub fallback: Option<String>,
}

/// `x700 bind axn`.
#[derive(Args, Debug)]
pub struct BindAxnArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: BindCommon,
    /// Where A's own calls to X go.
    #[arg(long, value_name = "NUMBER")]
    pub default_callee: Option<String>,
}

/// `x700 bind axe`.
#[derive(Args, Debug)]
pub struct BindAxeArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: BindCommon,
    /// The extension, 1 to 4 digits.
    #[arg(long, value_name = "E")]
    pub ext: String,
}

/// `x700 lookup`.
#[derive(Args, Debug)]
pub struct LookupArgs {
    /// Store options.
    #[command(flatten)]
    pub store: StoreArgs,
    /// The calling number.
    #[arg(long)]
    pub caller: String,
    /// The dialled virtual number X.
    #[arg(long)]
    pub called: String,
    /// The dialled extension (AXE).
    #[arg(long, value_name = "E")]
    pub ext: Option<String>,
}

/// `x700 unbind`.
#[derive(Args, Debug)]
pub struct UnbindArgs {
    /// Store options.
    #[command(flatten)]
    pub store: StoreArgs,
    /// The binding id.
    #[arg(long, conflicts_with_all = ["x", "party", "ext"], required_unless_present = "x")]
    pub id: Option<u64>,
    /// The virtual number (with --party or --ext).
    #[arg(long, value_name = "X")]
    pub x: Option<String>,
    /// A party of the binding on X (AXB's A or B, AXN's A).
    #[arg(long, requires = "x", conflicts_with = "ext")]
    pub party: Option<String>,
    /// The extension of the AXE binding on X.
    #[arg(long, value_name = "E", requires = "x")]
    pub ext: Option<String>,
}

/// `x700 update`.
#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// Store options.
    #[command(flatten)]
    pub store: StoreArgs,
    /// The binding id.
    #[arg(long)]
    pub id: u64,
    /// New lifetime from now, seconds.
    #[arg(long = "ttl-s", value_name = "S")]
    pub ttl_s: Option<u32>,
    /// New direction: both, a2b or b2a.
    #[arg(long)]
    pub direction: Option<String>,
    /// New recording flag.
    #[arg(long, value_name = "BOOL")]
    pub record: Option<bool>,
    /// New B (AXB) or default callee (AXN).
    #[arg(long, value_name = "B")]
    pub b: Option<String>,
}

/// `x700 query`.
#[derive(Args, Debug)]
pub struct QueryArgs {
    /// Store options.
    #[command(flatten)]
    pub store: StoreArgs,
    /// The binding id.
    #[arg(long)]
    pub id: u64,
}

/// `x700 load`.
#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Store options.
    #[command(flatten)]
    pub store: StoreArgs,
    /// How many synthetic AXB bindings.
    #[arg(long)]
    pub bindings: u64,
    /// Seed: the same seed gives the same bindings.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Lifetime of each binding, seconds (default 30 days).
    #[arg(long = "ttl-s", default_value_t = 30 * 24 * 3600)]
    pub ttl_s: u32,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// With --server: TCP connections, each with 256 binds in flight
    /// (default 4).
    #[arg(long, value_name = "N", conflicts_with = "data")]
    pub connections: Option<usize>,
    /// AXB pairs sharing each X, as in real number pools (1 to 200; 1:
    /// every binding its own X). `x700 bench --pairs-per-x` must match.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=crate::synth::PAIRS_PER_X_MAX))]
    pub pairs_per_x: u64,
}

/// `x700 decode CAPTURE`.
#[derive(Args, Debug)]
pub struct DecodeArgs {
    /// The capture file (pcap or pcapng, from tcpdump, tshark or a node).
    #[arg(value_name = "CAPTURE")]
    pub capture: PathBuf,
    /// The server's port: the side of a connection that uses it is the
    /// server.
    #[arg(long, value_name = "P", default_value_t = crate::capture::SERVER_PORT_DEFAULT)]
    pub port: u16,
    /// One JSON object per frame, then a summary object.
    #[arg(long)]
    pub json: bool,
}

/// `x700 stats`.
#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Store options.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `x700 check`: offline only (it reads every file of a directory no node
/// is using), so it offers no --server.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The data directory.
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

impl CheckArgs {
    /// The options `check` runs with.
    pub fn stats_args(&self) -> StatsArgs {
        StatsArgs {
            store: StoreArgs::offline(self.data.clone(), self.json),
        }
    }
}

/// `x700 demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// The data directory.
    #[arg(long, default_value = "x700-data")]
    pub data: PathBuf,
    /// Synthetic bindings to load first.
    #[arg(long, default_value_t = 200_000)]
    pub bindings: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `x700 serve`: flags override the config file, which overrides defaults.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (default ./x700-data).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// TCP address (default 127.0.0.1:7700; port 0 picks one).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// UDP address for switches' lookups.
    #[arg(long, value_name = "ADDR")]
    pub udp: Option<String>,
    /// ENUM front-end address: DNS over UDP and TCP on the same port
    /// (`[enum]` in the config file holds the zone's other keys).
    #[arg(long = "enum", value_name = "ADDR")]
    pub enum_dns: Option<String>,
    /// SIP redirect front-end address, UDP and TCP (port 0 picks one).
    #[arg(long, value_name = "ADDR")]
    pub sip: Option<String>,
    /// Admin HTTP address (/metrics, /healthz, /readyz).
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<String>,
    /// Event loops, one per core, each owning its share of the table
    /// shards (default: one per core). `--shards` is an alias.
    #[arg(long, visible_alias = "shards", value_name = "N")]
    pub event_loops: Option<usize>,
    /// The event loops' I/O: `epoll` (default) or `uring` (io_uring; the
    /// node refuses to start if the kernel refuses io_uring).
    #[arg(long, value_name = "epoll|uring", value_parser = ["epoll", "uring"])]
    pub io: Option<String>,
    /// Table shards of a data directory created at start-up (default 8).
    #[arg(long)]
    pub table_shards: Option<u16>,
    /// This node's id.
    #[arg(long)]
    pub node_id: Option<u32>,
    /// A credential, ROLE:TOKEN or platform:TOKEN:TENANT,TENANT (repeatable).
    #[arg(long = "credential", value_name = "ROLE:TOKEN[:TENANTS]")]
    pub credentials: Vec<String>,
    /// Accept legacy (non-700) virtual numbers.
    #[arg(long)]
    pub allow_legacy_x: bool,
    /// Do not pin event loops to cores.
    #[arg(long)]
    pub no_pin: bool,
    /// Most open connections.
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Largest request frame, bytes.
    #[arg(long)]
    pub max_frame_bytes: Option<u32>,
    /// Most requests per connection waiting on another core.
    #[arg(long)]
    pub max_in_flight: Option<u32>,
    /// Unsent answer bytes per connection before it is cut off.
    #[arg(long)]
    pub max_output_bytes: Option<usize>,
    /// Most open connections from one source address.
    #[arg(long)]
    pub max_connections_per_source: Option<u32>,
    /// Close a connection that has not said HELLO within this many ms.
    #[arg(long, value_name = "MS")]
    pub hello_deadline_ms: Option<u64>,
    /// Close a session silent for this many seconds (0: never).
    #[arg(long, value_name = "S")]
    pub idle_timeout_s: Option<u64>,
    /// Unsent answer bytes of all connections before requests are answered
    /// BUSY (0: an eighth of the machine's memory, at most 4 GiB).
    #[arg(long, value_name = "BYTES")]
    pub max_output_bytes_total: Option<u64>,
    /// UDP lookups per source address and second (0: no limit).
    #[arg(long, value_name = "N")]
    pub udp_lookups_per_source_per_s: Option<u32>,
    /// Accept credential tokens shorter than 16 bytes (tests only).
    #[arg(long)]
    pub allow_short_tokens: bool,
    /// Raft address for the other members of a cluster (port 0 picks one;
    /// without it the node is a one-member cluster).
    #[arg(long, value_name = "ADDR")]
    pub raft: Option<String>,
    /// The cluster secret (tests: the command line is visible to every
    /// local user; put `cluster_secret` in the config file instead).
    #[arg(long, value_name = "SECRET")]
    pub cluster_secret: Option<String>,
    /// The cluster's id (the same on every member).
    #[arg(long, value_name = "N")]
    pub cluster_id: Option<u64>,
    /// A cluster member is not ready (`/readyz` 503) this many log entries
    /// or more behind the leader (0: never for lag).
    #[arg(long, value_name = "N")]
    pub ready_lag_entries_max: Option<u64>,
    /// Capture the client listeners' traffic (TCP and UDP, both ways) as
    /// pcapng in FILE, rotated to FILE.1.pcapng, FILE.2.pcapng ...
    #[arg(long, value_name = "FILE.pcapng")]
    pub capture: Option<PathBuf>,
    /// Rotate a capture file before it passes this size (default 256 MiB).
    #[arg(long, value_name = "BYTES")]
    pub capture_max_bytes: Option<u64>,
    /// Capture files kept, the one in hand included (default 8).
    #[arg(long, value_name = "N")]
    pub capture_files: Option<usize>,
    /// With --capture: start with the capture off, until
    /// `POST /capture/start` on the admin port.
    #[arg(long)]
    pub capture_off: bool,
}

/// `x700 bench`: every flag is recorded in the JSON report's `parameters`
/// (the token redacted).
#[derive(Args, Debug, serde::Serialize)]
pub struct BenchArgs {
    /// A running node's TCP address (x700 target).
    #[arg(long, value_name = "ADDR", conflicts_with = "spawn")]
    pub server: Option<String>,
    /// Start a local `x700 serve` on a fresh temporary data directory, and
    /// stop it after.
    #[arg(long)]
    pub spawn: bool,
    /// Event loops of the spawned node (`serve --shards`).
    #[arg(long, value_name = "N", requires = "spawn")]
    pub spawn_shards: Option<usize>,
    /// `x700` (default: --server or --spawn) or `redis://HOST:PORT`.
    #[arg(long, default_value = "x700")]
    pub target: String,
    /// Redis layout: `keys` (two plain keys per binding) or `hash` (small
    /// hashes of about 100 fields).
    #[arg(long, default_value = "keys")]
    pub redis_layout: String,
    /// TCP connections.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Requests in flight per connection (closed loop: kept in flight;
    /// open loop: at most).
    #[arg(long, default_value_t = 16)]
    pub pipeline: usize,
    /// Client threads (default: one per two cores, at most one per
    /// connection), the connections split among them.
    #[arg(long)]
    pub threads: Option<usize>,
    /// The client threads' I/O: `uring` (one io_uring submission per turn
    /// for every connection's sends and receives; epoll where the kernel
    /// refuses io_uring) or `epoll`.
    #[arg(long, value_name = "uring|epoll", default_value = "uring")]
    pub io: String,
    /// Seconds to measure (after the warm-up).
    #[arg(long = "duration-s", value_name = "S", default_value_t = 10.0)]
    pub duration_s: f64,
    /// Requests to measure, instead of a duration.
    #[arg(long, value_name = "N", conflicts_with = "duration_s")]
    pub requests: Option<u64>,
    /// Seconds of load before measuring.
    #[arg(long = "warmup-s", value_name = "S", default_value_t = 1.0)]
    pub warmup_s: f64,
    /// Open loop at this many requests per second over all connections
    /// (without it: closed loop).
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Open loop: a client thread sends at most once per this many
    /// microseconds, requests due meanwhile together (their latency still
    /// counts from their due time).
    #[arg(long = "send-quantum-us", value_name = "US", default_value_t = 20.0)]
    pub send_quantum_us: f64,
    /// Open loop at each of these rates in turn (R1,R2,...).
    #[arg(long, value_name = "R1,R2,...", conflicts_with = "rate")]
    pub sweep: Option<String>,
    /// Draw the sweep's latency against throughput into this SVG file.
    #[arg(long, value_name = "FILE.svg", requires = "sweep")]
    pub chart: Option<PathBuf>,
    /// Another run's sweep to draw beside this one: LABEL=FILE.json
    /// (repeatable).
    #[arg(long, value_name = "LABEL=FILE.json", requires = "chart")]
    pub chart_compare: Vec<String>,
    /// Bind synthetic AXB bindings 0..N over the wire first (pipelined).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub preload: u64,
    /// Bindings 0..N the server already holds (from `x700 load --seed` or
    /// an earlier --preload); default: --preload's N.
    #[arg(long, value_name = "N")]
    pub bindings: Option<u64>,
    /// Share of lookups that ask for a bound pair (default 1 with
    /// bindings, else 0).
    #[arg(long, value_name = "F")]
    pub hit_ratio: Option<f64>,
    /// Request mix: lookup=..,bind=..,unbind=.. (binds are of fresh
    /// bindings; unbinds remove bindings this run bound).
    #[arg(long, default_value = "lookup=1")]
    pub mix: String,
    /// Binding modes of the synthetic bindings: axb=..,axn=..,axe=..
    #[arg(long, default_value = "axb=1")]
    pub modes: String,
    /// Key choice of lookups that hit: uniform or zipfian.
    #[arg(long, default_value = "uniform")]
    pub keys: String,
    /// Exponent of the zipfian key choice.
    #[arg(long, value_name = "S", default_value_t = 0.99)]
    pub zipf_s: f64,
    /// Write every figure, the parameters and the machine here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Credential for HELLO.
    #[arg(long, default_value = "")]
    #[serde(serialize_with = "redact")]
    pub token: String,
    /// Role for HELLO (default: switch for lookups, platform for writes
    /// and the preload, admin for a mix).
    #[arg(long)]
    pub role: Option<String>,
    /// Seed of the synthetic bindings and every choice (`x700 load`'s
    /// default is 1).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// AXB pairs sharing each X among the loaded bindings (1 to 200; as
    /// `x700 load --pairs-per-x`, which must have been the same).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=crate::synth::PAIRS_PER_X_MAX))]
    pub pairs_per_x: u64,
    /// A request unanswered this long counts as a timeout.
    #[arg(long = "timeout-ms", value_name = "MS", default_value_t = 1000)]
    pub timeout_ms: u64,
    /// Requests slower than this are counted (`slow_requests`).
    #[arg(long = "slow-ms", value_name = "MS", default_value_t = 100.0)]
    pub slow_ms: f64,
    /// Lifetime of bound bindings, seconds (default 30 days).
    #[arg(long = "ttl-s", default_value_t = 30 * 24 * 3600)]
    pub ttl_s: u32,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// What a recorded report shows in place of a credential.
pub const REDACTED: &str = "<redacted>";

/// Serialises a credential as `REDACTED` (or `""` when none was given, so
/// a report still says whether the run used protected mode): reports are
/// shared to compare figures, and a token in one gives the node away.
fn redact<S: serde::Serializer>(token: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(if token.is_empty() { "" } else { REDACTED })
}

/// `x700 replay CAPTURE --server ADDR`.
#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The capture file (pcap or pcapng, from tcpdump, tshark or a node).
    #[arg(value_name = "CAPTURE")]
    pub capture: PathBuf,
    /// The server to replay to.
    #[arg(long, value_name = "ADDR")]
    pub server: std::net::SocketAddr,
    /// Where captured UDP lookups go (default: the `--server` address).
    #[arg(long, value_name = "ADDR")]
    pub udp: Option<std::net::SocketAddr>,
    /// The captured server's port: the side of a connection that uses it
    /// is the server.
    #[arg(long, value_name = "P", default_value_t = crate::capture::SERVER_PORT_DEFAULT)]
    pub port: u16,
    /// 1: the captured timing; N: N times faster; max: as fast as the
    /// server answers.
    #[arg(long, value_name = "1|N|max", default_value = "1")]
    pub speed: String,
    /// The credential every replayed HELLO carries (the captured ones are
    /// not reused).
    #[arg(long, value_name = "T")]
    pub token: Option<String>,
    /// A TOML file of credentials by role (`switch = "..."`, `platform =
    /// "..."`, `admin = "..."`); a role it lacks uses `--token`.
    #[arg(long, value_name = "FILE")]
    pub tokens: Option<PathBuf>,
    /// Compare binding ids, seconds left and expiry times too. Binding
    /// ids are compared through the ids learned from the replayed BIND
    /// answers (a fresh node gives other ids than the captured one).
    #[arg(long)]
    pub exact: bool,
    /// Replay only these: `opcode=lookup,bind_axb` or `conn=0,2`
    /// (connection numbers as `x700 decode` prints them); repeatable.
    #[arg(long, value_name = "KEY=VALUES")]
    pub filter: Vec<String>,
    /// Write the full report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}
