//! From decoded requests to answers: number checks, the shard that owns a
//! request, and the execution of writes against a `ShardSet` with tenant
//! isolation. Pure of sockets; the event loop calls it.

use super::auth::Access;
use crate::binding::{BindRequest, BindingId, LookupQuery, Update, WriteError};
use crate::number::{check_real, check_virtual, Number, XPolicy};
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
            Op::Bind(request) => by_x(request.x),
            Op::Unbind(UnbindBody::Party { x, .. }) => by_x(*x),
            Op::Update(id, _) | Op::Unbind(UnbindBody::Id(id)) | Op::Query(id) => by_id(*id),
        }
    }
}

/// Checks the numbers of a lookup; `Err` is the status to answer.
#[inline]
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
            let party = if party.is_extension() {
                party
            } else {
                real(party)?
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
/// for such a tenant answers `unauthorised`.
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
        Op::Bind(request) => {
            if !access.allows(request.tenant) {
                push_frame(out, op_code, status::UNAUTHORISED, request_id, &[]);
                return;
            }
            match set.bind(request, now_s) {
                Ok(bound) => push_frame(
                    out,
                    op_code,
                    status::OK,
                    request_id,
                    &codec::bind_answer_body(bound.binding_id, bound.expires_at_s, bound.created),
                ),
                Err(WriteError::Conflict { binding_id }) => {
                    // Another tenant's binding is not named to this session.
                    let binding_id = binding_id.filter(|&id| visible(set, id).is_some());
                    push_error(
                        out,
                        op_code,
                        request_id,
                        &WriteError::Conflict { binding_id },
                    );
                }
                Err(error) => push_error(out, op_code, request_id, &error),
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
            push_binding(out, op_code, request_id, set.update(*id, update, now_s));
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

/// The opcode an op answers with.
pub fn op_opcode(op: &Op) -> u8 {
    match op {
        Op::Lookup(_) => opcode::LOOKUP,
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
