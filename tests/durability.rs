//! Proves what the node does with a damaged log or table on disk: a torn last log record (a crash mid-write) is cut off and everything before it is kept; a flipped bit inside the acknowledged part of the log, or inside a table page, makes the node refuse to start with an error naming the file and the byte offset, writing nothing; and once the damage is repaired the node starts with every binding; a checkpoint that fails is reported, keeps the log, and writes go on being acknowledged and durable. Each case runs a real `x700 serve`, killed with SIGKILL (so the writes live only in the log) or stopped cleanly (so they live in the checkpointed tables).

mod common;

use common::{axb, Node};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use x700::binding::{BindingId, LookupResult};
use x700::client::Client;
use x700::log::segment;
use x700::protocol::{status, Role};

const BINDINGS: u64 = 200;

fn bind_all(node: &Node, first: u64) -> Vec<BindingId> {
    let mut client = Client::connect(node.tcp, Role::Platform, "").unwrap();
    (first..first + BINDINGS)
        .map(|g| {
            let reply = client
                .bind(&axb(
                    common::x(g),
                    &format!("138{g:08}"),
                    &format!("139{g:08}"),
                    "d",
                ))
                .unwrap();
            assert_eq!(reply.status, status::OK);
            reply.binding_id.unwrap()
        })
        .collect()
}

fn assert_all_there(node: &Node, first: u64, ids: &[BindingId]) {
    let mut client = Client::connect(node.tcp, Role::Admin, "").unwrap();
    for (g, &id) in (first..).zip(ids) {
        match client
            .lookup(&common::ask(&format!("138{g:08}"), common::x(g)))
            .unwrap()
        {
            LookupResult::Route(route) => assert_eq!(route.binding_id, id, "binding {g}"),
            other => panic!("binding {g} lost: {other:?}"),
        }
    }
}

/// Runs `x700 serve` expecting it to refuse to start; returns its stderr.
fn refused(data: &Path) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_x700"))
        .args(["serve", "--listen", "127.0.0.1:0", "--no-pin", "--data"])
        .arg(data)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success(), "a damaged directory must not start");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("x700 serve started on a damaged directory");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !stdout.contains("x700 serving"),
        "served a damaged directory: {stdout}"
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn segments(data: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(data.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    found.sort();
    found
}

fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n != "LOCK") {
                files.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn a_torn_last_record_is_cut_and_everything_before_it_kept() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start_on(dir.path(), &[]);
    let ids = bind_all(&node, 1000);
    node.kill();
    let segment = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let first = segment::check_header(&bytes, nonce(dir.path())).unwrap();
    let end = segment::scan(&bytes, first).end as usize;
    // Half a record: a plausible length, a checksum, then the write
    // stopped.
    let torn = [200u8, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 9, 9, 9, 9, 9, 9];
    bytes[end..end + torn.len()].copy_from_slice(&torn);
    std::fs::write(&segment, &bytes).unwrap();
    let node = Node::start_on(dir.path(), &[]);
    assert_all_there(&node, 1000, &ids);
    // Writes go on after the cut.
    let more = bind_all(&node, 5000);
    node.terminate();
    let stopped = node.wait_exit();
    assert!(stopped.status.success());
    assert!(
        stopped.stderr.contains("cut a torn record"),
        "the cut is reported: {}",
        stopped.stderr
    );
    let node = Node::start_on(dir.path(), &[]);
    assert_all_there(&node, 1000, &ids);
    assert_all_there(&node, 5000, &more);
    assert!(node.stop().success());
}

