//! A data directory: its lock, its `store` file, and its shards, each owning
//! the X numbers that hash to it. The store routes every operation to the
//! shard of its X and supplies the time from its clock.
//!
//! Directory layout (docs/STORAGE.md):
//! ```text
//! DIR/LOCK            names the holder's pid (DIR itself is flock'd)
//! DIR/store           StoreHeader: format, shard count, nonce
//! DIR/member          node and cluster id of a cluster member (member_file)
//! DIR/shard-000/      meta, records, cold, index, overflow
//! ...
//! ```

pub mod batch;
pub mod checksum;
pub mod clock;
pub mod lock;
pub mod member_file;
pub mod screen;
pub mod shard_set;

use crate::binding::{
    BindRequest, Binding, BindingId, LookupQuery, LookupResult, Update, WriteError,
};
use crate::number::Number;
use crate::table::file::ShardIdentity;
use crate::table::layout::{checksum_of, FileKind, StoreHeader, FORMAT_VERSION, STORE_MAGIC};
use crate::table::{BindOutcome, Shard, ShardStats, TableError};
use crate::tenant::Control;
use clock::Clock;
use lock::DirLock;
pub use shard_set::ShardSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Default shard count for a new data directory.
pub const SHARDS_DEFAULT: u16 = 8;
/// Most shards a directory may have.
pub const SHARDS_MAX: u16 = 256;
/// Name of the store file.
const STORE_FILE_NAME: &str = "store";

/// A file whose pages a background thread checks after the start: the
/// check and a handle on the file (`Store::check_for_serving`).
pub type BackgroundCheck = (
    std::sync::Arc<crate::table::page_check::PageCheck>,
    std::fs::File,
);

/// An open data directory: all its shards, and the clock that supplies
/// `now_s` to every operation.
pub struct Store {
    dir: PathBuf,
    set: ShardSet,
    clock: Arc<dyn Clock>,
    nonce: u64,
    /// The cold files' page checks left after `check_for_serving`, for a
    /// background thread (`take_page_checks`).
    page_checks: Vec<BackgroundCheck>,
}

/// Totals over all shards, for `stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Live bindings.
    pub bindings_live: u64,
    /// Shards.
    pub shards: u16,
    /// Record slots handed out (live + free list + retired).
    pub records_used: u64,
    /// Index data entries.
    pub index_entries: u64,
    /// Overflow buckets in use.
    pub overflow_buckets_live: u64,
    /// Bytes a lookup can touch: records, index and overflow files, whole.
    pub lookup_bytes: u64,
    /// Bytes of the whole directory.
    pub disk_bytes: u64,
}

impl Store {
    /// Opens the directory, creating it with `shards_if_new` shards if it
    /// holds no store yet.
    pub fn open_or_create(
        dir: &Path,
        shards_if_new: u16,
        clock: Arc<dyn Clock>,
    ) -> Result<Store, TableError> {
        if dir.join(STORE_FILE_NAME).exists() {
            Store::open(dir, clock)
        } else {
            Store::create(dir, shards_if_new, clock)
        }
    }

    /// Creates a new store in `dir` (created if missing; must not hold one).
    pub fn create(
        dir: &Path,
        shard_count: u16,
        clock: Arc<dyn Clock>,
    ) -> Result<Store, TableError> {
        assert!(
            (1..=SHARDS_MAX).contains(&shard_count),
            "shard count {shard_count} out of range"
        );
        crate::sys::create_private_dir_all(dir).map_err(|e| TableError::io(dir, e))?;
        let lock = DirLock::acquire(dir)?;
        // Making a store here makes this x700's directory, even if it
        // already existed (an empty mount point, a temporary directory):
        // it is made private like one x700 created.
        crate::sys::make_private_dir(dir).map_err(|e| TableError::io(dir, e))?;
        lock::warn_if_loose(dir);
        let now_s = u64::from(clock.now_s());
        let mut header = StoreHeader {
            magic: STORE_MAGIC,
            format_version: FORMAT_VERSION,
            shard_count: u32::from(shard_count),
            store_nonce: nonce(),
            created_at_s: now_s,
            reserved: [0; 28],
            checksum: 0,
        };
        header.checksum = checksum_of(&header);
        let mut shards = Vec::with_capacity(usize::from(shard_count));
        for shard_id in 0..shard_count {
            let identity = ShardIdentity {
                shard_id,
                shard_count,
                store_nonce: header.store_nonce,
            };
            shards.push(Shard::create(&shard_dir(dir, shard_id), identity, now_s)?);
        }
        let control = open_control(dir)?;
        // The store file is written last: a directory without it holds no
        // store, so a crash during creation leaves nothing half-made that
        // `open` would accept.
        let path = dir.join(STORE_FILE_NAME);
        write_durably(&path, bytemuck::bytes_of(&header)).map_err(|e| TableError::io(&path, e))?;
        Ok(Store {
            dir: dir.to_path_buf(),
            set: ShardSet::new(
                shard_count,
                shards.into_iter().map(Some).collect(),
                Arc::new(lock),
                Arc::new(control),
            ),
            clock,
            nonce: header.store_nonce,
            page_checks: Vec::new(),
        })
    }

