//! How long a checkpoint's capture holds a shard's event loop, and how
//! many pages it copies: opens a data directory (copy it first: this binds
//! into it), makes WRITES binds on fresh X (each dirties an index page at
//! random, a record and a cold record), then times `Shard::capture` for
//! every shard, as a loop does between two batches. Prints one JSON
//! object.
//!
//! `cargo run --release --example capture_pause -- DIR WRITES`
//! (perf/capture-pause.sh copies a loaded directory and runs it).

use std::sync::Arc;
use std::time::Instant;
use x700::binding::{BindRequest, Direction, OrderRef, Parties};
use x700::number::{parse_real, parse_virtual, XPolicy};
use x700::store::clock::SystemClock;
use x700::store::Store;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).expect("DIR");
    let writes: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let mut store = Store::open(std::path::Path::new(dir), Arc::new(SystemClock)).expect("open");
    x700::server::apply::recover(&mut store).expect("recover");
    let mut made = 0u64;
    for i in 0..writes {
        let request = BindRequest {
            x: parse_virtual(&format!("7009{i:011}"), XPolicy::default()).expect("x"),
            parties: Parties::Axb {
                a: parse_real(&format!("136{i:08}")).expect("a"),
                b: parse_real(&format!("137{i:08}")).expect("b"),
            },
            tenant: 0,
            order: OrderRef::new(b"capture-pause").expect("order"),
            ttl_s: 86_400,
            direction: Direction::Both,
            recording: false,
        };
        // An X the loaded bindings already hold (another tenant's) is
        // skipped: only the pages written count.
        if store.bind(&request).is_ok() {
            made += 1;
        }
    }
    let mut pauses_ms = Vec::new();
    let mut page_bytes = 0;
    for shard in store.shard_set_mut().owned_mut() {
        let started = Instant::now();
        let image = shard.capture().expect("capture");
        pauses_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        page_bytes += image.persist().expect("persist").page_bytes;
    }
    pauses_ms.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "writes": writes,
            "bindings_made": made,
            "shards": pauses_ms.len(),
            "page_bytes_copied": page_bytes,
            "capture_ms_per_shard_max": pauses_ms.last(),
            "capture_ms_per_shard_median": pauses_ms.get(pauses_ms.len() / 2),
            "capture_ms_all_shards": pauses_ms.iter().sum::<f64>(),
        })
    );
}
