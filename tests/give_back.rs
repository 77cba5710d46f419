//! Proves that once a checkpoint has written a table's pages to its files the private copies are given back to the kernel (the table mappings hold no anonymous memory, read in /proc/self/smaps), that answers stay right across give-backs, later writes, further checkpoints and reopening, and that each shard's `tenants` file gives the per-tenant counts a start needs (and a missing or damaged one is counted from the records instead, with the same result).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use x700::binding::{
    BindRequest, BindingId, Direction, LookupQuery, LookupResult, OrderRef, Parties, Reject,
};
use x700::number::{parse_real, parse_virtual, Number, XPolicy};
use x700::store::clock::FakeClock;
use x700::store::Store;

const T0: u32 = 1_800_000_000;

fn x(n: u64) -> Number {
    parse_virtual(&format!("700{n:012}"), XPolicy::default()).unwrap()
}

fn request(i: u64) -> BindRequest {
    BindRequest {
        x: x(i),
        parties: Parties::Axb {
            a: parse_real(&format!("138{i:08}")).unwrap(),
            b: parse_real(&format!("139{i:08}")).unwrap(),
        },
        tenant: u32::try_from(i % 3).unwrap(),
        order: OrderRef::new(format!("order-{i}").as_bytes()).unwrap(),
        ttl_s: 86_400,
        direction: Direction::Both,
        recording: false,
    }
}

/// Anonymous kB in this process's mappings of `dir`'s table files.
fn table_anonymous_kb(dir: &Path) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let dir = dir.display().to_string();
    let mut in_table = false;
    let mut total = 0;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            in_table = line.contains(&dir);
        } else if in_table {
            if let Some(kb) = line.strip_prefix("Anonymous:") {
                total += kb
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .unwrap();
            }
        }
    }
    total
}

/// Every binding routes A to B (and B to A).
fn assert_routes(store: &Store, range: std::ops::Range<u64>) {
    let queries: Vec<LookupQuery> = range
        .clone()
        .map(|i| LookupQuery {
            x: x(i),
            caller: parse_real(&format!("138{i:08}")).unwrap(),
            extension: Number::NONE,
        })
        .collect();
    let mut answers = vec![LookupResult::Reject(Reject::NotBound); queries.len()];
    store.lookup_batch(&queries, &mut answers);
    for (i, answer) in range.zip(&answers) {
        let want = parse_real(&format!("139{i:08}")).unwrap();
        assert!(
            matches!(answer, LookupResult::Route(route) if route.callee == want),
            "binding {i}: {answer:?}"
        );
    }
}

fn counts_of(store: &Store) -> BTreeMap<u32, u64> {
    let mut counts = BTreeMap::new();
    for shard in store.shard_set().owned() {
        for (&tenant, &live) in shard.tenant_counts() {
            *counts.entry(tenant).or_default() += u64::from(live);
        }
    }
    counts
}

#[test]
fn committed_pages_are_given_back_and_answers_stay_right() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(T0));
    let mut store = Store::create(dir.path(), 2, clock.clone()).unwrap();
    let ids: Vec<BindingId> = (0..40_000)
        .map(|i| store.bind(&request(i)).unwrap().binding_id)
        .collect();
    let before = table_anonymous_kb(dir.path());
    assert!(
        before > 1000,
        "binds wrote only {before} kB of private pages"
    );
    store.checkpoint().unwrap();
    assert_eq!(
        table_anonymous_kb(dir.path()),
        0,
        "private copies left after the checkpoint"
    );
    assert_routes(&store, 0..40_000);
    // Writes after the give-back copy pages again; unbinds, rebinds and a
    // second checkpoint keep every answer.
    for id in ids.iter().step_by(4) {
        store.unbind(*id).unwrap();
    }
    for i in (0..40_000).step_by(4) {
        store.bind(&request(i)).unwrap();
    }
    for i in 40_000..50_000 {
        store.bind(&request(i)).unwrap();
    }
    assert!(table_anonymous_kb(dir.path()) > 0);
    assert_routes(&store, 0..50_000);
    store.checkpoint().unwrap();
    assert_eq!(table_anonymous_kb(dir.path()), 0);
    assert_routes(&store, 0..50_000);
    let counts = counts_of(&store);
    assert_eq!(counts.values().sum::<u64>(), 50_000);
    store.close().unwrap();

    let store = Store::open(dir.path(), clock.clone()).unwrap();
    assert_routes(&store, 0..50_000);
    assert_eq!(
        counts_of(&store),
        counts,
        "counts read from the tenants files"
    );
    store.close().unwrap();

    // A missing and a damaged tenants file: counted from the records.
    std::fs::remove_file(dir.path().join("shard-000/tenants")).unwrap();
    let damaged = dir.path().join("shard-001/tenants");
    let mut bytes = std::fs::read(&damaged).unwrap();
    bytes[24] ^= 1;
    std::fs::write(&damaged, bytes).unwrap();
    let store = Store::open(dir.path(), clock).unwrap();
    assert_eq!(counts_of(&store), counts, "counts from the records");
    store.close().unwrap();
}
