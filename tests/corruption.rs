//! Proves that a damaged data directory is refused with an error naming the damaged file, never mapped blindly: each file of a real store is corrupted on disk (flipped header bytes, another format version with a valid checksum, truncation, files from another store, shard or kind, damaged meta copies, a copy taken while a writer had it open, a held lock), `Store::open` must fail with the expected `TableError`, the refusal must write nothing, and the repaired directory must open with every binding intact.

use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use x700::binding::{
    BindRequest, BindingId, Direction, LookupQuery, LookupResult, OrderRef, Parties,
};
use x700::number::{parse_real, parse_virtual, Number, XPolicy};
use x700::store::clock::FakeClock;
use x700::store::Store;
use x700::table::layout::{FileHeader, ShardMeta, StoreHeader, FORMAT_VERSION, HEADER_BYTES};
use x700::table::{ShardStats, TableError};

const T0: u32 = 1_800_000_000;

/// The four table files of a shard.
const TABLE_FILES: [&str; 4] = ["records", "cold", "index", "overflow"];
/// Bytes between the two copies in a meta file (docs: one copy per page).
const META_COPY_STRIDE: usize = 4096;

fn clock() -> Arc<FakeClock> {
    Arc::new(FakeClock::new(T0))
}

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
        tenant: 3,
        order: OrderRef::new(format!("order-{i}").as_bytes()).unwrap(),
        ttl_s: 86_400,
        direction: Direction::Both,
        recording: false,
    }
}

fn shard_file(dir: &Path, shard: u16, name: &str) -> PathBuf {
    dir.join(format!("shard-{shard:03}")).join(name)
}

fn name(path: &Path) -> String {
    path.display().to_string()
}

/// A closed store holding bindings, and what it must still hold after any
/// damage is repaired.
struct Fixture {
    dir: tempfile::TempDir,
    ids: Vec<BindingId>,
    /// Shard 0's counters at close: how long its files must be.
    shard0: ShardStats,
}

impl Fixture {
    /// `shards` shards, at least `bindings` bindings, and enough more that
    /// shard 0 uses overflow buckets (so truncating `overflow` can be seen).
    fn new(shards: u16, bindings: u64) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::create(dir.path(), shards, clock()).unwrap();
        let mut ids = Vec::new();
        for i in 0.. {
            let outcome = store.bind(&request(i)).unwrap();
            ids.push(outcome.binding_id);
            if i + 1 >= bindings && store.shard_stats()[0].index.overflow_used > 0 {
                break;
            }
            assert!(i < 50_000, "shard 0 never used an overflow bucket");
        }
        let shard0 = store.shard_stats()[0];
        store.close().unwrap();
        Fixture { dir, ids, shard0 }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn file(&self, name: &str) -> PathBuf {
        shard_file(self.path(), 0, name)
    }

    /// Opens the directory and checks every binding is there.
    fn assert_intact(&self) {
        assert_holds(self.path(), &self.ids);
    }
}

/// Opens `dir` and checks it holds exactly the bindings `ids` (each is
/// found by id and routes its A to its B; the table verifies), then closes
/// it.
fn assert_holds(dir: &Path, ids: &[BindingId]) {
    let store = Store::open(dir, clock()).unwrap_or_else(|e| panic!("intact store refused: {e}"));
    for (i, &id) in (0u64..).zip(ids) {
        let binding = store
            .query(id)
            .unwrap_or_else(|| panic!("binding {i} ({id:?}) lost"));
        assert_eq!(binding.x, x(i));
        let query = LookupQuery {
            caller: parse_real(&format!("138{i:08}")).unwrap(),
            x: x(i),
            extension: Number::NONE,
        };
        match store.lookup(&query) {
            LookupResult::Route(route) => assert_eq!(route.callee.digits(), format!("139{i:08}")),
            other => panic!("binding {i} does not route: {other:?}"),
        }
    }
    assert_eq!(store.stats().unwrap().bindings_live, ids.len() as u64);
    store.verify().unwrap();
    store.close().unwrap();
}

