//! A set of shards owned by one thread: all of a data directory's shards
//! (offline use) or one core's share of them (the server). Routes each
//! operation to the shard of its X; time comes in as `now_s`.

use super::lock::DirLock;
use super::query_is_well_formed;
use crate::binding::{
    BindRequest, Binding, BindingId, LookupQuery, LookupResult, Reject, Update, WriteError,
};
use crate::number::Number;
use crate::table::checkpoint::ShardImage;
use crate::table::records::decompose_id;
use crate::table::{BindOutcome, Shard, ShardStats, TableError};
use crate::tenant::Control;
use std::path::Path;
use std::sync::Arc;

/// Shards owned by one thread. Slot `s` of `shards` holds shard `s` if this
/// set owns it.
pub struct ShardSet {
    shard_count: u16,
    shards: Vec<Option<Shard>>,
    _lock: Arc<DirLock>,
    /// The directory's control state (tenants, blocklists), shared by
    /// every part of a split set.
    control: Arc<Control>,
    /// Lookup screening's counts, this set's own (`screen`).
    pub(super) screening: std::cell::RefCell<super::screen::Screening>,
    /// Sets the shards were split into: a tenant's lookup rate limit is
    /// shared out among them.
    pub(super) parts: u32,
}

impl ShardSet {
    /// A set over the given shards (indexed by shard id).
    pub(super) fn new(
        shard_count: u16,
        shards: Vec<Option<Shard>>,
        lock: Arc<DirLock>,
        control: Arc<Control>,
    ) -> ShardSet {
        assert_eq!(shards.len(), usize::from(shard_count));
        ShardSet {
            shard_count,
            shards,
            _lock: lock,
            control,
            screening: std::cell::RefCell::default(),
            parts: 1,
        }
    }

    /// The directory's control state.
    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    /// Splits into `parts` sets; shard `s` goes to part `s % parts`.
    pub fn split(self, parts: usize) -> Vec<ShardSet> {
        assert!(parts >= 1);
        let mut sets: Vec<ShardSet> = (0..parts)
            .map(|_| ShardSet {
                shard_count: self.shard_count,
                shards: (0..self.shard_count).map(|_| None).collect(),
                _lock: Arc::clone(&self._lock),
                control: Arc::clone(&self.control),
                screening: std::cell::RefCell::default(),
                parts: u32::try_from(parts).unwrap_or(u32::MAX),
            })
            .collect();
        for (id, shard) in self.shards.into_iter().enumerate() {
            sets[id % parts].shards[id] = shard;
        }
        sets
    }

    /// Shards in the whole directory.
    pub fn shard_count(&self) -> u16 {
        self.shard_count
    }

    /// The shard that owns X.
    #[inline(always)]
    pub fn shard_index(&self, x: Number) -> usize {
        usize::from(crate::table::hash::shard_of(x, self.shard_count))
    }

    /// The owned shards.
    pub fn owned_mut(&mut self) -> impl Iterator<Item = &mut Shard> {
        self.shards.iter_mut().flatten()
    }

    /// The shards this set owns.
    pub fn owned(&self) -> impl Iterator<Item = &Shard> {
        self.shards.iter().flatten()
    }

    #[inline(always)]
    pub(super) fn shard(&self, index: usize) -> &Shard {
        self.shards[index]
            .as_ref()
            .unwrap_or_else(|| panic!("shard {index} is not owned by this thread"))
    }

    fn shard_mut_of(&mut self, x: Number) -> &mut Shard {
        let index = self.shard_index(x);
        self.shards[index]
            .as_mut()
            .unwrap_or_else(|| panic!("shard {index} is not owned by this thread"))
    }

    fn shard_of_id(&mut self, id: BindingId) -> Result<&mut Shard, WriteError> {
        let (shard, _, _) = decompose_id(id).ok_or(WriteError::NotFound)?;
        self.shards
            .get_mut(usize::from(shard))
            .and_then(Option::as_mut)
            .ok_or(WriteError::NotFound)
    }

    /// Creates a binding (or returns the identical live one).
    pub fn bind(&mut self, request: &BindRequest, now_s: u32) -> Result<BindOutcome, WriteError> {
        // The registry's rules come first, for every bind, offline or
        // through the log (`server::dispatch::tenant_refusal`).
        if let Some(code) =
            crate::server::dispatch::tenant_refusal(&self.control.registry(), request)
        {
            return Err(WriteError::Registry(code));
        }
        self.shard_mut_of(request.x).bind(request, now_s)
    }

    /// Removes a binding by id.
    pub fn unbind(&mut self, id: BindingId, now_s: u32) -> Result<Binding, WriteError> {
        self.shard_of_id(id)?.unbind(id, now_s)
    }

    /// Removes the live binding on X that `party` belongs to.
    pub fn unbind_by_party(
        &mut self,
        x: Number,
        party: Number,
        now_s: u32,
    ) -> Result<Binding, WriteError> {
        let id = self
            .find_by_party(x, party, now_s)
            .ok_or(WriteError::NotFound)?;
        self.unbind(id, now_s)
    }

    /// The id of the live binding on X that `party` belongs to.
    pub fn find_by_party(&self, x: Number, party: Number, now_s: u32) -> Option<BindingId> {
        self.shard(self.shard_index(x))
            .find_by_party(x, party, now_s)
    }

