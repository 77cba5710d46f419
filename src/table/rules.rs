//! The write rules of a shard: bind, unbind, update, query and expiry
//! reclamation, as plain functions of the tables and `now_s`.
//!
//! Invariants kept here (docs/STORAGE.md, "Representatives"):
//! - every X with at least one binding has exactly one representative
//!   record, with the key (X, NONE); it heads the list of X's bindings,
//!   linked through their cold records;
//! - an AXB representative has no (X, A) key: lookups find A through (X, NONE);
//! - when the representative goes while other bindings remain on X, the next
//!   one on the list is promoted: it takes (X, NONE) (and an AXB gives up its
//!   (X, A) key);
//! - every live binding on an X has the same tenant (`x_tenant`), for every
//!   binding made since that rule (step 5).

use super::hash::key_hash;
use super::layout::{meta, ColdRecord, HotRecord};
use super::records::{compose_id, decompose_id};
use super::shard::Shard;
use crate::binding::{
    BindRequest, Binding, BindingId, Change, ChangeKind, InvalidRequest, Mode, OrderRef, Parties,
    Update, WriteError,
};
use crate::number::Number;

/// What a successful bind did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindOutcome {
    /// The binding's id.
    pub binding_id: BindingId,
    /// False when an identical live binding already existed (an idempotent
    /// retry): nothing changed.
    pub created: bool,
    /// Its expiry.
    pub expires_at_s: u32,
}

impl Shard {
    /// The record in `slot`.
    #[inline(always)]
    pub(super) fn record(&self, slot: u32) -> &HotRecord {
        &self.records.items()[slot as usize]
    }

    fn cold_record(&self, slot: u32) -> &ColdRecord {
        self.cold.item(slot as usize)
    }

    /// The id of the binding in `slot`.
    #[inline(always)]
    pub(super) fn id_of(&self, slot: u32) -> BindingId {
        compose_id(self.identity.shard_id, self.record(slot).generation(), slot)
    }

    /// The slot holding index key (x, party), if any.
    #[inline(always)]
    pub(super) fn find_key(&self, x: Number, party: Number) -> Option<u32> {
        let hash = key_hash(x, party);
        let records = self.records.items();
        self.index
            .find(hash, |slot| records[slot as usize].has_key(x, party))
    }

    /// The AXB binding on X that has `party` as A or B, found through its
    /// own key or, for the representative's A, through (X, NONE).
    pub(super) fn find_axb_party(&self, x: Number, party: Number) -> Option<u32> {
        if let Some(slot) = self.find_key(x, party) {
            return Some(slot);
        }
        let representative = self.find_key(x, Number::NONE)?;
        let record = self.record(representative);
        (record.is_live() && record.mode_bits() == meta::MODE_AXB && record.a() == party)
            .then_some(representative)
    }