/// Opens `dir`, which must be refused; checks the refusal wrote nothing to
/// any shard file or the store file.
fn refused(dir: &Path) -> TableError {
    let before = snapshot(dir);
    let error = match Store::open(dir, clock()) {
        Ok(store) => {
            drop(store);
            panic!("a damaged directory was opened")
        }
        Err(error) => error,
    };
    assert!(
        snapshot(dir) == before,
        "refusing to open ({error}) changed files"
    );
    error
}

/// Every file under `dir` but the lock file (which records its holder),
/// with its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.file_name().unwrap() != "LOCK" {
                let bytes = std::fs::read(&path).unwrap();
                files.push((path, bytes));
            }
        }
    }
    files.sort();
    files
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

fn truncate(path: &Path, bytes: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(bytes)
        .unwrap();
}

/// Rewrites the CRC32C that ends the `len`-byte structure at `start`: the
/// checksum of every byte before its last four (layout.rs).
fn fix_checksum(bytes: &mut [u8], start: usize, len: usize) {
    let end = start + len;
    let checksum = crc32c::crc32c(&bytes[start..end - 4]);
    bytes[end - 4..end].copy_from_slice(&checksum.to_le_bytes());
}

fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn expect_bad_header(error: TableError, path: &Path, needle: &str) {
    match error {
        TableError::BadHeader {
            path: named,
            reason,
        } => {
            assert_eq!(named, name(path), "{reason}");
            assert!(
                reason.contains(needle),
                "reason {reason:?} should mention {needle:?}"
            );
        }
        other => panic!("expected a bad header in {}, got {other}", name(path)),
    }
}

#[test]
fn every_flipped_header_byte_of_a_table_file_is_refused() {
    let fixture = Fixture::new(1, 20);
    for file in TABLE_FILES {
        let path = fixture.file(file);
        let pristine = read(&path);
        for offset in 0..size_of::<FileHeader>() {
            let mut damaged = pristine.clone();
            damaged[offset] ^= 0x5A;
            write(&path, &damaged);
            let needle = if offset < offset_of!(FileHeader, format_version) {
                "magic"
            } else {
                "checksum"
            };
            expect_bad_header(refused(fixture.path()), &path, needle);
        }
        write(&path, &pristine);
    }
    fixture.assert_intact();
}

#[test]
fn every_flipped_byte_of_the_store_file_is_refused() {
    let fixture = Fixture::new(1, 5);
    let path = fixture.path().join("store");
    let pristine = read(&path);
    assert_eq!(pristine.len(), size_of::<StoreHeader>());
    for offset in 0..pristine.len() {
        let mut damaged = pristine.clone();
        damaged[offset] ^= 0x01;
        write(&path, &damaged);
        let needle = if offset < offset_of!(StoreHeader, format_version) {
            "not an x700 store"
        } else {
            "checksum"
        };
        expect_bad_header(refused(fixture.path()), &path, needle);
    }
    write(&path, &pristine);
    fixture.assert_intact();
}

#[test]
fn a_table_header_naming_another_kind_is_refused_even_with_a_valid_checksum() {
    let fixture = Fixture::new(1, 5);
    let path = fixture.file("overflow");
    let pristine = read(&path);
    let mut damaged = pristine.clone();
    put_u32(&mut damaged, offset_of!(FileHeader, file_kind), 3);
    fix_checksum(&mut damaged, 0, size_of::<FileHeader>());
    write(&path, &damaged);
    expect_bad_header(refused(fixture.path()), &path, "kind");
    // The index file itself under the overflow file's name: the same.
    std::fs::copy(fixture.file("index"), &path).unwrap();
    expect_bad_header(refused(fixture.path()), &path, "kind");
    // A header claiming another item size.
    let mut damaged = pristine.clone();
    put_u32(&mut damaged, offset_of!(FileHeader, item_bytes), 32);
    fix_checksum(&mut damaged, 0, size_of::<FileHeader>());
    write(&path, &damaged);
    expect_bad_header(refused(fixture.path()), &path, "item");
    write(&path, &pristine);
    fixture.assert_intact();
}

