//! `x700 bench`: load benchmarks over the wire, against an x700 node or
//! Redis, with the same generator, bindings, key order, connections and
//! pipelining for both.
//!
//! Parts: `params` (what a run does), `workload` (the synthetic bindings
//! and each connection's request stream), `schedule` (open-loop send times
//! and the coordinated-omission correction), `driver` (connections and
//! client threads), `redis` (RESP and the Redis layouts), `tally` and
//! `report` (histograms, summary, JSON), `chart` (SVG), `spawn` (a local
//! node for `--spawn`). A run is: an optional preload (pipelined binds of
//! bindings 0..N with a progress bar), then one measured phase, or one per
//! rate of a sweep.

pub mod chart;
mod connection;
pub mod driver;
pub mod params;
pub mod redis;
pub mod report;
pub mod schedule;
pub mod spawn;
pub mod tally;
mod uring;
pub mod wire;
pub mod workload;
mod zipf;

use driver::{Io, Phase, Wire};
use indicatif::{ProgressBar, ProgressStyle};
use params::{Length, Params, Target};
use report::{CpuUse, Figures};
use schedule::End;
use serde_json::{json, Value};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally::Tally;
use workload::{Catalog, Generator, GeneratorConfig, OpKind};

/// Binds in flight per connection during a preload.
pub const PRELOAD_PIPELINE: usize = 256;
/// How often the progress bar moves.
const PROGRESS_TICK: Duration = Duration::from_millis(100);

/// What a run measured.
pub struct Run {
    /// The preload, if any.
    pub preload: Option<Value>,
    /// One entry per measured phase (one, or one per sweep rate).
    pub figures: Vec<Figures>,
    /// Hashes of the Redis `hash` layout, if used.
    pub redis_hash_buckets: Option<u64>,
}

impl Run {
    /// The JSON report: the last phase's figures at the top level (for a
    /// sweep, the highest rate's), then `sweep` with every rate, `preload`,
    /// and the caller's `parameters`, `target` and `machine`.
    pub fn json(&self, parameters: Value, target: Value) -> Value {
        let mut top = self.figures.last().map_or_else(|| json!({}), Figures::json);
        if let Value::Object(map) = &mut top {
            if self.figures.len() > 1 {
                map.insert(
                    "sweep".into(),
                    Value::Array(self.figures.iter().map(Figures::json).collect()),
                );
            }
            map.insert(
                "preload".into(),
                self.preload.clone().unwrap_or(Value::Null),
            );
            map.insert("parameters".into(), parameters);
            map.insert("target".into(), target);
            map.insert("machine".into(), report::machine());
            map.insert(
                "date".into(),
                Value::from(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs()),
                ),
            );
        }
        top
    }

    /// True if every preloaded bind and every measured request got the
    /// answer it expected.
    pub fn clean(&self) -> bool {
        let preload_failed = self
            .preload
            .as_ref()
            .and_then(|p| p["failed"].as_u64())
            .unwrap_or(0);
        preload_failed == 0
            && self
                .figures
                .iter()
                .all(|f| f.tally.failed_count() == 0 && f.tally.connection_errors == 0)
    }
}

/// Resolves the target's address.
pub fn resolve(address: &str) -> Result<SocketAddr, String> {
    address
        .to_socket_addrs()
        .map_err(|e| format!("{address}: {e}"))?
        .next()
        .ok_or_else(|| format!("{address}: no address"))
}

fn default_role(params: &Params) -> crate::protocol::Role {
    use crate::protocol::Role;
    match (params.mix.lookup > 0.0, params.mix.writes()) {
        (true, true) => Role::Admin,
        (false, true) => Role::Platform,
        _ => Role::Switch,
    }
}

fn wire(params: &Params, role: crate::protocol::Role) -> Wire {
    match &params.target {
        Target::X700 { .. } => Wire::X700 {
            role,
            ttl_s: params.ttl_s,
        },
        Target::Redis { layout, .. } => Wire::Redis(redis::RedisCodec::new(
            *layout,
            params.bindings.max(params.preload),
            params.ttl_s,
        )),
    }
}

/// Runs `phase` on a helper thread while `on_tick` watches its progress.
fn with_progress(
    phase: &Phase,
    generators: Vec<Generator>,
    mut on_tick: impl FnMut(u64),
) -> Result<Tally, String> {
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| driver::run_phase(phase, generators));
        while !worker.is_finished() {
            on_tick(phase.progress.load(Ordering::Relaxed));
            std::thread::sleep(PROGRESS_TICK);
        }
        worker
            .join()
            .unwrap_or_else(|_| Err("the benchmark thread panicked".into()))
    })
}

