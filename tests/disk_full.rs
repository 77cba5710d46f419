//! Proves that a full disk is a clean, recoverable error: on a small tmpfs,
//! binds fail with `disk_full` before changing anything, every acknowledged
//! binding stays routable, lookups carry on, and binds succeed again once
//! space is freed. Needs root to mount the tmpfs (CI runs as root).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use x700::binding::{LookupResult, WriteError};
use x700::store::clock::FakeClock;
use x700::store::Store;
use x700::synth::Synthetic;

/// A tmpfs mounted for the test's lifetime.
struct SmallDisk {
    mount_point: PathBuf,
    _parent: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let parent = tempfile::tempdir().unwrap();
        let mount_point = parent.path().join("disk");
        std::fs::create_dir(&mount_point).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mount_point)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs failed: this test needs root"
        );
        SmallDisk {
            mount_point,
            _parent: parent,
        }
    }

    fn path(&self) -> &Path {
        &self.mount_point
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount_point).status();
    }
}

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
