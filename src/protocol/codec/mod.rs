//! Bodies of every request and answer: decode (server side, from untrusted
//! bytes: never panics) and encode (client side and answers). Layouts are
//! in docs/PROTOCOL.md; each `*_BYTES` constant is the exact body length.

use super::frame::{push_frame, Header, HEADER_BYTES};
use super::{opcode, status, Role};
use crate::binding::{BindingId, Direction, LookupQuery, Mode, OrderRef, Parties, Update};
use crate::number::Number;

pub mod auto;
pub mod control;

/// HELLO request: version u16, role u8, credential length u8, credential.
pub const HELLO_FIXED_BYTES: usize = 4;
/// HELLO answer: version, shard count, node id, leader hint, version range.
pub const HELLO_ANSWER_BYTES: usize = 16;
/// LOOKUP request body.
pub const LOOKUP_BYTES: usize = 20;
/// LOOKUP answer body when routed.
pub const ROUTE_BYTES: usize = 32;
/// BIND_* request body.
pub const BIND_BYTES: usize = 68;
/// BIND answer body.
pub const BIND_ANSWER_BYTES: usize = 16;
/// CONFLICT answer body: the clashing binding id (0 if unknown).
pub const CONFLICT_BYTES: usize = 8;
/// UPDATE request body.
pub const UPDATE_BYTES: usize = 24;
/// UNBIND request body.
pub const UNBIND_BYTES: usize = 32;
/// QUERY request body.
pub const QUERY_BYTES: usize = 8;
/// WAIT_INDEX request body: log index u64, timeout u32 (milliseconds).
pub const WAIT_INDEX_BYTES: usize = 12;
/// WAIT_INDEX answer body (OK and BEHIND): the node's applied index.
pub const WAIT_INDEX_ANSWER_BYTES: usize = 8;
/// A binding, as QUERY, UPDATE and UNBIND answer it.
pub const BINDING_BYTES: usize = 88;

/// Extension field value meaning "no extension".
pub const NO_EXTENSION: [u8; 2] = [0xFF, 0xFF];

/// Why a request body cannot be served; carries the status to answer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DecodeError {
    /// Status code for the answer.
    pub status: u8,
    /// Short reason for logs.
    pub reason: &'static str,
}

pub(crate) const fn bad_frame(reason: &'static str) -> DecodeError {
    DecodeError {
        status: status::BAD_FRAME,
        reason,
    }
}

pub(crate) const fn bad_request(reason: &'static str) -> DecodeError {
    DecodeError {
        status: status::BAD_REQUEST,
        reason,
    }
}

