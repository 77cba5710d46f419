//! Node configuration: a TOML file (`--config FILE`), overridden by flags.
//! Every limit has a named default here and is checked at start-up.
//!
//! ```toml
//! node_id = 1
//! data = "./x700-data"
//! listen = "127.0.0.1:7700"      # TCP
//! udp = "127.0.0.1:7700"         # optional: UDP lookups from switches
//! admin = "127.0.0.1:7780"       # optional: HTTP /metrics /healthz /readyz
//! event_loops = 2                # event loops, one per core (default: cores); alias `shards`
//! io = "epoll"                   # the loops' I/O: "epoll" (default) or "uring" (io_uring)
//! table_shards = 8               # table shards of a new data directory
//! allow_legacy_x = false
//! switch_networks = ["127.0.0.0/8", "::1/128"]   # who may use UDP (and ENUM, SIP)
//! enum = "127.0.0.1:5353"        # optional: ENUM (DNS over UDP and TCP); or an [enum] table
//! sip = "127.0.0.1:5060"         # optional: the SIP redirect front-end (UDP and TCP)
//!
//! [[credentials]]
//! token = "s3cret"
//! role = "platform"              # switch | platform | admin
//! tenants = [1, 2]               # platform: the tenants it may touch
//!
//! [limits]
//! connections_max = 10000
//! connections_per_source_max = 1000
//! hello_deadline_ms = 5000
//! idle_timeout_s = 300           # 0: never
//! request_frame_bytes_max = 1024
//! in_flight_per_connection_max = 1024
//! output_buffer_bytes_max = 4194304
//! output_bytes_total_max = 0     # 0: an eighth of the machine's memory, at most 4 GiB
//! queue_batches_max = 256
//! udp_lookups_per_source_per_s = 0   # 0: off
//! ready_lag_entries_max = 100000     # 0: lag never takes a member out of /readyz
//!
//! [pools]                        # automatic X selection (BIND_AXB_AUTO)
//! max_pairs_per_x = 200          # live AXB pairs one X carries
//! cool_off_s = 0                 # an X a pair released waits this long for its numbers
//! sticky_pairs_max = 65536       # released pairs remembered (cool-off, same X again)
//!
//! [history]                      # the traceability history
//! retention_days = 180           # every binding's life is kept this long
//!
//! [capture]                      # optional: client traffic as pcapng
//! file = "/var/tmp/x700.pcapng"  # rotated to x700.1.pcapng, x700.2.pcapng ...
//! max_bytes = 268435456          # a file is rotated before this size
//! files = 8                      # files kept, the one in hand included
//! on_at_start = true             # false: off until POST /capture/start
//!
//! # Instead of `sip = "ADDR"` (a key cannot be both a string and a table):
//! [sip]                          # the SIP redirect front-end (frontend::sip::config)
//! listen = "127.0.0.1:5060"
//! contact = "sip:{callee}@{host}"  # also {display}
//! route_info = "uri"             # display and recording: "uri" parameters or "header"s
//! trusted_networks = []          # whose P-Asserted-Identity names the caller
//! retry_after_s = 5
//! message_bytes_max = 8192
//! [sip.status]                   # not_bound expired direction_denied not_a_party
//! not_bound = 404                # bad_number tenant_suspended blocked rate_limited busy
//! ```

use crate::protocol::Role;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// Default TCP address.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:7700";
/// Default data directory.
pub const DATA_DEFAULT: &str = "x700-data";

/// A credential: a token, the role it grants, and for platforms the tenants.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// The secret a client presents in HELLO.
    pub token: String,
    /// `switch`, `platform` or `admin`.
    pub role: String,
    /// Tenants a platform may read and change.
    #[serde(default)]
    pub tenants: Vec<u32>,
}

