//! Proves that `x700 bench` measures what it claims, by running the real
//! binary against in-test fake servers whose behaviour is known: a node
//! that delays every answer by 20 ms shows it in the percentiles; a node
//! that stalls once for 200 ms shows it in the open-loop tail (latency from
//! intended send times) but leaves only the requests in flight slow in a
//! closed loop; the achieved rate is within 1% of the target when the
//! server keeps up; the JSON has its contract keys; Redis mode checks every
//! answer (a fake Redis that loses writes is caught); and a real spawned
//! `x700 serve` runs lookups, binds and unbinds end to end. Every run is
//! bounded by its --duration-s or --requests, on loopback only.

#[path = "common/fake_servers.rs"]
mod fake_servers;

use fake_servers::{fake_node, fake_redis, Storage, Timing};
use serde_json::Value;
use std::process::{Command, Output};
use std::time::Duration;

/// Runs `x700 bench` with `args` plus `--json FILE --quiet`; returns the
/// exit code, the report and the printed summary.
fn bench(args: &[&str]) -> (i32, Value, String) {
    let (code, report, summary, _) = bench_file(args);
    (code, report, summary)
}

/// As `bench`, and also the report file's text exactly as written.
fn bench_file(args: &[&str]) -> (i32, Value, String, String) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let json = dir.path().join("report.json");
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_x700"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .arg(&json)
        .arg("--quiet")
        .output()
        .expect("run x700 bench");
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    let report = std::fs::read_to_string(&json).unwrap_or_else(|_| {
        panic!(
            "no report; stdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&stderr)
        )
    });
    let text = report;
    let report: Value = serde_json::from_str(&text).expect("the report is JSON");
    (status.code().unwrap_or(-1), report, stdout, text)
}

fn us(report: &Value, percentile: &str) -> f64 {
    report["latency_us"][percentile]
        .as_f64()
        .unwrap_or_else(|| panic!("latency_us.{percentile} in {report}"))
}

fn count(report: &Value, key: &str) -> u64 {
    report[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} in {report}"))
}

#[test]
fn a_known_delay_shows_in_the_percentiles_open_and_closed() {
    let delay = Duration::from_millis(20);
    let node = fake_node(Timing::Delay(delay));
    let address = node.address.to_string();
    let (code, open, _) = bench(&[
        "--server",
        &address,
        "--rate",
        "200",
        "--connections",
        "2",
        "--pipeline",
        "64",
        "--duration-s",
        "1.5",
        "--warmup-s",
        "0",
        "--hit-ratio",
        "0",
    ]);
    assert_eq!(code, 0, "{open}");
    assert_eq!(count(&open, "requests_ok"), 300, "{open}");
    assert_eq!(count(&open, "requests_failed"), 0);
    // Every answer waited 20 ms at the server: no percentile is below it.
    // Upper bounds are loose: the machine is shared.
    assert!(
        us(&open, "p50") >= 20_000.0 && us(&open, "p50") < 200_000.0,
        "{open}"
    );
    assert!(us(&open, "p90") >= 20_000.0, "{open}");
    assert!(us(&open, "max") >= us(&open, "p99") && us(&open, "max") < 1_000_000.0);

    let (code, closed, _) = bench(&[
        "--server",
        &address,
        "--connections",
        "2",
        "--pipeline",
        "4",
        "--duration-s",
        "1",
        "--warmup-s",
        "0",
        "--hit-ratio",
        "0",
    ]);
    assert_eq!(code, 0, "{closed}");
    assert!(
        us(&closed, "p50") >= 20_000.0 && us(&closed, "p50") < 200_000.0,
        "{closed}"
    );
    // 8 requests in flight, each at least 20 ms: at most 400 per second.
    let rate = closed["achieved_rate_per_s"].as_f64().expect("rate");
    assert!((100.0..=410.0).contains(&rate), "{rate}: {closed}");
    assert!(node.requests.load(std::sync::atomic::Ordering::Relaxed) >= 300 + 100);
}