/// A decoded request. Numbers are as sent; the server checks them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Request<'a> {
    /// Session opening.
    Hello {
        /// Protocol version asked for.
        version: u16,
        /// Role code (may be invalid: checked with the credential).
        role: u8,
        /// Credential bytes.
        credential: &'a [u8],
    },
    /// Liveness.
    Ping,
    /// Statistics.
    Stats,
    /// A lookup; `voice` is false for SMS.
    Lookup {
        /// The query.
        query: LookupQuery,
        /// Voice (true) or SMS.
        voice: bool,
    },
    /// BIND_AXB, BIND_AXN or BIND_AXE.
    Bind(BindBody),
    /// UPDATE.
    Update(UpdateBody),
    /// UNBIND.
    Unbind(UnbindBody),
    /// QUERY.
    Query(QueryBody),
    /// CLUSTER_STATUS.
    ClusterStatus,
    /// CLUSTER_INIT: the members, as text (`ID=RAFT_ADDR=CLIENT_ADDR`
    /// separated by spaces).
    ClusterInit(&'a str),
    /// CLUSTER_ADD_NODE: one member, as text (`ID=RAFT_ADDR=CLIENT_ADDR`).
    ClusterAddNode(&'a str),
    /// CLUSTER_REMOVE_NODE: the node id to remove.
    ClusterRemoveNode(u64),
    /// CLUSTER_VERIFY.
    ClusterVerify,
    /// A change of control state: tenants, blocklists (v2).
    Control(control::ControlRequest<'a>),
    /// TENANT_SHOW: one tenant, or every tenant (v2).
    TenantShow(Option<u32>),
    /// POOL_SHOW: a tenant's pool (v2).
    PoolShow(u32),
    /// BIND_AXB_AUTO: an AXB bind with X chosen by the node (v2).
    BindAuto(auto::AutoBindBody),
    /// TRACE_X or TRACE_ORDER (v2).
    Trace(control::TraceRequest<'a>),
    /// WAIT_INDEX: answer once this node has applied `index`, or after
    /// `timeout_ms` (at most `limits::WAIT_INDEX_TIMEOUT_MS_MAX`).
    WaitIndex {
        /// The log index to wait for.
        index: u64,
        /// Longest wait.
        timeout_ms: u32,
    },
}

/// Longest CLUSTER_INIT body.
pub const CLUSTER_INIT_BYTES_MAX: usize = 4096;

/// A bind request as sent.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BindBody {
    /// Mode from the opcode.
    pub mode: Mode,
    /// X.
    pub x: Number,
    /// A.
    pub a: Number,
    /// AXB: B; AXN: default callee or NONE; AXE: extension key.
    pub b: Number,
    /// Tenant.
    pub tenant: u32,
    /// Lifetime.
    pub ttl_s: u32,
    /// Direction.
    pub direction: Direction,
    /// Recording.
    pub recording: bool,
    /// Order reference.
    pub order: OrderRef,
}

impl BindBody {
    /// The parties, by mode.
    pub fn parties(&self) -> Parties {
        match self.mode {
            Mode::Axb => Parties::Axb {
                a: self.a,
                b: self.b,
            },
            Mode::Axn => Parties::Axn {
                a: self.a,
                default_callee: (!self.b.is_none()).then_some(self.b),
            },
            Mode::Axe => Parties::Axe {
                a: self.a,
                extension: self.b,
            },
        }
    }
}

/// An update request as sent.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct UpdateBody {
    /// Which binding.
    pub binding_id: BindingId,
    /// The changes.
    pub update: Update,
}

/// What an unbind names.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum UnbindBody {
    /// By id.
    Id(BindingId),
    /// By X and a party (real number, or extension key for AXE).
    Party {
        /// X.
        x: Number,
        /// The party or extension key.
        party: Number,
    },
}

/// A query request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct QueryBody {
    /// Which binding.
    pub binding_id: BindingId,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(bytes)
}
pub(crate) fn number_at(b: &[u8], at: usize) -> Number {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&b[at..at + 8]);
    Number(bytes)
}

/// Decodes a 2-byte BCD extension (1-4 digits, MSB first, F-filled) into
/// an extension key; `[FF, FF]` is "none".
pub fn decode_extension(field: [u8; 2]) -> Result<Number, DecodeError> {
    if field == NO_EXTENSION {
        return Ok(Number::NONE);
    }
    let nibbles = [field[0] >> 4, field[0] & 0xF, field[1] >> 4, field[1] & 0xF];
    let digits = nibbles.iter().take_while(|&&n| n <= 9).count();
    if digits == 0 || nibbles[digits..].iter().any(|&n| n != 0xF) {
        return Err(DecodeError {
            status: status::BAD_NUMBER,
            reason: "extension is not 1-4 BCD digits",
        });
    }
    let mut ascii = [0u8; 4];
    for (out, nibble) in ascii.iter_mut().zip(&nibbles[..digits]) {
        *out = b'0' + nibble;
    }
    Ok(Number::extension_key(&ascii[..digits]))
}

/// Encodes an extension key (or NONE) as the 2-byte wire field.
pub fn encode_extension(extension: Number) -> [u8; 2] {
    if extension.is_none() {
        return NO_EXTENSION;
    }
    let mut nibbles = [0xFu8; 4];
    for (slot, digit) in nibbles.iter_mut().zip(extension.digits().bytes()) {
        *slot = digit - b'0';
    }
    [
        (nibbles[0] << 4) | nibbles[1],
        (nibbles[2] << 4) | nibbles[3],
    ]
}

