//! A shard: the records, cold records and index of one slice of the X space,
//! with the counters that tie them together. One writer thread per shard.
//!
//! Life cycle: `create` or `open` finishes an interrupted checkpoint
//! (`checkpoint::recover_journal`), maps the files privately and checks
//! them against the meta. Writes change memory only; `capture` +
//! `ShardImage::persist` (or `checkpoint`, both at once) commit them to the
//! files. `close` (or drop) checkpoints what changed.

mod checkpoint;
use checkpoint::referenced_ends;
mod verify;

use super::checkpoint::{Committed, FileImage, PersistStats, Remarks, ShardImage};
use super::error::TableError;
use super::file::{ShardIdentity, TableFile};
use super::index::{Index, IndexState};
use super::layout::{
    entry, meta, ColdRecord, FileKind, HotRecord, ShardMeta, FORMAT_VERSION, META_MAGIC,
};
use super::mapped::GrowError;
use super::meta_file::MetaFile;
use super::tenant_counts::TenantCounts;
use crate::binding::{Change, WriteError};
use std::path::{Path, PathBuf};

/// Counters of one shard (the in-memory copy of its meta).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardCounters {
    /// Slots ever handed out.
    pub records_used: u32,
    /// Free list head (slot + 1).
    pub free_head: u32,
    /// Live bindings.
    pub live_bindings: u32,
    /// Retired slots.
    pub retired_slots: u32,
    /// Next slot the expiry sweep examines.
    pub reclaim_cursor: u32,
    /// Last applied log position.
    pub applied_log_index: u64,
    /// The applied clock: the time the last applied entry ran at (0: none
    /// yet). Part of the replicated state, so it is checkpointed with the
    /// tables (docs/STORAGE.md sections 7 and 17).
    pub applied_now_s: u32,
}

/// How the proposers' clocks compared with the applied clock, over the
/// entries this shard applied since it was opened (replay included). Every
/// shard applies every entry, so a node's figure is the largest over its
/// shards. Observations only: never persisted, never part of the state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClockSkew {
    /// Largest gap, seconds, by which a proposer's clock was behind the
    /// applied clock (the entry was applied at the later time).
    pub behind_s_max: u32,
    /// Largest gap, seconds, by which a proposer's clock was ahead of the
    /// time its entry applied at (the step limit held it back).
    pub ahead_s_max: u32,
    /// Entries applied later than their proposer's clock. A second or so is
    /// ordinary: loops stamp their batches a moment apart.
    pub entries_behind: u64,
    /// Entries applied earlier than their proposer's clock: the proposer
    /// jumped ahead by more than the step limit.
    pub entries_ahead: u64,
}

impl ClockSkew {
    /// Counts one entry proposed at `proposed_s` and applied at `now_s`.
    pub fn record(&mut self, now_s: u32, proposed_s: u32) {
        if proposed_s < now_s {
            self.behind_s_max = self.behind_s_max.max(now_s - proposed_s);
            self.entries_behind += 1;
        } else if proposed_s > now_s {
            self.ahead_s_max = self.ahead_s_max.max(proposed_s - now_s);
            self.entries_ahead += 1;
        }
    }

    /// The largest skew either way, seconds: what STATS shows as
    /// `clock_skew_s_max`.
    pub fn skew_s_max(&self) -> u32 {
        self.behind_s_max.max(self.ahead_s_max)
    }

    /// Entries whose time was changed: what STATS shows as
    /// `entries_clamped`.
    pub fn entries_clamped(&self) -> u64 {
        self.entries_behind + self.entries_ahead
    }
}

/// File sizes and counters, for `stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// Counters.
    pub counters: ShardCounters,
    /// Index counters.
    pub index: IndexState,
    /// Records file bytes.
    pub records_bytes: u64,
    /// Cold file bytes.
    pub cold_bytes: u64,
    /// Primary index file bytes.
    pub index_bytes: u64,
    /// Overflow file bytes.
    pub overflow_bytes: u64,
    /// Meta file bytes.
    pub meta_bytes: u64,
    /// Proposers' clocks against the applied clock.
    pub clock_skew: ClockSkew,
}

