//! The index: linear hashing over cache-line buckets, with overflow chains.
//!
//! Linear hashing grows one bucket at a time: each split rehashes the
//! entries of a single bucket chain (a few dozen at most), so the index
//! grows online with no pause that depends on its size, and its load stays
//! near `LOAD_PERCENT` instead of halving at each doubling.
//!
//! The index does not know keys: entries hold a tag and a record slot, and
//! the caller verifies candidates against the record and, when a bucket is
//! split, says which key hashes a slot has.

use super::file::TableFile;
use super::layout::{entry, Bucket};
use super::mapped::{prefetch, GrowError};
use super::tag_scan::tag_matches;

/// Split when data entries exceed this percentage of primary entry room.
const LOAD_PERCENT: u64 = 80;
/// Buckets at level 0 of a new index: 2^INITIAL_LEVEL.
pub const INITIAL_LEVEL: u32 = 4;
/// Overflow buckets of file room reserved before each write, so a write
/// never fails halfway: a bind inserts at most 4 entries (its own two, and
/// one promotion for each expired holder it reclaims), each needing at most
/// one new bucket. Twice that, for margin.
const OVERFLOW_RESERVE: u32 = 8;
/// Splits done per write at most, keeping each write's work bounded.
const SPLITS_PER_WRITE_MAX: u32 = 2;

/// Where a bucket lives.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Loc {
    Primary(u32),
    Overflow(u32),
}

/// Counters that describe the index; persisted in the shard meta.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct IndexState {
    /// Linear hashing level.
    pub level: u32,
    /// Split pointer.
    pub split: u32,
    /// Data entries.
    pub entries: u32,
    /// Overflow buckets ever handed out.
    pub overflow_used: u32,
    /// Free overflow bucket list head (bucket + 1; 0 empty).
    pub overflow_free_head: u32,
    /// Overflow buckets in use.
    pub overflow_live: u32,
}

impl IndexState {
    /// A new, empty index.
    pub fn new() -> IndexState {
        IndexState {
            level: INITIAL_LEVEL,
            ..IndexState::default()
        }
    }

    /// Primary buckets.
    pub fn primaries(&self) -> u32 {
        (1 << self.level) + self.split
    }
}

/// The index of one shard.
pub struct Index {
    primary: TableFile<Bucket>,
    overflow: TableFile<Bucket>,
    state: IndexState,
    scratch: Vec<u32>,
}

impl Index {
    /// Wraps the two files and the persisted counters (checked by the caller
    /// against the file lengths).
    pub fn new(
        primary: TableFile<Bucket>,
        overflow: TableFile<Bucket>,
        state: IndexState,
    ) -> Index {
        Index {
            primary,
            overflow,
            state,
            scratch: Vec::with_capacity(64),
        }
    }

    /// The counters, for the meta.
    pub fn state(&self) -> IndexState {
        self.state
    }

    /// The primary bucket file.
    pub fn primary_file(&self) -> &TableFile<Bucket> {
        &self.primary
    }

    /// The overflow bucket file.
    pub fn overflow_file(&self) -> &TableFile<Bucket> {
        &self.overflow
    }

    /// The primary bucket a hash belongs to.
    #[inline(always)]
    pub fn bucket_of(&self, hash: u64) -> u32 {
        // Linear hashing uses the low bits; level < 32 always (at most 2^24
        // primaries), so the truncation keeps every bit that is used.
        #[allow(clippy::cast_possible_truncation)]
        let low = hash as u32;
        let at_level = low & ((1 << self.state.level) - 1);
        if at_level < self.state.split {
            low & ((2 << self.state.level) - 1)
        } else {
            at_level
        }
    }

    /// Starts loading the primary bucket of `hash` into cache.
    #[inline(always)]
    pub fn prefetch(&self, hash: u64) {
        prefetch(&self.primary.items()[self.bucket_of(hash) as usize]);
    }

    fn bucket(&self, loc: Loc) -> &Bucket {
        match loc {
            Loc::Primary(b) => &self.primary.items()[b as usize],
            Loc::Overflow(b) => &self.overflow.items()[b as usize],
        }
    }