fn direction_from(code: u8) -> Result<Direction, DecodeError> {
    match code {
        0 => Ok(Direction::Both),
        1 => Ok(Direction::AToB),
        2 => Ok(Direction::BToA),
        _ => Err(bad_request("direction must be 0, 1 or 2")),
    }
}

fn direction_code(direction: Direction) -> u8 {
    match direction {
        Direction::Both => 0,
        Direction::AToB => 1,
        Direction::BToA => 2,
    }
}

fn mode_code(mode: Mode) -> u8 {
    match mode {
        Mode::Axb => 1,
        Mode::Axn => 2,
        Mode::Axe => 3,
    }
}

pub(crate) fn expect_len(body: &[u8], bytes: usize) -> Result<(), DecodeError> {
    if body.len() == bytes {
        Ok(())
    } else {
        Err(bad_frame("body length does not match the opcode"))
    }
}

/// Decodes a request frame's body. Never panics, whatever the bytes.
pub fn decode_request<'a>(header: &Header, body: &'a [u8]) -> Result<Request<'a>, DecodeError> {
    match header.opcode {
        opcode::HELLO => {
            if body.len() < HELLO_FIXED_BYTES {
                return Err(bad_frame("HELLO shorter than 4 bytes"));
            }
            let credential_len = usize::from(body[3]);
            if body.len() != HELLO_FIXED_BYTES + credential_len {
                return Err(bad_frame(
                    "HELLO length does not match its credential length",
                ));
            }
            Ok(Request::Hello {
                version: u16_at(body, 0),
                role: body[2],
                credential: &body[HELLO_FIXED_BYTES..],
            })
        }
        opcode::PING => expect_len(body, 0).map(|()| Request::Ping),
        opcode::STATS => expect_len(body, 0).map(|()| Request::Stats),
        opcode::CLUSTER_STATUS => expect_len(body, 0).map(|()| Request::ClusterStatus),
        opcode::CLUSTER_INIT => {
            if body.is_empty() || body.len() > CLUSTER_INIT_BYTES_MAX {
                return Err(bad_frame("CLUSTER_INIT body must be 1 to 4096 bytes"));
            }
            std::str::from_utf8(body)
                .map(Request::ClusterInit)
                .map_err(|_| bad_request("CLUSTER_INIT body is not UTF-8"))
        }
        opcode::CLUSTER_ADD_NODE => {
            if body.is_empty() || body.len() > CLUSTER_INIT_BYTES_MAX {
                return Err(bad_frame("CLUSTER_ADD_NODE body must be 1 to 4096 bytes"));
            }
            std::str::from_utf8(body)
                .map(Request::ClusterAddNode)
                .map_err(|_| bad_request("CLUSTER_ADD_NODE body is not UTF-8"))
        }
        opcode::CLUSTER_REMOVE_NODE => {
            expect_len(body, 8)?;
            match u64_at(body, 0) {
                0 => Err(bad_request("CLUSTER_REMOVE_NODE: node ids start at 1")),
                node_id => Ok(Request::ClusterRemoveNode(node_id)),
            }
        }
        opcode::CLUSTER_VERIFY => expect_len(body, 0).map(|()| Request::ClusterVerify),
        opcode::WAIT_INDEX => {
            expect_len(body, WAIT_INDEX_BYTES)?;
            let timeout_ms = u32_at(body, 8);
            if timeout_ms > super::limits::WAIT_INDEX_TIMEOUT_MS_MAX {
                return Err(bad_request("WAIT_INDEX timeout is over 10000 ms"));
            }
            Ok(Request::WaitIndex {
                index: u64_at(body, 0),
                timeout_ms,
            })
        }
        opcode::LOOKUP => {
            expect_len(body, LOOKUP_BYTES)?;
            decode_lookup(body).map(|(query, voice)| Request::Lookup { query, voice })
        }
        opcode::BIND_AXB | opcode::BIND_AXN | opcode::BIND_AXE => {
            expect_len(body, BIND_BYTES)?;
            decode_bind(header.opcode, body).map(Request::Bind)
        }
        opcode::UPDATE => {
            expect_len(body, UPDATE_BYTES)?;
            decode_update(body).map(Request::Update)
        }
        opcode::UNBIND => {
            expect_len(body, UNBIND_BYTES)?;
            decode_unbind(body).map(Request::Unbind)
        }
        opcode::TENANT_PUT
        | opcode::TENANT_STATUS
        | opcode::BLOCK
        | opcode::POOL_ADD
        | opcode::POOL_REMOVE => control::from_client(header.opcode, body).map(Request::Control),
        opcode::TENANT_SHOW => control::decode_tenant_show(body).map(Request::TenantShow),
        opcode::POOL_SHOW => control::decode_pool_show(body).map(Request::PoolShow),
        opcode::TRACE_X | opcode::TRACE_ORDER => {
            control::decode_trace(header.opcode, body).map(Request::Trace)
        }
        opcode::BIND_AXB_AUTO => auto::decode_auto_bind(body).map(Request::BindAuto),
        opcode::QUERY => {
            expect_len(body, QUERY_BYTES)?;
            Ok(Request::Query(QueryBody {
                binding_id: BindingId(u64_at(body, 0)),
            }))
        }
        _ => Err(DecodeError {
            status: status::UNKNOWN_OPCODE,
            reason: "unknown opcode",
        }),
    }
}

