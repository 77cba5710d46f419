//! What one benchmark run does, validated: the target, the load shape
//! (connections, pipeline depth, open or closed loop, length) and the
//! workload (hit ratio, operation mix, binding modes, key choice). Parsed
//! from the command line's text forms (`--mix lookup=0.9,bind=0.1`,
//! `--modes axb=1`, `--target redis://ADDR`); every limit is a named const.

use crate::protocol::Role;
use std::time::Duration;

/// Most connections one run opens.
pub const CONNECTIONS_MAX: usize = 1024;
/// Most requests in flight on one connection (the node answers `BUSY`
/// beyond 1,024 waiting on other cores; deeper pipelines only queue).
pub const PIPELINE_MAX: usize = 1024;
/// Most client threads.
pub const THREADS_MAX: usize = 64;
/// Highest open-loop rate, requests per second.
pub const RATE_PER_S_MAX: f64 = 50_000_000.0;
/// Most rates in one `--sweep`.
pub const SWEEP_RATES_MAX: usize = 32;
/// Longest run, warm-up included.
pub const DURATION_MAX: Duration = Duration::from_secs(24 * 3600);
/// Most bindings `--preload` or `--bindings` may name.
pub const BINDINGS_MAX: u64 = 2_000_000_000;
/// Longest open-loop send quantum.
pub const SEND_QUANTUM_MAX: Duration = Duration::from_millis(10);
/// Fields per Redis hash in the `hash` layout (two per AXB binding).
pub const HASH_FIELDS_PER_KEY: u64 = 100;

/// Which server answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// An x700 node, over the binary protocol.
    X700 {
        /// Its TCP address.
        address: String,
    },
    /// A Redis server, over RESP.
    Redis {
        /// Its TCP address (`host:port`).
        address: String,
        /// How bindings are stored.
        layout: RedisLayout,
    },
}

impl Target {
    /// The server's TCP address.
    pub fn address(&self) -> &str {
        match self {
            Target::X700 { address } | Target::Redis { address, .. } => address,
        }
    }
}

/// How bindings are stored in Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisLayout {
    /// Two plain keys per AXB binding (X + caller -> callee and binding
    /// info): GET per lookup, MSET per bind, DEL per unbind.
    Keys,
    /// The same entries as fields of small hashes (about
    /// `HASH_FIELDS_PER_KEY` fields each, hash chosen by a bucket of X):
    /// HGET per lookup, HSET per bind, HDEL per unbind.
    Hash,
}

impl RedisLayout {
    /// The flag's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RedisLayout::Keys => "keys",
            RedisLayout::Hash => "hash",
        }
    }
}

/// How lookups choose among the loaded bindings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KeyChoice {
    /// Every binding equally likely.
    Uniform,
    /// Binding of rank k (from 1) with weight 1 / k^s.
    Zipfian {
        /// The exponent.
        s: f64,
    },
}

/// Shares of lookups, binds and unbinds in the request stream (sum 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mix {
    /// Share of lookups.
    pub lookup: f64,
    /// Share of binds of fresh bindings.
    pub bind: f64,
    /// Share of unbinds of bindings this run bound.
    pub unbind: f64,
}

impl Mix {
    /// Lookups only.
    pub const LOOKUPS: Mix = Mix {
        lookup: 1.0,
        bind: 0.0,
        unbind: 0.0,
    };

    /// Parses `lookup=0.8,bind=0.1,unbind=0.1` (missing names are 0; the
    /// weights are scaled to sum 1).
    pub fn parse(text: &str) -> Result<Mix, String> {
        let [lookup, bind, unbind] = weights(text, ["lookup", "bind", "unbind"])?;
        Ok(Mix {
            lookup,
            bind,
            unbind,
        })
    }

    /// True if the stream has binds or unbinds.
    pub fn writes(&self) -> bool {
        self.bind > 0.0 || self.unbind > 0.0
    }
}

