//! Arguments of `x700 serve`: every flag overrides its key in the config
//! file.

use clap::Args;
use std::path::PathBuf;

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