fn expect_wrong_version(error: TableError, path: &Path) {
    match error {
        TableError::WrongVersion {
            path: named,
            found,
            expected,
        } => {
            assert_eq!(named, name(path));
            assert_eq!((found, expected), (FORMAT_VERSION + 1, FORMAT_VERSION));
        }
        other => panic!("expected wrong version in {}, got {other}", name(path)),
    }
}

#[test]
fn another_format_version_is_refused_by_name() {
    let fixture = Fixture::new(1, 5);
    let version_at = offset_of!(FileHeader, format_version);
    for file in TABLE_FILES {
        let path = fixture.file(file);
        let pristine = read(&path);
        let mut damaged = pristine.clone();
        put_u32(&mut damaged, version_at, FORMAT_VERSION + 1);
        fix_checksum(&mut damaged, 0, size_of::<FileHeader>());
        write(&path, &damaged);
        expect_wrong_version(refused(fixture.path()), &path);
        write(&path, &pristine);
    }

    // The meta file: a valid copy of another version is refused even when
    // the other copy is of this version.
    let path = fixture.file("meta");
    let pristine = read(&path);
    for copies in [&[0][..], &[META_COPY_STRIDE], &[0, META_COPY_STRIDE]] {
        let mut damaged = pristine.clone();
        for &copy in copies {
            put_u32(
                &mut damaged,
                copy + offset_of!(ShardMeta, format_version),
                FORMAT_VERSION + 1,
            );
            fix_checksum(&mut damaged, copy, size_of::<ShardMeta>());
        }
        write(&path, &damaged);
        expect_wrong_version(refused(fixture.path()), &path);
    }
    write(&path, &pristine);

    let path = fixture.path().join("store");
    let pristine = read(&path);
    let mut damaged = pristine.clone();
    put_u32(
        &mut damaged,
        offset_of!(StoreHeader, format_version),
        FORMAT_VERSION + 1,
    );
    fix_checksum(&mut damaged, 0, size_of::<StoreHeader>());
    write(&path, &damaged);
    expect_wrong_version(refused(fixture.path()), &path);
    write(&path, &pristine);
    fixture.assert_intact();
}

fn expect_truncated(error: TableError, path: &Path, file_bytes: u64, needed_bytes: u64) {
    match error {
        TableError::Truncated {
            path: named,
            file_bytes: found,
            needed_bytes: needed,
        } => {
            assert_eq!(named, name(path));
            assert_eq!((found, needed), (file_bytes, needed_bytes));
        }
        other => panic!("expected truncation of {}, got {other}", name(path)),
    }
}

#[test]
fn table_files_shorter_than_the_meta_says_are_refused() {
    let fixture = Fixture::new(1, 40);
    let counters = fixture.shard0.counters;
    let index = fixture.shard0.index;
    assert!(counters.records_used >= 40 && index.overflow_used >= 1);
    let header = HEADER_BYTES as u64;
    // (file, items the meta says it holds, bytes per item)
    let needs = [
        ("records", counters.records_used, 32u64),
        ("cold", counters.records_used, 64),
        ("index", index.primaries(), 64),
        ("overflow", index.overflow_used, 64),
    ];
    for (file, items, item_bytes) in needs {
        let path = fixture.file(file);
        let pristine = read(&path);
        let needed = header + u64::from(items) * item_bytes;
        assert!(pristine.len() as u64 >= needed);
        // One item short, and no items at all.
        for short in [needed - item_bytes, header] {
            write(&path, &pristine);
            truncate(&path, short);
            expect_truncated(refused(fixture.path()), &path, short, needed);
        }
        // Shorter than the header page itself.
        for short in [0, 63, header - 1] {
            truncate(&path, short);
            expect_truncated(refused(fixture.path()), &path, short, header);
        }
        // Not a whole number of items: cut mid-record.
        write(&path, &pristine);
        truncate(&path, needed - 1);
        expect_bad_header(refused(fixture.path()), &path, "whole");
        // Cut exactly to what the meta needs: nothing is lost.
        write(&path, &pristine);
        truncate(&path, needed);
        fixture.assert_intact();
        write(&path, &pristine);
    }
    fixture.assert_intact();
}