/// Shares of AXB, AXN and AXE among the bindings (sum 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModeMix {
    /// Share of AXB bindings.
    pub axb: f64,
    /// Share of AXN bindings.
    pub axn: f64,
    /// Share of AXE bindings.
    pub axe: f64,
}

impl ModeMix {
    /// AXB only: exactly the bindings `x700 load` makes.
    pub const AXB: ModeMix = ModeMix {
        axb: 1.0,
        axn: 0.0,
        axe: 0.0,
    };

    /// Parses `axb=0.8,axn=0.1,axe=0.1`.
    pub fn parse(text: &str) -> Result<ModeMix, String> {
        let [axb, axn, axe] = weights(text, ["axb", "axn", "axe"])?;
        Ok(ModeMix { axb, axn, axe })
    }
}

/// Parses `name=weight,...` over the given names into weights summing 1.
fn weights<const N: usize>(text: &str, names: [&str; N]) -> Result<[f64; N], String> {
    let mut values = [0.0; N];
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?}: expected NAME=WEIGHT"))?;
        let slot = names
            .iter()
            .position(|n| *n == name.trim())
            .ok_or_else(|| format!("{name:?} is not one of {}", names.join(", ")))?;
        let value: f64 = value
            .trim()
            .parse()
            .map_err(|_| format!("{part:?}: the weight is not a number"))?;
        if !value.is_finite() || value < 0.0 {
            return Err(format!("{part:?}: weights are finite and >= 0"));
        }
        values[slot] = value;
    }
    let sum: f64 = values.iter().sum();
    if sum <= 0.0 {
        return Err(format!("{text:?}: at least one weight must be above 0"));
    }
    Ok(values.map(|v| v / sum))
}

/// How long a run lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Length {
    /// Measure for this long (after the warm-up).
    Duration(Duration),
    /// Measure this many requests (after the warm-up).
    Requests(u64),
}

/// Everything a run needs, validated.
#[derive(Clone, Debug)]
pub struct Params {
    /// Which server.
    pub target: Target,
    /// TCP connections.
    pub connections: usize,
    /// Closed loop: requests kept in flight per connection. Open loop: the
    /// most in flight per connection (a due request waits for a free place,
    /// and its latency still counts from its due time).
    pub pipeline: usize,
    /// Client threads driving the connections.
    pub threads: usize,
    /// Their I/O loop: io_uring (default) or epoll.
    pub io: super::driver::Io,
    /// How long to measure.
    pub length: Length,
    /// Load before measuring, not counted.
    pub warmup: Duration,
    /// Open-loop rates, requests per second over all connections: empty
    /// for a closed loop, one for `--rate`, several for `--sweep`.
    pub rates_per_s: Vec<f64>,
    /// Open loop: shortest time between two sends of one client thread
    /// (requests due meanwhile go together).
    pub send_quantum: Duration,
    /// Bindings to bind over the wire before the run (0..preload).
    pub preload: u64,
    /// Bindings 0..bindings the server holds (hits are drawn from them).
    pub bindings: u64,
    /// Share of lookups that ask for a loaded binding.
    pub hit_ratio: f64,
    /// Lookups, binds, unbinds.
    pub mix: Mix,
    /// Binding modes among the synthetic bindings.
    pub modes: ModeMix,
    /// How lookups pick a binding.
    pub keys: KeyChoice,
    /// Seed of the synthetic bindings and of every choice.
    pub seed: u64,
    /// A request unanswered this long counts as a timeout.
    pub timeout: Duration,
    /// Credential for HELLO.
    pub token: String,
    /// Role for HELLO; `None`: switch for lookups only, platform for
    /// writes only (and the preload), admin for a mix.
    pub role: Option<Role>,
    /// Requests slower than this are counted apart (`slow_requests`).
    pub slow_threshold: Duration,
    /// Lifetime of every binding bound, seconds.
    pub ttl_s: u32,
    /// AXB pairs sharing each X among the loaded bindings (1 to
    /// `synth::PAIRS_PER_X_MAX`; 1: every binding its own X).
    pub pairs_per_x: u64,
}