/// Limits, each with a default.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Open TCP connections per node; more are accepted and closed at once.
    /// At most the process's open-file limit (less a reserve for the data
    /// directory's files).
    pub connections_max: usize,
    /// Open TCP connections from one source address.
    pub connections_per_source_max: u32,
    /// A connection that has not completed HELLO this long after it was
    /// accepted is closed, without an answer.
    pub hello_deadline_ms: u64,
    /// A session that sends nothing for this long is closed (0: never).
    /// PING keeps a session alive.
    pub idle_timeout_s: u64,
    /// Largest request frame, header included.
    pub request_frame_bytes_max: u32,
    /// Requests one connection may have waiting on another core.
    pub in_flight_per_connection_max: u32,
    /// Unsent answer bytes per connection before it is cut off.
    pub output_buffer_bytes_max: usize,
    /// Unsent answer bytes of all connections together; past it, requests
    /// are answered BUSY until clients read (0: an eighth of the machine's
    /// memory, at most 4 GiB).
    pub output_bytes_total_max: u64,
    /// Batches queued from one core to another before BUSY.
    pub queue_batches_max: usize,
    /// UDP lookups answered per source address and second; beyond it
    /// datagrams are dropped unanswered (0: no limit).
    pub udp_lookups_per_source_per_s: u32,
    /// A follower this many committed entries behind the leader answers
    /// 503 on `/readyz` until it catches up (0: lag never makes it
    /// unready).
    pub ready_lag_entries_max: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            connections_max: 10_000,
            connections_per_source_max: 1000,
            hello_deadline_ms: 5000,
            idle_timeout_s: 300,
            request_frame_bytes_max: crate::protocol::limits::REQUEST_FRAME_BYTES_DEFAULT,
            in_flight_per_connection_max: 1024,
            output_buffer_bytes_max: 4 << 20,
            output_bytes_total_max: 0,
            queue_batches_max: 256,
            udp_lookups_per_source_per_s: 0,
            ready_lag_entries_max: 100_000,
        }
    }
}

/// How the event loops talk to the kernel.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum IoBackend {
    /// `mio` over epoll: readiness, then `recv` and `send` per socket.
    #[default]
    Epoll,
    /// io_uring: multishot accept and receive into a ring of provided
    /// buffers, and every send of an iteration in one `io_uring_enter`.
    Uring,
}

impl IoBackend {
    /// The name the configuration, the flag and `stats` use.
    pub fn name(self) -> &'static str {
        match self {
            IoBackend::Epoll => "epoll",
            IoBackend::Uring => "uring",
        }
    }

    /// Parses `epoll` or `uring`.
    pub fn parse(text: &str) -> Option<IoBackend> {
        match text {
            "epoll" => Some(IoBackend::Epoll),
            "uring" => Some(IoBackend::Uring),
            _ => None,
        }
    }
}

/// The whole configuration.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// This node's id (HELLO answers carry it).
    pub node_id: u32,
    /// Data directory.
    pub data: PathBuf,
    /// TCP address.
    pub listen: String,
    /// UDP address, if any.
    pub udp: Option<String>,
    /// Admin HTTP address, if any.
    pub admin: Option<String>,
    /// Raft address for the peers of a cluster of several (none: a
    /// one-member cluster).
    pub raft: Option<String>,
    /// The secret every member of the cluster holds (required with `raft`;
    /// 16 to 256 bytes).
    pub cluster_secret: Option<String>,
    /// The cluster's id: every member names the same (peers of another
    /// cluster are refused).
    pub cluster_id: u64,
    /// Event loops (0 = one per core). `shards`, its name before step 9,
    /// is still accepted.
    #[serde(alias = "shards")]
    pub event_loops: usize,
    /// The event loops' I/O backend.
    pub io: IoBackend,
    /// Table shards of a data directory created at start-up.
    pub table_shards: u16,
    /// Pin each event loop to a core.
    pub pin_cores: bool,
    /// Accept legacy (non-700) virtual numbers.
    pub allow_legacy_x: bool,
    /// Source networks (CIDR) answered over UDP.
    pub switch_networks: Vec<String>,
    /// Credentials; none means protected mode (any role without a token,
    /// from loopback clients only).
    pub credentials: Vec<Credential>,
    /// Accept tokens shorter than `TOKEN_BYTES_MIN` (tests only).
    pub allow_short_tokens: bool,
    /// Limits.
    pub limits: Limits,
    /// The durable log.
    pub log: LogSettings,
    /// Server-side capture of the client traffic.
    pub capture: CaptureConfig,
    /// How BIND_AXB_AUTO chooses X.
    pub pools: PoolSettings,
    /// The traceability history.
    pub history: HistorySettings,
    /// The ENUM front-end (`enum = "ADDR"` or an `[enum]` table), if any.
    #[serde(rename = "enum")]
    pub enum_dns: Option<crate::frontend::enum_dns::EnumConfig>,
    /// The SIP redirect front-end: `sip = "ADDR"` or a `[sip]` table.
    #[serde(deserialize_with = "crate::frontend::sip::config::deserialize")]
    pub sip: crate::frontend::sip::SipConfig,
}

