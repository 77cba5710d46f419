//! From decoded requests to answers: number checks, the shard that owns a
//! request, and the execution of writes against a `ShardSet` with tenant
//! isolation. Pure of sockets; the event loop calls it.

use super::auth::Access;
use crate::binding::{BindRequest, BindingId, LookupQuery, Update, WriteError};
use crate::number::{check_national, check_real, check_virtual, Number, XPolicy};
use crate::protocol::codec::{self, Request, UnbindBody};
use crate::protocol::frame::push_frame;
use crate::protocol::{opcode, status};
use crate::store::ShardSet;
use crate::table::records::decompose_id;

/// A checked request that a shard executes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Lookup.
    Lookup(LookupQuery),
    /// Bind (mode in the request).
    Bind(BindRequest),
    /// An AXB bind whose X the leader chose (BIND_AXB_AUTO, as logged): its
    /// answer carries X.
    BindAuto(BindRequest),
    /// Update by id.
    Update(BindingId, Update),
    /// Unbind by id or by X and party.
    Unbind(UnbindBody),
    /// Query by id.
    Query(BindingId),
}

impl Op {
    /// The table shard that must execute this op.
    pub fn table_shard(&self, shard_count: u16) -> u16 {
        let by_x = |x: Number| crate::table::hash::shard_of(x, shard_count);
        let by_id =
            |id: BindingId| decompose_id(id).map_or(0, |(shard, _, _)| shard.min(shard_count - 1));
        match self {
            Op::Lookup(query) => by_x(query.x),
            Op::Bind(request) | Op::BindAuto(request) => by_x(request.x),
            Op::Unbind(UnbindBody::Party { x, .. }) => by_x(*x),
            Op::Update(id, _) | Op::Unbind(UnbindBody::Id(id)) | Op::Query(id) => by_id(*id),
        }
    }
}

/// Checks the numbers of a lookup; `Err` is the status to answer.
#[inline(always)]
pub fn check_lookup(query: &LookupQuery, policy: XPolicy) -> Result<LookupQuery, u8> {
    let caller = check_real(query.caller).map_err(|_| status::BAD_NUMBER)?;
    let x = check_virtual(query.x, policy).map_err(|_| status::BAD_NUMBER)?;
    Ok(LookupQuery {
        caller,
        x,
        extension: query.extension,
    })
}

/// Turns a decoded write request into an op, checking its numbers.
pub fn check_write(request: &Request<'_>, policy: XPolicy) -> Result<Op, u8> {
    let real = |n: Number| check_real(n).map_err(|_| status::BAD_NUMBER);
    let virtual_ = |n: Number| check_virtual(n, policy).map_err(|_| status::BAD_NUMBER);
    match *request {
        Request::Bind(bind) => {
            let x = virtual_(bind.x)?;
            let a = real(bind.a)?;
            let b = match bind.mode {
                crate::binding::Mode::Axb => real(bind.b)?,
                crate::binding::Mode::Axn if bind.b.is_none() => Number::NONE,
                crate::binding::Mode::Axn => real(bind.b)?,
                crate::binding::Mode::Axe => bind.b,
            };
            let checked = codec::BindBody { x, a, b, ..bind };
            Ok(Op::Bind(BindRequest {
                x,
                parties: checked.parties(),
                tenant: bind.tenant,
                order: bind.order,
                ttl_s: bind.ttl_s,
                direction: bind.direction,
                recording: bind.recording,
            }))
        }
        Request::Update(body) => {
            let mut update = body.update;
            // All zeros is "no number": it removes an AXN's default callee.
            if let Some(b) = update.b.filter(|b| !b.is_none()) {
                update.b = Some(real(b)?);
            }
            Ok(Op::Update(body.binding_id, update))
        }
        Request::Unbind(UnbindBody::Party { x, party }) => {
            // Any national number may name a binding to remove, reserved or
            // not: a binding made before a number was reserved can go.
            let party = if party.is_extension() {
                party
            } else {
                check_national(party).map_err(|_| status::BAD_NUMBER)?
            };
            Ok(Op::Unbind(UnbindBody::Party {
                x: virtual_(x)?,
                party,
            }))
        }
        Request::Unbind(UnbindBody::Id(id)) => Ok(Op::Unbind(UnbindBody::Id(id))),
        Request::Query(body) => Ok(Op::Query(body.binding_id)),
        _ => Err(status::BAD_REQUEST),
    }
}