/// Decodes a LOOKUP body (exactly `LOOKUP_BYTES`).
#[inline]
pub fn decode_lookup(body: &[u8]) -> Result<(LookupQuery, bool), DecodeError> {
    let extension = decode_extension([body[16], body[17]])?;
    let voice = match body[18] {
        0 => true,
        1 => false,
        _ => return Err(bad_request("kind must be 0 (voice) or 1 (SMS)")),
    };
    if body[19] != 0 {
        return Err(bad_frame("reserved byte is not zero"));
    }
    Ok((
        LookupQuery {
            caller: number_at(body, 0),
            x: number_at(body, 8),
            extension,
        },
        voice,
    ))
}

pub(crate) fn decode_bind(op: u8, body: &[u8]) -> Result<BindBody, DecodeError> {
    let mode = match op {
        opcode::BIND_AXB => Mode::Axb,
        opcode::BIND_AXN => Mode::Axn,
        _ => Mode::Axe,
    };
    let b = if mode == Mode::Axe {
        if body[18..24].iter().any(|&byte| byte != 0) {
            return Err(bad_frame("AXE extension field: bytes 2-7 must be zero"));
        }
        let extension = decode_extension([body[16], body[17]])?;
        if extension.is_none() {
            return Err(DecodeError {
                status: status::BAD_NUMBER,
                reason: "AXE bind without an extension",
            });
        }
        extension
    } else {
        number_at(body, 16)
    };
    if body[33] & !1 != 0 || body[35] != 0 {
        return Err(bad_frame("reserved bits are not zero"));
    }
    let order_len = usize::from(body[34]);
    if order_len == 0 || order_len > 32 || body[36 + order_len..68].iter().any(|&byte| byte != 0) {
        return Err(bad_request("order length must be 1-32 with zero padding"));
    }
    let order =
        OrderRef::new(&body[36..36 + order_len]).map_err(|_| bad_request("bad order reference"))?;
    Ok(BindBody {
        mode,
        x: number_at(body, 0),
        a: number_at(body, 8),
        b,
        tenant: u32_at(body, 24),
        ttl_s: u32_at(body, 28),
        direction: direction_from(body[32])?,
        recording: body[33] & 1 == 1,
        order,
    })
}

/// UPDATE mask bits.
pub mod update_mask {
    /// ttl_s is set.
    pub const TTL: u8 = 1;
    /// direction is set.
    pub const DIRECTION: u8 = 2;
    /// recording is set.
    pub const RECORDING: u8 = 4;
    /// b is set.
    pub const B: u8 = 8;
}

