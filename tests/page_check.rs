//! Proves that every table page is still checked before it is used now that a start no longer reads them all: a damaged page of a file lookups read (records) refuses the start; a damaged cold page stops a node that already serves (the background check finds it: exit status 74, the file and the page's offset named); an offline command that reads a damaged cold page stops before using it; and the repaired directory serves every binding.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use x700::binding::{BindRequest, BindingId};
use x700::store::clock::FakeClock;
use x700::store::Store;

/// `table::page_check::DAMAGED_PAGE_EXIT_STATUS`.
const DAMAGED_PAGE_EXIT_STATUS: i32 = 74;
/// Bindings in the fixture: 80 cold pages, 40 record pages in one shard.
const BINDINGS: u64 = 5_000;

fn request(i: u64) -> BindRequest {
    common::synthetic_bind(i, 0, 30 * 86_400)
}

/// A closed one-shard store with `BINDINGS` bindings and their ids.
fn fixture(dir: &Path) -> Vec<BindingId> {
    let clock = Arc::new(FakeClock::new(common::now_s()));
    let mut store = Store::create(dir, 1, clock).unwrap();
    let ids = (0..BINDINGS)
        .map(|i| store.bind(&request(i)).unwrap().binding_id)
        .collect();
    store.close().unwrap();
    ids
}

/// Flips one byte inside page `page` of `file`; returns the original
/// bytes.
fn damage(file: &Path, page: usize) -> Vec<u8> {
    let original = std::fs::read(file).unwrap();
    let mut bytes = original.clone();
    bytes[page * 4096 + 100] ^= 0x40;
    std::fs::write(file, bytes).unwrap();
    original
}

/// Runs `x700 serve` on `dir` until it exits (at most 30 s): its exit
/// code and stderr.
fn serve_until_exit(dir: &Path) -> (Option<i32>, String) {
    common::serve_on_until_exit(
        dir,
        &["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"],
        Duration::from_secs(30),
    )
}

#[test]
fn a_damaged_records_page_refuses_the_start() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let records = dir.path().join("shard-000/records");
    damage(&records, 7);
    let (code, stderr) = serve_until_exit(dir.path());
    assert!(code.is_some_and(|c| c != 0), "exit {code:?}: {stderr}");
    assert!(
        stderr.contains("shard-000/records: corrupt at byte offset 28672")
            && stderr.contains("does not match its checksum"),
        "{stderr}"
    );
}

#[test]
fn a_damaged_cold_page_stops_a_serving_node_and_the_repaired_one_serves() {
    let dir = tempfile::tempdir().unwrap();
    let ids = fixture(dir.path());
    let cold = dir.path().join("shard-000/cold");
    let original = damage(&cold, 60);
    let (code, stderr) = serve_until_exit(dir.path());
    assert_eq!(code, Some(DAMAGED_PAGE_EXIT_STATUS), "{stderr}");
    assert!(
        stderr.contains("shard-000/cold: corrupt at byte offset 245760"),
        "{stderr}"
    );
    std::fs::write(&cold, original).unwrap();
    let node = common::Node::start_on(dir.path(), &[]);
    let mut client =
        x700::client::Client::connect(node.tcp, x700::protocol::Role::Platform, "").unwrap();
    for id in ids.iter().step_by(97) {
        let binding = client.query(*id).unwrap();
        assert!(binding.is_ok(), "binding {id:?} lost: {binding:?}");
    }
    node.stop();
}

#[test]
fn an_offline_command_stops_before_using_a_damaged_cold_page() {
    let dir = tempfile::tempdir().unwrap();
    let ids = fixture(dir.path());
    // Slot 4000's cold record is on page 1 + 4000 * 64 / 4096 = 63.
    damage(&dir.path().join("shard-000/cold"), 63);
    let output = Command::new(common::binary())
        .args([
            "query",
            "--json",
            "--id",
            &ids[4000].0.to_string(),
            "--data",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(DAMAGED_PAGE_EXIT_STATUS),
        "{stderr}"
    );
    assert!(stderr.contains("corrupt at byte offset 258048"), "{stderr}");
    assert!(
        output.stdout.is_empty(),
        "answered from a damaged page: {output:?}"
    );
}