#[test]
fn a_stall_shows_in_the_open_loop_tail_but_not_in_the_closed_loop() {
    let stall = Timing::StallOnce {
        after: Duration::from_millis(700),
        stall: Duration::from_millis(200),
    };
    let node = fake_node(stall);
    let (code, open, _) = bench(&[
        "--server",
        &node.address.to_string(),
        "--rate",
        "1000",
        "--connections",
        "2",
        "--pipeline",
        "1",
        "--duration-s",
        "2",
        "--warmup-s",
        "0",
        "--hit-ratio",
        "0",
        "--slow-ms",
        "100",
    ]);
    assert_eq!(code, 0, "{open}");
    // Requests intended in the stall's first 100 ms (about 100 at 1000/s)
    // waited over 100 ms, counted from when they were due.
    let open_slow = count(&open, "slow_requests");
    assert!(open_slow >= 50, "{open_slow} slow: {open}");
    assert!(us(&open, "max") >= 190_000.0, "{open}");
    assert!(us(&open, "p99") >= 100_000.0, "{open}");
    assert!(us(&open, "p999") >= 150_000.0, "{open}");
    // With one request in flight per connection, the requests due during
    // the stall could not even be sent: the client fell behind, said so,
    // and still counted their latency from when they were due.
    assert!(count(&open, "client_fell_behind") >= 50, "{open}");

    // The same connections and pipeline depth, closed loop.
    let node = fake_node(stall);
    let (code, closed, _) = bench(&[
        "--server",
        &node.address.to_string(),
        "--connections",
        "2",
        "--pipeline",
        "1",
        "--duration-s",
        "2",
        "--warmup-s",
        "0",
        "--hit-ratio",
        "0",
        "--slow-ms",
        "100",
    ]);
    assert_eq!(code, 0, "{closed}");
    // The closed loop saw the stall too (its slowest request waited it
    // out), but only the two requests in flight were slow: the rest were
    // never sent during it. That is the omission open loop corrects.
    assert!(us(&closed, "max") >= 190_000.0, "{closed}");
    let closed_slow = count(&closed, "slow_requests");
    assert!(closed_slow <= 4, "{closed_slow} slow: {closed}");
    assert!(open_slow >= 10 * closed_slow.max(1));
}

#[test]
fn achieved_rate_is_within_one_percent_of_the_target_and_json_keeps_its_contract() {
    let node = fake_node(Timing::Delay(Duration::ZERO));
    let (code, report, summary) = bench(&[
        "--server",
        &node.address.to_string(),
        "--rate",
        "2000",
        "--connections",
        "2",
        "--duration-s",
        "3",
        "--warmup-s",
        "0",
        "--hit-ratio",
        "0",
    ]);
    assert_eq!(code, 0, "{report}");
    let achieved = report["achieved_rate_per_s"].as_f64().expect("rate");
    assert!((achieved - 2000.0).abs() <= 20.0, "{achieved}: {report}");
    let ok = count(&report, "requests_ok");
    assert!((5940..=6000).contains(&ok), "{ok}");
    assert_eq!(report["target_rate_per_s"].as_f64(), Some(2000.0));
    assert_eq!(report["mode"], "open");
    for key in ["p50", "p90", "p99", "p999", "p9999", "max"] {
        assert!(
            report["latency_us"][key].as_f64().is_some(),
            "latency_us.{key}"
        );
    }
    for key in [
        "requests_failed",
        "timeouts",
        "by_status",
        "client_cpu",
        "parameters",
        "machine",
        "target",
    ] {
        assert!(!report[key].is_null(), "{key} missing: {report}");
    }
    assert_eq!(report["by_status"]["not_bound"].as_u64(), Some(ok));
    assert_eq!(report["parameters"]["connections"], 2);
    assert_eq!(report["parameters"]["rate"], 2000.0);
    assert_eq!(report["target"]["kind"], "x700");
    assert!(report["machine"]["cores"].as_u64().unwrap_or(0) >= 1);
    assert!(report["machine"]["kernel"].is_string());
    assert!(report["client_cpu"]["cores_used"].as_f64().is_some());
    assert!(summary.contains("achieved"), "{summary}");
}

#[test]
fn a_sweep_reports_every_rate_and_draws_a_chart() {
    let node = fake_node(Timing::Delay(Duration::ZERO));
    let dir = tempfile::tempdir().expect("temporary directory");
    let chart = dir.path().join("sweep.svg");
    let (code, report, _) = bench(&[
        "--server",
        &node.address.to_string(),
        "--sweep",
        "500,1000,2000",
        "--duration-s",
        "0.5",
        "--warmup-s",
        "0",
        "--hit-ratio",
        "0",
        "--chart",
        chart.to_str().expect("path"),
    ]);
    assert_eq!(code, 0, "{report}");
    let sweep = report["sweep"].as_array().expect("sweep entries");
    let targets: Vec<f64> = sweep
        .iter()
        .map(|e| e["target_rate_per_s"].as_f64().expect("target"))
        .collect();
    assert_eq!(targets, [500.0, 1000.0, 2000.0]);
    for entry in sweep {
        let (target, achieved) = (
            entry["target_rate_per_s"].as_f64().unwrap_or(0.0),
            entry["achieved_rate_per_s"].as_f64().unwrap_or(0.0),
        );
        assert!((achieved - target).abs() <= target * 0.05, "{entry}");
    }
    let svg = std::fs::read_to_string(&chart).expect("the chart was written");
    assert!(
        svg.starts_with("<svg") && svg.contains("x700 p99.9"),
        "{svg}"
    );
}