    /// Opens an existing store: maps every shard and checks its headers.
    pub fn open(dir: &Path, clock: Arc<dyn Clock>) -> Result<Store, TableError> {
        let path = dir.join(STORE_FILE_NAME);
        if !path.exists() {
            return Err(TableError::Missing {
                path: dir.display().to_string(),
            });
        }
        let lock = DirLock::acquire(dir)?;
        lock::warn_if_loose(dir);
        // A snapshot from the leader whose swap a restart (or a crash)
        // interrupted is moved in before anything is read.
        crate::table::snapshot::finish_swap(dir)
            .map_err(|e| TableError::io(dir, std::io::Error::other(e)))?;
        let bytes = std::fs::read(&path).map_err(|e| TableError::io(&path, e))?;
        let bad = |reason: String| TableError::BadHeader {
            path: path.display().to_string(),
            reason,
        };
        if bytes.len() != std::mem::size_of::<StoreHeader>() {
            return Err(bad(format!("{} bytes, expected 64", bytes.len())));
        }
        let header: StoreHeader = bytemuck::pod_read_unaligned(&bytes);
        if header.magic != STORE_MAGIC {
            return Err(bad("not an x700 store file".into()));
        }
        if header.checksum != checksum_of(&header) {
            return Err(bad("checksum mismatch".into()));
        }
        if header.format_version != FORMAT_VERSION {
            return Err(TableError::WrongVersion {
                path: path.display().to_string(),
                found: header.format_version,
                expected: FORMAT_VERSION,
            });
        }
        let shard_count = u16::try_from(header.shard_count)
            .ok()
            .filter(|n| (1..=SHARDS_MAX).contains(n))
            .ok_or_else(|| bad(format!("shard count {} out of range", header.shard_count)))?;
        let mut shards = Vec::with_capacity(usize::from(shard_count));
        for shard_id in 0..shard_count {
            let identity = ShardIdentity {
                shard_id,
                shard_count,
                store_nonce: header.store_nonce,
            };
            shards.push(Shard::open(&shard_dir(dir, shard_id), identity)?);
        }
        let control = open_control(dir)?;
        Ok(Store {
            dir: dir.to_path_buf(),
            set: ShardSet::new(
                shard_count,
                shards.into_iter().map(Some).collect(),
                Arc::new(lock),
                Arc::new(control),
            ),
            clock,
            nonce: header.store_nonce,
            page_checks: Vec::new(),
        })
    }