/// `[history]`: the traceability history (`history::History`).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct HistorySettings {
    /// Days every binding's life is kept (default 180, 1 to 3660).
    pub retention_days: u32,
}

impl Default for HistorySettings {
    fn default() -> HistorySettings {
        HistorySettings {
            retention_days: 180,
        }
    }
}

impl HistorySettings {
    /// The history's configuration.
    pub fn history_config(self) -> crate::history::HistoryConfig {
        crate::history::HistoryConfig {
            retention_s: self.retention_days.saturating_mul(86_400),
            ..crate::history::HistoryConfig::default()
        }
    }
}

/// `[pools]`: automatic X selection (`pool::Allocator`).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PoolSettings {
    /// Most live AXB pairs one X carries (default 200).
    pub max_pairs_per_x: u32,
    /// Seconds an X released by a pair waits before that pair's numbers
    /// use it again (default 0, at most 3600).
    pub cool_off_s: u32,
    /// Released pairs remembered, for cool-off and for giving a pair that
    /// binds again its previous X (default 65,536).
    pub sticky_pairs_max: u32,
}

impl Default for PoolSettings {
    fn default() -> PoolSettings {
        let defaults = crate::pool::AllocConfig::default();
        PoolSettings {
            max_pairs_per_x: defaults.max_pairs_per_x,
            cool_off_s: defaults.cool_off_s,
            sticky_pairs_max: defaults.sticky_pairs_max,
        }
    }
}

impl PoolSettings {
    /// The allocator's configuration.
    pub fn alloc_config(self) -> crate::pool::AllocConfig {
        crate::pool::AllocConfig {
            max_pairs_per_x: self.max_pairs_per_x,
            cool_off_s: self.cool_off_s,
            sticky_pairs_max: self.sticky_pairs_max,
        }
    }
}

/// `[capture]`: the client listeners' traffic written as pcapng
/// (`server::capture`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    /// The capture file (none: the node cannot capture, not even at run
    /// time through the admin port).
    pub file: Option<PathBuf>,
    /// A file is rotated before it passes this size, bytes.
    pub max_bytes: u64,
    /// Files kept, the one in hand included.
    pub files: usize,
    /// Capture from the start (else from `POST /capture/start`).
    pub on_at_start: bool,
}

impl Default for CaptureConfig {
    fn default() -> CaptureConfig {
        CaptureConfig {
            file: None,
            max_bytes: crate::server::capture::FILE_BYTES_DEFAULT,
            files: crate::server::capture::FILES_DEFAULT,
            on_at_start: true,
        }
    }
}

/// `[log]`: group commit and checkpoints.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// Longest the group commit waits for more writes before one
    /// `fdatasync`, microseconds (0: sync as soon as the last sync ends;
    /// writes arriving meanwhile share the next one).
    pub group_commit_wait_us: u64,
    /// A checkpoint is taken at least this often while writes arrive.
    pub checkpoint_interval_s: u64,
    /// ... or once the log's segments hold this many MiB.
    pub checkpoint_log_mb: u64,
    /// On a member of a cluster of several, the log keeps this many
    /// entries before its last checkpoint, so a member that was down a
    /// short while catches up from the log rather than by a snapshot of
    /// every table. A one-member node keeps none.
    pub margin_entries: u64,
    /// A write not answered this long after it was proposed is answered
    /// (`busy` if it never reached the log, `outcome_unknown` once it did),
    /// milliseconds; so is every pending write at once when this node
    /// stops leading.
    pub proposal_deadline_ms: u64,
}