    fn bucket_mut(&mut self, loc: Loc) -> &mut Bucket {
        match loc {
            Loc::Primary(b) => self.primary.item_mut(b as usize),
            Loc::Overflow(b) => self.overflow.item_mut(b as usize),
        }
    }

    /// The next bucket in a chain, if any.
    fn next(bucket: &Bucket) -> Option<Loc> {
        let last = bucket.entries[entry::PER_BUCKET - 1];
        (entry::tag(last) == entry::TAG_LINK).then(|| Loc::Overflow(entry::slot(last)))
    }

    /// The slot of the first entry carrying the hash's tag in the hash's
    /// chain (what `find` returns when every candidate is accepted). The
    /// batch lookup calls it once or twice per query: the primary bucket is
    /// scanned here, inline; a chain into overflow buckets, rare, goes to
    /// `find`.
    #[inline(always)]
    pub fn first_candidate(&self, hash: u64) -> Option<u32> {
        let bucket = self.bucket(Loc::Primary(self.bucket_of(hash)));
        let matches = tag_matches(bucket, super::hash::tag_of(hash));
        if matches != 0 {
            return Some(entry::slot(
                bucket.entries[matches.trailing_zeros() as usize],
            ));
        }
        Index::next(bucket)?;
        self.find(hash, |_| true)
    }

    /// Calls `candidate` with each slot whose entry carries the hash's tag in
    /// the hash's chain, until it returns true; returns that slot.
    #[inline]
    pub fn find(&self, hash: u64, mut candidate: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = super::hash::tag_of(hash);
        let mut loc = Loc::Primary(self.bucket_of(hash));
        loop {
            let bucket = self.bucket(loc);
            let mut matches = tag_matches(bucket, tag);
            while matches != 0 {
                let i = matches.trailing_zeros() as usize;
                matches &= matches - 1;
                let slot = entry::slot(bucket.entries[i]);
                if candidate(slot) {
                    return Some(slot);
                }
            }
            loc = Index::next(bucket)?;
        }
    }

    /// Makes sure the next write can add entries and split without growing
    /// a file halfway through.
    pub fn reserve(&mut self) -> Result<(), GrowError> {
        self.primary
            .reserve(self.state.primaries() + SPLITS_PER_WRITE_MAX)?;
        // Room beyond the used buckets, whether or not the free list has
        // some: one write may need more buckets than the list holds.
        self.overflow
            .reserve(self.state.overflow_used + OVERFLOW_RESERVE)?;
        Ok(())
    }

    /// Makes sure `writes` writes and `removals` removals of a binding,
    /// each preceded by `reserve` (a removal by `reserve` too), will find
    /// their room already there: each write takes at most
    /// `SPLITS_PER_WRITE_MAX` primaries and `OVERFLOW_RESERVE` overflow
    /// buckets, each removal at most one overflow bucket (its promotion),
    /// and the last `reserve` still asks for its own margin.
    pub fn reserve_for(&mut self, writes: u32, removals: u32) -> Result<(), GrowError> {
        let primaries = SPLITS_PER_WRITE_MAX.saturating_mul(writes.saturating_add(1));
        let overflow = OVERFLOW_RESERVE
            .saturating_mul(writes.saturating_add(1))
            .saturating_add(removals);
        // Past what a file can ever hold, `reserve` at each write reports
        // it (deterministically, from the counters); asking here would only
        // fail for ever.
        let primaries = self
            .state
            .primaries()
            .saturating_add(primaries)
            .min(self.primary.items_max());
        let overflow = self
            .state
            .overflow_used
            .saturating_add(overflow)
            .min(self.overflow.items_max());
        self.primary.reserve(primaries)?;
        self.overflow.reserve(overflow)
    }

