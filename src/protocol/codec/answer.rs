//! Answer bodies: LOOKUP routes and rejects, bind results, bindings and
//! the HELLO answer. Encoded by the server, decoded by clients.

use super::{
    decode_extension, direction_code, direction_from, encode_extension, mode_code, number_at,
    u32_at, u64_at,
};
use super::{BINDING_BYTES, BIND_ANSWER_BYTES, HELLO_ANSWER_BYTES, ROUTE_BYTES};
use crate::binding::{Binding, BindingId, LookupResult, OrderRef, Parties, Route};
use crate::number::Number;
use crate::protocol::frame::{Header, HEADER_BYTES};
use crate::protocol::{opcode, status};

/// Largest LOOKUP answer frame.
pub const LOOKUP_ANSWER_FRAME_BYTES: usize = HEADER_BYTES + ROUTE_BYTES;

/// Writes the answer to a LOOKUP into a fixed buffer; returns its length.
/// No allocation: the server's hot path.
#[inline]
pub fn write_lookup_answer(
    frame: &mut [u8; LOOKUP_ANSWER_FRAME_BYTES],
    request_id: u32,
    result: &LookupResult,
) -> usize {
    let (status_code, length) = match result {
        LookupResult::Route(route) => {
            let body = &mut frame[HEADER_BYTES..];
            body[0..8].copy_from_slice(&route.callee.0);
            body[8..16].copy_from_slice(&route.display.0);
            body[16..24].copy_from_slice(&route.binding_id.0.to_le_bytes());
            body[24..28].copy_from_slice(&route.expires_in_s.to_le_bytes());
            body[28] = u8::from(route.recording);
            body[29..32].copy_from_slice(&[0, 0, 0]);
            (status::OK, LOOKUP_ANSWER_FRAME_BYTES)
        }
        LookupResult::Reject(reject) => (reject_status(*reject), HEADER_BYTES),
    };
    let mut head = [0u8; HEADER_BYTES];
    Header {
        // 12 or 44: fits u32.
        length: length as u32,
        opcode: opcode::LOOKUP,
        status: status_code,
        request_id,
    }
    .write(&mut head);
    frame[..HEADER_BYTES].copy_from_slice(&head);
    length
}

/// Appends the answer to a LOOKUP.
#[inline]
pub fn encode_lookup_answer(out: &mut Vec<u8>, request_id: u32, result: &LookupResult) {
    let mut frame = [0u8; LOOKUP_ANSWER_FRAME_BYTES];
    let length = write_lookup_answer(&mut frame, request_id, result);
    out.extend_from_slice(&frame[..length]);
}

/// The status code of a reject.
pub fn reject_status(reject: crate::binding::Reject) -> u8 {
    use crate::binding::Reject;
    match reject {
        Reject::NotBound => status::NOT_BOUND,
        Reject::Expired => status::EXPIRED,
        Reject::DirectionDenied => status::DIRECTION_DENIED,
        Reject::NotAParty => status::NOT_A_PARTY,
        Reject::BadNumber => status::BAD_NUMBER,
        Reject::TenantSuspended => status::TENANT_SUSPENDED,
        Reject::Blocked => status::BLOCKED,
        Reject::RateLimited => status::RATE_LIMITED,
    }
}

/// Decodes a LOOKUP answer: `Ok(result)` for lookup outcomes, `Err(status)`
/// for anything else (busy, unauthorised, ...).
pub fn decode_lookup_answer(header: &Header, body: &[u8]) -> Result<LookupResult, u8> {
    use crate::binding::Reject;
    match header.status {
        status::OK if body.len() == ROUTE_BYTES => Ok(LookupResult::Route(Route {
            callee: number_at(body, 0),
            display: number_at(body, 8),
            binding_id: BindingId(u64_at(body, 16)),
            expires_in_s: u32_at(body, 24),
            recording: body[28] & 1 == 1,
        })),
        status::NOT_BOUND => Ok(LookupResult::Reject(Reject::NotBound)),
        status::EXPIRED => Ok(LookupResult::Reject(Reject::Expired)),
        status::DIRECTION_DENIED => Ok(LookupResult::Reject(Reject::DirectionDenied)),
        status::NOT_A_PARTY => Ok(LookupResult::Reject(Reject::NotAParty)),
        status::BAD_NUMBER => Ok(LookupResult::Reject(Reject::BadNumber)),
        status::TENANT_SUSPENDED => Ok(LookupResult::Reject(Reject::TenantSuspended)),
        status::BLOCKED => Ok(LookupResult::Reject(Reject::Blocked)),
        status::RATE_LIMITED => Ok(LookupResult::Reject(Reject::RateLimited)),
        other => Err(if other == status::OK {
            status::BAD_FRAME
        } else {
            other
        }),
    }
}

/// Body of a successful bind answer.
pub fn bind_answer_body(
    binding_id: BindingId,
    expires_at_s: u32,
    created: bool,
) -> [u8; BIND_ANSWER_BYTES] {
    let mut body = [0u8; BIND_ANSWER_BYTES];
    body[0..8].copy_from_slice(&binding_id.0.to_le_bytes());
    body[8..12].copy_from_slice(&expires_at_s.to_le_bytes());
    body[12] = u8::from(created);
    body
}

/// Decodes a successful bind answer: (id, expires_at_s, created).
pub fn decode_bind_answer(body: &[u8]) -> Option<(BindingId, u32, bool)> {
    (body.len() == BIND_ANSWER_BYTES)
        .then(|| (BindingId(u64_at(body, 0)), u32_at(body, 8), body[12] == 1))
}