    /// Creates a binding, or returns the existing one if an identical live
    /// bind was already made (a retry). A bind on an X that belongs to
    /// another tenant (`x_tenant`) is refused with `OtherTenant` before
    /// anything else is looked at, so the answer is the same whatever the
    /// request's numbers.
    pub fn bind(&mut self, request: &BindRequest, now_s: u32) -> Result<BindOutcome, WriteError> {
        validate(request)?;
        let x = request.x;
        if let Some(representative) = self.find_key(x, Number::NONE) {
            if self
                .x_tenant(representative, None, now_s)
                .is_some_and(|tenant| tenant != request.tenant)
            {
                return Err(WriteError::OtherTenant);
            }
        }
        self.prepare_write()?;
        match request.parties {
            Parties::Axb { a, b } => {
                for party in [a, b] {
                    if let Some(outcome) =
                        self.clear_way(self.find_axb_party(x, party), request, now_s)?
                    {
                        return Ok(outcome);
                    }
                }
            }
            Parties::Axe { extension, .. } => {
                if let Some(outcome) =
                    self.clear_way(self.find_key(x, extension), request, now_s)?
                {
                    return Ok(outcome);
                }
            }
            Parties::Axn { .. } => {}
        }
        if let Some(representative) = self.find_key(x, Number::NONE) {
            let record = *self.record(representative);
            if request.parties.mode() == Mode::Axn {
                // An AXN makes X exclusive: every binding on X must be gone
                // or expired (then reclaimed here).
                if record.mode_bits() == meta::MODE_AXN
                    && self.same_binding(representative, request)
                    && !record.is_expired(now_s)
                {
                    return Ok(self.existing(representative));
                }
                if let Some(live) = self.clear_x(representative, now_s) {
                    return Err(self.refusal(live, request.tenant));
                }
            } else if record.mode_bits() == meta::MODE_AXN {
                if !record.is_expired(now_s) {
                    return Err(self.refusal(representative, request.tenant));
                }
                self.remove_expired(representative);
            }
        }
        let slot = self.allocate_slot();
        let (a, b_field) = match request.parties {
            Parties::Axb { a, b } => (a, b),
            Parties::Axn { a, default_callee } => (a, default_callee.unwrap_or(Number::NONE)),
            Parties::Axe { a, extension } => (a, extension),
        };
        let expires_at_s = now_s.saturating_add(request.ttl_s);
        {
            let record = self.records.item_mut(slot as usize);
            record.x = x.0;
            record.a = a.0;
            record.b = b_field.0;
            record.expires_at_s = expires_at_s;
            record.set_attributes(request.parties.mode(), request.direction, request.recording);
        }
        let (order_len, order) = request.order.stored();
        *self.cold.item_mut(slot as usize) = ColdRecord {
            tenant: request.tenant,
            created_at_s: now_s,
            ttl_s: request.ttl_s,
            x_next: 0,
            x_prev: 0,
            order_len,
            reserved: [0; 11],
            order,
        };
        match self.find_key(x, Number::NONE) {
            Some(representative) => self.link_after(representative, slot),
            None => self.records.item_mut(slot as usize).meta |= meta::REPRESENTATIVE,
        }
        let (parties, count) = self.record(slot).index_keys();
        for &party in &parties[..count] {
            self.index.insert(key_hash(x, party), slot);
        }
        self.counters.live_bindings += 1;
        self.count_tenant(request.tenant, true);
        self.split_index();
        self.note(ChangeKind::Created, now_s, slot);
        Ok(BindOutcome {
            binding_id: self.id_of(slot),
            created: true,
            expires_at_s,
        })
    }

    /// Given the binding that already holds one of a new binding's keys:
    /// returns it if it is an identical live binding (idempotent retry),
    /// reclaims it if it has expired, and otherwise refuses the bind.
    fn clear_way(
        &mut self,
        holder: Option<u32>,
        request: &BindRequest,
        now_s: u32,
    ) -> Result<Option<BindOutcome>, WriteError> {
        let Some(slot) = holder else { return Ok(None) };
        if self.record(slot).is_expired(now_s) {
            self.remove_expired(slot);
            return Ok(None);
        }
        if self.same_binding(slot, request) {
            return Ok(Some(self.existing(slot)));
        }
        Err(self.refusal(slot, request.tenant))
    }

    /// The tenant X belongs to: that of the first unexpired binding on X's
    /// list (headed by `representative`), leaving out `skip` (an update asks
    /// about X's other bindings). `None` if every binding there has expired.
    ///
    /// The rule, until number pools exist: an X with a live binding belongs
    /// to that binding's tenant, and a bind or update that would put
    /// another tenant's number on it is refused (`OtherTenant`). Every
    /// binding made under the rule shares its tenant with all of X's live
    /// bindings, so the first live one answers for all of them. Cost: one
    /// cold record read (the representative's tenant; the bind has just
    /// probed the representative), plus a hot and a cold record per expired
    /// binding ahead of the first live one, which the expiry sweep keeps
    /// few. An X that several tenants bound before the rule belongs here to
    /// its first live binding's tenant; a request that meets another
    /// tenant's binding on such an X is refused all the same (`refusal`).
    fn x_tenant(&self, representative: u32, skip: Option<u32>, now_s: u32) -> Option<u32> {
        let mut slot = representative;
        loop {
            if Some(slot) != skip && !self.record(slot).is_expired(now_s) {
                return Some(self.cold_record(slot).tenant);
            }
            slot = self.cold_record(slot).x_next.checked_sub(1)?;
        }
    }