#[test]
fn a_flipped_bit_in_the_acknowledged_log_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start_on(dir.path(), &[]);
    let ids = bind_all(&node, 1000);
    // Killed: the binds are in the log only, not yet in a checkpoint.
    node.kill();
    let segment_path = segments(dir.path()).pop().unwrap();
    let pristine = std::fs::read(&segment_path).unwrap();
    let scan = segment::scan(
        &pristine,
        segment::check_header(&pristine, nonce(dir.path())).unwrap(),
    );
    assert!(scan.offsets.len() > 10, "the log holds the binds");
    let victim = scan.offsets[scan.offsets.len() / 2] as usize + 40;
    let mut damaged = pristine.clone();
    damaged[victim] ^= 0x08;
    std::fs::write(&segment_path, &damaged).unwrap();
    let before = snapshot(dir.path());
    let stderr = refused(dir.path());
    assert!(
        stderr.contains(&segment_path.display().to_string()) && stderr.contains("offset"),
        "the error names the segment and the offset: {stderr}"
    );
    assert_eq!(before, snapshot(dir.path()), "the refusal wrote nothing");
    std::fs::write(&segment_path, &pristine).unwrap();
    let node = Node::start_on(dir.path(), &[]);
    assert_all_there(&node, 1000, &ids);
    assert!(node.stop().success());
}

#[test]
fn a_flipped_bit_in_a_table_page_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start_on(dir.path(), &["--table-shards", "1"]);
    let ids = bind_all(&node, 1000);
    // Stopped cleanly: the binds are in the checkpointed tables.
    assert!(node.stop().success());
    let records = dir.path().join("shard-000").join("records");
    let pristine = std::fs::read(&records).unwrap();
    let mut damaged = pristine.clone();
    // A byte of a hot record in the first page of items.
    damaged[4096 + 32 * 3 + 9] ^= 0x01;
    std::fs::write(&records, &damaged).unwrap();
    let before = snapshot(dir.path());
    let stderr = refused(dir.path());
    assert!(
        stderr.contains(&records.display().to_string()) && stderr.contains("offset 4096"),
        "the error names the file and the page's offset: {stderr}"
    );
    assert_eq!(before, snapshot(dir.path()), "the refusal wrote nothing");
    std::fs::write(&records, &pristine).unwrap();
    let node = Node::start_on(dir.path(), &[]);
    assert_all_there(&node, 1000, &ids);
    assert!(node.stop().success());
}

fn nonce(data: &Path) -> u64 {
    // The store file's header: magic (8), version (4), shards (4), nonce (8).
    let store = std::fs::read(data.join("store")).unwrap();
    u64::from_le_bytes(store[16..24].try_into().unwrap())
}

/// Guards item 13 of step 6: a checkpoint that failed returned an error to
/// openraft, which stopped its Raft core, and every later write was
/// refused. Now the failure is logged and counted, the previous checkpoint
/// and the whole log are kept, and binds go on being acknowledged: they
/// are all there after a crash and a restart, and checkpoints work again
/// once the cause is gone. The checkpoint fails at its last step: a
/// directory stands where the manifest's temporary copy is written, so
/// opening it fails (EISDIR, even for root) as a full disk would.
#[test]
fn a_failed_checkpoint_keeps_the_log_and_writes_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("x700.toml");
    std::fs::write(&config, "[log]\ncheckpoint_interval_s = 1\n").unwrap();
    let config = config.display().to_string();
    let node = Node::start_on(&data, &["--config", &config]);
    let obstacle = data.join("checkpoint.json.new");
    std::fs::create_dir(&obstacle).unwrap();
    let before = bind_all(&node, 1000);
    // A checkpoint is due every second while writes arrive: wait for one
    // (or more) to be tried and fail; stderr shows it below.
    std::thread::sleep(Duration::from_millis(2500));
    let after = bind_all(&node, 5000);
    let crashed = node.kill();
    assert!(
        crashed
            .stderr
            .contains("failed, the previous one is kept and the log with it"),
        "the failed checkpoint is reported: {}",
        crashed.stderr
    );
    std::fs::remove_dir(&obstacle).unwrap();
    let node = Node::start_on(&data, &["--config", &config]);
    assert_all_there(&node, 1000, &before);
    assert_all_there(&node, 5000, &after);
    node.terminate();
    let stopped = node.wait_exit();
    assert!(stopped.status.success(), "stderr: {}", stopped.stderr);
    assert!(!stopped.stderr.contains("failed"), "{}", stopped.stderr);
    let node = Node::start_on(&data, &[]);
    assert_all_there(&node, 1000, &before);
    assert_all_there(&node, 5000, &after);
    assert!(node.stop().success());
}
