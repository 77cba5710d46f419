//! Step 8 in-process benchmark, one thread: automatic X selection at steady state.
//!
//! Measured at N live AXB pairs (`X700_POOL_SIZES`, default `1000000`;
//! `10000` when run as a test by `cargo test --benches`):
//! - `choose`: `Allocator::choose` alone for a fresh pair (state unchanged);
//! - `cycle`: one steady-state step, as the apply path does it: release the
//!   oldest live pair (with cool-off memory), choose X for a new pair, bind
//!   it. Binds per second = 1e9 / ns per cycle.
//!
//! The fixture: one tenant, one area (0755), one range of 10M X; couriers
//! drawn uniformly from 200,000 numbers (mean 5 live pairs each at 1M),
//! customers fresh numbers; default config (200 pairs per X, no cool-off,
//! 65,536 releases remembered). Lines beginning `x700-bench:` on stderr
//! give the fill time, heap bytes per live pair, X in use, Delta and the
//! lower bound max(Delta, ceil(pairs / 200)).

use criterion::{BenchmarkId, Criterion, Throughput};
use std::collections::VecDeque;
use std::hint::black_box;
use std::time::{Duration, Instant};
use x700::number::Number;
use x700::pool::{AllocConfig, Allocator, AreaCode, Fallback, PoolRange, Pools};
use x700::synth::splitmix64;

/// First X of the range.
const BASE: u64 = 700_755_000_000_000;
/// Numbers in the range.
const RANGE_NUMBERS: u64 = 10_000_000;
/// Couriers (one side of every pair).
const COURIERS: u64 = 200_000;
/// Pairs precomputed for the timed loops (a power of two: masked cursor).
const PAIRS: usize = 1 << 20;
/// The simulated second: nothing expires during a run.
const NOW_S: u32 = 1_800_000_000;
/// Binding lifetime: far beyond any run.
const TTL_S: u32 = 30 * 24 * 3600;
/// Sizes when benchmarking, and when run as a smoke test.
const SIZES_DEFAULT: &str = "1000000";
const SIZES_TEST: &str = "10000";

/// A real number from an index: `13` and nine digits.
fn real(index: u64) -> Number {
    Number::from_digits(format!("13{:09}", index % 1_000_000_000).as_bytes())
}

struct Fixture {
    pools: Pools,
    area: AreaCode,
    allocator: Allocator,
    /// Live binding ids, oldest first.
    live: VecDeque<u64>,
    next_id: u64,
    /// New pairs for the timed loops.
    pairs: Vec<(Number, Number)>,
    cursor: usize,
}

impl Fixture {
    fn build(n: usize) -> Fixture {
        let area = AreaCode::parse("0755").expect("a valid area code");
        let mut pools = Pools::new();
        pools
            .add(1, PoolRange::new(BASE, BASE + RANGE_NUMBERS - 1, area))
            .expect("a valid range");
        let mut state = 0x0700_0755;
        let pairs: Vec<(Number, Number)> = (0..PAIRS as u64)
            .map(|i| {
                let courier = splitmix64(&mut state) % COURIERS;
                (real(courier), real(COURIERS + 1 + i))
            })
            .collect();
        let mut fixture = Fixture {
            pools,
            area,
            allocator: Allocator::new(AllocConfig::default()),
            live: VecDeque::with_capacity(n + 1),
            next_id: 1,
            pairs,
            cursor: 0,
        };
        let started = Instant::now();
        for _ in 0..n {
            fixture.bind_next();
        }
        let fill = started.elapsed();
        let alloc = &fixture.allocator;
        let pairs_live = alloc.live_pairs();
        let lower = u64::from(alloc.delta()).max(pairs_live.div_ceil(200));
        eprintln!(
            "x700-bench: n={n} fill_s={:.2} fill_binds_per_s={:.0} heap_bytes_per_pair={:.0} x_in_use={} delta={} lower_bound={} x_over_lower={:.3}",
            fill.as_secs_f64(),
            n as f64 / fill.as_secs_f64(),
            alloc.heap_bytes() as f64 / pairs_live.max(1) as f64,
            alloc.x_in_use(),
            alloc.delta(),
            lower,
            alloc.x_in_use() as f64 / lower.max(1) as f64,
        );
        fixture
    }

    fn next_pair(&mut self) -> (Number, Number) {
        let pair = self.pairs[self.cursor];
        self.cursor = (self.cursor + 1) & (PAIRS - 1);
        pair
    }

    fn bind_next(&mut self) {
        let (a, b) = self.next_pair();
        let x = self
            .allocator
            .choose(&self.pools, 1, &self.area, Fallback::None, a, b, NOW_S)
            .expect("a 10M range never runs out at these sizes");
        let id = self.next_id;
        self.next_id += 1;
        self.allocator.bound(x, a, b, id, NOW_S + TTL_S);
        self.live.push_back(id);
    }

    /// One steady-state step: the oldest pair goes, a new one comes.
    fn cycle(&mut self) {
        if let Some(id) = self.live.pop_front() {
            self.allocator.released(id, NOW_S, true);
        }
        self.bind_next();
    }
}

fn sizes() -> Vec<usize> {
    let args: Vec<String> = std::env::args().collect();
    let benchmarking = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    let sizes = std::env::var("X700_POOL_SIZES").unwrap_or_else(|_| {
        if benchmarking {
            SIZES_DEFAULT.to_string()
        } else {
            SIZES_TEST.to_string()
        }
    });
    sizes
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("X700_POOL_SIZES: comma-separated counts")
        })
        .collect()
}

fn main() {
    let mut criterion = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .without_plots()
        .configure_from_args();
    for n in sizes() {
        let mut fixture = Fixture::build(n);
        let mut group = criterion.benchmark_group("pool");
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("choose", n), |bencher| {
            bencher.iter(|| {
                let (a, b) = fixture.next_pair();
                black_box(fixture.allocator.choose(
                    &fixture.pools,
                    1,
                    &fixture.area,
                    Fallback::None,
                    a,
                    b,
                    NOW_S,
                ))
            });
        });
        group.bench_function(BenchmarkId::new("cycle", n), |bencher| {
            bencher.iter(|| fixture.cycle());
        });
        group.finish();
        let alloc = &fixture.allocator;
        let lower = u64::from(alloc.delta()).max(alloc.live_pairs().div_ceil(200));
        eprintln!(
            "x700-bench: after n={n} live={} x_in_use={} delta={} lower_bound={} x_over_lower={:.3} heap_bytes_per_pair={:.0}",
            alloc.live_pairs(),
            alloc.x_in_use(),
            alloc.delta(),
            lower,
            alloc.x_in_use() as f64 / lower.max(1) as f64,
            alloc.heap_bytes() as f64 / alloc.live_pairs().max(1) as f64,
        );
    }
    criterion.final_summary();
}
