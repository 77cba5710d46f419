//! Step 1 in-process benchmarks, one thread: `Store` lookups, writes and reopen at N bindings, beside hashbrown.
//!
//! Measured per N: `lookup_hit`, `lookup_miss` (one at a time),
//! `lookup_batch` (`Store::lookup_batch`, 64 or 256 queries per call),
//! `baseline_hit` / `baseline_batch` (`hashbrown::HashMap::get` on the same
//! hit sequence), `bind` and `unbind` (store at N), `reopen` (`Store::open`
//! of the closed N-binding directory) and `lookup_hit_cold_map` (the first
//! lookups after an open, while pages are being mapped in).
//!
//! For each N in `X700_BENCH_SIZES` (default `1000000,10000000`; `10000`
//! when run as a test by `cargo test --benches`) the fixture is built once:
//! a `Store` of 8 shards in a temporary directory under `X700_BENCH_DIR`
//! (default `/tmp`) with N synthetic bindings, a baseline map with two
//! entries per binding ((X, A) and (X, B), 32-byte records), and
//! precomputed query sequences, so the timed loops do lookups and nothing
//! else. Every query sequence is checked once before timing: hits route to
//! the other party in both the store and the baseline, misses are
//! `not_bound`, and a batch answers exactly what single lookups answer.
//!
//! Lines beginning `x700-bench:` on stderr carry figures criterion does not
//! (build time, `stats` bytes per binding, close time, paired ratios) for
//! `perf/bench-table.sh` to collect.

use criterion::{BenchmarkId, Criterion, Throughput};
use hashbrown::HashMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use x700::binding::{BindingId, LookupQuery, LookupResult, Reject};
use x700::store::clock::{Clock, FakeClock};
use x700::store::Store;
use x700::synth::{splitmix64, Synthetic};

/// Seed of the synthetic bindings.
const SEED: u64 = 0x0700_0700;
/// Seed of the random query indices.
const QUERY_SEED: u64 = 0x51DE_CA11;
/// The fake clock's second: nothing expires during a run.
const NOW_S: u32 = 1_800_000_000;
/// Binding lifetime: far longer than any run.
const TTL_S: u32 = 30 * 24 * 3600;
/// Shards of the store.
const SHARDS: u16 = 8;
/// Queries in each precomputed sequence (a power of two, so the cursor wraps
/// with a mask). 2^20 queries are 24 MiB: far beyond cache, so every lookup
/// pays for its own random memory accesses.
const QUERIES: usize = 1 << 20;
/// Batch sizes for `lookup_batch` and `baseline_batch`.
const BATCHES: [usize; 2] = [64, 256];
/// Sizes when none are given and criterion runs in benchmark mode.
const SIZES_DEFAULT: &str = "1000000,10000000";
/// Size when run as a test (`cargo test --benches`): a smoke test.
const SIZES_TEST: &str = "10000";
/// Lookups timed right after each reopen in `lookup_hit_cold_map`.
const COLD_LOOKUPS: usize = 1 << 16;
/// Rounds of the paired store-versus-baseline measurement (odd: one median).
const PAIRED_ROUNDS: usize = 31;
/// Queries per slice in each round of the paired measurement.
const PAIRED_QUERIES: usize = 1 << 16;

/// The baseline's value: the same 32 bytes a routing record carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
struct Record {
    /// The other party's number word.
    callee: u64,
    /// The engine's binding id.
    binding_id: u64,
    /// Absolute expiry.
    expires_at_s: u32,
    /// Direction and recording bits (zero here).
    flags: u32,
    /// X's number word.
    display: u64,
}
const _: () = assert!(std::mem::size_of::<Record>() == 32);

/// The baseline's answer: callee and binding id, or nothing.
type BaselineAnswer = Option<(u64, u64)>;

/// The baseline's lookup: find (X, caller), refuse an expired record.
#[inline(always)]
fn baseline_lookup(
    map: &HashMap<(u64, u64), Record>,
    key: &(u64, u64),
    now_s: u32,
) -> BaselineAnswer {
    map.get(key)
        .filter(|record| record.expires_at_s > now_s)
        .map(|record| (record.callee, record.binding_id))
}