impl Params {
    /// Checks every limit and combination; the error says what to change.
    pub fn validate(&self) -> Result<(), String> {
        if self.connections == 0 || self.connections > CONNECTIONS_MAX {
            return Err(format!("--connections must be 1 to {CONNECTIONS_MAX}"));
        }
        if self.pipeline == 0 || self.pipeline > PIPELINE_MAX {
            return Err(format!("--pipeline must be 1 to {PIPELINE_MAX}"));
        }
        if self.threads == 0 || self.threads > THREADS_MAX {
            return Err(format!("--threads must be 1 to {THREADS_MAX}"));
        }
        if self.rates_per_s.len() > SWEEP_RATES_MAX {
            return Err(format!("--sweep takes at most {SWEEP_RATES_MAX} rates"));
        }
        for &rate in &self.rates_per_s {
            if !(rate.is_finite() && rate > 0.0 && rate <= RATE_PER_S_MAX) {
                return Err(format!(
                    "rates must be above 0 and at most {RATE_PER_S_MAX}"
                ));
            }
        }
        if let Length::Duration(duration) = self.length {
            if duration + self.warmup > DURATION_MAX {
                return Err("the run is longer than a day".into());
            }
        }
        if self.preload > BINDINGS_MAX || self.bindings > BINDINGS_MAX {
            return Err(format!("at most {BINDINGS_MAX} bindings"));
        }
        if !(0.0..=1.0).contains(&self.hit_ratio) {
            return Err("--hit-ratio must be between 0 and 1".into());
        }
        if self.mix.lookup > 0.0 && self.hit_ratio > 0.0 && self.bindings == 0 {
            return Err(
                "lookups that hit need loaded bindings: give --preload N or --bindings N, or --hit-ratio 0"
                    .into(),
            );
        }
        if let KeyChoice::Zipfian { s } = self.keys {
            if !(s.is_finite() && s > 0.0 && s <= 10.0) {
                return Err("--zipf-s must be above 0 and at most 10".into());
            }
        }
        if self.send_quantum > SEND_QUANTUM_MAX {
            return Err(format!(
                "--send-quantum-us is at most {} us",
                SEND_QUANTUM_MAX.as_micros()
            ));
        }
        crate::synth::check_pairs_per_x(self.pairs_per_x)?;
        if self.timeout.is_zero() {
            return Err("--timeout-ms must be above 0".into());
        }
        if self.ttl_s == 0 || self.ttl_s > crate::binding::TTL_S_MAX {
            return Err("--ttl-s is out of range".into());
        }
        if matches!(self.target, Target::Redis { .. }) && self.modes.axn > 0.0 {
            return Err(
                "Redis layouts model AXB and AXE only (an AXN lookup would need a second GET); use --modes axb=..,axe=.."
                    .into(),
            );
        }
        Ok(())
    }

    /// True for an open loop.
    pub fn open_loop(&self) -> bool {
        !self.rates_per_s.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_parse_and_normalise() {
        let mix = Mix::parse("lookup=8, bind=1,unbind=1").unwrap();
        assert!((mix.lookup - 0.8).abs() < 1e-12 && (mix.unbind - 0.1).abs() < 1e-12);
        assert_eq!(Mix::parse("bind=1").unwrap().bind, 1.0);
        assert!(Mix::parse("lookup=0").is_err());
        assert!(Mix::parse("lookups=1").is_err());
        assert!(Mix::parse("lookup=-1,bind=2").is_err());
        assert!(Mix::parse("lookup").is_err());
        let modes = ModeMix::parse("axb=1,axe=1").unwrap();
        assert_eq!((modes.axb, modes.axn, modes.axe), (0.5, 0.0, 0.5));
    }
}