    /// The refusal of a request made for `tenant` that meets the live
    /// binding in `slot`: a conflict naming that binding if it is the same
    /// tenant's, else `OtherTenant`, which names nothing.
    fn refusal(&self, slot: u32, tenant: u32) -> WriteError {
        if self.cold_record(slot).tenant == tenant {
            WriteError::Conflict {
                binding_id: Some(self.id_of(slot)),
            }
        } else {
            WriteError::OtherTenant
        }
    }

    /// Empties X for an AXN: if every binding on X (the list headed by
    /// `representative`) has expired, removes them all and returns `None`;
    /// otherwise changes nothing and returns a live binding's slot. The
    /// representative goes last, so no promotion (and no index insert)
    /// happens on the way.
    fn clear_x(&mut self, representative: u32, now_s: u32) -> Option<u32> {
        let mut slot = representative;
        loop {
            if !self.record(slot).is_expired(now_s) {
                return Some(slot);
            }
            match self.cold_record(slot).x_next {
                0 => break,
                next => slot = next - 1,
            }
        }
        while let Some(next) = self.cold_record(representative).x_next.checked_sub(1) {
            self.remove_expired(next);
        }
        self.remove_expired(representative);
        None
    }

    fn existing(&self, slot: u32) -> BindOutcome {
        BindOutcome {
            binding_id: self.id_of(slot),
            created: false,
            expires_at_s: self.record(slot).expires_at_s,
        }
    }

    /// True if the live binding in `slot` was made by exactly this request.
    fn same_binding(&self, slot: u32, request: &BindRequest) -> bool {
        let binding = self.binding_at(slot);
        binding.x == request.x
            && binding.parties == request.parties
            && binding.tenant == request.tenant
            && binding.order == request.order
            && binding.ttl_s == request.ttl_s
            && binding.direction == request.direction
            && binding.recording == request.recording
    }

    /// Puts `slot` on X's list right after the representative.
    fn link_after(&mut self, representative: u32, slot: u32) {
        let cold = &mut self.cold;
        let next = cold.items()[representative as usize].x_next;
        cold.item_mut(slot as usize).x_prev = representative + 1;
        cold.item_mut(slot as usize).x_next = next;
        if next != 0 {
            cold.item_mut(next as usize - 1).x_prev = slot + 1;
        }
        cold.item_mut(representative as usize).x_next = slot + 1;
    }

    /// Takes `slot` off its X's list; returns the slot that followed it.
    fn unlink(&mut self, slot: u32) -> Option<u32> {
        let cold = &mut self.cold;
        let (previous, next) = (
            cold.items()[slot as usize].x_prev,
            cold.items()[slot as usize].x_next,
        );
        if previous != 0 {
            cold.item_mut(previous as usize - 1).x_next = next;
        }
        if next != 0 {
            cold.item_mut(next as usize - 1).x_prev = previous;
        }
        next.checked_sub(1)
    }

    /// Notes a change to the binding in `slot`, if changes are recorded.
    fn note(&mut self, kind: ChangeKind, at_s: u32, slot: u32) {
        if self.changes.is_some() {
            let binding = self.binding_at(slot);
            if let Some(changes) = self.changes.as_mut() {
                changes.push(Change {
                    kind,
                    at_s,
                    binding,
                    credential: 0,
                });
            }
        }
    }

