//! Proves that a full disk is a clean, recoverable error: on a small tmpfs,
//! binds fail with `disk_full` before changing anything, every acknowledged
//! binding stays routable, lookups carry on, and binds succeed again once
//! space is freed, by themselves: for the tables alone (in process), and for
//! a real `x700 serve` whose log cannot get its next segment or whose disk
//! falls below the tables' headroom (refused before the log, so no entry is
//! ever answered `disk_full` at apply time). Needs root to mount the tmpfs (CI runs as root).

mod common;

use common::small_disk::SmallDisk;

use std::process::Command;
use std::sync::Arc;
use x700::binding::{LookupResult, WriteError};
use x700::store::clock::FakeClock;
use x700::store::Store;
use x700::synth::Synthetic;

#[test]
fn full_disk_refuses_binds_keeps_data_and_recovers() {
    let disk = SmallDisk::mount("2m");
    let filler = disk.path().join("filler");
    std::fs::write(&filler, vec![1u8; 256 * 1024]).unwrap();
    let dir = disk.path().join("data");
    let clock = FakeClock::new(1_800_000_000);
    let mut store = Store::create(&dir, 1, Arc::new(clock.clone())).unwrap();
    let synthetic = Synthetic { seed: 9 };
    let mut acknowledged = 0u64;
    let full_at = loop {
        match store.bind(&synthetic.request(acknowledged, 3600)) {
            Ok(_) => acknowledged += 1,
            Err(WriteError::DiskFull { path }) => break path,
            Err(other) => panic!("expected disk_full, got {other:?}"),
        }
        assert!(acknowledged < 1_000_000, "the 2 MiB disk never filled");
    };
    assert!(
        acknowledged > 1000,
        "filled after only {acknowledged} binds"
    );
    assert!(full_at.contains("data"), "error names the file: {full_at}");
    // Lookups carry on and see every acknowledged binding; a retry of the
    // failed bind fails the same way without side effects.
    for i in 0..acknowledged {
        assert!(
            matches!(store.lookup(&synthetic.hit(i, i)), LookupResult::Route(_)),
            "binding {i} lost"
        );
    }
    assert!(matches!(
        store.bind(&synthetic.request(acknowledged, 3600)),
        Err(WriteError::DiskFull { .. })
    ));
    assert_eq!(store.stats().unwrap().bindings_live, acknowledged);
    store.verify().unwrap();
    // Space comes back: binds resume by themselves.
    std::fs::remove_file(&filler).unwrap();
    for i in acknowledged..acknowledged + 500 {
        store.bind(&synthetic.request(i, 3600)).unwrap();
    }
    store.close().unwrap();
    let store = Store::open(&dir, Arc::new(clock)).unwrap();
    assert_eq!(store.stats().unwrap().bindings_live, acknowledged + 500);
    store.verify().unwrap();
}

fn bind(client: &mut x700::client::Client, g: u64) -> u8 {
    client
        .bind(&common::axb(
            common::x(g),
            &format!("138{g:08}"),
            &format!("139{g:08}"),
            "full",
        ))
        .expect("bind answered")
        .status
}

fn routes(client: &mut x700::client::Client, g: u64) -> bool {
    matches!(
        client
            .lookup(&common::ask(&format!("138{g:08}"), common::x(g)))
            .unwrap(),
        LookupResult::Route(_)
    )
}

#[test]
fn a_node_whose_log_cannot_get_its_next_segment_refuses_binds_until_space_returns() {
    use x700::protocol::{status, Role};
    // Room for the first 64 MiB log segment and the tables, not for the
    // preallocated spare segment the log must have before it takes writes.
    let disk = SmallDisk::mount("100m");
    let data = disk.path().join("data");
    let node = common::Node::start_on(&data, &["--table-shards", "2"]);
    let mut client = x700::client::Client::connect(node.tcp, Role::Admin, "").unwrap();
    assert_eq!(bind(&mut client, 1), status::DISK_FULL);
    // Lookups carry on.
    assert!(!routes(&mut client, 1));
    // Space comes back: within a few housekeeping rounds binds resume.
    disk.resize("300m");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut g = 2;
    while bind(&mut client, g) != status::OK {
        assert!(std::time::Instant::now() < deadline, "binds never resumed");
        std::thread::sleep(std::time::Duration::from_millis(50));
        g += 1;
    }
    assert!(routes(&mut client, g));
    assert!(node.stop().success());
    let node = common::Node::start_on(&data, &[]);
    let mut client = x700::client::Client::connect(node.tcp, Role::Admin, "").unwrap();
    assert!(routes(&mut client, g));
    assert!(node.stop().success());
}

#[test]
fn a_node_whose_tables_cannot_grow_answers_disk_full_and_resumes() {
    use x700::protocol::{status, Role};
    let disk = SmallDisk::mount("200m");
    let data = disk.path().join("data");
    let node = common::Node::start_on(&data, &["--table-shards", "1"]);
    // Fill the disk but for a little room for the tables to grow.
    let filler = disk.path().join("filler");
    let free = {
        let output = Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(disk.path())
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    // The node refuses writes once less than the tables' headroom is free
    // (x700::log::TABLE_HEADROOM_BYTES): leave room for a few hundred binds
    // above it.
    let headroom = x700::log::TABLE_HEADROOM_BYTES;
    std::fs::write(&filler, vec![1u8; (free - headroom - 512 * 1024) as usize]).unwrap();
    let mut client = x700::client::Client::connect(node.tcp, Role::Admin, "").unwrap();
    let mut acknowledged = Vec::new();
    let mut g = 0;
    loop {
        match bind(&mut client, g) {
            status::OK => acknowledged.push(g),
            status::DISK_FULL => break,
            other => panic!("bind {g}: {}", status::name(other)),
        }
        g += 1;
        assert!(g < 200_000, "the disk never filled");
    }
    assert!(
        acknowledged.len() > 100,
        "filled after {} binds",
        acknowledged.len()
    );
    for &a in &acknowledged {
        assert!(routes(&mut client, a), "binding {a} lost");
    }
    std::fs::remove_file(&filler).unwrap();
    // Space comes back: within a few housekeeping rounds binds resume.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while bind(&mut client, g) != status::OK {
        assert!(
            std::time::Instant::now() < deadline,
            "binds never resumed once space was back"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
        g += 1;
    }
    acknowledged.push(g);
    assert!(node.stop().success());
    let node = common::Node::start_on(&data, &[]);
    let mut client = x700::client::Client::connect(node.tcp, Role::Admin, "").unwrap();
    for &a in &acknowledged {
        assert!(routes(&mut client, a), "binding {a} lost after restart");
    }
    assert!(node.stop().success());
}