/// One shard.
pub struct Shard {
    pub(super) identity: ShardIdentity,
    dir: PathBuf,
    pub(super) records: TableFile<HotRecord>,
    pub(super) cold: TableFile<ColdRecord>,
    pub(super) index: Index,
    pub(super) counters: ShardCounters,
    meta_file: MetaFile,
    /// Counters and index state at the last capture.
    captured: (ShardCounters, IndexState),
    /// Set by `close`, so drop does not checkpoint again.
    closed: bool,
    /// Pages of a checkpoint that failed, to capture again.
    remarks: Remarks,
    /// The meta sequence of the last capture whose commit completed (set
    /// by `ShardImage::persist`, maybe in another thread).
    committed: Committed,
    /// The meta sequence of the last capture.
    captured_sequence: u64,
    /// Live bindings per tenant; `None` until counted (a shard whose
    /// `tenants` file does not match its checkpoint counts its records on
    /// first need, once its pages are checked; its next checkpoint writes
    /// the file, but a start that changes nothing writes nothing).
    tenant_live: std::cell::OnceCell<TenantCounts>,

    /// Proposers' clocks against the applied clock, since open.
    clock_skew: ClockSkew,
    /// The log entry this shard could not apply for want of room.
    stalled_at: Option<u64>,
    /// Changes made since they were last taken, while recorded
    /// (`record_changes`): what the traceability history keeps.
    pub(super) changes: Option<Vec<Change>>,
}

impl Shard {
    /// Creates a new, empty shard in `dir` (which must not exist yet).
    pub fn create(dir: &Path, identity: ShardIdentity, now_s: u64) -> Result<Shard, TableError> {
        crate::sys::create_private_dir_all(dir).map_err(|e| TableError::io(dir, e))?;
        let records = TableFile::create(dir, FileKind::Records, identity, now_s)?;
        let cold = TableFile::create(dir, FileKind::Cold, identity, now_s)?;
        let mut primary = TableFile::create(dir, FileKind::Index, identity, now_s)?;
        let overflow = TableFile::create(dir, FileKind::Overflow, identity, now_s)?;
        let state = IndexState::new();
        primary
            .reserve(state.primaries())
            .map_err(|e| grow_to_table_error(primary.path(), e))?;
        let counters = ShardCounters::default();
        let meta = make_meta(identity, counters, state);
        let meta_file = MetaFile::create(dir, &meta)?;
        Ok(Shard {
            identity,
            dir: dir.to_path_buf(),
            records,
            cold,
            index: Index::new(primary, overflow, state),
            counters,
            meta_file,
            captured: (counters, state),
            closed: false,
            remarks: Remarks::default(),
            committed: Committed::new(meta.sequence.into()),
            captured_sequence: meta.sequence,
            tenant_live: TenantCounts::new().into(),
            clock_skew: ClockSkew::default(),
            stalled_at: None,
            changes: None,
        })
    }

    /// Opens an existing shard. Time does not depend on the number of
    /// bindings: it maps the files and checks headers, meta and lengths.
    pub fn open(dir: &Path, identity: ShardIdentity) -> Result<Shard, TableError> {
        let (_, meta) = MetaFile::open(dir)?;
        let (meta_file, meta) = match super::checkpoint::recover_journal(dir, meta.sequence)? {
            super::checkpoint::JournalOutcome::Replayed { .. } => MetaFile::open(dir)?,
            _ => MetaFile::open(dir)?,
        };
        let meta_path = meta_file.path().display().to_string();
        if meta.shard_id != u32::from(identity.shard_id)
            || meta.shard_count != u32::from(identity.shard_count)
            || meta.store_nonce != identity.store_nonce
        {
            return Err(TableError::BadHeader {
                path: meta_path,
                reason: "meta belongs to another shard or data directory".into(),
            });
        }
        let tenant_live = super::tenant_counts::read(dir, meta.sequence)
            .map_or_else(std::cell::OnceCell::new, Into::into);
        let records = TableFile::<HotRecord>::open(dir, FileKind::Records, identity)?;
        let cold = TableFile::<ColdRecord>::open(dir, FileKind::Cold, identity)?;
        let primary = TableFile::open(dir, FileKind::Index, identity)?;
        let overflow = TableFile::open(dir, FileKind::Overflow, identity)?;
        let state = IndexState {
            level: meta.index_level,
            split: meta.index_split,
            entries: meta.index_entries,
            overflow_used: meta.overflow_used,
            overflow_free_head: meta.overflow_free_head,
            overflow_live: meta.overflow_live,
        };
        if state.level >= 24 || state.split >= 1 << state.level {
            return Err(TableError::BadHeader {
                path: meta_path,
                reason: format!(
                    "index level {} / split {} out of range",
                    state.level, state.split
                ),
            });
        }
        records.require(meta.records_used)?;
        cold.require(meta.records_used)?;
        primary.require(state.primaries())?;
        overflow.require(state.overflow_used)?;
        let counters = ShardCounters {
            records_used: meta.records_used,
            free_head: meta.free_head,
            live_bindings: meta.live_bindings,
            retired_slots: meta.retired_slots,
            reclaim_cursor: meta.reclaim_cursor,
            applied_log_index: meta.applied_log_index,
            applied_now_s: meta.applied_now_s,
        };
        if counters.free_head > counters.records_used
            || counters.reclaim_cursor > counters.records_used
            || state.overflow_free_head > state.overflow_used
            || state.overflow_live > state.overflow_used
        {
            return Err(TableError::BadHeader {
                path: meta_path,
                reason: "a free list head, the sweep cursor or the overflow counters point beyond the used items"
                    .into(),
            });
        }
        // Space past the checkpoint holds zeros, or the fresh pages of a
        // checkpoint that failed before its journal (without their
        // checksums): cleared, so the tables find zeros there and the pages
        // check.
        let [records_end, cold_end, primary_end, overflow_end] = referenced_ends(&counters, &state);
        let (mut records, mut cold, mut primary, mut overflow) = (records, cold, primary, overflow);
        let cleared = records.clear_unreferenced(records_end)
            + cold.clear_unreferenced(cold_end)
            + primary.clear_unreferenced(primary_end)
            + overflow.clear_unreferenced(overflow_end);
        if cleared > 0 {
            eprintln!(
                "x700: shard {}: cleared {cleared} page(s) past its checkpoint (left by a \
                 checkpoint that did not complete)",
                identity.shard_id
            );
        }
        Ok(Shard {
            identity,
            dir: dir.to_path_buf(),
            records,
            cold,
            index: Index::new(primary, overflow, state),
            counters,
            meta_file,
            captured: (counters, state),
            closed: false,
            remarks: Remarks::default(),
            committed: Committed::new(meta.sequence.into()),
            captured_sequence: meta.sequence,
            tenant_live,
            clock_skew: ClockSkew::default(),
            stalled_at: None,
            changes: None,
        })
    }