    /// The directory's control state (tenants, blocklists).
    pub fn control(&self) -> &Arc<Control> {
        self.set.control()
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The clock's current second.
    pub fn now_s(&self) -> u32 {
        self.clock.now_s()
    }

    /// Number of shards.
    pub fn shard_count(&self) -> u16 {
        self.set.shard_count()
    }

    /// The shards.
    pub fn shard_set(&self) -> &ShardSet {
        &self.set
    }

    /// The shards, writable (recovery replays the log into them).
    pub fn shard_set_mut(&mut self) -> &mut ShardSet {
        &mut self.set
    }

    /// The random number that ties every file of this directory together.
    pub fn nonce(&self) -> u64 {
        self.nonce
    }

    /// The clock.
    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.clock)
    }

    /// Splits the store into `parts` shard sets, shard `s` going to part
    /// `s % parts`: one per core, each the only writer of its shards. The
    /// directory lock is shared and held until every part is closed.
    pub fn split(self, parts: usize) -> Vec<ShardSet> {
        self.set.split(parts)
    }

    /// Creates a binding (or returns the identical live one).
    pub fn bind(&mut self, request: &BindRequest) -> Result<BindOutcome, WriteError> {
        let now_s = self.now_s();
        self.set.bind(request, now_s)
    }

    /// Removes a binding by id; returns what it was.
    pub fn unbind(&mut self, id: BindingId) -> Result<Binding, WriteError> {
        let now_s = self.now_s();
        self.set.unbind(id, now_s)
    }

    /// Removes the live binding on X that `party` belongs to (a real number,
    /// or an extension key for AXE).
    pub fn unbind_by_party(&mut self, x: Number, party: Number) -> Result<Binding, WriteError> {
        let now_s = self.now_s();
        self.set.unbind_by_party(x, party, now_s)
    }

    /// The id of the live binding on X that `party` belongs to.
    pub fn find_by_party(&self, x: Number, party: Number) -> Option<BindingId> {
        self.set.find_by_party(x, party, self.now_s())
    }

    /// Changes a binding.
    pub fn update(&mut self, id: BindingId, update: &Update) -> Result<Binding, WriteError> {
        let now_s = self.now_s();
        self.set.update(id, update, now_s)
    }

    /// The live binding with this id.
    pub fn query(&self, id: BindingId) -> Option<Binding> {
        self.set.query(id, self.now_s())
    }

    /// Answers one lookup.
    pub fn lookup(&self, query: &LookupQuery) -> LookupResult {
        self.set.lookup(query, self.now_s())
    }

    /// Answers `queries[i]` into `answers[i]`, prefetching across the batch.
    pub fn lookup_batch(&self, queries: &[LookupQuery], answers: &mut [LookupResult]) {
        self.set.lookup_batch(queries, answers, self.now_s());
    }

    /// Runs the expiry sweep on every shard, examining up to `budget_per_shard`
    /// slots each. Returns the bindings removed.
    pub fn reclaim_expired(&mut self, budget_per_shard: u32) -> u64 {
        let now_s = self.now_s();
        self.set.reclaim_expired(now_s, budget_per_shard)
    }

    /// Per-shard sizes and counters.
    pub fn shard_stats(&self) -> Vec<ShardStats> {
        self.set.shard_stats()
    }

    /// Totals, including the size of every file in the directory.
    pub fn stats(&self) -> Result<StoreStats, TableError> {
        let mut stats = StoreStats {
            shards: self.set.shard_count(),
            ..StoreStats::default()
        };
        for shard in self.set.shard_stats() {
            stats.bindings_live += u64::from(shard.counters.live_bindings);
            stats.records_used += u64::from(shard.counters.records_used);
            stats.index_entries += u64::from(shard.index.entries);
            stats.overflow_buckets_live += u64::from(shard.index.overflow_live);
            stats.lookup_bytes += shard.records_bytes + shard.index_bytes + shard.overflow_bytes;
        }
        stats.disk_bytes = directory_bytes(&self.dir).map_err(|e| TableError::io(&self.dir, e))?;
        Ok(stats)
    }

    /// Checks every page of every table file against its checksum (reads
    /// every byte): a damaged page is reported with its file and offset.
    pub fn verify_pages(&self) -> Result<(), TableError> {
        self.set
            .owned()
            .try_for_each(crate::table::Shard::verify_pages)
    }

    /// Checks the pages before anything is served from them, in
    /// parallel on every core: the files a lookup reads (records, index,
    /// overflow) here and now; the cold files, which no lookup reads, page
    /// by page on first touch, and what is left by the checks
    /// `take_page_checks` hands to a background thread
    /// (`PageCheck::check_all`). A damaged page is reported with its file
    /// and offset.
    pub fn check_for_serving(&mut self) -> Result<(), TableError> {
        let cold = self
            .set
            .owned_mut()
            .map(crate::table::Shard::arm_cold_check)
            .collect::<Result<Vec<_>, _>>()?;
        let jobs: Vec<_> = self
            .set
            .owned()
            .flat_map(crate::table::Shard::hot_page_checks)
            .collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let threads = std::thread::available_parallelism()
            .map_or(1, std::num::NonZero::get)
            .min(jobs.len().max(1));
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| -> Result<(), TableError> {
                        loop {
                            let job = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            match jobs.get(job) {
                                Some(check) => check()?,
                                None => return Ok(()),
                            }
                        }
                    })
                })
                .collect();
            workers.into_iter().try_for_each(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
        })?;
        self.page_checks = cold;
        Ok(())
    }

    /// The cold files' page checks `check_for_serving` left, for a
    /// background thread; without one, each page is checked on first touch.
    pub fn take_page_checks(&mut self) -> Vec<BackgroundCheck> {
        std::mem::take(&mut self.page_checks)
    }

    /// Writes every shard to disk.
    pub fn checkpoint(&mut self) -> Result<(), TableError> {
        self.set.checkpoint()
    }

    /// Flushes and closes every shard, marking them clean.
    pub fn close(self) -> Result<(), TableError> {
        let control = Arc::clone(self.set.control());
        let applied_next = self
            .set
            .owned()
            .map(Shard::applied_log_index)
            .min()
            .unwrap_or(0);
        self.set.close()?;
        control
            .persist(&control.registry(), applied_next)
            .map_err(|e| TableError::io(&self.dir.join(crate::tenant::REGISTRY_NAME), e))
    }

    /// Closes like `close`, then drops the table files from the page cache
    /// (docs/STORAGE.md section 12, "Huge pages on the lookup path"). A
    /// bulk load's own faults and checkpoint writes leave the lookup files
    /// cached in small pieces, which a serving node can only map 4 KiB at a
    /// time; read again on its first touch, they come back as 2 MiB pages.
    /// The cold file, which no lookup reads, is dropped too, so that it
    /// does not hold memory the lookup files need at the start.
    pub fn close_and_uncache(self) -> Result<(), TableError> {
        let dirs: Vec<PathBuf> = self.set.owned().map(|s| s.dir().to_path_buf()).collect();
        self.close()?;
        for dir in dirs {
            for kind in [
                FileKind::Records,
                FileKind::Index,
                FileKind::Overflow,
                FileKind::Cold,
            ] {
                let path = dir.join(kind.file_name());
                let file = std::fs::File::open(&path).map_err(|e| TableError::io(&path, e))?;
                crate::sys::drop_cached(&file, 0, 0);
            }
        }
        Ok(())
    }

    /// Closes every shard without saving what changed since its last
    /// checkpoint: a read-only look replays the log into memory only.
    pub fn discard(self) {
        self.set.discard();
    }

    /// Reads every record and index entry and checks them (slow; for tests
    /// and `x700 check`).
    pub fn verify(&self) -> Result<(), TableError> {
        self.set.verify()
    }
}