#[test]
fn truncated_meta_and_store_files_are_refused() {
    let fixture = Fixture::new(1, 5);
    let meta = fixture.file("meta");
    let pristine = read(&meta);
    for short in [0, 100] {
        truncate(&meta, short);
        expect_bad_header(refused(fixture.path()), &meta, "no valid meta copy");
    }
    write(&meta, &pristine);
    let store = fixture.path().join("store");
    let pristine = read(&store);
    for short in [0, 32, 63] {
        truncate(&store, short);
        expect_bad_header(refused(fixture.path()), &store, "expected 64");
    }
    write(&store, &pristine);
    fixture.assert_intact();
}

#[test]
fn files_of_another_data_directory_are_refused() {
    let ours = Fixture::new(1, 5);
    let theirs = Fixture::new(1, 5);
    for file in TABLE_FILES {
        let (our_path, their_path) = (ours.file(file), theirs.file(file));
        let (our_bytes, their_bytes) = (read(&our_path), read(&their_path));
        // Swap the two stores' files: each refuses the other's.
        write(&our_path, &their_bytes);
        write(&their_path, &our_bytes);
        expect_bad_header(refused(ours.path()), &our_path, "of store");
        expect_bad_header(refused(theirs.path()), &their_path, "of store");
        write(&our_path, &our_bytes);
        write(&their_path, &their_bytes);
    }
    let meta = ours.file("meta");
    let pristine = read(&meta);
    std::fs::copy(theirs.file("meta"), &meta).unwrap();
    expect_bad_header(
        refused(ours.path()),
        &meta,
        "another shard or data directory",
    );
    write(&meta, &pristine);
    // Their store file over ours: every shard now belongs elsewhere.
    let store = ours.path().join("store");
    let pristine = read(&store);
    std::fs::copy(theirs.path().join("store"), &store).unwrap();
    expect_bad_header(
        refused(ours.path()),
        &meta,
        "another shard or data directory",
    );
    write(&store, &pristine);
    ours.assert_intact();
    theirs.assert_intact();
}

#[test]
fn files_of_another_shard_are_refused() {
    let fixture = Fixture::new(2, 10);
    for file in TABLE_FILES {
        let path = fixture.file(file);
        let pristine = read(&path);
        std::fs::copy(shard_file(fixture.path(), 1, file), &path).unwrap();
        expect_bad_header(refused(fixture.path()), &path, "belongs to shard 1/2");
        write(&path, &pristine);
    }
    let meta = fixture.file("meta");
    let pristine = read(&meta);
    std::fs::copy(shard_file(fixture.path(), 1, "meta"), &meta).unwrap();
    expect_bad_header(refused(fixture.path()), &meta, "another shard");
    write(&meta, &pristine);
    fixture.assert_intact();
}