    /// The shard's number.
    pub fn id(&self) -> u16 {
        self.identity.shard_id
    }

    /// The shard's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A CRC-32C over every used slot's hot and cold record, in slot
    /// order: what `x700 cluster verify` compares across members. Members
    /// that applied the same log hold the same bytes (apply is
    /// deterministic, slot reuse and free list included), so any difference
    /// is divergence. Reads every used slot (96 bytes each): the owning
    /// loop runs it between batches.
    pub fn content_checksum(&self) -> u32 {
        let used = self.counters.records_used as usize;
        self.cold.finish_check();
        let hot: &[u8] = bytemuck::cast_slice(&self.records.items()[..used]);
        let cold: &[u8] = bytemuck::cast_slice(&self.cold.items()[..used]);
        crc32c::crc32c_append(crc32c::crc32c(hot), cold)
    }

    /// Live bindings per tenant (expired ones not yet reclaimed included).
    /// Counted from the records the first time if the `tenants` file did
    /// not match the checkpoint.
    pub fn tenant_counts(&self) -> &TenantCounts {
        self.tenant_live.get_or_init(|| {
            let mut counts = TenantCounts::new();
            self.for_each_binding(|binding| *counts.entry(binding.tenant).or_default() += 1);
            counts
        })
    }

    /// Keeps the tenants' counts as a binding of `tenant` is made or
    /// removed. Until they are counted there is nothing to keep: the count,
    /// when it runs, sees the records as they are then.
    pub(super) fn count_tenant(&mut self, tenant: u32, made: bool) {
        if let Some(counts) = self.tenant_live.get_mut() {
            let live = counts.entry(tenant).or_default();
            if made {
                *live += 1;
            } else {
                *live = live.saturating_sub(1);
                if *live == 0 {
                    counts.remove(&tenant);
                }
            }
        }
    }

    /// Live bindings.
    pub fn live_bindings(&self) -> u32 {
        self.counters.live_bindings
    }

    /// Sizes and counters.
    pub fn stats(&self) -> ShardStats {
        ShardStats {
            counters: self.counters,
            index: self.index.state(),
            records_bytes: self.records.file_bytes(),
            cold_bytes: self.cold.file_bytes(),
            index_bytes: self.index.primary_file().file_bytes(),
            overflow_bytes: self.index.overflow_file().file_bytes(),
            meta_bytes: 2 * 4096,
            clock_skew: self.clock_skew,
        }
    }

