//! `x700 load` (synthetic bindings into a data directory, or over the
//! wire to a node) and `x700 demo` (load, then look up, to see the engine
//! work on a fresh machine).
//!
//! Over the wire, the load is `x700 bench --preload`'s: the same bindings
//! (`bench::workload::Catalog` with AXB only is `synth::Synthetic`), the
//! same pipelined connections and progress bar (`bench::preload`).

use super::args::{DemoArgs, LoadArgs, StoreArgs};
use super::commands::{open, stats_fields, Access};
use super::output::{lookup_outcome, Outcome};
use super::remote;
use crate::bench::driver::Wire;
use crate::bench::params::ModeMix;
use crate::bench::workload::{Catalog, OpKind};
use crate::bench::{self, Preload, Preloaded};
use crate::binding::{LookupQuery, LookupResult, WriteError};
use crate::protocol::{status, Role};
use crate::store::Store;
use crate::synth::{splitmix64, Synthetic};
use crate::sys::ThreadWaits;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Binds between progress-bar updates.
const PROGRESS_STEP: u64 = 16_384;
/// Over the wire: connections unless `--connections` says otherwise.
const CONNECTIONS_DEFAULT: usize = 4;
/// Over the wire: a bind unanswered this long counts as failed (a node
/// answers in microseconds; this allows for a slow disk's log sync).
const BIND_TIMEOUT: Duration = Duration::from_secs(10);
/// Binds between looks at the process's anonymous memory.
const MEMORY_LOOK_STEP: u64 = 1 << 20;
/// Anonymous memory past which a load checkpoints the store and gives the
/// written pages back to the kernel: a load of any size fits in memory
/// this big plus the page cache (`table::mapped::MappedFile::give_back`).
const LOAD_ANON_BYTES_MAX: u64 = 4 << 30;
/// Binds slower than this are counted (`binds_over_1ms`).
const SLOW_BIND_NS: u64 = 1_000_000;
/// Binds between looks at the thread's wait counters, which say why the
/// slow binds among them were slow (`SlowCauses`).
const WAIT_LOOK_STEP: u64 = 64;

/// Why binds over 1 ms were slow, from the load thread's counters over the
/// `WAIT_LOOK_STEP` binds around each: the scheduler ran something else
/// (`preempted`: the machine, not the engine), the thread waited for the
/// disk or a lock (`blocked`), or neither (`running`: the engine's own
/// work, page faults served from memory included).
#[derive(Default)]
struct SlowCauses {
    preempted: u64,
    blocked: u64,
    running: u64,
}

impl SlowCauses {
    /// Counts `slow` binds made while the thread's counters went from
    /// `before` to `after`.
    fn count(&mut self, slow: u64, before: ThreadWaits, after: ThreadWaits) {
        let cause = if after.involuntary_switches > before.involuntary_switches {
            &mut self.preempted
        } else if after.voluntary_switches > before.voluntary_switches
            || after.major_faults > before.major_faults
        {
            &mut self.blocked
        } else {
            &mut self.running
        };
        *cause += slow;
    }
}

/// What a load did.
struct Loaded {
    created: u64,
    existing: u64,
    conflicts: u64,
    interrupted: bool,
    /// Checkpoints taken during the load to bound its memory.
    checkpoints: u64,
    seconds: f64,
    /// Per-bind latency, nanoseconds: growth must never pause a bind long.
    latency_ns: hdrhistogram::Histogram<u64>,
    /// Why the binds over 1 ms were slow.
    slow: SlowCauses,
}