    /// Adds an entry for `slot` under `hash`. `reserve` must have succeeded
    /// since the last write.
    pub fn insert(&mut self, hash: u64, slot: u32) {
        let packed = entry::pack(super::hash::tag_of(hash), slot);
        let mut loc = Loc::Primary(self.bucket_of(hash));
        while let Some(next) = Index::next(self.bucket(loc)) {
            loc = next;
        }
        let used = self
            .bucket(loc)
            .entries
            .iter()
            .take_while(|&&e| e != 0)
            .count();
        if used < entry::PER_BUCKET {
            self.bucket_mut(loc).entries[used] = packed;
        } else {
            let fresh = self.allocate_overflow();
            let moved = self.bucket(loc).entries[entry::PER_BUCKET - 1];
            let new_bucket = self.bucket_mut(Loc::Overflow(fresh));
            new_bucket.entries[0] = moved;
            new_bucket.entries[1] = packed;
            self.bucket_mut(loc).entries[entry::PER_BUCKET - 1] =
                entry::pack(entry::TAG_LINK, fresh);
        }
        self.state.entries += 1;
    }

    /// Removes the entry for `slot` under `hash`. The entry must exist.
    pub fn remove(&mut self, hash: u64, slot: u32) {
        let packed = entry::pack(super::hash::tag_of(hash), slot);
        let mut found = None;
        let mut previous = None;
        let mut loc = Loc::Primary(self.bucket_of(hash));
        loop {
            if found.is_none() {
                if let Some(i) = self.bucket(loc).entries.iter().position(|&e| e == packed) {
                    found = Some((loc, i));
                }
            }
            match Index::next(self.bucket(loc)) {
                Some(next) => {
                    previous = Some(loc);
                    loc = next;
                }
                None => break,
            }
        }
        let (found_loc, found_i) = found.unwrap_or_else(|| {
            panic!("index entry for slot {slot} is missing: the index and records disagree")
        });
        // Move the chain's last entry into the hole, keeping entries packed.
        let last_i = self
            .bucket(loc)
            .entries
            .iter()
            .take_while(|&&e| e != 0)
            .count()
            - 1;
        let last = self.bucket(loc).entries[last_i];
        self.bucket_mut(loc).entries[last_i] = 0;
        if (found_loc, found_i) != (loc, last_i) {
            self.bucket_mut(found_loc).entries[found_i] = last;
        }
        if let (Loc::Overflow(emptied), 0, Some(previous)) = (loc, last_i, previous) {
            self.bucket_mut(previous).entries[entry::PER_BUCKET - 1] = 0;
            self.free_overflow(emptied);
        }
        self.state.entries -= 1;
    }

    /// True while the load is above the split threshold.
    pub fn wants_split(&self) -> bool {
        u64::from(self.state.entries) * 100
            > LOAD_PERCENT * entry::PER_BUCKET as u64 * u64::from(self.state.primaries())
    }

    /// Splits up to `SPLITS_PER_WRITE_MAX` buckets while the load is high.
    /// `key_hashes(slot, out)` pushes the hash of every index key the record
    /// in `slot` has. Needs a successful `reserve` first.
    pub fn split_while_loaded(&mut self, key_hashes: &mut dyn FnMut(u32, &mut Vec<u64>)) {
        for _ in 0..SPLITS_PER_WRITE_MAX {
            if !self.wants_split() || self.primary.capacity() <= self.state.primaries() {
                return;
            }
            self.split_one(key_hashes);
        }
    }

