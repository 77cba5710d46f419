//! `x700 bench`: turns the flags into validated parameters, starts a local
//! node for `--spawn`, runs the benchmark, prints a summary per phase,
//! writes `--json` and `--chart`. Exit code 0 when every measured request
//! got the answer it expected, 1 when some did not (or the run failed), 2
//! for usage errors.

use super::args::{BenchArgs, REDACTED};
use crate::bench::chart::{self, Sweep};
use crate::bench::params::{KeyChoice, Length, Mix, ModeMix, Params, RedisLayout, Target};
use crate::bench::report::group;
use crate::bench::spawn::LocalNode;
use crate::bench::{self, Run};
use crate::server::config::role_of;
use serde_json::{json, Value};
use std::time::Duration;

/// Largest `--duration-s`, `--warmup-s` and `--slow-ms`, to keep the
/// conversions to `Duration` finite.
const SECONDS_MAX: f64 = 24.0 * 3600.0;

fn seconds(value: f64, flag: &str) -> Result<Duration, String> {
    if !(value.is_finite() && (0.0..=SECONDS_MAX).contains(&value)) {
        return Err(format!("{flag} must be between 0 and {SECONDS_MAX}"));
    }
    Ok(Duration::from_secs_f64(value))
}

fn rates(text: &str) -> Result<Vec<f64>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| {
            r.parse::<f64>()
                .map_err(|_| format!("--sweep: {r:?} is not a rate"))
        })
        .collect()
}

/// The parameters the flags describe.
fn params_of(args: &BenchArgs, server: Option<&str>) -> Result<Params, String> {
    let target = if let Some(address) = args.target.strip_prefix("redis://") {
        if args.spawn || args.server.is_some() {
            return Err("--target redis://... takes neither --server nor --spawn".into());
        }
        let layout = match args.redis_layout.as_str() {
            "keys" => RedisLayout::Keys,
            "hash" => RedisLayout::Hash,
            other => return Err(format!("--redis-layout {other:?}: keys or hash")),
        };
        Target::Redis {
            address: address.trim_end_matches('/').to_string(),
            layout,
        }
    } else if args.target == "x700" {
        let address = server.ok_or("give --server ADDR, --spawn, or --target redis://ADDR")?;
        Target::X700 {
            address: address.to_string(),
        }
    } else {
        return Err(format!(
            "--target {:?}: x700 or redis://HOST:PORT",
            args.target
        ));
    };
    let keys = match args.keys.as_str() {
        "uniform" => KeyChoice::Uniform,
        "zipfian" => KeyChoice::Zipfian { s: args.zipf_s },
        other => return Err(format!("--keys {other:?}: uniform or zipfian")),
    };
    let role = args
        .role
        .as_deref()
        .map(|name| role_of(name).ok_or(format!("--role {name:?}: switch, platform or admin")))
        .transpose()?;
    let bindings = args.bindings.unwrap_or(args.preload);
    let params = Params {
        target,
        connections: args.connections,
        pipeline: args.pipeline,
        threads: args
            .threads
            .unwrap_or_else(|| bench::threads_default(args.connections))
            .min(args.connections.max(1)),
        io: bench::driver::Io::parse(&args.io)?,
        length: match args.requests {
            Some(count) => Length::Requests(count),
            None => Length::Duration(seconds(args.duration_s, "--duration-s")?),
        },
        warmup: seconds(args.warmup_s, "--warmup-s")?,
        rates_per_s: match (&args.sweep, args.rate) {
            (Some(sweep), _) => rates(sweep)?,
            (None, Some(rate)) => vec![rate],
            (None, None) => Vec::new(),
        },
        send_quantum: seconds(args.send_quantum_us / 1e6, "--send-quantum-us")?,
        preload: args.preload,
        bindings,
        hit_ratio: args
            .hit_ratio
            .unwrap_or(if bindings > 0 { 1.0 } else { 0.0 }),
        mix: Mix::parse(&args.mix).map_err(|e| format!("--mix: {e}"))?,
        modes: ModeMix::parse(&args.modes).map_err(|e| format!("--modes: {e}"))?,
        keys,
        seed: args.seed,
        timeout: Duration::from_millis(args.timeout_ms),
        token: args.token.clone(),
        role,
        slow_threshold: seconds(args.slow_ms / 1000.0, "--slow-ms")?,
        ttl_s: args.ttl_s,
        pairs_per_x: args.pairs_per_x,
    };
    if args.sweep.is_some() && params.rates_per_s.is_empty() {
        return Err("--sweep needs at least one rate".into());
    }
    params.validate()?;
    Ok(params)
}

/// The command line as the report records it: the value of `--token T`
/// and `--token=T` replaced by `REDACTED`, for the reason `parameters`
/// redacts it.
fn recorded_command(argv: impl IntoIterator<Item = String>) -> String {
    let mut recorded = Vec::new();
    let mut token_next = false;
    for arg in argv {
        if token_next {
            token_next = false;
            recorded.push(REDACTED.to_string());
        } else if arg.starts_with("--token=") {
            recorded.push(format!("--token={REDACTED}"));
        } else {
            token_next = arg == "--token";
            recorded.push(arg);
        }
    }
    recorded.join(" ")
}