    /// Prepares for one write: reserves file room for one record, three
    /// index entries and the splits they trigger, so a write never fails
    /// halfway.
    pub(super) fn prepare_write(&mut self) -> Result<(), WriteError> {
        if self.counters.free_head == 0 {
            if self.counters.records_used >= entry::SLOTS_MAX {
                return Err(WriteError::Capacity {
                    shard: self.identity.shard_id,
                    slots: self.counters.records_used,
                });
            }
            let needed = self.counters.records_used + 1;
            self.records
                .reserve(needed)
                .map_err(|e| grow_to_write_error(self.records.path(), e))?;
            self.cold
                .reserve(needed)
                .map_err(|e| grow_to_write_error(self.cold.path(), e))?;
        }
        self.index
            .reserve()
            .map_err(|e| grow_to_write_error(self.index.primary_file().path(), e))
    }

    /// Prepares for removing one binding (the sweep's step): room for the
    /// index entry a promotion may insert. Needs no record slot, so a shard
    /// whose slots are all in use still sweeps.
    pub(super) fn prepare_removal(&mut self) -> Result<(), WriteError> {
        self.index
            .reserve()
            .map_err(|e| grow_to_write_error(self.index.primary_file().path(), e))
    }

    /// Grows the files ahead of one log entry, run at `now_s`, so that
    /// applying it cannot need more room: `writes` writes on this shard, each preceded by a
    /// sweep of at most `sweep_slots_per_write` slots, plus the slots a
    /// sweep of `sweep_slots` examines first (an empty entry). On error
    /// nothing but file lengths changed: the caller must not apply the
    /// entry to this shard, and retries later (docs/STORAGE.md,
    /// "Deterministic apply"). The answer of an entry thus never depends on
    /// this member's disk: growth failures stop the apply instead.
    pub fn reserve_for_entry(
        &mut self,
        now_s: u32,
        writes: u32,
        sweep_slots_per_write: u32,
        sweep_slots: u32,
    ) -> Result<(), WriteError> {
        // Removals the sweeps may make: a sweep on its own is counted
        // exactly (it examines known slots at a known time, no write in
        // between); the sweeps before writes at most one per slot.
        let removals = self
            .expired_ahead(now_s, sweep_slots)
            .saturating_add(writes.saturating_mul(sweep_slots_per_write));
        // One more record than the writes: a removal's `prepare_write` on
        // an exhausted free list asks for it too.
        let records = self
            .counters
            .records_used
            .saturating_add(writes)
            .saturating_add(1)
            .min(entry::SLOTS_MAX);
        self.records
            .reserve(records)
            .map_err(|e| grow_to_write_error(self.records.path(), e))?;
        self.cold
            .reserve(records)
            .map_err(|e| grow_to_write_error(self.cold.path(), e))?;
        self.index
            .reserve_for(writes, removals)
            .map_err(|e| grow_to_write_error(self.index.primary_file().path(), e))
    }

    /// Live bindings expired at `now_s` among the `budget` slots the sweep
    /// examines next: what `reclaim_expired(now_s, budget)` would remove.
    fn expired_ahead(&self, now_s: u32, budget: u32) -> u32 {
        let used = self.counters.records_used;
        if used == 0 {
            return 0;
        }
        let records = self.records.items();
        let mut slot = self.counters.reclaim_cursor;
        let mut expired = 0;
        for _ in 0..budget.min(used) {
            let record = &records[slot as usize];
            if record.is_live() && record.is_expired(now_s) {
                expired += 1;
            }
            slot = if slot + 1 >= used { 0 } else { slot + 1 };
        }
        expired
    }

    /// Starts (or stops) recording every change to a binding: made,
    /// updated, unbound, expired (`take_changes`).
    pub fn record_changes(&mut self, on: bool) {
        self.changes = on.then(Vec::new);
    }

    /// True while changes are recorded.
    pub fn records_changes(&self) -> bool {
        self.changes.is_some()
    }