/// A lookup whose numbers are all present and well formed.
#[inline(always)]
pub(crate) fn query_is_well_formed(query: &LookupQuery) -> bool {
    !query.caller.is_none()
        && !query.caller.is_extension()
        && !query.x.is_none()
        && !query.x.is_extension()
        && (query.extension.is_none() || query.extension.is_extension())
}

fn shard_dir(dir: &Path, shard_id: u16) -> PathBuf {
    dir.join(format!("shard-{shard_id:03}"))
}

/// A random 64-bit value from the kernel, with the time as a fallback.
fn nonce() -> u64 {
    let mut bytes = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_ok()
    {
        return u64::from_le_bytes(bytes);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    #[allow(clippy::cast_possible_truncation)] // any 64 bits will do
    let value = nanos as u64 ^ u64::from(std::process::id());
    value
}

fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = crate::sys::create_private(std::fs::OpenOptions::new().write(true), path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Bytes allocated on disk under `dir` (files' lengths).
fn directory_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        total += if metadata.is_dir() {
            directory_bytes(&entry.path())?
        } else {
            metadata.len()
        };
    }
    Ok(total)
}

/// The directory's registry (`tenant::Control`), read from its checkpoint file.
fn open_control(dir: &Path) -> Result<Control, TableError> {
    Control::open(dir).map_err(|reason| TableError::BadHeader {
        path: dir.join(crate::tenant::REGISTRY_NAME).display().to_string(),
        reason,
    })
}