    fn split_one(&mut self, key_hashes: &mut dyn FnMut(u32, &mut Vec<u64>)) {
        let level = self.state.level;
        let splitting = self.state.split;
        let mut slots = std::mem::take(&mut self.scratch);
        slots.clear();
        // Empty the chain into `slots`, returning its overflow buckets.
        let mut loc = Loc::Primary(splitting);
        loop {
            let bucket = *self.bucket(loc);
            *self.bucket_mut(loc) = Bucket { entries: [0; 16] };
            if let Loc::Overflow(b) = loc {
                self.free_overflow(b);
            }
            for &e in bucket.entries.iter().take_while(|&&e| e != 0) {
                if entry::tag(e) != entry::TAG_LINK {
                    slots.push(entry::slot(e));
                }
            }
            match Index::next(&bucket) {
                Some(next) => loc = next,
                None => break,
            }
        }
        let removed = u32::try_from(slots.len()).unwrap_or(u32::MAX);
        self.state.entries -= removed;
        // The new bucket is fresh file space (primaries never shrink): zero.
        let image = (1u32 << level) + splitting;
        assert_eq!(
            self.primary.items()[image as usize],
            Bucket { entries: [0; 16] }
        );
        self.state.split += 1;
        if self.state.split == 1 << level {
            self.state.level += 1;
            self.state.split = 0;
        }
        // Re-insert the keys that lived in the split bucket, under the new
        // addressing. A record may have two keys in one bucket: visit each
        // slot once and re-insert all its keys that belonged here.
        slots.sort_unstable();
        slots.dedup();
        let mut hashes = Vec::with_capacity(2);
        let mut reinserted = 0u32;
        for &slot in &slots {
            hashes.clear();
            key_hashes(slot, &mut hashes);
            for &hash in &hashes {
                #[allow(clippy::cast_possible_truncation)]
                let low = hash as u32;
                if low & ((1 << level) - 1) == splitting {
                    self.insert(hash, slot);
                    reinserted += 1;
                }
            }
        }
        assert_eq!(
            reinserted, removed,
            "split of bucket {splitting} re-inserted {reinserted} of {removed} entries: records and index disagree"
        );
        self.scratch = slots;
    }

    fn allocate_overflow(&mut self) -> u32 {
        self.state.overflow_live += 1;
        if self.state.overflow_free_head != 0 {
            let b = self.state.overflow_free_head - 1;
            let bucket = self.bucket_mut(Loc::Overflow(b));
            let next = bucket.entries[0];
            bucket.entries[0] = 0;
            self.state.overflow_free_head = next;
            return b;
        }
        let b = self.state.overflow_used;
        assert!(
            b < self.overflow.capacity(),
            "overflow bucket used without reserve"
        );
        assert!(b <= entry::SLOT_MASK, "overflow bucket numbers exhausted");
        self.state.overflow_used += 1;
        b
    }

    fn free_overflow(&mut self, b: u32) {
        let head = self.state.overflow_free_head;
        let bucket = self.bucket_mut(Loc::Overflow(b));
        *bucket = Bucket { entries: [0; 16] };
        bucket.entries[0] = head;
        self.state.overflow_free_head = b + 1;
        self.state.overflow_live -= 1;
    }

    /// Checks every chain: entries packed, links valid, entry count equal
    /// to the counter. Used by tests and `x700 check`.
    pub fn verify(&self) -> Result<(), String> {
        let mut entries = 0u32;
        let mut overflow = 0u32;
        for b in 0..self.state.primaries() {
            let mut loc = Loc::Primary(b);
            let mut hops = 0;
            loop {
                let bucket = self.bucket(loc);
                let used = bucket.entries.iter().take_while(|&&e| e != 0).count();
                if bucket.entries[used..].iter().any(|&e| e != 0) {
                    return Err(format!("bucket {loc:?} has a hole"));
                }
                for &e in &bucket.entries[..used] {
                    if entry::tag(e) != entry::TAG_LINK {
                        entries += 1;
                    }
                }
                match Index::next(bucket) {
                    Some(Loc::Overflow(o)) => {
                        if o >= self.state.overflow_used {
                            return Err(format!("bucket {loc:?} links past the overflow area"));
                        }
                        overflow += 1;
                        hops += 1;
                        if hops > self.state.overflow_used {
                            return Err(format!("chain from primary {b} loops"));
                        }
                        loc = Loc::Overflow(o);
                    }
                    _ => break,
                }
            }
        }
        if entries != self.state.entries || overflow != self.state.overflow_live {
            return Err(format!(
                "counted {entries} entries / {overflow} overflow buckets, meta says {} / {}",
                self.state.entries, self.state.overflow_live
            ));
        }
        Ok(())
    }

    /// Gives back private copies of committed index pages (see
    /// `MappedFile::give_back`); returns the pages looked at.
    pub fn give_back(&mut self, budget: usize) -> usize {
        let looked = self.primary.give_back(budget);
        looked + self.overflow.give_back(budget.saturating_sub(looked))
    }