    /// The changes recorded since the last call, in the order they were
    /// made.
    pub fn take_changes(&mut self) -> Vec<Change> {
        self.changes
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The entry this shard could not apply for want of room, if any
    /// (`reserve_for_entry` failed on it): later entries wait behind it.
    pub fn stalled_at(&self) -> Option<u64> {
        self.stalled_at
    }

    /// Records that the shard could not apply entry `index` (`Some`), or
    /// that it could again (`None`). Not state: a restart forgets it and
    /// the replay tries the entry again.
    pub fn set_stalled_at(&mut self, index: Option<u64>) {
        self.stalled_at = index;
    }

    /// Takes a free slot and bumps its generation. `prepare_write` must have
    /// succeeded.
    pub(super) fn allocate_slot(&mut self) -> u32 {
        let slot = if self.counters.free_head != 0 {
            let slot = self.counters.free_head - 1;
            let record = self.records.items()[slot as usize];
            assert_eq!(
                record.mode_bits(),
                meta::MODE_FREE,
                "free list holds a used slot {slot}"
            );
            self.counters.free_head =
                u32::from_le_bytes([record.a[0], record.a[1], record.a[2], record.a[3]]);
            slot
        } else {
            let slot = self.counters.records_used;
            assert!(
                slot < self.records.capacity(),
                "slot allocated without reserve"
            );
            self.counters.records_used += 1;
            slot
        };
        let record = self.records.item_mut(slot as usize);
        let generation = record.generation() + 1;
        assert!(
            generation <= meta::GENERATION_MAX,
            "retired slot {slot} reused"
        );
        *record = HotRecord {
            meta: generation,
            ..HotRecord::default()
        };
        slot
    }

    /// Returns a slot to the free list, or retires it when its generation is
    /// exhausted, so an id is never issued twice.
    pub(super) fn free_slot(&mut self, slot: u32) {
        let generation = self.records.items()[slot as usize].generation();
        let mut record = HotRecord {
            meta: generation,
            ..HotRecord::default()
        };
        if generation == meta::GENERATION_MAX {
            self.counters.retired_slots += 1;
        } else {
            record.a[..4].copy_from_slice(&self.counters.free_head.to_le_bytes());
            self.counters.free_head = slot + 1;
        }
        *self.records.item_mut(slot as usize) = record;
        *self.cold.item_mut(slot as usize) = bytemuck::Zeroable::zeroed();
    }

    /// Records that the log is applied up to `index` (a checkpoint
    /// captured after this says so in its meta).
    pub fn set_applied_log_index(&mut self, index: u64) {
        self.counters.applied_log_index = index;
    }

    /// The last log index applied, as far as this shard knows.
    pub fn applied_log_index(&self) -> u64 {
        self.counters.applied_log_index
    }

    /// Moves the applied clock to `now_s`, the time the entry being applied
    /// runs at (`store::clock::applied_now_s` of this shard's clock and the
    /// entry's `proposed_s`), and counts the skew between the two.
    pub fn advance_clock(&mut self, now_s: u32, proposed_s: u32) {
        assert!(
            now_s >= self.counters.applied_now_s,
            "applied clock moved back from {} to {now_s} on shard {}",
            self.counters.applied_now_s,
            self.identity.shard_id
        );
        self.counters.applied_now_s = now_s;
        self.clock_skew.record(now_s, proposed_s);
    }

    /// The applied clock: the time the last applied entry ran at (0: none).
    pub fn applied_now_s(&self) -> u32 {
        self.counters.applied_now_s
    }

    /// Which shard of which data directory this is.
    pub fn identity(&self) -> ShardIdentity {
        self.identity
    }
}

fn make_meta(identity: ShardIdentity, counters: ShardCounters, index: IndexState) -> ShardMeta {
    ShardMeta {
        magic: META_MAGIC,
        format_version: FORMAT_VERSION,
        shard_id: u32::from(identity.shard_id),
        shard_count: u32::from(identity.shard_count),
        // Every meta on disk describes a whole checkpoint.
        clean: 1,
        sequence: 0,
        store_nonce: identity.store_nonce,
        records_used: counters.records_used,
        free_head: counters.free_head,
        live_bindings: counters.live_bindings,
        applied_now_s: counters.applied_now_s,
        retired_slots: counters.retired_slots,
        index_level: index.level,
        index_split: index.split,
        index_entries: index.entries,
        overflow_used: index.overflow_used,
        overflow_free_head: index.overflow_free_head,
        overflow_live: index.overflow_live,
        reclaim_cursor: counters.reclaim_cursor,
        applied_log_index: counters.applied_log_index,
        reserved: [0; 7],
        checksum: 0,
    }
}

fn grow_to_write_error(path: &Path, error: GrowError) -> WriteError {
    let path = path.display().to_string();
    match error {
        GrowError::DiskFull => WriteError::DiskFull { path },
        GrowError::BeyondReservation => WriteError::Io {
            path,
            source: std::io::Error::other("file reached its reserved mapping"),
        },
        GrowError::Io(source) => WriteError::Io { path, source },
    }
}

fn grow_to_table_error(path: &Path, error: GrowError) -> TableError {
    match error {
        GrowError::DiskFull => TableError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::StorageFull, "disk full"),
        ),
        GrowError::BeyondReservation => {
            TableError::io(path, std::io::Error::other("beyond reservation"))
        }
        GrowError::Io(source) => TableError::io(path, source),
    }
}

#[cfg(test)]
mod tests;