fn decode_update(body: &[u8]) -> Result<UpdateBody, DecodeError> {
    let mask = body[8];
    if mask & !0x0F != 0 || body[11] != 0 || body[10] > 1 {
        return Err(bad_frame("unknown update mask bits or reserved bytes set"));
    }
    if mask == 0 {
        return Err(bad_request("update changes nothing"));
    }
    let has = |bit: u8| mask & bit != 0;
    Ok(UpdateBody {
        binding_id: BindingId(u64_at(body, 0)),
        update: Update {
            ttl_s: has(update_mask::TTL).then(|| u32_at(body, 12)),
            direction: if has(update_mask::DIRECTION) {
                Some(direction_from(body[9])?)
            } else {
                None
            },
            recording: has(update_mask::RECORDING).then_some(body[10] == 1),
            b: has(update_mask::B).then(|| number_at(body, 16)),
        },
    })
}

fn decode_unbind(body: &[u8]) -> Result<UnbindBody, DecodeError> {
    if body[1..8].iter().any(|&byte| byte != 0) {
        return Err(bad_frame("reserved bytes are not zero"));
    }
    match body[0] {
        0 => Ok(UnbindBody::Id(BindingId(u64_at(body, 8)))),
        1 => {
            let party = number_at(body, 24);
            // A real number never begins with the extension nibble: such a
            // party would be read as an extension (selector 2's meaning).
            if party.is_extension() {
                return Err(DecodeError {
                    status: status::BAD_NUMBER,
                    reason: "unbind by party: the party is not a real number",
                });
            }
            Ok(UnbindBody::Party {
                x: number_at(body, 16),
                party,
            })
        }
        2 => {
            let extension = decode_extension([body[24], body[25]])?;
            if extension.is_none() {
                return Err(bad_request("unbind by extension without an extension"));
            }
            Ok(UnbindBody::Party {
                x: number_at(body, 16),
                party: extension,
            })
        }
        _ => Err(bad_request("unbind selector must be 0, 1 or 2")),
    }
}

// ---- encoding requests (client side) ----

/// Appends a HELLO frame.
pub fn encode_hello(
    out: &mut Vec<u8>,
    request_id: u32,
    version: u16,
    role: Role,
    credential: &[u8],
) {
    let credential = &credential[..credential.len().min(super::limits::CREDENTIAL_BYTES_MAX)];
    let mut body = Vec::with_capacity(HELLO_FIXED_BYTES + credential.len());
    body.extend_from_slice(&version.to_le_bytes());
    body.push(role.code());
    // At most 64: fits u8.
    body.push(u8::try_from(credential.len()).unwrap_or(u8::MAX));
    body.extend_from_slice(credential);
    push_frame(out, opcode::HELLO, 0, request_id, &body);
}

/// Appends a LOOKUP frame.
#[inline]
pub fn encode_lookup(out: &mut Vec<u8>, request_id: u32, query: &LookupQuery, voice: bool) {
    let mut body = [0u8; LOOKUP_BYTES];
    body[0..8].copy_from_slice(&query.caller.0);
    body[8..16].copy_from_slice(&query.x.0);
    body[16..18].copy_from_slice(&encode_extension(query.extension));
    body[18] = u8::from(!voice);
    push_frame(out, opcode::LOOKUP, 0, request_id, &body);
}

/// Appends a BIND_* frame.
pub fn encode_bind(out: &mut Vec<u8>, request_id: u32, bind: &BindBody) {
    let mut body = Vec::with_capacity(BIND_BYTES);
    encode_bind_body(&mut body, bind);
    let op = match bind.mode {
        Mode::Axb => opcode::BIND_AXB,
        Mode::Axn => opcode::BIND_AXN,
        Mode::Axe => opcode::BIND_AXE,
    };
    push_frame(out, op, 0, request_id, &body);
}