impl Default for LogSettings {
    fn default() -> LogSettings {
        LogSettings {
            group_commit_wait_us: 0,
            checkpoint_interval_s: 60,
            checkpoint_log_mb: 512,
            margin_entries: crate::replication::LOG_MARGIN_ENTRIES_DEFAULT,
            proposal_deadline_ms: 10_000,
        }
    }
}

/// Largest log margin accepted: the log of a cluster member holds at
/// least this many entries, each up to a write batch, so the margin is a
/// bound on disk use too.
pub const LOG_MARGIN_ENTRIES_MAX: u64 = 10_000_000;

/// Shortest proposal deadline accepted: an election takes 150-300 ms,
/// and a commit through one must not be cut short.
pub const PROPOSAL_DEADLINE_MS_MIN: u64 = 1_000;
/// Longest proposal deadline accepted: a platform's write waits at most
/// this long for its answer.
pub const PROPOSAL_DEADLINE_MS_MAX: u64 = 600_000;

/// Longest group-commit wait accepted: a write's latency is at least this.
pub const GROUP_COMMIT_WAIT_US_MAX: u64 = 100_000;

/// Shortest token accepted without `allow_short_tokens`: 16 bytes of a
/// random token are beyond guessing over the wire.
pub const TOKEN_BYTES_MIN: usize = 16;

/// Shortest and longest HELLO deadline accepted, milliseconds.
pub const HELLO_DEADLINE_MS_RANGE: std::ops::RangeInclusive<u64> = 100..=600_000;

/// The automatic `output_bytes_total_max`: an eighth of `memory_bytes`, at
/// least 64 MiB and at most 4 GiB.
pub fn output_bytes_total_default(memory_bytes: u64) -> u64 {
    (memory_bytes / 8).clamp(64 << 20, 4 << 30)
}

impl Default for Config {
    fn default() -> Config {
        Config {
            node_id: 1,
            data: PathBuf::from(DATA_DEFAULT),
            listen: LISTEN_DEFAULT.to_string(),
            udp: None,
            admin: None,
            raft: None,
            cluster_secret: None,
            cluster_id: 1,
            event_loops: 0,
            io: IoBackend::Epoll,
            table_shards: crate::store::SHARDS_DEFAULT,
            pin_cores: true,
            allow_legacy_x: false,
            switch_networks: vec!["127.0.0.0/8".into(), "::1/128".into()],
            credentials: Vec::new(),
            allow_short_tokens: false,
            limits: Limits::default(),
            log: LogSettings::default(),
            capture: CaptureConfig::default(),
            pools: PoolSettings::default(),
            history: HistorySettings::default(),
            enum_dns: None,
            sip: crate::frontend::sip::SipConfig::default(),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("parsing {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// A parsed CIDR network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `a.b.c.d/n` or `x::y/n` (a bare address is a /32 or /128).
    pub fn parse(text: &str) -> Result<Network, ConfigError> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| ConfigError::Invalid(format!("switch network {text:?}: bad address")))?;
        let bits = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|&p| p <= bits).ok_or_else(|| {
                ConfigError::Invalid(format!("switch network {text:?}: bad prefix"))
            })?,
            None => bits,
        };
        Ok(Network { address, prefix })
    }

    /// True if `ip` is inside the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            (IpAddr::V6(_), IpAddr::V4(ip)) => self.contains(IpAddr::V6(ip.to_ipv6_mapped())),
            (IpAddr::V4(_), IpAddr::V6(ip)) => ip
                .to_ipv4_mapped()
                .is_some_and(|v4| self.contains(IpAddr::V4(v4))),
        }
    }
}