    /// Marks a byte range of the primary or overflow file dirty again.
    pub fn mark_dirty(&mut self, overflow: bool, offset: u64, bytes: u64) {
        if overflow {
            self.overflow.mark_dirty(offset, bytes);
        } else {
            self.primary.mark_dirty(offset, bytes);
        }
    }

    /// True if either file was written since the last `take_capture`.
    pub fn is_dirty(&self) -> bool {
        self.primary.is_dirty() || self.overflow.is_dirty()
    }

    /// The pages of both files written since the last call.
    #[allow(clippy::type_complexity)]
    pub fn take_pages(&mut self) -> (super::file::TakenPages, super::file::TakenPages) {
        (self.primary.take_pages(), self.overflow.take_pages())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::file::ShardIdentity;
    use crate::table::layout::FileKind;

    proptest::proptest! {
        /// The vector scan finds exactly the entries whose tag matches.
        #[test]
        fn tag_matches_marks_exactly_the_entries_with_the_tag(
            entries: [u32; 16],
            tag in 1u32..0xFF,
            plant: [bool; 16],
        ) {
            let mut bucket = Bucket { entries };
            for (e, planted) in bucket.entries.iter_mut().zip(plant) {
                if planted {
                    *e = (tag << 24) | (*e & entry::SLOT_MASK);
                }
            }
            let want = bucket
                .entries
                .iter()
                .enumerate()
                .fold(0, |bits, (i, &e)| bits | (u32::from(entry::tag(e) == tag) << i));
            proptest::prop_assert_eq!(tag_matches(&bucket, tag), want);
        }
    }

    /// A new shard's empty index and overflow files in `dir`.
    fn empty_files(dir: &std::path::Path) -> (TableFile<Bucket>, TableFile<Bucket>) {
        let identity = ShardIdentity {
            shard_id: 0,
            shard_count: 1,
            store_nonce: 1,
        };
        (
            TableFile::create(dir, FileKind::Index, identity, 0).unwrap(),
            TableFile::create(dir, FileKind::Overflow, identity, 0).unwrap(),
        )
    }

    /// The batch lookup's `first_candidate` returns what `find` accepting
    /// every candidate returns, for present and absent keys, with chains
    /// into overflow buckets (few primaries, many entries, no splits).
    #[test]
    fn first_candidate_is_the_first_tag_match_find_returns() {
        let dir = tempfile::tempdir().unwrap();
        let (primary, overflow) = empty_files(dir.path());
        let mut index = Index::new(primary, overflow, IndexState::new());
        let hash = |i: u64| {
            let mut state = i;
            crate::synth::splitmix64(&mut state)
        };
        let mut chained = 0;
        for i in 0..2_000u32 {
            index.reserve().unwrap();
            index.insert(hash(u64::from(i)), i);
        }
        for i in 0..4_000u64 {
            let h = hash(i);
            let bucket = index.bucket(Loc::Primary(index.bucket_of(h)));
            chained += usize::from(Index::next(bucket).is_some());
            assert_eq!(index.first_candidate(h), index.find(h, |_| true), "key {i}");
        }
        assert!(chained > 0, "some chains reach overflow buckets");
    }

    /// Regression: `reserve` grew the overflow file only when the free list
    /// was empty, so a write that needed more buckets than the free list
    /// held ran past the file and panicked in `allocate_overflow`.
    #[test]
    fn reserve_makes_room_even_when_the_free_list_has_buckets() {
        let dir = tempfile::tempdir().unwrap();
        let (mut primary, mut overflow) = empty_files(dir.path());
        primary.reserve(IndexState::new().primaries() + 2).unwrap();
        overflow.reserve(1).unwrap();
        let full = overflow.capacity();
        // Every bucket handed out, one of them back on the free list.
        let state = IndexState {
            overflow_used: full,
            overflow_free_head: 1,
            overflow_live: full - 1,
            ..IndexState::new()
        };
        let mut index = Index::new(primary, overflow, state);
        index.reserve().unwrap();
        assert!(index.overflow_file().capacity() >= full + 4);
    }
}
