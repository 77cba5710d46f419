//! Builds a store of N synthetic AXB bindings and runs batch lookups over it
//! for a few seconds, printing lookups per second: a small, single-purpose
//! program to profile the lookup hot path with `perf record`.
//!
//! `cargo run --release --example batch_lookups -- [N] [SECONDS] [BATCH] [REOPEN]`
//!
//! With REOPEN 1 the store is closed, its files dropped from the page cache
//! and opened again before the lookups, as `x700 load` hands a directory to
//! the node: the lookups then read the files as the node serves them
//! (mapped in 2 MiB pieces where the kernel gives them, STORAGE.md section
//! 12) rather than from the private 4 KiB copies the binds wrote.

use std::sync::Arc;
use std::time::Instant;
use x700::binding::{LookupQuery, LookupResult, Reject};
use x700::store::clock::FakeClock;
use x700::store::Store;
use x700::synth::{splitmix64, Synthetic};

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(1_000_000);
    let seconds = args.get(1).copied().unwrap_or(5);
    let batch = usize::try_from(args.get(2).copied().unwrap_or(256)).unwrap_or(256);
    let reopen = args.get(3).copied().unwrap_or(0) == 1;
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = FakeClock::new(1_800_000_000);
    let mut store = Store::create(dir.path(), 8, Arc::new(clock.clone())).expect("create store");
    let synthetic = Synthetic { seed: 1 };
    for i in 0..n {
        store.bind(&synthetic.request(i, 86_400)).expect("bind");
    }
    if reopen {
        store.close_and_uncache().expect("close");
        store = Store::open(dir.path(), Arc::new(clock)).expect("reopen");
    }
    let mut state = 7;
    let queries: Vec<LookupQuery> = (0..1 << 20)
        .map(|_| {
            let r = splitmix64(&mut state);
            synthetic.hit(r % n, r >> 63)
        })
        .collect();
    let mut answers = vec![LookupResult::Reject(Reject::NotBound); batch];
    let started = Instant::now();
    let mut done = 0u64;
    let mut routed = 0u64;
    while started.elapsed().as_secs() < seconds {
        for chunk in queries.chunks(batch) {
            store.lookup_batch(chunk, &mut answers[..chunk.len()]);
            routed += answers[..chunk.len()]
                .iter()
                .filter(|a| matches!(a, LookupResult::Route(_)))
                .count() as u64;
        }
        done += queries.len() as u64;
    }
    let rate = done as f64 / started.elapsed().as_secs_f64();
    println!("{{\"bindings\":{n},\"batch\":{batch},\"reopened\":{reopen},\"lookups\":{done},\"routed\":{routed},\"lookups_per_s\":{rate:.0}}}");
}