    /// Changes a binding.
    pub fn update(
        &mut self,
        id: BindingId,
        update: &Update,
        now_s: u32,
    ) -> Result<Binding, WriteError> {
        self.shard_of_id(id)?.update(id, update, now_s)
    }

    /// The live binding with this id.
    pub fn query(&self, id: BindingId, now_s: u32) -> Option<Binding> {
        let (shard, _, _) = decompose_id(id)?;
        self.shards
            .get(usize::from(shard))?
            .as_ref()?
            .query(id, now_s)
    }

    /// Answers one lookup.
    pub fn lookup(&self, query: &LookupQuery, now_s: u32) -> LookupResult {
        if !query_is_well_formed(query) {
            return LookupResult::Reject(Reject::BadNumber);
        }
        let mut answer = [self.shard(self.shard_index(query.x)).lookup(query, now_s)];
        if self.control().screens_lookups() {
            self.screen(std::slice::from_ref(query), &mut answer, now_s);
        }
        answer[0]
    }

    /// Runs the expiry sweep on every owned shard.
    pub fn reclaim_expired(&mut self, now_s: u32, budget_per_shard: u32) -> u64 {
        self.shards
            .iter_mut()
            .flatten()
            .map(|shard| u64::from(shard.reclaim_expired(now_s, budget_per_shard)))
            .sum()
    }

    /// Per-shard sizes and counters of the owned shards.
    pub fn shard_stats(&self) -> Vec<ShardStats> {
        self.owned().map(Shard::stats).collect()
    }

    /// Live bindings in the owned shards.
    pub fn bindings_live(&self) -> u64 {
        self.owned()
            .map(|shard| u64::from(shard.live_bindings()))
            .sum()
    }

    /// Checkpoints every owned shard now (capture and persist here), then
    /// hands the commits' freed page copies back to the kernel.
    pub fn checkpoint(&mut self) -> Result<(), TableError> {
        let result = self
            .shards
            .iter_mut()
            .flatten()
            .try_for_each(|shard| shard.checkpoint().map(|_| ()));
        crate::sys::trim_heap();
        result
    }

    /// Gives back the private copies of committed pages in the owned shards
    /// (`Shard::give_back`), looking at most at `budget` pages in all.
    pub fn give_back(&mut self, budget: usize) -> usize {
        let mut looked = 0;
        for shard in self.shards.iter_mut().flatten() {
            if looked >= budget {
                break;
            }
            looked += shard.give_back(budget - looked);
        }
        looked
    }

    /// The first half of a checkpoint of every owned shard (see
    /// `table::checkpoint`); the images are persisted by the caller.
    pub fn capture(&mut self) -> Result<Vec<ShardImage>, TableError> {
        self.shards
            .iter_mut()
            .flatten()
            .map(Shard::capture)
            .collect()
    }

    /// The owned shard `index`, writable.
    pub fn shard_mut(&mut self, index: usize) -> Option<&mut Shard> {
        self.shards.get_mut(index).and_then(Option::as_mut)
    }

    /// Whether this set owns shard `index`.
    pub fn owns(&self, index: usize) -> bool {
        self.shards.get(index).is_some_and(Option::is_some)
    }

    /// Flushes and closes every owned shard, marking them clean.
    pub fn close(self) -> Result<(), TableError> {
        let mut first_error = None;
        for shard in self.shards.into_iter().flatten() {
            if let Err(error) = shard.close() {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Replaces every owned shard by its copy staged in `staging` (a
    /// verified snapshot image the data directory `data_dir` adopted, whose
    /// swap journal is written: `table::snapshot`). Shard by shard: the
    /// tables are dropped unsaved (the snapshot supersedes them), the staged
    /// files renamed over theirs, and the new files opened. What else is
    /// staged (other owners' shards, the manifest) stays for
    /// `snapshot::finish_swap`. On an error a shard may be left closed: the
    /// owner must stop, and the next open finishes the swap from the
    /// journal.
    pub fn swap_in(&mut self, data_dir: &Path, staging: &Path) -> Result<(), TableError> {
        for (index, slot) in self.shards.iter_mut().enumerate() {
            let Some(shard) = slot.take() else {
                continue;
            };
            let identity = shard.identity();
            let recording = shard.records_changes();
            shard.discard();
            let dir = super::shard_dir(data_dir, identity.shard_id);
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            crate::table::snapshot::move_staged_shard(staging, data_dir, &name)
                .map_err(|e| TableError::io(&dir, std::io::Error::other(e)))?;
            debug_assert_eq!(usize::from(identity.shard_id), index);
            let mut fresh = Shard::open(&dir, identity)?;
            fresh.record_changes(recording);
            *slot = Some(fresh);
        }
        Ok(())
    }

    /// Closes every owned shard without saving what changed since its
    /// last checkpoint.
    pub fn discard(self) {
        for shard in self.shards.into_iter().flatten() {
            shard.discard();
        }
    }

    /// Reads and checks every owned record and index entry.
    pub fn verify(&self) -> Result<(), TableError> {
        self.owned().try_for_each(Shard::verify)
    }
}