/// One size's store, baseline and query sequences, built once and shared
/// by every group of that size.
struct Fixture {
    n: u64,
    synthetic: Synthetic,
    clock: FakeClock,
    /// Removed (with the store's files) when the fixture is dropped.
    dir: tempfile::TempDir,
    store: Option<Store>,
    baseline: HashMap<(u64, u64), Record>,
    hits: Vec<LookupQuery>,
    misses: Vec<LookupQuery>,
    hit_keys: Vec<(u64, u64)>,
    /// Next synthetic binding index for the bind and unbind groups: always
    /// >= n, so each bind is a new, distinct binding.
    next_i: u64,
}

impl Fixture {
    fn build(n: u64) -> Fixture {
        let synthetic = Synthetic { seed: SEED };
        let clock = FakeClock::new(NOW_S);
        let base =
            std::env::var_os("X700_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
        let dir = tempfile::Builder::new()
            .prefix("x700-bench-table-")
            .tempdir_in(&base)
            .unwrap_or_else(|e| panic!("temporary directory in {}: {e}", base.display()));
        let mut store = Store::create(dir.path(), SHARDS, Arc::new(clock.clone()))
            .unwrap_or_else(|e| panic!("creating the store: {e}"));
        let capacity = usize::try_from(2 * n).expect("N fits memory");
        let mut baseline = HashMap::with_capacity(capacity);

        // Store first, then the baseline, each timed on its own (both include
        // generating the synthetic numbers). The fake clock stands still, so
        // every binding expires at the same second.
        let expires_at_s = NOW_S + TTL_S;
        let start = Instant::now();
        let ids: Vec<BindingId> = (0..n)
            .map(|i| {
                let outcome = store
                    .bind(&synthetic.request(i, TTL_S))
                    .unwrap_or_else(|e| panic!("binding {i}: {e}"));
                assert!(outcome.created, "binding {i} already existed");
                assert_eq!(outcome.expires_at_s, expires_at_s);
                outcome.binding_id
            })
            .collect();
        let bind_s = start.elapsed().as_secs_f64();
        let start = Instant::now();
        for (i, id) in (0..n).zip(ids) {
            let binding = synthetic.binding(i);
            let record = |callee: x700::number::Number| Record {
                callee: callee.word(),
                binding_id: id.0,
                expires_at_s,
                flags: 0,
                display: binding.x.word(),
            };
            baseline.insert((binding.x.word(), binding.a.word()), record(binding.b));
            baseline.insert((binding.x.word(), binding.b.word()), record(binding.a));
        }
        let baseline_s = start.elapsed().as_secs_f64();
        assert_eq!(baseline.len(), capacity, "baseline keys collided");

        let stats = store.stats().unwrap_or_else(|e| panic!("stats: {e}"));
        assert_eq!(stats.bindings_live, n);
        let (mut records, mut cold, mut index, mut overflow) = (0, 0, 0, 0);
        for shard in store.shard_stats() {
            records += shard.records_bytes;
            cold += shard.cold_bytes;
            index += shard.index_bytes;
            overflow += shard.overflow_bytes;
        }
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        let per_binding = |bytes: u64| bytes as f64 / n as f64;
        eprintln!(
            "x700-bench: n={n} bind_s={bind_s:.2} baseline_build_s={baseline_s:.2} bindings_live={} lookup_bytes={} disk_bytes={} \
             lookup_bytes_per_binding={:.2} disk_bytes_per_binding={:.2} records_bytes={records} \
             cold_bytes={cold} index_bytes={index} overflow_bytes={overflow} index_entries={} \
             overflow_buckets_live={}",
            stats.bindings_live,
            stats.lookup_bytes,
            stats.disk_bytes,
            per_binding(stats.lookup_bytes),
            per_binding(stats.disk_bytes),
            stats.index_entries,
            stats.overflow_buckets_live,
        );

        // Queries: uniformly random binding indices, caller A or B at random.
        let mut state = QUERY_SEED ^ n;
        let mut hits = Vec::with_capacity(QUERIES);
        let mut hit_keys = Vec::with_capacity(QUERIES);
        let mut callees = Vec::with_capacity(QUERIES);
        for _ in 0..QUERIES {
            let i = splitmix64(&mut state) % n;
            let query = synthetic.hit(i, splitmix64(&mut state));
            let binding = synthetic.binding(i);
            callees.push(if query.caller == binding.a {
                binding.b
            } else {
                binding.a
            });
            hit_keys.push((query.x.word(), query.caller.word()));
            hits.push(query);
        }
        // Misses: X numbers from another seed. The odd one that lands on a
        // bound X (about n / 10^12 of them) is replaced, so every miss is an
        // unbound X.
        let mut misses = Vec::with_capacity(QUERIES);
        while misses.len() < QUERIES {
            let query = synthetic.miss(splitmix64(&mut state) % (1 << 40));
            if store.lookup(&query) == LookupResult::Reject(Reject::NotBound) {
                misses.push(query);
            }
        }

        // Check once what the timed loops will compute.
        let now_s = clock.now_s();
        for ((query, key), callee) in hits.iter().zip(&hit_keys).zip(&callees) {
            let LookupResult::Route(route) = store.lookup(query) else {
                panic!("hit {query:?} did not route");
            };
            assert_eq!(route.callee, *callee, "hit {query:?} routed elsewhere");
            assert_eq!(
                baseline_lookup(&baseline, key, now_s),
                Some((callee.word(), route.binding_id.0)),
                "baseline disagrees on {query:?}"
            );
        }
        for queries in [&hits, &misses] {
            let mut answers = vec![LookupResult::Reject(Reject::BadNumber); BATCHES[0]];
            for chunk in queries.chunks(BATCHES[0]) {
                store.lookup_batch(chunk, &mut answers);
                for (query, answer) in chunk.iter().zip(&answers) {
                    assert_eq!(*answer, store.lookup(query), "batch disagrees on {query:?}");
                }
            }
        }

        Fixture {
            n,
            synthetic,
            clock,
            dir,
            store: Some(store),
            baseline,
            hits,
            misses,
            hit_keys,
            next_i: n,
        }
    }

    fn store(&self) -> &Store {
        self.store
            .as_ref()
            .expect("store is open until the reopen groups")
    }

    fn store_mut(&mut self) -> &mut Store {
        self.store
            .as_mut()
            .expect("store is open until the reopen groups")
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Single lookups, one after another, over a precomputed sequence.
fn bench_single(criterion: &mut Criterion, fixture: &Fixture) {
    let store = fixture.store();
    for (name, queries) in [
        ("lookup_hit", &fixture.hits),
        ("lookup_miss", &fixture.misses),
    ] {
        let mut group = criterion.benchmark_group(name);
        group.throughput(Throughput::Elements(1));
        let mut cursor = 0usize;
        group.bench_function(BenchmarkId::from_parameter(fixture.n), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(store.lookup(&queries[cursor & (QUERIES - 1)]));
                    cursor = cursor.wrapping_add(1);
                }
                start.elapsed()
            });
        });
        group.finish();
    }
}