impl Config {
    /// Reads a TOML file.
    pub fn from_file(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// Checks every value; returns the parsed addresses and networks.
    pub fn validate(&self) -> Result<Resolved, ConfigError> {
        let address = |what: &str, text: &str| {
            text.parse::<SocketAddr>().map_err(|_| {
                ConfigError::Invalid(format!("{what} {text:?} is not an address:port"))
            })
        };
        let limits = &self.limits;
        let frame_min = crate::protocol::limits::REQUEST_FRAME_BYTES_MIN;
        if limits.request_frame_bytes_max < frame_min || limits.request_frame_bytes_max > 1 << 20 {
            return Err(ConfigError::Invalid(format!(
                "request_frame_bytes_max (--max-frame-bytes) must be {frame_min} to 1048576: \
                 the largest request frame (a BIND, or a HELLO with a 64-byte token) is \
                 {frame_min} bytes"
            )));
        }
        if limits.connections_per_source_max == 0 {
            return Err(ConfigError::Invalid(
                "connections_per_source_max must be at least 1".into(),
            ));
        }
        if !HELLO_DEADLINE_MS_RANGE.contains(&limits.hello_deadline_ms) {
            return Err(ConfigError::Invalid(format!(
                "hello_deadline_ms must be {} to {}",
                HELLO_DEADLINE_MS_RANGE.start(),
                HELLO_DEADLINE_MS_RANGE.end()
            )));
        }
        if limits.output_bytes_total_max != 0 && limits.output_bytes_total_max < 64 * 1024 {
            return Err(ConfigError::Invalid(
                "output_bytes_total_max must be 0 (automatic) or at least 65536".into(),
            ));
        }
        for (key, value) in [
            ("connections_max", limits.connections_max as u64),
            (
                "in_flight_per_connection_max",
                u64::from(limits.in_flight_per_connection_max),
            ),
            ("queue_batches_max", limits.queue_batches_max as u64),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid(format!("{key} must be at least 1")));
            }
        }
        if limits.output_buffer_bytes_max < 64 * 1024 {
            return Err(ConfigError::Invalid(
                "output_buffer_bytes_max must be at least 65536".into(),
            ));
        }
        if self.log.group_commit_wait_us > GROUP_COMMIT_WAIT_US_MAX {
            return Err(ConfigError::Invalid(format!(
                "log.group_commit_wait_us must be at most {GROUP_COMMIT_WAIT_US_MAX}"
            )));
        }
        if self.log.checkpoint_interval_s == 0 || self.log.checkpoint_log_mb < 64 {
            return Err(ConfigError::Invalid(
                "log.checkpoint_interval_s must be at least 1 and log.checkpoint_log_mb at least 64"
                    .into(),
            ));
        }
        if self.log.margin_entries > LOG_MARGIN_ENTRIES_MAX {
            return Err(ConfigError::Invalid(format!(
                "log.margin_entries must be at most {LOG_MARGIN_ENTRIES_MAX}"
            )));
        }
        if !(PROPOSAL_DEADLINE_MS_MIN..=PROPOSAL_DEADLINE_MS_MAX)
            .contains(&self.log.proposal_deadline_ms)
        {
            return Err(ConfigError::Invalid(format!(
                "log.proposal_deadline_ms must be {PROPOSAL_DEADLINE_MS_MIN} to {PROPOSAL_DEADLINE_MS_MAX}"
            )));
        }
        if !(1..=3660).contains(&self.history.retention_days) {
            return Err(ConfigError::Invalid(
                "history.retention_days must be 1 to 3660".into(),
            ));
        }
        if let Err(reason) = self.pools.alloc_config().check() {
            return Err(ConfigError::Invalid(format!("pools: {reason}")));
        }
        let capture = &self.capture;
        if capture.max_bytes < crate::server::capture::FILE_BYTES_MIN
            || !(1..=crate::server::capture::FILES_MAX).contains(&capture.files)
        {
            return Err(ConfigError::Invalid(format!(
                "capture.max_bytes (--capture-max-bytes) must be at least {} and \
                 capture.files (--capture-files) 1 to {}",
                crate::server::capture::FILE_BYTES_MIN,
                crate::server::capture::FILES_MAX
            )));
        }
        if !(1..=crate::store::SHARDS_MAX).contains(&self.table_shards) {
            return Err(ConfigError::Invalid("table_shards must be 1 to 256".into()));
        }
        for credential in &self.credentials {
            if role_of(&credential.role).is_none() {
                return Err(ConfigError::Invalid(format!(
                    "credential role {:?} is not switch, platform or admin",
                    credential.role
                )));
            }
            if credential.token.is_empty()
                || credential.token.len() > crate::protocol::limits::CREDENTIAL_BYTES_MAX
            {
                return Err(ConfigError::Invalid(
                    "credential tokens must be 1 to 64 bytes".into(),
                ));
            }
            if credential.token.len() < TOKEN_BYTES_MIN && !self.allow_short_tokens {
                return Err(ConfigError::Invalid(format!(
                    "a {} credential's token is {} bytes: tokens must be at least {TOKEN_BYTES_MIN} \
                     bytes (allow_short_tokens = true, or --allow-short-tokens, accepts shorter \
                     ones for tests)",
                    credential.role,
                    credential.token.len()
                )));
            }
        }
        if self.raft.is_some() {
            let secret_bytes = self.cluster_secret.as_deref().map_or(0, str::len);
            if !(TOKEN_BYTES_MIN..=256).contains(&secret_bytes) {
                return Err(ConfigError::Invalid(format!(
                    "a node with a raft address needs cluster_secret, {TOKEN_BYTES_MIN} to 256 \
                     bytes (it has {secret_bytes})"
                )));
            }
            if self.node_id == 0 {
                return Err(ConfigError::Invalid(
                    "node_id must be at least 1 in a cluster".into(),
                ));
            }
        }
        let workers = if self.event_loops == 0 {
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        } else {
            self.event_loops
        };
        if workers > 256 {
            return Err(ConfigError::Invalid("event_loops must be 1 to 256".into()));
        }
        let enum_dns = match &self.enum_dns {
            None => None,
            Some(config) => {
                let settings = config.settings();
                let policy = crate::number::XPolicy {
                    allow_legacy: self.allow_legacy_x,
                };
                let zone = settings.zone(policy).map_err(ConfigError::Invalid)?;
                let listen = settings.listen.as_deref().ok_or_else(|| {
                    ConfigError::Invalid("[enum] needs listen = \"ADDR\" (or --enum ADDR)".into())
                })?;
                Some((address("enum", listen)?, zone))
            }
        };
        crate::frontend::sip::Settings::from_config(&self.sip).map_err(ConfigError::Invalid)?;
        Ok(Resolved {
            enum_dns,
            sip: self
                .sip
                .listen
                .as_deref()
                .map(|a| address("sip", a))
                .transpose()?,
            listen: address("listen", &self.listen)?,
            udp: self.udp.as_deref().map(|a| address("udp", a)).transpose()?,
            admin: self
                .admin
                .as_deref()
                .map(|a| address("admin", a))
                .transpose()?,
            raft: self
                .raft
                .as_deref()
                .map(|a| address("raft", a))
                .transpose()?,
            switch_networks: self
                .switch_networks
                .iter()
                .map(|n| Network::parse(n))
                .collect::<Result<_, _>>()?,
            workers,
        })
    }
}