    /// Removes a binding whose expiry has passed, noting it as expired at
    /// its expiry.
    fn remove_expired(&mut self, slot: u32) {
        let at_s = self.record(slot).expires_at_s;
        self.note(ChangeKind::Expired, at_s, slot);
        self.remove_binding(slot);
    }

    /// Removes a live binding (unbind or reclamation). If it represented
    /// its X and others remain, the next on X's list becomes the
    /// representative. At most one index insert (the promotion).
    pub(super) fn remove_binding(&mut self, slot: u32) {
        let record = *self.record(slot);
        assert!(
            record.is_live(),
            "removing slot {slot} which holds no live binding"
        );
        let x = record.x();
        let (parties, count) = record.index_keys();
        for &party in &parties[..count] {
            self.index.remove(key_hash(x, party), slot);
        }
        let next = self.unlink(slot);
        if let (true, Some(successor)) = (record.is_representative(), next) {
            let promoted = *self.record(successor);
            assert!(
                !promoted.is_representative(),
                "X {x} has two representatives"
            );
            if promoted.mode_bits() == meta::MODE_AXB {
                // The representative answers for A through (X, NONE).
                self.index.remove(key_hash(x, promoted.a()), successor);
            }
            self.records.item_mut(successor as usize).meta |= meta::REPRESENTATIVE;
            self.index.insert(key_hash(x, Number::NONE), successor);
        }
        self.counters.live_bindings -= 1;
        self.count_tenant(self.cold_record(slot).tenant, false);
        self.free_slot(slot);
    }

    /// The live, unexpired binding with this id, as a slot.
    fn live_slot(&mut self, id: BindingId, now_s: u32) -> Result<u32, WriteError> {
        let (shard, generation, slot) = decompose_id(id).ok_or(WriteError::NotFound)?;
        if shard != self.identity.shard_id || slot >= self.counters.records_used {
            return Err(WriteError::NotFound);
        }
        let record = self.record(slot);
        if !record.is_live() || record.generation() != generation {
            return Err(WriteError::NotFound);
        }
        if record.is_expired(now_s) {
            return Err(WriteError::NotFound);
        }
        Ok(slot)
    }

    /// Removes a binding by id. Expired bindings count as gone.
    pub fn unbind(&mut self, id: BindingId, now_s: u32) -> Result<Binding, WriteError> {
        let slot = self.live_slot(id, now_s)?;
        self.prepare_write()?;
        let binding = self.binding_at(slot);
        self.note(ChangeKind::Unbound, now_s, slot);
        self.remove_binding(slot);
        Ok(binding)
    }

    /// The live binding on X that `party` (a real number for AXB and AXN's
    /// owner, an extension key for AXE) belongs to.
    pub fn find_by_party(&self, x: Number, party: Number, now_s: u32) -> Option<BindingId> {
        let slot = if party.is_extension() {
            self.find_key(x, party)
        } else {
            self.find_axb_party(x, party).or_else(|| {
                let representative = self.find_key(x, Number::NONE)?;
                let record = self.record(representative);
                (record.is_live() && record.mode_bits() == meta::MODE_AXN && record.a() == party)
                    .then_some(representative)
            })
        }?;
        (!self.record(slot).is_expired(now_s)).then(|| self.id_of(slot))
    }