/// The status code of a write error.
pub fn write_error_status(error: &WriteError) -> u8 {
    match error {
        WriteError::Invalid(crate::binding::InvalidRequest::Number(_)) => status::BAD_NUMBER,
        WriteError::Invalid(_) => status::BAD_REQUEST,
        WriteError::Conflict { .. } => status::CONFLICT,
        WriteError::OtherTenant => status::UNAUTHORISED,
        WriteError::Registry(code) => *code,
        WriteError::NotFound => status::NOT_FOUND,
        WriteError::Capacity { .. } => status::CAPACITY,
        WriteError::DiskFull { .. } => status::DISK_FULL,
        WriteError::Io { .. } => status::INTERNAL,
    }
}

fn push_error(out: &mut Vec<u8>, op_code: u8, request_id: u32, error: &WriteError) {
    let code = write_error_status(error);
    if let WriteError::Conflict { binding_id } = error {
        let id = binding_id.map_or(0, |id| id.0);
        push_frame(out, op_code, code, request_id, &id.to_le_bytes());
    } else {
        push_frame(out, op_code, code, request_id, &[]);
    }
}

/// A conflict as the session may hear it: the clashing binding is named
/// only if `visible` says the session may see it.
fn hide_invisible(error: WriteError, visible: impl Fn(BindingId) -> bool) -> WriteError {
    match error {
        WriteError::Conflict { binding_id } => WriteError::Conflict {
            binding_id: binding_id.filter(|&id| visible(id)),
        },
        other => other,
    }
}

/// Appends the answer to an op that returns a binding (UPDATE, UNBIND).
fn push_binding(
    out: &mut Vec<u8>,
    op_code: u8,
    request_id: u32,
    result: Result<crate::binding::Binding, WriteError>,
) {
    match result {
        Ok(binding) => push_frame(
            out,
            op_code,
            status::OK,
            request_id,
            &codec::binding_body(&binding),
        ),
        Err(error) => push_error(out, op_code, request_id, &error),
    }
}

/// Executes a write op (not a lookup) on the shard set, which must own its
/// shard, and appends the answer frame. A binding of a tenant the session
/// may not touch answers `not_found` (its existence is not revealed); a bind
/// for such a tenant answers `unauthorised`, and so does a bind or update
/// on an X that belongs to another tenant (`WriteError::OtherTenant`),
/// whoever the session is. A `conflict` names the clashing binding only if
/// the session may see it (id 0 otherwise).
pub fn execute_write(
    set: &mut ShardSet,
    op: &Op,
    access: &Access,
    op_code: u8,
    request_id: u32,
    now_s: u32,
    out: &mut Vec<u8>,
) {
    let visible =
        |set: &ShardSet, id: BindingId| set.query(id, now_s).filter(|b| access.allows(b.tenant));
    match op {
        Op::Bind(request) | Op::BindAuto(request) => {
            if !access.allows(request.tenant) {
                push_frame(out, op_code, status::UNAUTHORISED, request_id, &[]);
                return;
            }
            match set.bind(request, now_s) {
                Ok(bound) => {
                    let mut body = codec::bind_answer_body(
                        bound.binding_id,
                        bound.expires_at_s,
                        bound.created,
                    )
                    .to_vec();
                    if matches!(op, Op::BindAuto(_)) {
                        body.extend_from_slice(&request.x.0);
                    }
                    push_frame(out, op_code, status::OK, request_id, &body);
                }
                Err(error) => push_error(
                    out,
                    op_code,
                    request_id,
                    &hide_invisible(error, |id| visible(set, id).is_some()),
                ),
            }
        }
        Op::Query(id) => match visible(set, *id) {
            Some(binding) => push_frame(
                out,
                op_code,
                status::OK,
                request_id,
                &codec::binding_body(&binding),
            ),
            None => push_frame(out, op_code, status::NOT_FOUND, request_id, &[]),
        },
        Op::Update(id, update) => {
            if visible(set, *id).is_none() {
                push_frame(out, op_code, status::NOT_FOUND, request_id, &[]);
                return;
            }
            let result = set.update(*id, update, now_s);
            let result =
                result.map_err(|error| hide_invisible(error, |id| visible(set, id).is_some()));
            push_binding(out, op_code, request_id, result);
        }
        Op::Unbind(target) => {
            let id = match *target {
                UnbindBody::Id(id) => Some(id),
                UnbindBody::Party { x, party } => set.find_by_party(x, party, now_s),
            };
            let Some(id) = id.filter(|&id| visible(set, id).is_some()) else {
                push_frame(out, op_code, status::NOT_FOUND, request_id, &[]);
                return;
            };
            push_binding(out, op_code, request_id, set.unbind(id, now_s));
        }
        Op::Lookup(query) => {
            let answer = set.lookup(query, now_s);
            codec::encode_lookup_answer(out, request_id, &answer);
        }
    }
}