/// Binds synthetic bindings 0..count. Stops early (and still closes the
/// store cleanly) on SIGINT or SIGTERM.
fn load_into(
    store: &mut Store,
    seed: u64,
    count: u64,
    ttl_s: u32,
    pairs_per_x: u64,
    progress: bool,
) -> Result<Loaded, WriteError> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Registration only fails for forbidden signals; these two are not.
        let _ = signal_hook::flag::register(signal, Arc::clone(&stop));
    }
    let bar = bench::progress_bar(count, "", progress);
    let synthetic = Synthetic { seed };
    let started = Instant::now();
    let mut loaded = Loaded {
        created: 0,
        existing: 0,
        conflicts: 0,
        interrupted: false,
        checkpoints: 0,
        seconds: 0.0,
        // Three significant figures up to an hour: valid bounds.
        latency_ns: hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
            .unwrap_or_else(|_| unreachable!()),
        slow: SlowCauses::default(),
    };
    let mut waits = crate::sys::thread_waits();
    let mut slow_in_step = 0;
    for i in 0..count {
        let request = synthetic.pooled_request(i, ttl_s, pairs_per_x);
        let bind_started = Instant::now();
        let result = store.bind(&request);
        let elapsed_ns = u64::try_from(bind_started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        loaded.latency_ns.saturating_record(elapsed_ns);
        slow_in_step += u64::from(elapsed_ns >= SLOW_BIND_NS);
        if i % WAIT_LOOK_STEP == WAIT_LOOK_STEP - 1 || i + 1 == count {
            let now = crate::sys::thread_waits();
            loaded.slow.count(slow_in_step, waits, now);
            waits = now;
            slow_in_step = 0;
        }
        match result {
            Ok(outcome) if outcome.created => loaded.created += 1,
            Ok(_) => loaded.existing += 1,
            // Two random bindings may share a number on one X: skip it.
            Err(WriteError::Conflict { .. }) => loaded.conflicts += 1,
            Err(error) => {
                bar.abandon();
                return Err(error);
            }
        }
        if i % MEMORY_LOOK_STEP == MEMORY_LOOK_STEP - 1
            && crate::sys::process_status_bytes("RssAnon").unwrap_or(0) > LOAD_ANON_BYTES_MAX
        {
            store.checkpoint().map_err(|error| WriteError::Io {
                path: store.dir().display().to_string(),
                source: std::io::Error::other(error.to_string()),
            })?;
            loaded.checkpoints += 1;
            // The checkpoint's own waits (its syncs) are not a bind's.
            waits = crate::sys::thread_waits();
        }
        if i % PROGRESS_STEP == 0 {
            bar.set_position(i);
            if stop.load(Ordering::Relaxed) {
                loaded.interrupted = true;
                break;
            }
        }
    }
    bar.finish_and_clear();
    loaded.seconds = started.elapsed().as_secs_f64();
    Ok(loaded)
}

fn loaded_fields(loaded: &Loaded) -> Value {
    // Counts below 2^52: exact in f64.
    #[allow(clippy::cast_precision_loss)]
    let rate = (loaded.created + loaded.existing) as f64 / loaded.seconds.max(1e-9);
    json!({
        "created": loaded.created,
        "existing": loaded.existing,
        "conflicts": loaded.conflicts,
        "interrupted": loaded.interrupted,
        "elapsed_s": (loaded.seconds * 1000.0).round() / 1000.0,
        "binds_per_s": rate.round(),
        "binds_over_1ms": loaded.latency_ns.count_between(SLOW_BIND_NS, u64::MAX),
        "binds_over_1ms_by_cause": {
            "preempted": loaded.slow.preempted,
            "blocked": loaded.slow.blocked,
            "running": loaded.slow.running,
        },
        "checkpoints_during_load": loaded.checkpoints,
        "peak_rss_bytes": crate::sys::process_status_bytes("VmHWM"),
        "involuntary_context_switches": involuntary_context_switches(),
        "bind_latency_us": latency_fields(&loaded.latency_ns),
    })
}

/// `bind_latency_us` of a load's JSON.
fn latency_fields(latency_ns: &hdrhistogram::Histogram<u64>) -> Value {
    json!({
        "p50": micros(latency_ns.value_at_quantile(0.5)),
        "p99": micros(latency_ns.value_at_quantile(0.99)),
        "p999": micros(latency_ns.value_at_quantile(0.999)),
        "max": micros(latency_ns.max()),
    })
}

/// How often the kernel preempted this process (from /proc/self/status):
/// on a shared machine, a bind that took milliseconds usually waited for
/// the CPU, and this count says how often that could have happened.
fn involuntary_context_switches() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("nonvoluntary_ctxt_switches:"))
        .and_then(|value| value.trim().parse().ok())
}

fn micros(nanos: u64) -> f64 {
    // Latencies far below 2^52 ns: exact in f64.
    #[allow(clippy::cast_precision_loss)]
    let micros = nanos as f64 / 1000.0;
    (micros * 10.0).round() / 10.0
}