/// `Store::lookup_batch` over consecutive slices of the sequence.
fn bench_batch(criterion: &mut Criterion, fixture: &Fixture) {
    let store = fixture.store();
    let mut group = criterion.benchmark_group("lookup_batch");
    for (kind, queries) in [("hit", &fixture.hits), ("miss", &fixture.misses)] {
        for batch in BATCHES {
            if kind == "miss" && batch != BATCHES[1] {
                continue;
            }
            group.throughput(Throughput::Elements(batch as u64));
            let mut answers = vec![LookupResult::Reject(Reject::BadNumber); batch];
            let mut cursor = 0usize;
            let id = BenchmarkId::new(format!("{kind}_b{batch}"), fixture.n);
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let offset = cursor & (QUERIES - 1);
                        store.lookup_batch(&queries[offset..offset + batch], &mut answers);
                        black_box(&answers);
                        cursor = cursor.wrapping_add(batch);
                    }
                    start.elapsed()
                });
            });
        }
    }
    group.finish();
}

/// The hashbrown baseline on the same hit sequence: one at a time, and in
/// batches written to an answer array like `lookup_batch`.
fn bench_baseline(criterion: &mut Criterion, fixture: &Fixture) {
    let map = &fixture.baseline;
    let keys = &fixture.hit_keys;
    let now_s = fixture.clock.now_s();

    let mut group = criterion.benchmark_group("baseline_hit");
    group.throughput(Throughput::Elements(1));
    let mut cursor = 0usize;
    group.bench_function(BenchmarkId::from_parameter(fixture.n), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(baseline_lookup(map, &keys[cursor & (QUERIES - 1)], now_s));
                cursor = cursor.wrapping_add(1);
            }
            start.elapsed()
        });
    });
    group.finish();

    let mut group = criterion.benchmark_group("baseline_batch");
    let batch = BATCHES[1];
    group.throughput(Throughput::Elements(batch as u64));
    let mut answers: Vec<BaselineAnswer> = vec![None; batch];
    let mut cursor = 0usize;
    let id = BenchmarkId::new(format!("hit_b{batch}"), fixture.n);
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let offset = cursor & (QUERIES - 1);
                for (answer, key) in answers.iter_mut().zip(&keys[offset..offset + batch]) {
                    *answer = baseline_lookup(map, key, now_s);
                }
                black_box(&answers);
                cursor = cursor.wrapping_add(batch);
            }
            start.elapsed()
        });
    });
    group.finish();
}

