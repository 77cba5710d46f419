//! Proves that the lookup path's files (records, index, overflow) are mapped with `MADV_HUGEPAGE` and the cold file is not (the `hg` flag in /proc/self/smaps), and that closing a store the way `x700 load` does (`close_and_uncache`) leaves the table files out of the page cache (mincore), while a plain close leaves the pages it wrote cached.

mod common;

use std::path::Path;
use std::sync::Arc;
use x700::binding::BindRequest;
use x700::store::clock::FakeClock;
use x700::store::Store;

const T0: u32 = 1_800_000_000;
const LOOKUP_FILES: [&str; 3] = ["records", "index", "overflow"];
const TABLE_FILES: [&str; 4] = ["records", "index", "overflow", "cold"];

fn request(i: u64) -> BindRequest {
    common::synthetic_bind(i, 1, 86_400)
}

fn filled(dir: &Path) -> Store {
    let mut store = Store::create(dir, 2, Arc::new(FakeClock::new(T0))).unwrap();
    for i in 0..50_000 {
        store.bind(&request(i)).unwrap();
    }
    store
}

/// The `VmFlags` of this process's mapping of `path`.
fn vm_flags(path: &Path) -> Vec<String> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let path = path.display().to_string();
    let mut in_file = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            in_file = line.ends_with(&path);
        } else if in_file {
            if let Some(flags) = line.strip_prefix("VmFlags:") {
                return flags.split_whitespace().map(str::to_string).collect();
            }
        }
    }
    panic!("{path} is not mapped");
}

/// Pages of the file at `path` in the page cache.
fn cached_pages(path: &Path) -> usize {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).unwrap();
    let len = usize::try_from(file.metadata().unwrap().len()).unwrap();
    // SAFETY: a fresh read-only shared mapping of a whole file, unmapped
    // below; its bytes are never read (mincore only asks the kernel).
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    assert_ne!(map, libc::MAP_FAILED);
    let mut resident = vec![0u8; len.div_ceil(4096)];
    // SAFETY: `resident` has one byte per page of the mapping.
    let status = unsafe { libc::mincore(map, len, resident.as_mut_ptr()) };
    assert_eq!(status, 0);
    // SAFETY: the mapping made above, with its length.
    unsafe { libc::munmap(map, len) };
    resident.iter().filter(|&&r| r & 1 == 1).count()
}

fn table_pages_cached(dir: &Path) -> usize {
    (0..2)
        .flat_map(|shard| TABLE_FILES.map(|name| dir.join(format!("shard-{shard:03}")).join(name)))
        .map(|path| cached_pages(&path))
        .sum()
}

#[test]
fn the_lookup_files_are_mapped_with_huge_pages_and_the_cold_file_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled(dir.path());
    let shard = dir.path().join("shard-000");
    for name in LOOKUP_FILES {
        let flags = vm_flags(&shard.join(name));
        assert!(flags.iter().any(|f| f == "hg"), "{name}: {flags:?}");
    }
    let flags = vm_flags(&shard.join("cold"));
    assert!(!flags.iter().any(|f| f == "hg"), "cold: {flags:?}");
    store.close().unwrap();
    // Reopened files are advised the same way.
    let store = Store::open(dir.path(), Arc::new(FakeClock::new(T0))).unwrap();
    let flags = vm_flags(&shard.join("records"));
    assert!(flags.iter().any(|f| f == "hg"), "records: {flags:?}");
    store.close().unwrap();
}

#[test]
fn a_close_for_handover_leaves_the_table_files_out_of_the_page_cache() {
    let plain = tempfile::tempdir().unwrap();
    filled(plain.path()).close().unwrap();
    assert!(
        table_pages_cached(plain.path()) > 100,
        "a plain close leaves what it wrote cached"
    );
    let handed_over = tempfile::tempdir().unwrap();
    filled(handed_over.path()).close_and_uncache().unwrap();
    assert_eq!(table_pages_cached(handed_over.path()), 0);
    // The files are whole: they open and answer.
    let store = Store::open(handed_over.path(), Arc::new(FakeClock::new(T0))).unwrap();
    store.verify().unwrap();
    store.close().unwrap();
}
