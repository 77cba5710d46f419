//! Runs the allocation simulator (`x700::pool::sim`) and writes its CSV time
//! series and JSON summary: `perf/alloc-sim.sh` records a run with it.
//!
//! Usage: `cargo run --release --example alloc_sim -- [--days N] [--seed S]
//! [--cool-off S] [--max-pairs N] [--scale F] [--out PREFIX]`; writes
//! `PREFIX.csv` and `PREFIX.json` (default prefix `alloc-sim`). `--scale`
//! multiplies every area's population and demand.

use std::time::Instant;
use x700::pool::sim::{simulate, SimConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = SimConfig::realistic();
    let mut out = String::from("alloc-sim");
    let mut scale = 1.0f64;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--days" => config.days = value.parse()?,
            "--seed" => config.seed = value.parse()?,
            "--cool-off" => config.alloc.cool_off_s = value.parse()?,
            "--max-pairs" => config.alloc.max_pairs_per_x = value.parse()?,
            "--scale" => scale = value.parse()?,
            "--out" => out = value,
            _ => return Err(format!("unknown flag {flag}").into()),
        }
    }
    config.alloc.check()?;
    for area in &mut config.areas {
        let scaled = |n: u32| ((f64::from(n) * scale).round() as u32).max(1);
        area.couriers = scaled(area.couriers);
        area.customers = scaled(area.customers);
        area.orders_per_hour_peak = scaled(area.orders_per_hour_peak);
        area.drivers = scaled(area.drivers);
        area.passengers = scaled(area.passengers);
        area.rides_per_hour_peak = scaled(area.rides_per_hour_peak);
    }
    config.warmup_s = config
        .warmup_s
        .min((config.days.saturating_sub(1)) * 86_400);
    let started = Instant::now();
    let report = simulate(&config);
    let elapsed_s = started.elapsed().as_secs_f64();
    std::fs::write(format!("{out}.csv"), report.csv())?;
    let summary = serde_json::json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "seed": config.seed,
        "days": config.days,
        "scale": scale,
        "warmup_s": config.warmup_s,
        "steady_pairs_min": config.steady_pairs_min,
        "steady_windows_h": config.steady_windows_h,
        "sample_every_s": config.sample_every_s,
        "max_pairs_per_x": config.alloc.max_pairs_per_x,
        "cool_off_s": config.alloc.cool_off_s,
        "sticky_pairs_max": config.alloc.sticky_pairs_max,
        "areas": config.areas.iter().map(|a| serde_json::json!({
            "area": a.code, "couriers": a.couriers, "customers": a.customers,
            "orders_per_hour_peak": a.orders_per_hour_peak, "drivers": a.drivers,
            "passengers": a.passengers, "rides_per_hour_peak": a.rides_per_hour_peak,
        })).collect::<Vec<_>>(),
        "elapsed_s": elapsed_s,
        "report": report,
    });
    std::fs::write(
        format!("{out}.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    println!(
        "orders {} rides {} dropped {} exhausted {} expired {} heap bytes/pair {:.0} ({elapsed_s:.1} s)",
        report.orders, report.rides, report.dropped, report.exhausted, report.expired, report.heap_bytes_per_pair
    );
    println!("area   steady X/Delta max mean  X/lower max mean | day X/lower mean p95 max | peak pairs X Delta lower");
    for s in &report.summaries {
        println!(
            "{:<6} {:>6} {:>11.3} {:>5.3} {:>11.3} {:>5.3} | {:>16.3} {:>5.3} {:>5.3} | {:>10} {:>5} {:>5} {:>5}",
            s.area,
            s.steady_samples,
            s.steady_x_over_delta_max,
            s.steady_x_over_delta_mean,
            s.steady_x_over_lower_max,
            s.steady_x_over_lower_mean,
            s.day_x_over_lower_mean,
            s.day_x_over_lower_p95,
            s.day_x_over_lower_max,
            s.peak_live_pairs,
            s.peak_x_in_use,
            s.peak_delta,
            s.peak_lower_bound
        );
    }
    Ok(())
}