#[test]
fn redis_mode_checks_every_answer_in_both_layouts() {
    for layout in ["keys", "hash"] {
        let redis = fake_redis(Storage::Faithful);
        let target = format!("redis://{}", redis.address);
        let (code, report, _) = bench(&[
            "--target",
            &target,
            "--redis-layout",
            layout,
            "--preload",
            "300",
            "--requests",
            "600",
            "--hit-ratio",
            "0.8",
            "--mix",
            "lookup=0.8,bind=0.1,unbind=0.1",
            "--modes",
            "axb=0.8,axe=0.2",
            "--warmup-s",
            "0",
            "--connections",
            "3",
            "--pipeline",
            "8",
        ]);
        assert_eq!(code, 0, "{layout}: {report}");
        assert_eq!(count(&report, "requests_ok"), 600, "{layout}: {report}");
        assert_eq!(count(&report, "requests_failed"), 0);
        assert_eq!(report["preload"]["ok"], 300);
        let by_op = &report["latency_us_by_op"];
        assert!(
            by_op["lookup"]["by_status"]["ok"].as_u64().unwrap_or(0) > 300,
            "{report}"
        );
        assert!(
            by_op["lookup"]["by_status"]["not_bound"]
                .as_u64()
                .unwrap_or(0)
                > 30
        );
        assert!(by_op["bind"]["requests_ok"].as_u64().unwrap_or(0) > 20);
        assert!(
            by_op["unbind"]["requests_ok"].as_u64().unwrap_or(0) > 10,
            "{report}"
        );
        assert_eq!(report["target"]["layout"], layout);
        // Preload + measured requests all reached the fake.
        assert_eq!(
            redis.requests.load(std::sync::atomic::Ordering::Relaxed),
            900
        );

        // A store that drops B's entry of every binding: half the lookups
        // that should hit (those from B) miss, and the benchmark says so.
        let lossy = fake_redis(Storage::LosesSecondEntry);
        let target = format!("redis://{}", lossy.address);
        let (code, report, _) = bench(&[
            "--target",
            &target,
            "--redis-layout",
            layout,
            "--preload",
            "200",
            "--requests",
            "400",
            "--warmup-s",
            "0",
        ]);
        assert_eq!(code, 1, "{layout}: {report}");
        let wrong = count(&report, "wrong_answers");
        assert!(
            (120..=280).contains(&wrong),
            "{layout}: {wrong} wrong: {report}"
        );
        assert_eq!(count(&report, "requests_failed"), wrong);
    }
}

#[test]
fn a_spawned_node_serves_lookups_binds_and_unbinds_end_to_end() {
    let (code, report, _) = bench(&[
        "--spawn",
        "--spawn-shards",
        "2",
        "--preload",
        "500",
        "--requests",
        "600",
        "--hit-ratio",
        "0.9",
        "--mix",
        "lookup=0.8,bind=0.1,unbind=0.1",
        "--modes",
        "axb=0.6,axn=0.2,axe=0.2",
        "--keys",
        "zipfian",
        "--warmup-s",
        "0",
    ]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(count(&report, "requests_ok"), 600, "{report}");
    assert_eq!(report["preload"]["ok"], 500, "{report}");
    let by_op = &report["latency_us_by_op"];
    let hits = by_op["lookup"]["by_status"]["ok"].as_u64().unwrap_or(0);
    assert!(hits > 300, "{report}");
    assert!(
        by_op["unbind"]["requests_ok"].as_u64().unwrap_or(0) > 10,
        "{report}"
    );
    assert_eq!(report["target"]["spawned"], true);

    // Write-only, open loop: fresh bindings, bind latency reported.
    let (code, report, _) = bench(&[
        "--spawn",
        "--mix",
        "bind=1",
        "--rate",
        "1000",
        "--requests",
        "300",
        "--warmup-s",
        "0",
    ]);
    assert_eq!(code, 0, "{report}");
    let binds = &report["latency_us_by_op"]["bind"];
    assert_eq!(binds["requests_ok"], 300, "{report}");
    assert_eq!(binds["count"], 300);
    assert!(binds["p99"].as_f64().unwrap_or(0.0) > 0.0);
    assert_eq!(report["parameters"]["role"], Value::Null);
}

/// Guards item 14 of step 5: `--json` recorded the HELLO token twice, in
/// `parameters.token` and in the recorded command line, so a report shared
/// to compare figures gave the node's credential away. Both spellings of
/// the flag are tried; the file must not hold the token's bytes anywhere.
#[test]
fn the_json_report_never_holds_the_token() {
    let node = fake_node(Timing::Delay(Duration::ZERO));
    let address = node.address.to_string();
    let token = "tok-9f3c1d2e7a55b8e0-secret";
    let spelled_apart = ["--token", token];
    let joined = format!("--token={token}");
    for token_args in [&spelled_apart[..], &[joined.as_str()][..]] {
        let mut args = vec![
            "--server",
            &address,
            "--requests",
            "50",
            "--warmup-s",
            "0",
            "--hit-ratio",
            "0",
        ];
        args.extend_from_slice(token_args);
        let (code, report, _, text) = bench_file(&args);
        assert_eq!(code, 0, "{report}");
        assert!(
            !text.contains(token),
            "the token is in the report written with {token_args:?}: {text}"
        );
        assert_eq!(report["parameters"]["token"], "<redacted>", "{report}");
        let command = report["parameters"]["command"].as_str().expect("command");
        assert!(command.contains("--token"), "{command}");
        assert!(command.contains("<redacted>"), "{command}");
        assert!(command.contains("--requests 50"), "{command}");
    }
}