/// Body of a binding (QUERY, UPDATE and UNBIND answers).
pub fn binding_body(binding: &Binding) -> [u8; BINDING_BYTES] {
    let mut body = [0u8; BINDING_BYTES];
    body[0..8].copy_from_slice(&binding.id.0.to_le_bytes());
    body[8] = mode_code(binding.parties.mode());
    body[9] = direction_code(binding.direction);
    body[10] = u8::from(binding.recording);
    let order = binding.order.as_bytes();
    // At most 32: fits u8.
    body[11] = u8::try_from(order.len()).unwrap_or(u8::MAX);
    body[12..16].copy_from_slice(&binding.tenant.to_le_bytes());
    body[16..24].copy_from_slice(&binding.x.0);
    body[24..32].copy_from_slice(&binding.parties.a().0);
    match binding.parties {
        Parties::Axb { b, .. } => body[32..40].copy_from_slice(&b.0),
        Parties::Axn { default_callee, .. } => {
            body[32..40].copy_from_slice(&default_callee.unwrap_or(Number::NONE).0);
        }
        Parties::Axe { extension, .. } => {
            body[32..34].copy_from_slice(&encode_extension(extension))
        }
    }
    body[40..44].copy_from_slice(&binding.ttl_s.to_le_bytes());
    body[44..48].copy_from_slice(&binding.expires_at_s.to_le_bytes());
    body[48..52].copy_from_slice(&binding.created_at_s.to_le_bytes());
    body[56..56 + order.len()].copy_from_slice(order);
    body
}

/// Decodes a binding body.
pub fn decode_binding(body: &[u8]) -> Option<Binding> {
    if body.len() != BINDING_BYTES {
        return None;
    }
    let a = number_at(body, 24);
    let b = number_at(body, 32);
    let parties = match body[8] {
        1 => Parties::Axb { a, b },
        2 => Parties::Axn {
            a,
            default_callee: (!b.is_none()).then_some(b),
        },
        3 => Parties::Axe {
            a,
            extension: decode_extension([body[32], body[33]]).ok()?,
        },
        _ => return None,
    };
    let order_len = usize::from(body[11]).min(32);
    Some(Binding {
        id: BindingId(u64_at(body, 0)),
        x: number_at(body, 16),
        parties,
        tenant: u32_at(body, 12),
        order: OrderRef::new(&body[56..56 + order_len]).ok()?,
        ttl_s: u32_at(body, 40),
        expires_at_s: u32_at(body, 44),
        created_at_s: u32_at(body, 48),
        direction: direction_from(body[9]).ok()?,
        recording: body[10] == 1,
    })
}

/// Body of a HELLO answer.
pub fn hello_answer_body(
    version: u16,
    shard_count: u16,
    node_id: u32,
    leader_hint: u32,
) -> [u8; HELLO_ANSWER_BYTES] {
    let mut body = [0u8; HELLO_ANSWER_BYTES];
    body[0..2].copy_from_slice(&version.to_le_bytes());
    body[2..4].copy_from_slice(&shard_count.to_le_bytes());
    body[4..8].copy_from_slice(&node_id.to_le_bytes());
    body[8..12].copy_from_slice(&leader_hint.to_le_bytes());
    body[12..14].copy_from_slice(&crate::protocol::VERSION_MIN.to_le_bytes());
    body[14..16].copy_from_slice(&crate::protocol::VERSION.to_le_bytes());
    body
}

/// Bytes of a NOT_LEADER body before the leader's address: `u64` leader id,
/// `u8` address length.
pub const NOT_LEADER_FIXED_BYTES: usize = 9;

/// Longest leader address a NOT_LEADER body carries: its length is one
/// byte. A longer one (no socket address is) is sent as unknown.
pub const NOT_LEADER_ADDR_BYTES_MAX: usize = u8::MAX as usize;

/// Where a write refused `NOT_LEADER` should go: the body of that answer
/// (PROTOCOL.md section 8).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaderHint {
    /// The leader's node id; 0 while the refusing node knows no leader.
    pub leader_id: u64,
    /// The leader's client address; empty if unknown.
    pub client_addr: String,
}

/// Appends the body of a NOT_LEADER answer: the leader's id, then its
/// client address (one length byte, the UTF-8 text).
pub fn encode_not_leader_body(out: &mut Vec<u8>, leader_id: u64, client_addr: &str) {
    let address = if client_addr.len() <= NOT_LEADER_ADDR_BYTES_MAX {
        client_addr.as_bytes()
    } else {
        &[]
    };
    out.extend_from_slice(&leader_id.to_le_bytes());
    // At most NOT_LEADER_ADDR_BYTES_MAX (255), checked above: fits u8.
    out.push(u8::try_from(address.len()).unwrap_or(0));
    out.extend_from_slice(address);
}

/// Decodes a NOT_LEADER body; `None` for an empty body (a server before
/// this addition) or one that does not hold together. Bytes past the
/// address are ignored: a later version may add fields after it.
pub fn decode_not_leader(body: &[u8]) -> Option<LeaderHint> {
    if body.len() < NOT_LEADER_FIXED_BYTES {
        return None;
    }
    let length = usize::from(body[8]);
    let address = body.get(NOT_LEADER_FIXED_BYTES..NOT_LEADER_FIXED_BYTES + length)?;
    Some(LeaderHint {
        leader_id: u64_at(body, 0),
        client_addr: std::str::from_utf8(address).ok()?.to_string(),
    })
}