    /// Changes a live binding. A new B (or AXN default callee) is a number
    /// put on X: refused with `OtherTenant` if X's other live bindings
    /// belong to another tenant (`x_tenant`) or the number's holder on X
    /// does.
    pub fn update(
        &mut self,
        id: BindingId,
        update: &Update,
        now_s: u32,
    ) -> Result<Binding, WriteError> {
        let slot = self.live_slot(id, now_s)?;
        if let Some(ttl_s) = update.ttl_s {
            validate_ttl(ttl_s)?;
        }
        let record = *self.record(slot);
        let mode = record.mode().unwrap_or(Mode::Axb);
        if let Some(new_b) = update.b {
            if mode == Mode::Axe {
                return Err(
                    InvalidRequest::NotApplicable("an AXE binding has no B to replace").into(),
                );
            }
            // NONE removes an AXN's default callee; an AXB needs a real B.
            if new_b.is_extension() || (new_b.is_none() && mode == Mode::Axb) {
                return Err(
                    InvalidRequest::NotApplicable("the new B must be a real number").into(),
                );
            }
            if new_b == record.a() {
                return Err(InvalidRequest::SamePartyTwice.into());
            }
        }
        let tenant = self.cold_record(slot).tenant;
        if update.b.is_some_and(|b| !b.is_none() && b != record.b()) {
            let held_by_other = self
                .find_key(record.x(), Number::NONE)
                .and_then(|representative| self.x_tenant(representative, Some(slot), now_s))
                .is_some_and(|holder| holder != tenant);
            if held_by_other {
                return Err(WriteError::OtherTenant);
            }
        }
        self.prepare_write()?;
        if let (Some(new_b), Mode::Axb) = (update.b, mode) {
            if new_b != record.b() {
                if let Some(holder) = self.find_axb_party(record.x(), new_b) {
                    if self.record(holder).is_expired(now_s) {
                        self.remove_expired(holder);
                    } else {
                        return Err(self.refusal(holder, tenant));
                    }
                }
                self.index.remove(key_hash(record.x(), record.b()), slot);
                self.records.item_mut(slot as usize).b = new_b.0;
                self.index.insert(key_hash(record.x(), new_b), slot);
                self.split_index();
            }
        }
        if let (Some(new_b), Mode::Axn) = (update.b, mode) {
            self.records.item_mut(slot as usize).b = new_b.0;
        }
        let direction = update.direction.unwrap_or(record.direction());
        let recording = update.recording.unwrap_or(record.recording());
        let record = self.records.item_mut(slot as usize);
        record.set_attributes(mode, direction, recording);
        if let Some(ttl_s) = update.ttl_s {
            record.expires_at_s = now_s.saturating_add(ttl_s);
            self.cold.item_mut(slot as usize).ttl_s = ttl_s;
        }
        self.note(ChangeKind::Updated, now_s, slot);
        Ok(self.binding_at(slot))
    }

    /// Gives a live binding another tenant, as a data directory written
    /// before the one-tenant-per-X rule may hold it (two tenants' bindings
    /// on one X), so tests can build that state. `false` if no live binding
    /// has this id.
    #[cfg(test)]
    pub(crate) fn rewrite_tenant(&mut self, id: BindingId, tenant: u32, now_s: u32) -> bool {
        let Ok(slot) = self.live_slot(id, now_s) else {
            return false;
        };
        let before = self.cold_record(slot).tenant;
        self.count_tenant(before, false);
        self.count_tenant(tenant, true);
        self.cold.item_mut(slot as usize).tenant = tenant;
        true
    }

    /// Calls `f` with every binding the shard holds (expired ones not yet
    /// reclaimed included), in slot order. Reads every record: for start-up
    /// (the allocator and the tenants' counts are rebuilt from it).
    pub fn for_each_binding(&self, mut f: impl FnMut(Binding)) {
        for slot in 0..self.counters.records_used {
            if self.record(slot).is_live() {
                f(self.binding_at(slot));
            }
        }
    }

    /// The tenant of the binding with this id, if its slot holds it (one
    /// cold record read: lookups ask only while some tenant is suspended
    /// or some caller blocked).
    pub fn tenant_of(&self, id: BindingId) -> Option<u32> {
        let (shard, generation, slot) = decompose_id(id)?;
        if shard != self.identity.shard_id || slot >= self.counters.records_used {
            return None;
        }
        let record = self.record(slot);
        (record.is_live() && record.generation() == generation)
            .then(|| self.cold_record(slot).tenant)
    }