/// `x700 load`.
pub fn load(args: &LoadArgs) -> Outcome {
    if let Some(server) = &args.store.server {
        return load_over_wire(server, args);
    }
    let mut store = match open(&args.store, Access::Create) {
        Ok(store) => store,
        Err(outcome) => return outcome,
    };
    let progress = !args.quiet && !args.store.json;
    let outcome = match load_into(
        &mut store,
        args.seed,
        args.bindings,
        args.ttl_s,
        args.pairs_per_x,
        progress,
    ) {
        Ok(loaded) => {
            let mut fields = loaded_fields(&loaded);
            if let (Value::Object(map), Ok(Value::Object(stats))) =
                (&mut fields, stats_fields(&store))
            {
                map.insert("bindings_live".into(), stats["bindings_live"].clone());
                map.insert(
                    "bytes_per_binding".into(),
                    stats["bytes_per_binding"].clone(),
                );
            }
            Outcome::ok(fields)
        }
        Err(error) => Outcome::from(error),
    };
    match store.close_and_uncache() {
        Ok(()) => outcome,
        Err(error) => Outcome::from(error),
    }
}

/// `x700 load --server`: binds synthetic bindings 0..N of the seed over
/// the wire, as the offline load would bind them into a directory.
fn load_over_wire(server: &str, args: &LoadArgs) -> Outcome {
    let role = match remote::role(&args.store, Role::Platform) {
        Ok(role) => role,
        Err(outcome) => return outcome,
    };
    // One HELLO first, so that a refused credential or an unreachable node
    // is reported as by every other `--server` command.
    if let Err(outcome) = remote::connect(server, &args.store, role) {
        return outcome;
    }
    let address = match bench::resolve(server) {
        Ok(address) => address,
        Err(message) => return Outcome::failure("unreachable", &message),
    };
    let connections = args.connections.unwrap_or(CONNECTIONS_DEFAULT);
    let job = Preload {
        address,
        wire: Wire::X700 {
            role,
            ttl_s: args.ttl_s,
        },
        token: args.store.token.clone(),
        catalog: Catalog::new(args.seed, ModeMix::AXB, 0).with_pairs_per_x(args.pairs_per_x),
        bindings: args.bindings,
        connections,
        threads: bench::threads_default(connections),
        io: bench::driver::Io::Uring,
        timeout: BIND_TIMEOUT,
        label: "",
    };
    let progress = !args.quiet && !args.store.json;
    match bench::preload(&job, progress) {
        Ok(preloaded) => wire_outcome(&preloaded, server, connections),
        Err(message) => Outcome::failure("unreachable", &message),
    }
}

/// What a load over the wire did, with the offline load's keys where they
/// mean the same (`created`, `existing`, `conflicts`, `elapsed_s`,
/// `binds_per_s`, `binds_over_1ms`, `bind_latency_us`), plus every answer
/// `by_status`, `failed` (neither ok nor a conflict, timeouts included)
/// and `timeouts`. A bind's latency runs from its send to its answer, with
/// up to `bench::PRELOAD_PIPELINE` binds ahead of it on its connection.
/// `bindings_live` is the node's to say: `x700 stats --server`.
fn wire_outcome(preloaded: &Preloaded, server: &str, connections: usize) -> Outcome {
    let tally = &preloaded.tally;
    let binds = &tally.by_status[OpKind::Bind as usize];
    let ok = binds[usize::from(status::OK)];
    let conflicts = binds[usize::from(status::CONFLICT)];
    let failed = tally.failed_count().saturating_sub(conflicts);
    let latency_ns = &tally.latency_ns[OpKind::Bind as usize];
    let fields = json!({
        "created": ok.saturating_sub(tally.binds_existing),
        "existing": tally.binds_existing,
        "conflicts": conflicts,
        "failed": failed,
        "timeouts": tally.timeouts,
        "by_status": preloaded.by_status(),
        "elapsed_s": (preloaded.seconds * 1000.0).round() / 1000.0,
        "binds_per_s": preloaded.per_s(ok),
        "binds_over_1ms": latency_ns.count_between(SLOW_BIND_NS, u64::MAX),
        "bind_latency_us": latency_fields(latency_ns),
        "server": server,
        "connections": connections,
    });
    if failed == 0 {
        return Outcome::ok(fields);
    }
    // The status most binds failed with names the failure; binds that got
    // no answer at all count as `timeout`.
    let refused = binds
        .iter()
        .enumerate()
        .filter(|&(code, _)| {
            code != usize::from(status::OK) && code != usize::from(status::CONFLICT)
        })
        .max_by_key(|&(_, count)| *count)
        .filter(|&(_, count)| *count > 0)
        // code < 256: fits u8.
        .map_or("timeout", |(code, _)| {
            status::name(u8::try_from(code).unwrap_or(u8::MAX))
        });
    Outcome::with_status(refused, fields, false)
}