/// Side-by-side ratios that shared-machine noise cannot skew much: in each
/// of `PAIRED_ROUNDS` rounds, time the store (batches of 256, then single
/// lookups) and the baseline (single gets) on consecutive slices of the hit
/// sequence, a few milliseconds apart, and take each round's throughput
/// ratio. Criterion runs the groups tens of seconds apart, so a burst of
/// other work on the machine can land on one side only; here both sides of a
/// ratio see the same load. Each side reads its own slice, so no side finds
/// another's lines in cache. Reported on stderr as medians with min and max.
fn paired_ratios(fixture: &Fixture) {
    let store = fixture.store();
    let map = &fixture.baseline;
    let now_s = fixture.clock.now_s();
    let batch = BATCHES[1];
    let mut answers = vec![LookupResult::Reject(Reject::BadNumber); batch];
    let mut batch_over_baseline = Vec::with_capacity(PAIRED_ROUNDS);
    let mut single_over_baseline = Vec::with_capacity(PAIRED_ROUNDS);
    let slice = |k: usize| {
        let offset = (k * PAIRED_QUERIES) & (QUERIES - 1);
        offset..offset + PAIRED_QUERIES
    };
    for round in 0..PAIRED_ROUNDS {
        let start = Instant::now();
        for chunk in fixture.hits[slice(3 * round)].chunks(batch) {
            store.lookup_batch(chunk, &mut answers);
            black_box(&answers);
        }
        let store_batch = start.elapsed().as_secs_f64();
        let start = Instant::now();
        for query in &fixture.hits[slice(3 * round + 1)] {
            black_box(store.lookup(query));
        }
        let store_single = start.elapsed().as_secs_f64();
        let start = Instant::now();
        for key in &fixture.hit_keys[slice(3 * round + 2)] {
            black_box(baseline_lookup(map, key, now_s));
        }
        let baseline = start.elapsed().as_secs_f64();
        batch_over_baseline.push(baseline / store_batch);
        single_over_baseline.push(baseline / store_single);
    }
    let summary = |ratios: &mut Vec<f64>| {
        ratios.sort_by(f64::total_cmp);
        (
            ratios[0],
            ratios[ratios.len() / 2],
            ratios[ratios.len() - 1],
        )
    };
    let (batch_min, batch_median, batch_max) = summary(&mut batch_over_baseline);
    let (single_min, single_median, single_max) = summary(&mut single_over_baseline);
    eprintln!(
        "x700-bench: n={} paired_batch256_over_baseline_median={batch_median:.3} \
         paired_batch256_over_baseline_min={batch_min:.3} \
         paired_batch256_over_baseline_max={batch_max:.3} \
         paired_single_over_baseline_median={single_median:.3} \
         paired_single_over_baseline_min={single_min:.3} \
         paired_single_over_baseline_max={single_max:.3}",
        fixture.n
    );
}