#[test]
fn a_meta_file_with_both_copies_damaged_is_refused() {
    let fixture = Fixture::new(1, 5);
    let path = fixture.file("meta");
    let pristine = read(&path);
    // Bad magic in one copy, a bad checksum in the other, then the reverse.
    for (magic_copy, sum_copy) in [(0, META_COPY_STRIDE), (META_COPY_STRIDE, 0)] {
        let mut damaged = pristine.clone();
        damaged[magic_copy] ^= 0xFF;
        damaged[sum_copy + offset_of!(ShardMeta, records_used)] ^= 0x01;
        write(&path, &damaged);
        match refused(fixture.path()) {
            TableError::BadHeader {
                path: named,
                reason,
            } => {
                assert_eq!(named, name(&path));
                assert!(
                    reason.contains("no valid meta copy")
                        && reason.contains("bad magic")
                        && reason.contains("checksum mismatch"),
                    "{reason}"
                );
            }
            other => panic!("expected a bad meta, got {other}"),
        }
    }
    write(&path, &pristine);
    fixture.assert_intact();
}

#[test]
fn one_damaged_meta_copy_is_survived() {
    // Open and close once more without writing: both copies now describe
    // the same clean state, so either alone must open the store.
    let fixture = Fixture::new(1, 30);
    {
        let mut store = Store::open(fixture.path(), clock()).unwrap();
        store.checkpoint().unwrap();
        store.close().unwrap();
    }
    let pristine = read(&fixture.file("meta"));
    for copy in [0, META_COPY_STRIDE] {
        for damage in [
            offset_of!(ShardMeta, magic),
            offset_of!(ShardMeta, live_bindings),
            offset_of!(ShardMeta, checksum),
        ] {
            let scratch = tempfile::tempdir().unwrap();
            copy_dir(fixture.path(), scratch.path());
            let path = shard_file(scratch.path(), 0, "meta");
            let mut damaged = pristine.clone();
            damaged[copy + damage] ^= 0x10;
            write(&path, &damaged);
            assert_holds(scratch.path(), &fixture.ids);
            // Reopened again after the survivor wrote its next copy.
            assert_holds(scratch.path(), &fixture.ids);
        }
    }
    fixture.assert_intact();
}

#[test]
fn a_damaged_meta_copy_never_falls_back_to_a_stale_state() {
    // A checkpoint writes both meta copies (under its journal), so after
    // it either copy alone holds the newest state: damaging one must open
    // every binding, never an older checkpoint whose pages were since
    // overwritten in place.
    let fixture = Fixture::new(1, 5);
    let path = fixture.file("meta");
    let pristine = read(&path);
    for copy in [0, META_COPY_STRIDE] {
        let mut damaged = pristine.clone();
        damaged[copy + offset_of!(ShardMeta, records_used)] ^= 0x01;
        write(&path, &damaged);
        let scratch = tempfile::tempdir().unwrap();
        copy_dir(fixture.path(), scratch.path());
        assert_holds(scratch.path(), &fixture.ids);
    }
    write(&path, &pristine);
    fixture.assert_intact();
}

#[test]
fn a_directory_copied_while_a_writer_had_it_open_holds_its_last_checkpoint() {
    // Copying the files of a live store is what a crash leaves on disk:
    // the private mapping keeps every change since the last checkpoint in
    // memory, so the copy holds exactly that checkpoint, whole.
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::create(dir.path(), 2, clock()).unwrap();
    let ids: Vec<BindingId> = (0..20)
        .map(|i| store.bind(&request(i)).unwrap().binding_id)
        .collect();
    let crashed = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), crashed.path());
    {
        let copy = Store::open(crashed.path(), clock()).unwrap();
        assert_eq!(copy.stats().unwrap().bindings_live, 0);
        copy.verify().unwrap();
    }
    // After a checkpoint, a copy holds every binding.
    store.checkpoint().unwrap();
    let checkpointed = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), checkpointed.path());
    assert_holds(checkpointed.path(), &ids);
    store.close().unwrap();
    assert_holds(dir.path(), &ids);
}