/// `x700 bench`.
pub fn bench(args: &BenchArgs) -> i32 {
    let mut node = None;
    if args.spawn {
        let extra: Vec<String> = args
            .spawn_shards
            .map(|n| vec!["--shards".to_string(), n.to_string()])
            .unwrap_or_default();
        match LocalNode::start(&extra) {
            Ok(started) => node = Some(started),
            Err(message) => {
                eprintln!("x700 bench: {message}");
                return 1;
            }
        }
    }
    let server = node
        .as_ref()
        .map(|n| n.address.to_string())
        .or_else(|| args.server.clone());
    let params = match params_of(args, server.as_deref()) {
        Ok(params) => params,
        Err(message) => {
            eprintln!("x700 bench: {message}");
            return 2;
        }
    };
    let code = run(args, &params, node.is_some());
    if let Some(mut node) = node {
        if let Err(message) = node.stop() {
            eprintln!("x700 bench: {message}");
            return 1;
        }
    }
    code
}

fn target_json(params: &Params, run: &Run, spawned: bool) -> Value {
    match &params.target {
        Target::X700 { address } => json!({
            "kind": "x700",
            "address": address,
            "spawned": spawned,
        }),
        Target::Redis { address, layout } => json!({
            "kind": "redis",
            "address": address,
            "layout": layout.as_str(),
            "hash_buckets": run.redis_hash_buckets,
        }),
    }
}

fn describe(params: &Params) -> String {
    let target = match &params.target {
        Target::X700 { address } => format!("x700 at {address}"),
        Target::Redis { address, layout } => {
            format!("redis at {address} ({} layout)", layout.as_str())
        }
    };
    let length = match params.length {
        Length::Duration(d) => format!("{:.1} s", d.as_secs_f64()),
        Length::Requests(n) => format!("{n} requests"),
    };
    let shape = if params.open_loop() {
        format!(
            "open loop at {} req/s",
            params
                .rates_per_s
                .iter()
                .map(|r| group(*r))
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        "closed loop".to_string()
    };
    format!(
        "x700 bench: {target}, {shape}, {} connections x {} in flight, {} thread(s), {length} after {:.1} s warm-up, {} bindings",
        params.connections,
        params.pipeline,
        params.threads,
        params.warmup.as_secs_f64(),
        params.bindings
    )
}

fn run(args: &BenchArgs, params: &Params, spawned: bool) -> i32 {
    let address = match bench::resolve(params.target.address()) {
        Ok(address) => address,
        Err(message) => {
            eprintln!("x700 bench: {message}");
            return 1;
        }
    };
    println!("{}", describe(params));
    let progress = !args.quiet;
    let result = bench::run(params, address, progress, |figures| {
        print!("{}", figures.summary());
    });
    let run = match result {
        Ok(run) => run,
        Err(message) => {
            eprintln!("x700 bench: {message}");
            return 1;
        }
    };
    if let Some(preload) = &run.preload {
        println!("  preload: {preload}");
    }
    let mut parameters = serde_json::to_value(args).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut parameters {
        map.insert("threads".into(), Value::from(params.threads));
        map.insert("hit_ratio".into(), Value::from(params.hit_ratio));
        map.insert("bindings".into(), Value::from(params.bindings));
        map.insert(
            "role".into(),
            Value::from(params.role.map(crate::protocol::Role::as_str)),
        );
        map.insert(
            "command".into(),
            Value::from(recorded_command(std::env::args())),
        );
    }
    let report = run.json(parameters, target_json(params, &run, spawned));
    let mut code = i32::from(!run.clean());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("x700 bench: {}: {e}", path.display());
            code = 1;
        }
    }
    if let Some(path) = &args.chart {
        let label = match &params.target {
            Target::X700 { .. } => "x700".to_string(),
            Target::Redis { layout, .. } => format!("redis {}", layout.as_str()),
        };
        let mut sweeps = Vec::new();
        let ours = Sweep::from_json(
            &label,
            &json!({"sweep": report.get("sweep").cloned().unwrap_or_else(|| json!([report.clone()]))}),
        );
        sweeps.extend(ours);
        for entry in &args.chart_compare {
            let Some((label, file)) = entry.split_once('=') else {
                eprintln!("x700 bench: --chart-compare {entry:?}: expected LABEL=FILE.json");
                return 2;
            };
            let theirs = std::fs::read_to_string(file)
                .ok()
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                .and_then(|json| Sweep::from_json(label, &json));
            match theirs {
                Some(sweep) => sweeps.push(sweep),
                None => {
                    eprintln!("x700 bench: {file}: no sweep in that JSON");
                    return 1;
                }
            }
        }
        let title = format!(
            "latency vs throughput: {} connections x {} in flight, {} bindings",
            params.connections, params.pipeline, params.bindings
        );
        if let Err(e) = chart::draw(path, &title, &sweeps) {
            eprintln!("x700 bench: chart {}: {e}", path.display());
            code = 1;
        }
    }
    code
}

#[cfg(test)]
mod tests {
    //! The recorded command line never holds a token, in either spelling.

    use super::*;

    fn recorded(argv: &[&str]) -> String {
        recorded_command(argv.iter().map(ToString::to_string))
    }

    #[test]
    fn both_spellings_of_the_token_are_redacted_and_nothing_else() {
        assert_eq!(
            recorded(&["x700", "bench", "--token", "s3cret", "--rate", "5"]),
            "x700 bench --token <redacted> --rate 5"
        );
        assert_eq!(
            recorded(&["x700", "bench", "--token=s3cret", "--token", "--token"]),
            "x700 bench --token=<redacted> --token <redacted>"
        );
        assert_eq!(
            recorded(&["x700", "bench", "--spawn", "--tokens", "1"]),
            "x700 bench --spawn --tokens 1"
        );
    }
}