/// Binds of new, distinct bindings into the store at N, and unbinds of
/// bindings made for the purpose. Each sample undoes its own work (untimed),
/// so the store stays at N; requests are generated before the clock starts.
fn bench_writes(criterion: &mut Criterion, fixture: &mut Fixture) {
    let n = fixture.n;
    let synthetic = fixture.synthetic;

    let mut group = criterion.benchmark_group("bind");
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::from_parameter(n), |b| {
        b.iter_custom(|iters| {
            let first = fixture.next_i;
            fixture.next_i += iters;
            let requests: Vec<_> = (first..first + iters)
                .map(|i| synthetic.request(i, TTL_S))
                .collect();
            let mut ids: Vec<BindingId> = Vec::with_capacity(requests.len());
            let store = fixture.store_mut();
            let start = Instant::now();
            for request in &requests {
                let outcome = store.bind(request).unwrap_or_else(|e| panic!("bind: {e}"));
                ids.push(outcome.binding_id);
            }
            let elapsed = start.elapsed();
            for id in ids {
                store.unbind(id).unwrap_or_else(|e| panic!("unbind: {e}"));
            }
            elapsed
        });
    });
    group.finish();

    let mut group = criterion.benchmark_group("unbind");
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::from_parameter(n), |b| {
        b.iter_custom(|iters| {
            let first = fixture.next_i;
            fixture.next_i += iters;
            let store = fixture.store_mut();
            let ids: Vec<BindingId> = (first..first + iters)
                .map(|i| {
                    store
                        .bind(&synthetic.request(i, TTL_S))
                        .unwrap_or_else(|e| panic!("bind: {e}"))
                        .binding_id
                })
                .collect();
            let start = Instant::now();
            for &id in &ids {
                black_box(store.unbind(id).unwrap_or_else(|e| panic!("unbind: {e}")));
            }
            start.elapsed()
        });
    });
    group.finish();
    assert_eq!(
        fixture.store().stats().map(|s| s.bindings_live).ok(),
        Some(n)
    );
}

/// Closes the fixture's store (timed once, reported on stderr), then times
/// `Store::open` of the N-binding directory (page cache warm: the files were
/// just written), and single lookups in the first moments after an open,
/// when every page a lookup touches must first be mapped in.
fn bench_reopen(criterion: &mut Criterion, fixture: &mut Fixture) {
    let n = fixture.n;
    let store = fixture.store.take().expect("store is open");
    let start = Instant::now();
    store.close().unwrap_or_else(|e| panic!("close: {e}"));
    eprintln!(
        "x700-bench: n={n} close_ms={:.1}",
        start.elapsed().as_secs_f64() * 1e3
    );
    let path = fixture.path().to_path_buf();
    let clock = fixture.clock.clone();
    let open =
        || Store::open(&path, Arc::new(clock.clone())).unwrap_or_else(|e| panic!("open: {e}"));

    let mut group = criterion.benchmark_group("reopen");
    group.bench_function(BenchmarkId::from_parameter(n), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let store = open();
                total += start.elapsed();
                drop(black_box(store));
            }
            total
        });
    });
    group.finish();

    let mut group = criterion.benchmark_group("lookup_hit_cold_map");
    group.throughput(Throughput::Elements(COLD_LOOKUPS as u64));
    let queries = &fixture.hits;
    let mut cursor = 0usize;
    group.bench_function(BenchmarkId::from_parameter(n), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let store = open();
                let start = Instant::now();
                for _ in 0..COLD_LOOKUPS {
                    black_box(store.lookup(&queries[cursor & (QUERIES - 1)]));
                    cursor = cursor.wrapping_add(1);
                }
                total += start.elapsed();
                drop(store);
            }
            total
        });
    });
    group.finish();
}

/// Parses `X700_BENCH_SIZES`: comma-separated counts, `k` and `M` suffixes
/// allowed (`10k,1M`).
fn sizes() -> Vec<u64> {
    let args: Vec<String> = std::env::args().collect();
    let benchmarking = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    let default = if benchmarking {
        SIZES_DEFAULT
    } else {
        SIZES_TEST
    };
    let text = std::env::var("X700_BENCH_SIZES").unwrap_or_else(|_| default.to_string());
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (digits, scale) = match s.as_bytes().last() {
                Some(b'k' | b'K') => (&s[..s.len() - 1], 1_000),
                Some(b'm' | b'M') => (&s[..s.len() - 1], 1_000_000),
                _ => (s, 1),
            };
            let count: u64 = digits
                .replace('_', "")
                .parse()
                .unwrap_or_else(|_| panic!("X700_BENCH_SIZES: bad size {s:?}"));
            assert!(count >= 1, "X700_BENCH_SIZES: sizes must be at least 1");
            count * scale
        })
        .collect()
}

fn main() {
    let mut criterion = Criterion::default()
        .sample_size(15)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .without_plots()
        .configure_from_args();
    for n in sizes() {
        let mut fixture = Fixture::build(n);
        bench_single(&mut criterion, &fixture);
        bench_batch(&mut criterion, &fixture);
        bench_baseline(&mut criterion, &fixture);
        paired_ratios(&fixture);
        bench_writes(&mut criterion, &mut fixture);
        bench_reopen(&mut criterion, &mut fixture);
    }
    criterion.final_summary();
}
