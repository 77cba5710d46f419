//! Proves that a start makes no snapshot image: openraft reads the current snapshot's meta when the node starts, and building the image then (a copy of every table file) made each restart after new writes cost the time and the disk of a full copy (11 GB and 23 s at 100 million bindings). After binds, a checkpoint and a clean stop, a new start leaves `DIR/snapshot` without an image and serves every binding.

mod common;

use x700::binding::LookupResult;
use x700::client::Client;
use x700::protocol::{status, Role};

fn images(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir.join("snapshot"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".image"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_restart_after_writes_makes_no_snapshot_image() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::Node::start_on(dir.path(), &[]);
    let mut client = Client::connect(node.tcp, Role::Platform, "").unwrap();
    for g in 0..2_000u64 {
        let reply = client
            .bind(&common::axb(
                common::x(g),
                &format!("138{g:08}"),
                &format!("139{g:08}"),
                "order",
            ))
            .unwrap();
        assert_eq!(reply.status, status::OK, "bind {g}");
    }
    drop(client);
    // A clean stop takes a checkpoint: the next start finds a snapshot.
    assert!(node.stop().success());
    assert!(
        dir.path().join("checkpoint.json").exists(),
        "no checkpoint at the stop"
    );
    for start in 0..2 {
        let node = common::Node::start_on(dir.path(), &[]);
        let mut client = Client::connect(node.tcp, Role::Switch, "").unwrap();
        for g in (0..2_000u64).step_by(37) {
            let answer = client
                .lookup(&common::ask(&format!("138{g:08}"), common::x(g)))
                .unwrap();
            assert!(
                matches!(answer, LookupResult::Route(_)),
                "start {start}, binding {g}: {answer:?}"
            );
        }
        assert_eq!(
            images(dir.path()),
            Vec::<String>::new(),
            "start {start} made an image"
        );
        drop(client);
        assert!(node.stop().success());
    }
}
