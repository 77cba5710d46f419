//! Node configuration: a TOML file (`--config FILE`), overridden by flags.
//! Every limit has a named default and is checked at start-up.
//!
//! This file holds `Config` (the whole file), its defaults, reading it,
//! `validate` (every check, and the addresses and networks it resolves)
//! and `ConfigError`. Each section has a file of its own: `limits`
//! (`[limits]`), `log` (`[log]`), `pools`, `history`, `capture`,
//! `credentials` (`[[credentials]]` and roles), `network`
//! (`switch_networks`) and `io_backend` (`io`). Their items are re-exported
//! here, so `server::config::Limits` and the like name them.
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

mod capture;
mod credentials;
mod history;
mod io_backend;
mod limits;
mod log;
mod network;
mod pools;

pub use capture::CaptureConfig;
pub use credentials::{role_of, Credential, TOKEN_BYTES_MIN};
pub use history::HistorySettings;
pub use io_backend::IoBackend;
pub use limits::{output_bytes_total_default, Limits, HELLO_DEADLINE_MS_RANGE};
pub use log::{
    LogSettings, GROUP_COMMIT_WAIT_US_MAX, LOG_MARGIN_ENTRIES_MAX, PROPOSAL_DEADLINE_MS_MAX,
    PROPOSAL_DEADLINE_MS_MIN,
};
pub use network::Network;
pub use pools::PoolSettings;

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Default TCP address.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:7700";
/// Default data directory.
pub const DATA_DEFAULT: &str = "x700-data";

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