#[test]
fn meta_counters_beyond_the_files_are_refused() {
    let fixture = Fixture::new(1, 20);
    let path = fixture.file("meta");
    let pristine = read(&path);
    let records_used = fixture.shard0.counters.records_used;
    let cases = [
        (offset_of!(ShardMeta, index_level), 24, "index level"),
        (offset_of!(ShardMeta, index_split), 1 << 30, "index level"),
        (
            offset_of!(ShardMeta, free_head),
            records_used + 2,
            "free list",
        ),
        (
            offset_of!(ShardMeta, reclaim_cursor),
            records_used + 1,
            "cursor",
        ),
    ];
    for (field, value, needle) in cases {
        let mut damaged = pristine.clone();
        for copy in [0, META_COPY_STRIDE] {
            put_u32(&mut damaged, copy + field, value);
            fix_checksum(&mut damaged, copy, size_of::<ShardMeta>());
        }
        write(&path, &damaged);
        expect_bad_header(refused(fixture.path()), &path, needle);
    }
    write(&path, &pristine);
    fixture.assert_intact();
}

#[test]
fn missing_files_are_named() {
    let fixture = Fixture::new(1, 5);
    for file in TABLE_FILES.iter().chain(&["meta"]) {
        let path = fixture.file(file);
        let pristine = read(&path);
        std::fs::remove_file(&path).unwrap();
        match refused(fixture.path()) {
            TableError::Io { path: named, .. } => assert_eq!(named, name(&path)),
            other => panic!("expected an i/o error naming {file}, got {other}"),
        }
        write(&path, &pristine);
    }
    let store = fixture.path().join("store");
    let pristine = read(&store);
    std::fs::remove_file(&store).unwrap();
    assert!(matches!(
        refused(fixture.path()),
        TableError::Missing { .. }
    ));
    write(&store, &pristine);
    fixture.assert_intact();
}

#[test]
fn the_directory_lock_refuses_a_second_opener() {
    let fixture = Fixture::new(1, 5);
    let store = Store::open(fixture.path(), clock()).unwrap();
    for attempt in [
        Store::open(fixture.path(), clock()),
        Store::create(fixture.path(), 1, clock()),
        Store::open_or_create(fixture.path(), 1, clock()),
    ] {
        match attempt {
            Err(TableError::Locked { path, holder }) => {
                // The lock is the directory's own flock: the error names
                // the directory, not the LOCK note inside it.
                assert_eq!(path, name(fixture.path()));
                assert!(
                    holder.contains(&format!("pid {}", std::process::id())),
                    "{holder}"
                );
            }
            Err(other) => panic!("expected the lock to refuse, got {other}"),
            Ok(_) => panic!("a locked directory was opened twice"),
        }
    }
    // The holder still works, and once it closes the next opener gets in.
    assert!(store.query(fixture.ids[0]).is_some());
    store.close().unwrap();
    fixture.assert_intact();
}

/// Regression (open bug): the meta's overflow free-list head must name an
/// overflow bucket already handed out, as the record free-list head must
/// name a used slot (that one is checked). `Shard::open` accepts a
/// checksummed meta whose `overflow_free_head` points past `overflow_used`;
/// binds then take that bucket from the free list while `overflow_used`
/// still counts it as never used, so it can be handed out twice: with this
/// fixture, `verify` fails after 6 binds ("links past the overflow area")
/// and the 46th bind panics in a split ("records and index disagree").
#[test]
fn regression_an_overflow_free_head_past_the_used_buckets_is_refused() {
    let fixture = Fixture::new(1, 20);
    let path = fixture.file("meta");
    let pristine = read(&path);
    let used = fixture.shard0.index.overflow_used;
    let mut damaged = pristine.clone();
    for copy in [0, META_COPY_STRIDE] {
        put_u32(
            &mut damaged,
            copy + offset_of!(ShardMeta, overflow_free_head),
            used + 3,
        );
        fix_checksum(&mut damaged, copy, size_of::<ShardMeta>());
    }
    write(&path, &damaged);
    // Any reason will do, as long as the meta file is named.
    expect_bad_header(refused(fixture.path()), &path, "");
    write(&path, &pristine);
    fixture.assert_intact();
}
