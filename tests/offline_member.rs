//! Proves that offline commands keep a cluster member's tables the cluster's
//! own: `x700 bind axb`, `update`, `unbind` and `load` with `--data` on a
//! member's directory are refused (`cluster_member`) and change nothing,
//! while `stats`, `lookup`, `query` and `check` read it, replaying the
//! committed log into memory only, and leave every file as it was (issue
//! 10, item 4: offline writes bypassed the log, and even reads replayed and
//! checkpointed).

mod common;

use common::binary;
use common::cluster::{bind_many, init_cluster, start_members};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Every file under `dir` with its bytes, but `LOCK` (which names the
/// process that last held the directory).
fn snapshot_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n != "LOCK") {
                let name = path
                    .strip_prefix(dir)
                    .expect("under dir")
                    .to_string_lossy()
                    .to_string();
                files.insert(name, std::fs::read(&path).expect("read file"));
            }
        }
    }
    files
}

/// Runs `x700 ARGS`; returns its exit code and stdout.
fn x700(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(binary())
        .args(args)
        .output()
        .expect("run x700");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).to_string(),
    )
}

#[test]
fn offline_commands_never_write_a_members_tables() {
    let (dirs, mut nodes, rafts) = start_members(3);
    let (leader_id, leader) = init_cluster(&nodes, &rafts);
    let acked = bind_many(leader, 700_000, 20);
    // Stop a follower: its log holds the binds past its last checkpoint.
    let follower = *nodes
        .keys()
        .find(|id| **id != leader_id)
        .expect("a follower");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !common::cluster::routes_all(
        nodes[&follower].tcp,
        &acked,
        std::time::Duration::from_millis(200),
    ) {
        assert!(
            std::time::Instant::now() < deadline,
            "the follower never caught up"
        );
    }
    let node = nodes.remove(&follower).expect("follower");
    // SIGKILL: no checkpoint at the stop, so the tables lag the log.
    let _ = node.kill();
    let dir = dirs[usize::try_from(follower - 1).expect("small")].path();
    let data = dir.to_string_lossy().to_string();
    let before = snapshot_of(dir);

    let (x, id) = acked[0];
    let x = x.to_string();
    let id = id.0.to_string();
    let writes: Vec<Vec<&str>> = vec![
        vec![
            "bind",
            "axb",
            "--data",
            &data,
            "--x",
            "700100000999999",
            "--a",
            "13800000001",
            "--b",
            "13900000002",
            "--tenant",
            "1",
            "--order",
            "o-1",
            "--ttl-s",
            "3600",
            "--json",
        ],
        vec![
            "load",
            "--data",
            &data,
            "--bindings",
            "10",
            "--quiet",
            "--json",
        ],
        vec![
            "update", "--data", &data, "--id", &id, "--ttl-s", "60", "--json",
        ],
        vec!["unbind", "--data", &data, "--id", &id, "--json"],
    ];
    for args in &writes {
        let (code, out) = x700(args);
        assert_ne!(code, Some(0), "{args:?} was not refused: {out}");
        assert!(
            out.contains("cluster_member"),
            "{args:?} answered {out}, not cluster_member"
        );
    }
    assert!(
        snapshot_of(dir) == before,
        "a refused write changed the directory"
    );

    // Reads see the committed log, and write nothing.
    let (code, out) = x700(&["query", "--data", &data, "--id", &id, "--json"]);
    assert_eq!(code, Some(0), "query: {out}");
    assert!(
        out.contains(&x),
        "query does not show the replayed bind: {out}"
    );
    let (code, out) = x700(&[
        "lookup",
        "--data",
        &data,
        "--caller",
        "13800000001",
        "--called",
        &x,
        "--json",
    ]);
    assert_eq!(code, Some(0), "lookup: {out}");
    assert!(out.contains("13900000002"), "lookup: {out}");
    for args in [
        vec!["stats", "--data", &data, "--json"],
        vec!["check", "--data", &data, "--json"],
    ] {
        let (code, out) = x700(&args);
        assert_eq!(code, Some(0), "{args:?}: {out}");
    }
    let after = snapshot_of(dir);
    let changed: Vec<&String> = after
        .keys()
        .chain(before.keys())
        .filter(|name| after.get(*name) != before.get(*name))
        .collect();
    assert!(changed.is_empty(), "reads changed files: {changed:?}");

    for node in nodes.into_values() {
        assert!(node.stop().success());
    }
}
