//! Lookup screening: after a batch of lookups is answered, the routed
//! answers are checked against the registry (`tenant::Registry`) while it
//! has anything to say: the binding's tenant suspended (`tenant_suspended`),
//! the caller blocked (`blocked`), the tenant or the X over its lookup rate
//! limit this second (`rate_limited`). Each refusal is counted by reason
//! and tenant for `/metrics`.
//!
//! Rate limits count per second of the node's clock, per shard set: an X
//! belongs to one set (its shard's), so its limit is exact; a tenant's
//! limit is shared out evenly among the sets (the event loops), so a
//! tenant whose traffic leans on one loop is limited a little early.

use super::ShardSet;
use crate::binding::{LookupQuery, LookupResult, Reject};
use std::collections::{BTreeMap, HashMap};

/// Most distinct X counted in one second; past it, X not yet counted are
/// not limited that second (the map's memory stays bounded).
const X_COUNTED_MAX: usize = 1 << 16;

/// One set's screening state.
#[derive(Debug, Default)]
pub struct Screening {
    /// The second the counts below are for.
    second: u32,
    /// Lookups answered this second, by tenant.
    tenants: HashMap<u32, u32>,
    /// Lookups answered this second, by X.
    xs: HashMap<u64, u32>,
    /// Refusals not yet handed to the registry's counters, by (status,
    /// tenant).
    refused: BTreeMap<(u8, u32), u64>,
}

impl ShardSet {
    /// Screens the routed answers of `queries` (see the module docs).
    pub(crate) fn screen(&self, queries: &[LookupQuery], answers: &mut [LookupResult], now_s: u32) {
        let registry = self.control().registry();
        let Ok(mut state) = self.screening.try_borrow_mut() else {
            return;
        };
        if state.second != now_s {
            state.second = now_s;
            state.tenants.clear();
            state.xs.clear();
        }
        for (query, answer) in queries.iter().zip(answers.iter_mut()) {
            let LookupResult::Route(route) = answer else {
                continue;
            };
            let Some(tenant_id) = self
                .shard(self.shard_index(query.x))
                .tenant_of(route.binding_id)
            else {
                continue;
            };
            let reject = if registry.is_suspended(tenant_id) {
                Some(Reject::TenantSuspended)
            } else if registry.is_blocked(Some(tenant_id), query.caller) {
                Some(Reject::Blocked)
            } else {
                registry
                    .tenant(tenant_id)
                    .and_then(|tenant| state.over_limit(tenant, query, self.parts))
            };
            if let Some(reject) = reject {
                *answer = LookupResult::Reject(reject);
                let status = crate::protocol::codec::reject_status(reject);
                *state.refused.entry((status, tenant_id)).or_default() += 1;
            }
        }
        if !state.refused.is_empty() {
            self.control().count_screened(&mut state.refused);
        }
    }
}

impl Screening {
    /// Counts one lookup of `tenant`'s binding on `query.x`; the refusal
    /// if that puts the tenant (its share on this set) or the X over its
    /// limit. A refused lookup still counts, so a flood stays refused.
    fn over_limit(
        &mut self,
        tenant: &crate::tenant::Tenant,
        query: &LookupQuery,
        parts: u32,
    ) -> Option<Reject> {
        let mut over = false;
        if tenant.lookups_per_s > 0 {
            let share = tenant.lookups_per_s.div_ceil(parts.max(1));
            let count = self.tenants.entry(tenant.id).or_default();
            *count = count.saturating_add(1);
            over |= *count > share;
        }
        if tenant.x_lookups_per_s > 0 {
            let word = query.x.word();
            if self.xs.len() < X_COUNTED_MAX || self.xs.contains_key(&word) {
                let count = self.xs.entry(word).or_default();
                *count = count.saturating_add(1);
                over |= *count > tenant.x_lookups_per_s;
            }
        }
        over.then_some(Reject::RateLimited)
    }
}