/// Why the registry refuses a bind, if it does: once any tenant is
/// registered, binds are for registered tenants only, a suspended tenant
/// binds nothing, and a 700 X must lie in the tenant's own pool (a legacy
/// X, where the node allows one, has no pool). With no tenant registered,
/// binds follow version 1's rules. Applied in log order, against the
/// registry the entry meets, so every member answers alike.
pub fn tenant_refusal(registry: &crate::tenant::Registry, request: &BindRequest) -> Option<u8> {
    if registry.is_empty() {
        return None;
    }
    let tenant = request.tenant;
    match registry.tenant(tenant) {
        None => Some(status::UNKNOWN_TENANT),
        Some(_) if registry.is_suspended(tenant) => Some(status::TENANT_SUSPENDED),
        Some(_) => {
            let in_pool = crate::pool::x_value(request.x).is_none()
                || registry
                    .pools()
                    .owner(request.x)
                    .is_some_and(|(owner, _)| owner == tenant);
            (!in_pool).then_some(status::NOT_IN_POOL)
        }
    }
}

/// The opcode an op answers with.
pub fn op_opcode(op: &Op) -> u8 {
    match op {
        Op::Lookup(_) => opcode::LOOKUP,
        Op::BindAuto(_) => opcode::BIND_AXB_AUTO,
        Op::Bind(request) => match request.parties.mode() {
            crate::binding::Mode::Axb => opcode::BIND_AXB,
            crate::binding::Mode::Axn => opcode::BIND_AXN,
            crate::binding::Mode::Axe => opcode::BIND_AXE,
        },
        Op::Update(..) => opcode::UPDATE,
        Op::Unbind(_) => opcode::UNBIND,
        Op::Query(_) => opcode::QUERY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::{Direction, OrderRef, Parties};
    use crate::protocol::frame::{next_frame, Header, HEADER_BYTES};
    use crate::store::clock::FakeClock;
    use crate::store::Store;
    use std::sync::Arc;

    const T0: u32 = 1_800_000_000;

    fn number(digits: &str) -> Number {
        Number::from_digits(digits.as_bytes())
    }

    fn axb(x: Number, a: &str, b: &str, tenant: u32) -> BindRequest {
        BindRequest {
            x,
            parties: Parties::Axb {
                a: number(a),
                b: number(b),
            },
            tenant,
            order: OrderRef::new(b"order").unwrap(),
            ttl_s: 600,
            direction: Direction::Both,
            recording: false,
        }
    }

    /// A store holding an X as a data directory written before the
    /// one-tenant-per-X rule may: tenant 1's pair (A1, B1) bound first (X's
    /// representative), then tenant 2's pair (A2, B2).
    fn legacy_x() -> (tempfile::TempDir, Store, Number, BindingId, BindingId) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::create(dir.path(), 1, Arc::new(FakeClock::new(T0))).unwrap();
        let x = number("700000000000001");
        let first = store
            .bind(&axb(x, "13800000001", "13900000001", 1))
            .unwrap();
        let second = store
            .bind(&axb(x, "13800000002", "13900000002", 1))
            .unwrap();
        let shard = store.shard_set_mut().shard_mut(0).unwrap();
        assert!(shard.rewrite_tenant(second.binding_id, 2, T0));
        (dir, store, x, first.binding_id, second.binding_id)
    }

    /// Runs one op through `execute_write` and returns the answer's status
    /// and body.
    fn answer(store: &mut Store, op: &Op, access: &Access) -> (u8, Vec<u8>) {
        let mut out = Vec::new();
        execute_write(
            store.shard_set_mut(),
            op,
            access,
            op_opcode(op),
            7,
            T0,
            &mut out,
        );
        let (header, frame): (Header, &[u8]) = next_frame(&out, 1 << 20).unwrap().unwrap();
        assert_eq!(frame.len(), out.len(), "one answer frame");
        (header.status, frame[HEADER_BYTES..].to_vec())
    }

    fn new_b(id: BindingId, b: &str) -> Op {
        Op::Update(
            id,
            Update {
                b: Some(number(b)),
                ..Update::default()
            },
        )
    }

    /// Guards step 5 item 2: an UPDATE whose new B another tenant holds on
    /// the same X answered `conflict` with that tenant's binding id (a BIND
    /// answered id 0). It is now `unauthorised` with an empty body, for the
    /// platform of either tenant and for an admin.
    #[test]
    fn an_update_never_names_another_tenants_binding() {
        let (_dir, mut store, _x, first, second) = legacy_x();
        let tenant = |t: u32| Access::Tenants(Arc::from([t]));
        // Tenant 2 reaches for tenant 1's A; tenant 1 for tenant 2's A.
        for (id, b, access) in [
            (second, "13800000001", tenant(2)),
            (first, "13800000002", tenant(1)),
            (first, "13800000002", Access::AllTenants),
        ] {
            let (code, body) = answer(&mut store, &new_b(id, b), &access);
            assert_eq!(
                (status::name(code), body.as_slice()),
                ("unauthorised", &[][..]),
                "update of {id:?} to {b}"
            );
        }
        // A number no one holds is still a number put on another tenant's
        // X: refused too; a change that puts no number on X goes ahead.
        let (code, _) = answer(&mut store, &new_b(second, "13700000000"), &tenant(2));
        assert_eq!(status::name(code), "unauthorised");
        let recording = Op::Update(
            second,
            Update {
                recording: Some(true),
                ..Update::default()
            },
        );
        assert_eq!(answer(&mut store, &recording, &tenant(2)).0, status::OK);
        store.verify().unwrap();
    }

    /// Guards step 5 item 7 on an X that two tenants bound before the rule:
    /// a bind that meets the other tenant's binding there is `unauthorised`
    /// (it was `conflict`), and the X belongs to its first binding's tenant.
    #[test]
    fn a_bind_on_a_legacy_x_never_meets_another_tenant() {
        let (_dir, mut store, x, _first, _second) = legacy_x();
        let tenant = |t: u32| Access::Tenants(Arc::from([t]));
        let meets_a2 = Op::Bind(axb(x, "13800000002", "13700000009", 1));
        assert_eq!(
            answer(&mut store, &meets_a2, &tenant(1)),
            (status::UNAUTHORISED, Vec::new())
        );
        let fresh_for_2 = Op::Bind(axb(x, "13600000001", "13600000002", 2));
        assert_eq!(
            answer(&mut store, &fresh_for_2, &tenant(2)),
            (status::UNAUTHORISED, Vec::new())
        );
        let fresh_for_1 = Op::Bind(axb(x, "13600000001", "13600000002", 1));
        assert_eq!(answer(&mut store, &fresh_for_1, &tenant(1)).0, status::OK);
    }

    /// A conflict names its binding only to a session that may see it.
    #[test]
    fn conflicts_name_only_visible_bindings() {
        let conflict = || WriteError::Conflict {
            binding_id: Some(BindingId(9)),
        };
        assert!(matches!(
            hide_invisible(conflict(), |_| false),
            WriteError::Conflict { binding_id: None }
        ));
        assert!(matches!(
            hide_invisible(conflict(), |id| id == BindingId(9)),
            WriteError::Conflict {
                binding_id: Some(BindingId(9))
            }
        ));
    }
}