/// A progress bar over `len` bindings, prefixed by `label`; hidden unless
/// `shown`.
pub fn progress_bar(len: u64, label: &str, shown: bool) -> ProgressBar {
    if !shown {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{label}{{bar:40}} {{pos}}/{{len}} bindings  {{per_sec}}  eta {{eta}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Client threads by default: one per two cores, at least one, at most
/// one per connection.
pub fn threads_default(connections: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    (cores / 2).max(1).min(connections.max(1))
}

/// Loaded bindings 0..N bound over the wire, pipelined on several
/// connections: `x700 bench --preload` and `x700 load --server`.
pub struct Preload {
    /// The server.
    pub address: SocketAddr,
    /// The protocol, with HELLO's role and the bindings' lifetime.
    pub wire: Wire,
    /// HELLO credential (x700).
    pub token: String,
    /// Which bindings (`Catalog::loaded`; with AXB only, exactly those of
    /// `x700 load --seed`).
    pub catalog: Catalog,
    /// How many: bindings 0..this.
    pub bindings: u64,
    /// TCP connections, each with `PRELOAD_PIPELINE` binds in flight.
    pub connections: usize,
    /// Client threads.
    pub threads: usize,
    /// The client threads' I/O loop.
    pub io: Io,
    /// A bind unanswered this long counts as a timeout.
    pub timeout: Duration,
    /// Start of the progress bar's line.
    pub label: &'static str,
}

/// What a preload did.
pub struct Preloaded {
    /// Every answer, by status; latency of each bind from its send.
    pub tally: Tally,
    /// Wall time from the first connection to the last answer.
    pub seconds: f64,
    /// How many were asked for.
    pub bindings: u64,
}

impl Preloaded {
    /// Answers by status name, as `by_status` in a bench report.
    pub fn by_status(&self) -> Value {
        Value::Object(report::by_status(
            &self.tally.by_status[OpKind::Bind as usize],
        ))
    }

    /// Per second over the preload's wall time.
    pub fn per_s(&self, count: u64) -> f64 {
        // Counts below 2^53: exact in f64.
        #[allow(clippy::cast_precision_loss)]
        let rate = count as f64 / self.seconds.max(1e-9);
        rate.round()
    }

    /// `x700 bench`'s `preload` object.
    pub fn json(&self) -> Value {
        json!({
            "bindings": self.bindings,
            "seconds": (self.seconds * 1000.0).round() / 1000.0,
            "binds_per_s": self.per_s(self.bindings),
            "ok": self.tally.ok_count(),
            "failed": self.tally.failed_count(),
            "by_status": self.by_status(),
        })
    }
}

/// Binds `job.bindings` loaded bindings over `job.connections`
/// connections, `PRELOAD_PIPELINE` in flight on each, with a progress bar
/// if `progress`. Every answer is counted (a refusal is not an error
/// here); a connection that fails is.
pub fn preload(job: &Preload, progress: bool) -> Result<Preloaded, String> {
    if job.bindings > params::BINDINGS_MAX {
        return Err(format!("at most {} bindings", params::BINDINGS_MAX));
    }
    if job.connections == 0 || job.connections > params::CONNECTIONS_MAX {
        return Err(format!(
            "connections must be 1 to {}",
            params::CONNECTIONS_MAX
        ));
    }
    let phase = Phase {
        io: job.io,
        address: job.address,
        wire: job.wire,
        token: job.token.clone(),
        pipeline: PRELOAD_PIPELINE.min(params::PIPELINE_MAX),
        threads: job.threads,
        rate_per_s: None,
        send_quantum_ns: 0,
        warmup_ns: 0,
        end: End::Count(u64::MAX),
        timeout_ns: u64::try_from(job.timeout.as_nanos()).unwrap_or(u64::MAX),
        progress: Arc::new(AtomicU64::new(0)),
    };
    let connections = job.connections as u64;
    let generators = (0..connections)
        .map(|c| Generator::preload(job.catalog, c, connections, job.bindings))
        .collect();
    let bar = progress_bar(job.bindings, job.label, progress);
    let started = Instant::now();
    let tally = with_progress(&phase, generators, |done| bar.set_position(done))?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    if tally.connection_errors > 0 {
        return Err(format!("a connection failed: {}", tally.errors.join("; ")));
    }
    Ok(Preloaded {
        tally,
        seconds,
        bindings: job.bindings,
    })
}

/// Runs the preload, then every measured phase; `on_figures` sees each
/// phase's figures as soon as it ends.
pub fn run(
    params: &Params,
    address: SocketAddr,
    progress: bool,
    mut on_figures: impl FnMut(&Figures),
) -> Result<Run, String> {
    params.validate()?;
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(0));
    let catalog =
        Catalog::new(params.seed, params.modes, nonce).with_pairs_per_x(params.pairs_per_x);
    let connections = params.connections as u64;
    let timeout_ns = u64::try_from(params.timeout.as_nanos()).unwrap_or(u64::MAX);
    let mut run = Run {
        preload: None,
        figures: Vec::new(),
        redis_hash_buckets: match wire(params, crate::protocol::Role::Switch) {
            Wire::Redis(codec)
                if matches!(
                    params.target,
                    Target::Redis {
                        layout: params::RedisLayout::Hash,
                        ..
                    }
                ) =>
            {
                Some(codec.buckets())
            }
            _ => None,
        },
    };
    if params.preload > 0 {
        let job = Preload {
            address,
            wire: wire(
                params,
                params.role.unwrap_or(crate::protocol::Role::Platform),
            ),
            token: params.token.clone(),
            catalog,
            bindings: params.preload,
            connections: params.connections,
            threads: params.threads,
            io: params.io,
            timeout: params.timeout,
            label: "preload ",
        };
        let preloaded = preload(&job, progress).map_err(|e| format!("preload failed: {e}"))?;
        run.preload = Some(preloaded.json());
    }
    let config = GeneratorConfig {
        catalog,
        bindings: params.bindings,
        hit_ratio: params.hit_ratio,
        mix: params.mix,
        keys: params.keys,
        seed: params.seed,
    };
    // `--requests 0`: a preload only.
    let rates: Vec<Option<f64>> = if params.length == Length::Requests(0) {
        Vec::new()
    } else if params.rates_per_s.is_empty() {
        vec![None]
    } else {
        params.rates_per_s.iter().copied().map(Some).collect()
    };
    let warmup_ns = u64::try_from(params.warmup.as_nanos()).unwrap_or(u64::MAX);
    for (index, rate_per_s) in rates.into_iter().enumerate() {
        let end = match params.length {
            Length::Duration(duration) => {
                End::At(warmup_ns + u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX / 2))
            }
            Length::Requests(count) => End::Count(count),
        };
        let phase = Phase {
            io: params.io,
            address,
            wire: wire(params, params.role.unwrap_or_else(|| default_role(params))),
            token: params.token.clone(),
            pipeline: params.pipeline,
            threads: params.threads,
            rate_per_s,
            send_quantum_ns: u64::try_from(params.send_quantum.as_nanos()).unwrap_or(u64::MAX),
            warmup_ns,
            end,
            timeout_ns,
            progress: Arc::new(AtomicU64::new(0)),
        };
        let generators = (0..connections)
            .map(|c| Generator::mixed(&config, c, connections, index as u64 + 1))
            .collect();
        let (user_before, system_before) = crate::sys::process_cpu_us();
        let started = Instant::now();
        let tally = driver::run_phase(&phase, generators)?;
        let wall_s = started.elapsed().as_secs_f64();
        let (user_after, system_after) = crate::sys::process_cpu_us();
        // CPU microseconds far below 2^53: exact in f64.
        #[allow(clippy::cast_precision_loss)]
        let cpu = CpuUse {
            user_s: user_after.saturating_sub(user_before) as f64 / 1e6,
            system_s: system_after.saturating_sub(system_before) as f64 / 1e6,
            wall_s,
            threads: params.threads.min(params.connections),
            spin_s: 0.0,
        };
        // Spin time in ns below 2^53: exact in f64.
        #[allow(clippy::cast_precision_loss)]
        let spin_s = tally.spin_ns as f64 / 1e9;
        let cpu = CpuUse { spin_s, ..cpu };
        let figures = Figures {
            target_rate_per_s: rate_per_s,
            tally,
            end_ns: match end {
                End::At(ns) => Some(ns),
                End::Count(_) => None,
            },
            cpu,
            slow_threshold_ns: u64::try_from(params.slow_threshold.as_nanos()).unwrap_or(u64::MAX),
        };
        on_figures(&figures);
        run.figures.push(figures);
    }
    Ok(run)
}