/// Values derived from a valid configuration.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// TCP address.
    pub listen: SocketAddr,
    /// UDP address.
    pub udp: Option<SocketAddr>,
    /// Admin address.
    pub admin: Option<SocketAddr>,
    /// Raft address (a cluster of several).
    pub raft: Option<SocketAddr>,
    /// UDP source networks.
    pub switch_networks: Vec<Network>,
    /// Event loops.
    pub workers: usize,
    /// The ENUM front-end's address (UDP and TCP) and zone.
    pub enum_dns: Option<(SocketAddr, crate::frontend::enum_dns::Zone)>,
    /// SIP address (UDP and TCP).
    pub sip: Option<SocketAddr>,
}

/// Parses a role name.
pub fn role_of(name: &str) -> Option<Role> {
    match name {
        "switch" => Some(Role::Switch),
        "platform" => Some(Role::Platform),
        "admin" => Some(Role::Admin),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_match() {
        let loopback = Network::parse("127.0.0.0/8").unwrap();
        assert!(loopback.contains("127.1.2.3".parse().unwrap()));
        assert!(!loopback.contains("10.0.0.1".parse().unwrap()));
        assert!(Network::parse("::1/128")
            .unwrap()
            .contains("::1".parse().unwrap()));
        assert!(Network::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Network::parse("10.0.0.0/33").is_err());
        assert!(Network::parse("nonsense").is_err());
    }

    #[test]
    fn toml_parses_with_defaults_and_rejects_unknown_keys() {
        let config: Config = toml::from_str(
            "listen = \"127.0.0.1:9000\"\n[[credentials]]\ntoken = \"0123456789abcdef\"\nrole = \"platform\"\ntenants = [3]\n[limits]\nconnections_max = 5\n",
        )
        .unwrap();
        assert_eq!(config.limits.connections_max, 5);
        assert_eq!(config.limits.request_frame_bytes_max, 1024);
        assert_eq!(config.credentials[0].tenants, vec![3]);
        config.validate().unwrap();
        assert!(toml::from_str::<Config>("lisen = \"x\"").is_err());
    }

    /// `event_loops` and its older name `shards` set the same thing; `io`
    /// takes `epoll` or `uring` and nothing else.
    #[test]
    fn event_loops_has_the_alias_shards_and_io_names_a_backend() {
        let new: Config = toml::from_str("event_loops = 3\nio = \"uring\"\n").unwrap();
        let old: Config = toml::from_str("shards = 3\n").unwrap();
        assert_eq!((new.event_loops, old.event_loops), (3, 3));
        assert_eq!((new.io, old.io), (IoBackend::Uring, IoBackend::Epoll));
        assert!(toml::from_str::<Config>("io = \"kqueue\"\n").is_err());
        assert_eq!(IoBackend::parse("uring"), Some(IoBackend::Uring));
        assert_eq!(
            IoBackend::parse(IoBackend::Epoll.name()),
            Some(IoBackend::Epoll)
        );
    }

    /// Guards `--max-frame-bytes 64`, which started a node that could not
    /// read a BIND.
    #[test]
    fn a_frame_limit_below_the_largest_request_is_refused() {
        let mut config = Config::default();
        config.limits.request_frame_bytes_max = 79;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("80"), "{error}");
        config.limits.request_frame_bytes_max = 80;
        config.validate().unwrap();
    }

    /// Guards an unbounded log margin: it bounds how much log a member
    /// keeps on disk.
    #[test]
    fn a_log_margin_past_the_limit_is_refused() {
        let mut config: Config = toml::from_str("[log]\nmargin_entries = 10000001\n").unwrap();
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("margin"));
        config.log.margin_entries = LOG_MARGIN_ENTRIES_MAX;
        config.validate().unwrap();
    }

    /// A proposal deadline shorter than an election would answer
    /// `outcome_unknown` to writes that were about to commit; a longer one
    /// than ten minutes leaves a platform's write hanging.
    #[test]
    fn a_proposal_deadline_out_of_range_is_refused() {
        for (deadline_ms, accepted) in [
            (999, false),
            (1000, true),
            (600_000, true),
            (600_001, false),
        ] {
            let mut config = Config::default();
            config.log.proposal_deadline_ms = deadline_ms;
            assert_eq!(config.validate().is_ok(), accepted, "{deadline_ms} ms");
        }
        let config: Config = toml::from_str("[log]\nproposal_deadline_ms = 2000\n").unwrap();
        assert_eq!(config.log.proposal_deadline_ms, 2000);
    }

    #[test]
    fn short_tokens_need_an_explicit_allowance() {
        let mut config = Config::default();
        config.credentials.push(Credential {
            token: "short".into(),
            role: "switch".into(),
            tenants: vec![],
        });
        assert!(config.validate().unwrap_err().to_string().contains("16"));
        config.allow_short_tokens = true;
        config.validate().unwrap();
    }
}
