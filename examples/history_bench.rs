//! Fills a traceability history with realistic binding lives and times the
//! two questions: `at` (who held X at T) and `order` (an order's bindings),
//! 10,000 random queries each, plus the append rate and the longest append
//! call. Run by `perf/history-bench.sh`, which says what the figures mean.
//!
//! `cargo run --release --example history_bench -- RECORDS DIR [SEED]`
//!
//! The shape: bindings made at 100 a second (apply time advances 10 ms a
//! bind, so most lives end inside the history and span D is 3 days of a
//! history of ~5 days at 100M records: nearly every segment is in every
//! query's window, the hard case); X drawn from a pool sized so each X carries ~50 lives; parties
//! from 10 million real numbers; lives 80% of 2-60 minutes, 18% of 1-6
//! hours, 2% of 1-3 days; 70% unbound before expiry, 30% expire; 20% get
//! one update (a new expiry) halfway. Order references are ~20 bytes. Events
//! go in batches of 100 (one applied log batch each). The page cache is not
//! dropped before the queries (the store was just written: a warm node).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::Path;
use std::time::Instant;

use x700::history::{Event, EventKind, History, HistoryConfig};
use x700::number::Number;
use x700::synth::splitmix64;

const T0: u32 = 1_800_000_000;
const BATCH: usize = 100;
const BIND_INTERVAL_MS: u64 = 10;
const QUERIES: usize = 10_000;

/// One scheduled event: (time ms, sequence) orders the heap.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    at_ms: u64,
    seq: u64,
    kind: u8, // 1 update (the expiry unchanged: a new B, say), 2 unbind, 3 expire
    id: u64,
    x: u64,
    created_s: u32,
    new_expiry_s: u32,
}

fn number(prefix: u64, digits: u32, value: u64) -> Number {
    let text = format!("{prefix}{value:0width$}", width = digits as usize);
    Number::from_digits(text.as_bytes())
}

/// CPU time of this thread, microseconds: a query's own work, apart from
/// the time other jobs on the machine held the core.
fn cpu_us() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    assert_eq!(rc, 0);
    ts.tv_sec as f64 * 1e6 + ts.tv_nsec as f64 / 1e3
}