/// `x700 demo`: loads synthetic bindings into a local directory, then shows
/// single lookups (a hit from each side, a stranger, an unbound X) and times
/// a batch of lookups.
pub fn demo(args: &DemoArgs) -> Outcome {
    let store_args = StoreArgs::offline(args.data.clone(), args.json);
    let mut store = match open(&store_args, Access::Create) {
        Ok(store) => store,
        Err(outcome) => return outcome,
    };
    if !args.json {
        println!("x700 demo: data directory {}", args.data.display());
        println!(
            "loading {} synthetic AXB bindings (seed 1) ...",
            args.bindings
        );
    }
    let loaded = match load_into(&mut store, 1, args.bindings, 30 * 24 * 3600, 1, !args.json) {
        Ok(loaded) => loaded,
        Err(error) => return Outcome::from(error),
    };
    let synthetic = Synthetic { seed: 1 };
    let mut examples = Vec::new();
    if args.bindings > 0 {
        let stranger = LookupQuery {
            caller: synthetic.binding(1).a,
            ..synthetic.hit(0, 0)
        };
        for (label, query) in [
            ("A calls X", synthetic.hit(0, 0)),
            ("B calls X", synthetic.hit(0, 1)),
            ("a stranger calls X", stranger),
            ("someone calls an unbound X", synthetic.miss(0)),
        ] {
            let answer = lookup_outcome(&store.lookup(&query));
            examples.push(json!({
                "case": label,
                "caller": query.caller.digits(),
                "called": query.x.digits(),
                "answer": Value::Object(answer.object),
            }));
        }
    }
    let batch = time_batch(&store, &synthetic, args.bindings);
    let stats = stats_fields(&store).unwrap_or(Value::Null);
    if !args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&examples).unwrap_or_default()
        );
        println!("batch lookup: {batch}");
        println!("stats: {stats}");
        println!("load: {}", loaded_fields(&loaded));
    }
    let outcome = if !args.json {
        Outcome::ok(json!({ "data": args.data.display().to_string() }))
    } else {
        Outcome::ok(json!({
            "load": loaded_fields(&loaded),
            "examples": examples,
            "batch_lookup": batch,
            "stats": stats,
        }))
    };
    match store.close() {
        Ok(()) => outcome,
        Err(error) => Outcome::from(error),
    }
}

/// Times one million lookups (hits on random loaded bindings) in batches.
fn time_batch(store: &Store, synthetic: &Synthetic, loaded: u64) -> Value {
    const LOOKUPS: usize = 1 << 20;
    const BATCH: usize = 256;
    if loaded == 0 {
        return Value::Null;
    }
    let mut state = 7;
    let queries: Vec<LookupQuery> = (0..LOOKUPS)
        .map(|_| {
            let r = splitmix64(&mut state);
            synthetic.hit(r % loaded, r >> 63)
        })
        .collect();
    let mut answers = vec![LookupResult::Reject(crate::binding::Reject::NotBound); BATCH];
    let started = Instant::now();
    let mut routed = 0u64;
    for chunk in queries.chunks(BATCH) {
        store.lookup_batch(chunk, &mut answers[..chunk.len()]);
        routed += answers[..chunk.len()]
            .iter()
            .filter(|a| matches!(a, LookupResult::Route(_)))
            .count() as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    // Counts below 2^52: exact in f64.
    #[allow(clippy::cast_precision_loss)]
    let rate = LOOKUPS as f64 / seconds;
    json!({ "lookups": LOOKUPS, "routed": routed, "lookups_per_s": rate.round() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waits(voluntary: u64, involuntary: u64, major: u64) -> ThreadWaits {
        ThreadWaits {
            voluntary_switches: voluntary,
            involuntary_switches: involuntary,
            major_faults: major,
        }
    }

    #[test]
    fn slow_binds_are_put_down_to_preemption_then_waits_then_the_engine() {
        let mut causes = SlowCauses::default();
        // Preempted wins even when the thread also waited.
        causes.count(2, waits(1, 1, 0), waits(2, 2, 1));
        causes.count(3, waits(1, 1, 0), waits(1, 1, 1));
        causes.count(1, waits(1, 1, 0), waits(2, 1, 0));
        causes.count(4, waits(1, 1, 0), waits(1, 1, 0));
        causes.count(0, waits(1, 1, 0), waits(9, 9, 9));
        assert_eq!(
            (causes.preempted, causes.blocked, causes.running),
            (2, 4, 4)
        );
    }
}