/// Appends a BIND body (68 bytes).
pub fn encode_bind_body(out: &mut Vec<u8>, bind: &BindBody) {
    let mut body = [0u8; BIND_BYTES];
    body[0..8].copy_from_slice(&bind.x.0);
    body[8..16].copy_from_slice(&bind.a.0);
    if bind.mode == Mode::Axe {
        body[16..18].copy_from_slice(&encode_extension(bind.b));
    } else {
        body[16..24].copy_from_slice(&bind.b.0);
    }
    body[24..28].copy_from_slice(&bind.tenant.to_le_bytes());
    body[28..32].copy_from_slice(&bind.ttl_s.to_le_bytes());
    body[32] = direction_code(bind.direction);
    body[33] = u8::from(bind.recording);
    let order = bind.order.as_bytes();
    // At most 32: fits u8.
    body[34] = u8::try_from(order.len()).unwrap_or(u8::MAX);
    body[36..36 + order.len()].copy_from_slice(order);
    out.extend_from_slice(&body);
}

/// Appends an UPDATE frame.
pub fn encode_update(out: &mut Vec<u8>, request_id: u32, binding_id: BindingId, update: &Update) {
    let mut body = [0u8; UPDATE_BYTES];
    body[0..8].copy_from_slice(&binding_id.0.to_le_bytes());
    let mut mask = 0;
    if let Some(ttl_s) = update.ttl_s {
        mask |= update_mask::TTL;
        body[12..16].copy_from_slice(&ttl_s.to_le_bytes());
    }
    if let Some(direction) = update.direction {
        mask |= update_mask::DIRECTION;
        body[9] = direction_code(direction);
    }
    if let Some(recording) = update.recording {
        mask |= update_mask::RECORDING;
        body[10] = u8::from(recording);
    }
    if let Some(b) = update.b {
        mask |= update_mask::B;
        body[16..24].copy_from_slice(&b.0);
    }
    body[8] = mask;
    push_frame(out, opcode::UPDATE, 0, request_id, &body);
}

/// Appends an UNBIND frame.
pub fn encode_unbind(out: &mut Vec<u8>, request_id: u32, unbind: &UnbindBody) {
    let mut body = [0u8; UNBIND_BYTES];
    match *unbind {
        UnbindBody::Id(id) => body[8..16].copy_from_slice(&id.0.to_le_bytes()),
        UnbindBody::Party { x, party } if party.is_extension() => {
            body[0] = 2;
            body[16..24].copy_from_slice(&x.0);
            body[24..26].copy_from_slice(&encode_extension(party));
        }
        UnbindBody::Party { x, party } => {
            body[0] = 1;
            body[16..24].copy_from_slice(&x.0);
            body[24..32].copy_from_slice(&party.0);
        }
    }
    push_frame(out, opcode::UNBIND, 0, request_id, &body);
}

/// Appends a QUERY frame.
pub fn encode_query(out: &mut Vec<u8>, request_id: u32, binding_id: BindingId) {
    push_frame(
        out,
        opcode::QUERY,
        0,
        request_id,
        &binding_id.0.to_le_bytes(),
    );
}

/// Appends a WAIT_INDEX frame.
pub fn encode_wait_index(out: &mut Vec<u8>, request_id: u32, index: u64, timeout_ms: u32) {
    let mut body = [0u8; WAIT_INDEX_BYTES];
    body[0..8].copy_from_slice(&index.to_le_bytes());
    body[8..12].copy_from_slice(&timeout_ms.to_le_bytes());
    push_frame(out, opcode::WAIT_INDEX, 0, request_id, &body);
}

/// The applied index a WAIT_INDEX answer (OK or BEHIND) carries.
pub fn decode_wait_index_answer(body: &[u8]) -> Option<u64> {
    body.first_chunk::<WAIT_INDEX_ANSWER_BYTES>()
        .filter(|_| body.len() == WAIT_INDEX_ANSWER_BYTES)
        .map(|bytes| u64::from_le_bytes(*bytes))
}

mod answer;
pub use answer::*;

/// Size of a complete frame with a body of `body` bytes.
pub const fn frame_bytes(body: usize) -> usize {
    HEADER_BYTES + body
}

#[cfg(test)]
mod tests;