fn percentiles(mut us: Vec<f64>) -> serde_json::Value {
    us.sort_by(f64::total_cmp);
    let at = |q: f64| us[((us.len() - 1) as f64 * q) as usize];
    serde_json::json!({
        "p50_us": at(0.50), "p99_us": at(0.99), "p999_us": at(0.999), "max_us": at(1.0),
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let records: u64 = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = Path::new(args.get(1).map_or("/var/tmp/history-bench", String::as_str)).to_path_buf();
    let seed: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1);
    let _ = std::fs::remove_dir_all(&dir);
    // ~2.2 events per life: create, end, and an update for one in five.
    let lives_expected = records * 10 / 22;
    let x_pool = (lives_expected / 50).max(100);
    let mut history = History::open(&dir, HistoryConfig::default(), u64::MAX).expect("open");
    let mut state = seed;
    let mut rand = move || splitmix64(&mut state);
    let mut heap: BinaryHeap<Reverse<Due>> = BinaryHeap::new();
    let (mut written, mut log_index, mut next_id, mut seq) = (0u64, 1u64, 1u64, 0u64);
    let mut batch: Vec<Event> = Vec::with_capacity(BATCH * 2);
    let mut append_us: Vec<f64> = Vec::new();
    let mut append_cpu_us: Vec<f64> = Vec::new();
    let mut append_total_s = 0.0;
    // Samples for the queries: (x, a second inside the life), (tenant, order).
    let mut at_samples: Vec<(Number, u32)> = Vec::new();
    let mut order_samples: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut now_ms = u64::from(T0) * 1000;
    let fill = Instant::now();
    while written < records {
        now_ms += BIND_INTERVAL_MS;
        let now_s = (now_ms / 1000) as u32;
        // Ends and updates due by now, in time order.
        while heap.peek().is_some_and(|d| d.0.at_ms <= now_ms) {
            let Reverse(due) = heap.pop().expect("peeked");
            let kind = match due.kind {
                1 => EventKind::Updated,
                2 => EventKind::Unbound,
                _ => EventKind::Expired,
            };
            let at_s = (due.at_ms / 1000) as u32;
            let mut e = Event::new(kind, at_s, log_index, due.id);
            e.x = number(700, 12, due.x);
            e.created_s = due.created_s;
            if kind == EventKind::Updated {
                e.expires_at_s = due.new_expiry_s;
            }
            batch.push(e);
        }
        // One bind.
        let id = next_id;
        next_id += 1;
        let r = rand();
        let life_s = match r % 100 {
            0..=79 => 120 + (rand() % 3480),
            80..=97 => 3600 + (rand() % (5 * 3600)),
            _ => 86_400 + (rand() % (2 * 86_400)),
        } as u32;
        let x = rand() % x_pool;
        let tenant = 1 + (rand() % 50) as u32;
        let mut e = Event::new(EventKind::Created, now_s, log_index, id);
        e.x = number(700, 12, x);
        e.a = number(138, 8, rand() % 10_000_000);
        e.b = number(139, 8, rand() % 10_000_000);
        e.tenant = tenant;
        e.order = format!("ORD{:03}-{:016}", tenant, rand() % 10_000_000_000_000_000).into_bytes();
        e.credential = tenant;
        let unbound = rand() % 10 < 7;
        let end_s = now_s + life_s;
        e.expires_at_s = if unbound { end_s + 600 } else { end_s };
        if rand() % 5 == 0 {
            seq += 1;
            heap.push(Reverse(Due {
                at_ms: now_ms + u64::from(life_s) * 500,
                seq,
                kind: 1,
                id,
                x,
                created_s: now_s,
                new_expiry_s: e.expires_at_s,
            }));
        }
        seq += 1;
        heap.push(Reverse(Due {
            at_ms: u64::from(end_s) * 1000 + rand() % 1000,
            seq,
            kind: if unbound { 2 } else { 3 },
            id,
            x,
            created_s: now_s,
            new_expiry_s: 0,
        }));
        if rand() % 1000 == 0 && at_samples.len() < QUERIES {
            at_samples.push((e.x, now_s + life_s / 2));
            order_samples.push((tenant, e.order.clone()));
        }
        batch.push(e);
        if batch.len() >= BATCH {
            log_index += 1;
            let (start, cpu) = (Instant::now(), cpu_us());
            history.append(&batch).expect("append");
            let took = start.elapsed().as_secs_f64();
            append_cpu_us.push(cpu_us() - cpu);
            if std::env::var_os("HISTORY_BENCH_TRACE").is_some() && cpu_us() - cpu > 2000.0 {
                eprintln!(
                    "slow append: {:.0} us cpu, {:.0} us wall, at record {written}, segments {}",
                    cpu_us() - cpu,
                    took * 1e6,
                    history.stats().segments
                );
            }
            append_total_s += took;
            append_us.push(took * 1e6);
            written += batch.len() as u64;
            batch.clear();
            if written % 10_000_000 < BATCH as u64 {
                eprintln!("{written} records, {:.0} s", fill.elapsed().as_secs_f64());
            }
        }
    }
    let fill_s = fill.elapsed().as_secs_f64();
    let sync = Instant::now();
    history.sync(log_index).expect("sync");
    drop(history);
    let close_s = sync.elapsed().as_secs_f64();
    let open = Instant::now();
    let history = History::open(&dir, HistoryConfig::default(), u64::MAX).expect("reopen");
    let open_s = open.elapsed().as_secs_f64();
    let stats = history.stats();
    let end_s = (now_ms / 1000) as u32;
    // Half the at queries at a sampled life (answers not empty), half at a
    // random X and second (mostly empty answers).
    let mut at_us = Vec::with_capacity(QUERIES);
    let mut at_cpu_us = Vec::with_capacity(QUERIES);
    let mut at_found = 0usize;
    for i in 0..QUERIES {
        let (x, t) = if i % 2 == 0 && !at_samples.is_empty() {
            at_samples[(rand() as usize) % at_samples.len()]
        } else {
            (
                number(700, 12, rand() % x_pool),
                T0 + (rand() % u64::from(end_s - T0)) as u32,
            )
        };
        let (start, cpu) = (Instant::now(), cpu_us());
        let lives = history.at(x, t, None).expect("at");
        at_us.push(start.elapsed().as_secs_f64() * 1e6);
        at_cpu_us.push(cpu_us() - cpu);
        at_found += lives.len();
    }
    let mut order_us = Vec::with_capacity(QUERIES);
    let mut order_cpu_us = Vec::with_capacity(QUERIES);
    let mut order_found = 0usize;
    for i in 0..QUERIES {
        let (tenant, order) = if i % 2 == 0 && !order_samples.is_empty() {
            order_samples[(rand() as usize) % order_samples.len()].clone()
        } else {
            (
                1 + (rand() % 50) as u32,
                format!("ORD-none-{:016}", rand()).into_bytes(),
            )
        };
        let (start, cpu) = (Instant::now(), cpu_us());
        let lives = history.order(tenant, &order).expect("order");
        order_us.push(start.elapsed().as_secs_f64() * 1e6);
        order_cpu_us.push(cpu_us() - cpu);
        order_found += lives.len();
    }
    let report = serde_json::json!({
        "records": stats.records,
        "lives": stats.lives,
        "segments": stats.segments,
        "bytes_on_disk": stats.bytes,
        "bytes_per_record": stats.bytes as f64 / stats.records as f64,
        "bytes_per_life": stats.bytes as f64 / stats.lives as f64,
        "span_max_s": stats.span_max_s,
        "history_span_s": end_s - T0,
        "x_pool": x_pool,
        "index_memory_bytes_after_open": stats.index_memory_bytes,
        "fill_s": fill_s,
        "append_records_per_s": records as f64 / append_total_s,
        "append_call_us": percentiles(append_us),
        "append_call_cpu_us": percentiles(append_cpu_us),
        "append_batch_events": BATCH,
        "sync_and_close_s": close_s,
        "open_s": open_s,
        "at_query": percentiles(at_us),
        "at_query_cpu": percentiles(at_cpu_us),
        "at_lives_found": at_found,
        "order_query": percentiles(order_us),
        "order_query_cpu": percentiles(order_cpu_us),
        "order_lives_found": order_found,
        "queries_each": QUERIES,
        "cpu_note": "*_cpu: this thread's CPU time for the same calls; wall minus CPU is time other jobs held the core",
        "page_cache": "not dropped: the store was just written and reopened",
    });
    println!("{}", serde_json::to_string_pretty(&report).expect("json"));
}