    /// The live, unexpired binding with this id.
    pub fn query(&self, id: BindingId, now_s: u32) -> Option<Binding> {
        let (shard, generation, slot) = decompose_id(id)?;
        if shard != self.identity.shard_id || slot >= self.counters.records_used {
            return None;
        }
        let record = self.record(slot);
        (record.is_live() && record.generation() == generation && !record.is_expired(now_s))
            .then(|| self.binding_at(slot))
    }

    /// The binding stored in a live slot.
    fn binding_at(&self, slot: u32) -> Binding {
        let record = *self.record(slot);
        let cold = *self.cold_record(slot);
        let parties = match record.mode() {
            Some(Mode::Axn) => Parties::Axn {
                a: record.a(),
                default_callee: (!record.b().is_none()).then_some(record.b()),
            },
            Some(Mode::Axe) => Parties::Axe {
                a: record.a(),
                extension: record.b(),
            },
            _ => Parties::Axb {
                a: record.a(),
                b: record.b(),
            },
        };
        let order = OrderRef::from_stored(cold.order_len, cold.order).unwrap_or_else(|| {
            panic!(
                "slot {slot} holds an order reference of length {}",
                cold.order_len
            )
        });
        Binding {
            id: self.id_of(slot),
            x: record.x(),
            parties,
            tenant: cold.tenant,
            order,
            ttl_s: cold.ttl_s,
            expires_at_s: record.expires_at_s,
            created_at_s: cold.created_at_s,
            direction: record.direction(),
            recording: record.recording(),
        }
    }

    /// Examines up to `budget` slots from the sweep cursor and removes the
    /// bindings that have expired. Returns how many it removed. Each call's
    /// work is bounded by `budget`, whatever the table's size.
    ///
    /// The sweep never skips a slot: the cursor moves past a slot only once
    /// its step is done. If the index cannot grow for a removal, the sweep
    /// stops with the cursor on that slot, which the next sweep examines
    /// again. (Applying the log reserves room first, `reserve_for_entry`,
    /// so there this cannot happen; before, the cursor moved first and a
    /// failed removal left the binding behind it on one member only.)
    pub fn reclaim_expired(&mut self, now_s: u32, budget: u32) -> u32 {
        let used = self.counters.records_used;
        if used == 0 {
            return 0;
        }
        let mut removed = 0;
        for _ in 0..budget.min(used) {
            let slot = self.counters.reclaim_cursor;
            let record = self.record(slot);
            if record.is_live() && record.is_expired(now_s) {
                if self.prepare_removal().is_err() {
                    break;
                }
                self.remove_expired(slot);
                removed += 1;
            }
            self.counters.reclaim_cursor = if slot + 1 >= used { 0 } else { slot + 1 };
        }
        removed
    }

    fn split_index(&mut self) {
        let records = self.records.items();
        self.index.split_while_loaded(&mut |slot, out| {
            let record = &records[slot as usize];
            let (parties, count) = record.index_keys();
            out.extend(parties[..count].iter().map(|&p| key_hash(record.x(), p)));
        });
    }
}

/// Checks a bind request on its own.
fn validate(request: &BindRequest) -> Result<(), InvalidRequest> {
    validate_ttl(request.ttl_s)?;
    match request.parties {
        Parties::Axb { a, b } if a == b => Err(InvalidRequest::SamePartyTwice),
        Parties::Axn {
            a,
            default_callee: Some(callee),
        } if a == callee => Err(InvalidRequest::SamePartyTwice),
        _ => Ok(()),
    }
}

fn validate_ttl(ttl_s: u32) -> Result<(), InvalidRequest> {
    if ttl_s == 0 || ttl_s > crate::binding::TTL_S_MAX {
        return Err(InvalidRequest::Ttl(u64::from(ttl_s)));
    }
    Ok(())
}
