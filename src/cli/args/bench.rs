//! Arguments of `x700 bench` (the load benchmark over the wire), and the
//! redaction of the credential in the report's `parameters`.

use clap::Args;
use std::path::PathBuf;

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
