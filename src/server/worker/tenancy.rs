//! What a loop does for tenants and pools before a write reaches the log:
//! the leader chooses X for BIND_AXB_AUTO (with the node's allocator,
//! `tenant::Control`), keeps the tenants' quotas (live bindings, binds per
//! second), refuses to remove a pool range still in use unless forced, and
//! answers POOL_SHOW. None of this is replicated state: each is decided
//! here and the log carries only the outcome (the X chosen), so members
//! never have to agree on the allocator.

use super::Worker;
use crate::number::check_real;
use crate::pool::{AreaCode, Fallback};
use crate::protocol::codec::auto::{self, AutoBindBody, Reach};
use crate::protocol::codec::control::ControlRequest;
use crate::protocol::frame::{Header, HEADER_BYTES};
use crate::protocol::{opcode, status};
use crate::server::auth::Access;
use crate::server::cross::Origin;

/// Provisional binding ids have the top bit set: real ids never do (their
/// top 16 bits are a shard, below 256).
const PROVISIONAL: u64 = 1 << 63;

impl Worker {
    /// The status that refuses a bind for `tenant` on a quota, if one
    /// does: its live bindings on this member, or its binds this second
    /// on this loop (its share of `binds_per_s`). Checked before the bind
    /// is logged, so a burst in flight may pass a quota by what is in
    /// flight.
    pub(super) fn quota_refusal(&mut self, tenant: u32) -> Option<u8> {
        let control = std::sync::Arc::clone(self.set.control());
        let registry = control.registry();
        let entry = registry.tenant(tenant)?;
        if entry.max_live > 0 && control.live_of(tenant) >= u64::from(entry.max_live) {
            return Some(status::QUOTA_EXCEEDED);
        }
        if entry.binds_per_s > 0 {
            let loops = u32::try_from(self.shared.workers).unwrap_or(1).max(1);
            let share = entry.binds_per_s.div_ceil(loops);
            let (second, counts) = &mut self.binds_this_second;
            if *second != self.now_s {
                *second = self.now_s;
                counts.clear();
            }
            let count = counts.entry(tenant).or_default();
            if *count >= share {
                return Some(status::QUOTA_EXCEEDED);
            }
            *count += 1;
        }
        None
    }

    /// BIND_AXB_AUTO: chooses X for the pair and proposes the bind with it.
    pub(super) fn propose_auto(
        &mut self,
        origin: Origin,
        header: &Header,
        body: &[u8],
        auto: &AutoBindBody,
        access: &Access,
    ) {
        let request_id = header.request_id;
        let refuse = |worker: &mut Worker, code: u8, body: &[u8]| {
            let mut frame = Vec::with_capacity(HEADER_BYTES + body.len());
            crate::protocol::frame::push_frame(
                &mut frame,
                opcode::BIND_AXB_AUTO,
                code,
                request_id,
                body,
            );
            worker.deliver(origin, &frame);
        };
        let bind = &auto.bind;
        if !access.allows(bind.tenant) {
            return refuse(self, status::UNAUTHORISED, &[]);
        }
        let (Ok(a), Ok(b)) = (check_real(bind.a), check_real(bind.b)) else {
            return refuse(self, status::BAD_NUMBER, &[]);
        };
        if a == b {
            return refuse(self, status::BAD_REQUEST, &[]);
        }
        let control = std::sync::Arc::clone(self.set.control());
        let registry = control.registry();
        if registry.tenant(bind.tenant).is_none() {
            return refuse(self, status::UNKNOWN_TENANT, &[]);
        }
        if registry.is_suspended(bind.tenant) {
            return refuse(self, status::TENANT_SUSPENDED, &[]);
        }
        let area_text = auto::area_text(&auto.area);
        let Some(area) = AreaCode::parse(&area_text) else {
            return refuse(self, status::BAD_REQUEST, &[]);
        };
        let fallback = match auto.reach {
            Reach::Area => Fallback::None,
            Reach::Province => Fallback::Province,
            Reach::Any => Fallback::Any,
        };
        if let Some(code) = self.quota_refusal(bind.tenant) {
            return refuse(self, code, &[]);
        }
        let now_s = self.now_s;
        let provisional = PROVISIONAL | self.provisional_next;
        let chosen = control.with_allocator(|allocator| {
            // A retry of a bind already made gets its X back: the tables
            // then answer it as the retry it is.
            let x = match allocator.x_of_pair(a, b, now_s) {
                Some(x) => x,
                None => {
                    allocator.choose(registry.pools(), bind.tenant, &area, fallback, a, b, now_s)?
                }
            };
            let expires = now_s.saturating_add(bind.ttl_s);
            allocator.bound(x, a, b, provisional, expires);
            Ok::<_, crate::pool::Exhausted>(x)
        });
        let x = match chosen {
            Some(Ok(x)) => x,
            Some(Err(_exhausted)) => {
                return refuse(self, status::POOL_EXHAUSTED, area_text.as_bytes());
            }
            None => return refuse(self, status::INTERNAL, &[]),
        };
        self.provisional_next = self.provisional_next.wrapping_add(1) & !PROVISIONAL;
        let logged = auto::logged_body(body, x);
        if self.propose(origin, header, &logged, access) {
            self.auto_pending.insert((origin, request_id), provisional);
        } else {
            control.with_allocator(|allocator| allocator.released(provisional, now_s, false));
        }
    }

    /// An answer to a BIND_AXB_AUTO is going out: the provisional binding
    /// gives way to the real one (which the apply added, if it was made).
    pub(super) fn auto_answered(&mut self, origin: Origin, frame: &[u8]) {
        let Some(header) = frame.first_chunk::<HEADER_BYTES>().map(Header::read) else {
            return;
        };
        if header.opcode != opcode::BIND_AXB_AUTO {
            return;
        }
        if let Some(provisional) = self.auto_pending.remove(&(origin, header.request_id)) {
            let now_s = self.now_s;
            self.set
                .control()
                .with_allocator(|allocator| allocator.released(provisional, now_s, false));
        }
    }

    /// POOL_REMOVE without force: refused here, before it is logged, while
    /// numbers of the range are in live bindings on this member.
    pub(super) fn pool_remove_refusal(&self, request: &ControlRequest<'_>) -> Option<u8> {
        let ControlRequest::PoolRemove {
            first,
            last,
            force: false,
            ..
        } = *request
        else {
            return None;
        };
        let in_use = self
            .set
            .control()
            .with_allocator(|allocator| allocator.in_use(first, last))
            .unwrap_or(0);
        (in_use > 0).then_some(status::IN_USE)
    }
}
