//! Lookup: caller C dialled X (and perhaps an extension): route or reject.
//! Read-only; never mutates the tables, so it never waits for a write.

use super::hash::key_hash;
use super::layout::{meta, HotRecord};
use super::mapped::prefetch;
use super::shard::Shard;
use crate::binding::{LookupQuery, LookupResult, Reject, Route};
use crate::number::Number;

impl Shard {
    /// Answers one lookup at `now_s`.
    ///
    /// - With an extension: the AXE binding (X, extension) routes to its A.
    /// - Otherwise: the AXB binding holding the caller on X routes to the
    ///   other party; else X's representative decides: an AXN routes to its
    ///   owner (or the owner's default callee), an AXB representative whose A
    ///   is the caller routes to B, and any other binding on X means the
    ///   caller is not a party.
    /// - Expired bindings are never routed, reclaimed or not.
    #[inline]
    pub fn lookup(&self, query: &LookupQuery, now_s: u32) -> LookupResult {
        let x = query.x;
        if !query.extension.is_none() {
            return match self.find_key(x, query.extension) {
                Some(slot) => {
                    route_to_owner(self.record(slot), query.caller, x, self.id_of(slot), now_s)
                }
                None => LookupResult::Reject(Reject::NotBound),
            };
        }
        if let Some(slot) = self.find_key(x, query.caller) {
            let record = self.record(slot);
            if record.mode_bits() == meta::MODE_AXB {
                return route_axb(record, query.caller, x, self.id_of(slot), now_s);
            }
        }
        match self.find_key(x, Number::NONE) {
            Some(representative) => self.answer_from_representative(query, representative, now_s),
            None => LookupResult::Reject(Reject::NotBound),
        }
    }

    /// Batch stage 1: start loading the bucket that holds `hash`.
    #[inline(always)]
    pub fn prefetch_bucket(&self, hash: u64) {
        self.index.prefetch(hash);
    }

    /// Batch stage 2: scan the (now cached) bucket of `hash` and start
    /// loading the record of the first entry with its tag; returns that
    /// slot. `None` means no entry has the tag: the key is surely absent.
    #[inline(always)]
    pub fn prefetch_candidate(&self, hash: u64) -> Option<u32> {
        let slot = self.index.first_candidate(hash)?;
        prefetch(&self.records.items()[slot as usize]);
        Some(slot)
    }

    /// Batch stage 3: answers a lookup from the candidates the earlier
    /// stages found (`first` for the query's own key, `representative` for
    /// (X, NONE) when the own key was absent), whose records are now in
    /// cache. Falls back to `lookup` when a candidate was a tag collision.
    /// Same answers as `lookup`, with no hashing or bucket scan repeated.
    #[inline]
    pub fn lookup_with_candidates(
        &self,
        query: &LookupQuery,
        first: Option<u32>,
        representative: Option<u32>,
        now_s: u32,
    ) -> LookupResult {
        let x = query.x;
        if let Some(slot) = first {
            let record = self.record(slot);
            if query.extension.is_none() {
                if record.mode_bits() == meta::MODE_AXB && record.has_key(x, query.caller) {
                    return route_axb(record, query.caller, x, self.id_of(slot), now_s);
                }
            } else if record.has_key(x, query.extension) {
                return route_to_owner(record, query.caller, x, self.id_of(slot), now_s);
            }
            // A tag collision: take the careful path.
            return self.lookup(query, now_s);
        }
        if !query.extension.is_none() {
            return LookupResult::Reject(Reject::NotBound);
        }
        match representative {
            None => LookupResult::Reject(Reject::NotBound),
            Some(slot) if self.record(slot).has_key(x, Number::NONE) => {
                self.answer_from_representative(query, slot, now_s)
            }
            Some(_) => self.lookup(query, now_s),
        }
    }

    /// The answer when the caller's own key is absent and `representative`
    /// represents X.
    #[inline]
    fn answer_from_representative(
        &self,
        query: &LookupQuery,
        representative: u32,
        now_s: u32,
    ) -> LookupResult {
        let record = self.record(representative);
        match record.mode_bits() {
            meta::MODE_AXN => route_axn(
                record,
                query.caller,
                query.x,
                self.id_of(representative),
                now_s,
            ),
            meta::MODE_AXB if record.a() == query.caller => route_axb(
                record,
                query.caller,
                query.x,
                self.id_of(representative),
                now_s,
            ),
            _ => LookupResult::Reject(Reject::NotAParty),
        }
    }
}

/// Hash of the key a lookup probes first.
#[inline(always)]
pub fn first_key_hash(query: &LookupQuery) -> u64 {
    if query.extension.is_none() {
        key_hash(query.x, query.caller)
    } else {
        key_hash(query.x, query.extension)
    }
}

/// Hash of X's representative key.
#[inline(always)]
pub fn representative_hash(x: Number) -> u64 {
    key_hash(x, Number::NONE)
}

fn route(
    callee: Number,
    display: Number,
    record: &HotRecord,
    binding_id: crate::binding::BindingId,
    now_s: u32,
) -> LookupResult {
    LookupResult::Route(Route {
        callee,
        display,
        recording: record.recording(),
        binding_id,
        expires_in_s: record.expires_at_s - now_s,
    })
}

fn route_axb(
    record: &HotRecord,
    caller: Number,
    x: Number,
    id: crate::binding::BindingId,
    now_s: u32,
) -> LookupResult {
    if record.is_expired(now_s) {
        return LookupResult::Reject(Reject::Expired);
    }
    let direction = record.direction();
    if caller == record.a() {
        if direction.allows_a_to_b() {
            return route(record.b(), x, record, id, now_s);
        }
    } else if direction.allows_b_to_a() {
        return route(record.a(), x, record, id, now_s);
    }
    LookupResult::Reject(Reject::DirectionDenied)
}

fn route_axn(
    record: &HotRecord,
    caller: Number,
    x: Number,
    id: crate::binding::BindingId,
    now_s: u32,
) -> LookupResult {
    if record.is_expired(now_s) {
        return LookupResult::Reject(Reject::Expired);
    }
    let direction = record.direction();
    if caller == record.a() {
        // The owner's own call goes to the default callee, if one was given.
        if !record.b().is_none() && direction.allows_a_to_b() {
            return route(record.b(), x, record, id, now_s);
        }
        return LookupResult::Reject(Reject::DirectionDenied);
    }
    if direction.allows_b_to_a() {
        return route(record.a(), x, record, id, now_s);
    }
    LookupResult::Reject(Reject::DirectionDenied)
}

/// AXE: anyone dialling X plus the extension reaches the owner; the owner
/// dialling its own extension is refused.
fn route_to_owner(
    record: &HotRecord,
    caller: Number,
    x: Number,
    id: crate::binding::BindingId,
    now_s: u32,
) -> LookupResult {
    if record.is_expired(now_s) {
        return LookupResult::Reject(Reject::Expired);
    }
    if caller != record.a() && record.direction().allows_b_to_a() {
        return route(record.a(), x, record, id, now_s);
    }
    LookupResult::Reject(Reject::DirectionDenied)
}
