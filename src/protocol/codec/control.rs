//! Bodies of the control requests of protocol version 2 (PROTOCOL.md part
//! 3): tenants and blocklists. Decoding never panics; a server decodes a
//! client's body with `from_client` (a hashed credential may not come
//! from a client) and a logged one with `from_log`.

use super::{bad_frame, bad_request, expect_len, number_at, u32_at, u64_at, DecodeError};
use crate::number::Number;
use crate::protocol::{limits, opcode};

/// TENANT_PUT body before the credential.
pub const TENANT_PUT_FIXED_BYTES: usize = 24;
/// TENANT_STATUS body.
pub const TENANT_STATUS_BYTES: usize = 8;
/// TENANT_SHOW body.
pub const TENANT_SHOW_BYTES: usize = 4;
/// BLOCK body.
pub const BLOCK_BYTES: usize = 16;
/// POOL_ADD and POOL_REMOVE body.
pub const POOL_RANGE_BYTES: usize = 28;
/// POOL_SHOW body.
pub const POOL_SHOW_BYTES: usize = 4;
/// POOL_REMOVE flag: remove even if numbers are in use.
pub const POOL_FORCE: u8 = 1;
/// The tenant field value meaning "every tenant" (TENANT_SHOW) or "the
/// global list" (BLOCK).
pub const ALL: u32 = u32::MAX;
/// Length of a hashed credential (SHA-256).
pub const TOKEN_HASH_BYTES: usize = 32;

/// TENANT_PUT flag: the tenant must not exist yet (`tenant add`).
pub const PUT_ADD: u8 = 1;
/// TENANT_PUT flag: the tenant must exist (`tenant set`).
pub const PUT_SET: u8 = 2;
/// TENANT_PUT flag, set by the server only: the credential field holds the
/// SHA-256 of the token, as the log keeps it.
pub const PUT_HASHED: u8 = 4;

/// How TENANT_PUT treats an existing tenant.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PutMode {
    /// Refuse if the tenant exists.
    Add,
    /// Refuse if it does not.
    Set,
    /// Either.
    Upsert,
}

/// A change of control state.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ControlRequest<'a> {
    /// TENANT_PUT.
    TenantPut {
        /// The tenant.
        tenant: u32,
        /// Add, set or either.
        mode: PutMode,
        /// Most live bindings (0: no quota).
        max_live: u32,
        /// Most binds per second (0: no quota).
        binds_per_s: u32,
        /// Most lookups per second its bindings answer (0: no limit).
        lookups_per_s: u32,
        /// Most lookups per second one of its X answers (0: no limit).
        x_lookups_per_s: u32,
        /// A credential to add: the token, or its SHA-256 once hashed.
        token: &'a [u8],
        /// `token` is the SHA-256 of the token.
        hashed: bool,
    },
    /// TENANT_STATUS.
    TenantStatus {
        /// The tenant.
        tenant: u32,
        /// Suspended (true) or active.
        suspended: bool,
    },
    /// POOL_ADD.
    PoolAdd {
        /// The tenant.
        tenant: u32,
        /// First X of the range (its 15 digits as an integer).
        first: u64,
        /// Last X of the range.
        last: u64,
        /// Area code: ASCII digits, zero-padded.
        area: [u8; super::auto::AREA_BYTES],
        /// Province code (`pool::Province`), 0 for the area's default.
        province: u8,
    },
    /// POOL_REMOVE.
    PoolRemove {
        /// The tenant.
        tenant: u32,
        /// First X of the range.
        first: u64,
        /// Last X of the range.
        last: u64,
        /// Remove even if numbers of it are in live bindings.
        force: bool,
    },
    /// BLOCK.
    Block {
        /// The tenant whose list, or `None` for the global one.
        tenant: Option<u32>,
        /// The caller.
        caller: Number,
        /// Add (true) or remove.
        add: bool,
    },
}

/// Decodes a control body a client sent.
pub fn from_client(op: u8, body: &[u8]) -> Result<ControlRequest<'_>, DecodeError> {
    decode(op, body, false)
}

/// Decodes a control body from the log (credentials hashed).
pub fn from_log(op: u8, body: &[u8]) -> Result<ControlRequest<'_>, DecodeError> {
    decode(op, body, true)
}

fn decode(op: u8, body: &[u8], logged: bool) -> Result<ControlRequest<'_>, DecodeError> {
    match op {
        opcode::TENANT_PUT => {
            if body.len() < TENANT_PUT_FIXED_BYTES {
                return Err(bad_frame("TENANT_PUT shorter than 24 bytes"));
            }
            let flags = body[20];
            let token_len = usize::from(body[21]);
            if body[22] != 0 || body[23] != 0 || flags & !(PUT_ADD | PUT_SET | PUT_HASHED) != 0 {
                return Err(bad_frame("reserved bits are not zero"));
            }
            if body.len() != TENANT_PUT_FIXED_BYTES + token_len {
                return Err(bad_frame(
                    "TENANT_PUT length does not match its token length",
                ));
            }
            let hashed = flags & PUT_HASHED != 0;
            if hashed && !logged {
                return Err(bad_request("the hashed-credential flag is the server's"));
            }
            if hashed && token_len != TOKEN_HASH_BYTES {
                return Err(bad_frame("a hashed credential is 32 bytes"));
            }
            if token_len > limits::CREDENTIAL_BYTES_MAX {
                return Err(bad_request("credential over 64 bytes"));
            }
            let mode = match flags & (PUT_ADD | PUT_SET) {
                0 => PutMode::Upsert,
                PUT_ADD => PutMode::Add,
                PUT_SET => PutMode::Set,
                _ => return Err(bad_request("TENANT_PUT: add and set both asked")),
            };
            let tenant = tenant_at(body)?;
            Ok(ControlRequest::TenantPut {
                tenant,
                mode,
                max_live: u32_at(body, 4),
                binds_per_s: u32_at(body, 8),
                lookups_per_s: u32_at(body, 12),
                x_lookups_per_s: u32_at(body, 16),
                token: &body[TENANT_PUT_FIXED_BYTES..],
                hashed,
            })
        }
        opcode::TENANT_STATUS => {
            expect_len(body, TENANT_STATUS_BYTES)?;
            if body[5..8].iter().any(|&b| b != 0) {
                return Err(bad_frame("reserved bytes are not zero"));
            }
            let suspended = match body[4] {
                0 => false,
                1 => true,
                _ => return Err(bad_request("status must be 0 (active) or 1 (suspended)")),
            };
            Ok(ControlRequest::TenantStatus {
                tenant: tenant_at(body)?,
                suspended,
            })
        }
        opcode::BLOCK => {
            expect_len(body, BLOCK_BYTES)?;
            if body[13..16].iter().any(|&b| b != 0) {
                return Err(bad_frame("reserved bytes are not zero"));
            }
            let add = match body[12] {
                0 => false,
                1 => true,
                _ => return Err(bad_request("action must be 0 (remove) or 1 (add)")),
            };
            let tenant = match u32_at(body, 0) {
                ALL => None,
                tenant => Some(tenant),
            };
            Ok(ControlRequest::Block {
                tenant,
                caller: number_at(body, 4),
                add,
            })
        }
        opcode::POOL_ADD | opcode::POOL_REMOVE => {
            expect_len(body, POOL_RANGE_BYTES)?;
            if body[26..28].iter().any(|&b| b != 0) || body[25] & !POOL_FORCE != 0 {
                return Err(bad_frame("reserved bits are not zero"));
            }
            let tenant = tenant_at(body)?;
            let first = u64_at(body, 4);
            let last = u64_at(body, 12);
            if op == opcode::POOL_ADD {
                if body[25] != 0 {
                    return Err(bad_frame("POOL_ADD has no flags"));
                }
                Ok(ControlRequest::PoolAdd {
                    tenant,
                    first,
                    last,
                    area: super::auto::decode_area(&body[20..24])?,
                    province: body[24],
                })
            } else {
                if body[20..25].iter().any(|&b| b != 0) {
                    return Err(bad_frame("POOL_REMOVE: area and province are zero"));
                }
                Ok(ControlRequest::PoolRemove {
                    tenant,
                    first,
                    last,
                    force: body[25] & POOL_FORCE != 0,
                })
            }
        }
        _ => Err(DecodeError {
            status: crate::protocol::status::UNKNOWN_OPCODE,
            reason: "not a control opcode",
        }),
    }
}

/// Decodes a POOL_SHOW body: the tenant.
pub fn decode_pool_show(body: &[u8]) -> Result<u32, DecodeError> {
    expect_len(body, POOL_SHOW_BYTES)?;
    tenant_at(body)
}

fn tenant_at(body: &[u8]) -> Result<u32, DecodeError> {
    match u32_at(body, 0) {
        ALL => Err(bad_request("tenant id 4294967295 is reserved")),
        tenant => Ok(tenant),
    }
}

/// Decodes a TENANT_SHOW body: `None` for every tenant.
pub fn decode_tenant_show(body: &[u8]) -> Result<Option<u32>, DecodeError> {
    expect_len(body, TENANT_SHOW_BYTES)?;
    Ok(match u32_at(body, 0) {
        ALL => None,
        tenant => Some(tenant),
    })
}

/// Encodes a control request's body (clients; the server when it hashes a
/// credential before logging it).
pub fn encode(request: &ControlRequest<'_>, out: &mut Vec<u8>) {
    match request {
        ControlRequest::TenantPut {
            tenant,
            mode,
            max_live,
            binds_per_s,
            lookups_per_s,
            x_lookups_per_s,
            token,
            hashed,
        } => {
            out.extend_from_slice(&tenant.to_le_bytes());
            out.extend_from_slice(&max_live.to_le_bytes());
            out.extend_from_slice(&binds_per_s.to_le_bytes());
            out.extend_from_slice(&lookups_per_s.to_le_bytes());
            out.extend_from_slice(&x_lookups_per_s.to_le_bytes());
            let mut flags = match mode {
                PutMode::Add => PUT_ADD,
                PutMode::Set => PUT_SET,
                PutMode::Upsert => 0,
            };
            if *hashed {
                flags |= PUT_HASHED;
            }
            out.push(flags);
            out.push(u8::try_from(token.len()).unwrap_or(u8::MAX));
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(token);
        }
        ControlRequest::TenantStatus { tenant, suspended } => {
            out.extend_from_slice(&tenant.to_le_bytes());
            out.extend_from_slice(&[u8::from(*suspended), 0, 0, 0]);
        }
        ControlRequest::PoolAdd {
            tenant,
            first,
            last,
            area,
            province,
        } => {
            out.extend_from_slice(&tenant.to_le_bytes());
            out.extend_from_slice(&first.to_le_bytes());
            out.extend_from_slice(&last.to_le_bytes());
            out.extend_from_slice(area);
            out.extend_from_slice(&[*province, 0, 0, 0]);
        }
        ControlRequest::PoolRemove {
            tenant,
            first,
            last,
            force,
        } => {
            out.extend_from_slice(&tenant.to_le_bytes());
            out.extend_from_slice(&first.to_le_bytes());
            out.extend_from_slice(&last.to_le_bytes());
            out.extend_from_slice(&[0, 0, 0, 0, 0]);
            out.extend_from_slice(&[if *force { POOL_FORCE } else { 0 }, 0, 0]);
        }
        ControlRequest::Block {
            tenant,
            caller,
            add,
        } => {
            out.extend_from_slice(&tenant.unwrap_or(ALL).to_le_bytes());
            out.extend_from_slice(&caller.0);
            out.extend_from_slice(&[u8::from(*add), 0, 0, 0]);
        }
    }
}

/// The opcode of a control request.
pub fn opcode_of(request: &ControlRequest<'_>) -> u8 {
    match request {
        ControlRequest::TenantPut { .. } => opcode::TENANT_PUT,
        ControlRequest::TenantStatus { .. } => opcode::TENANT_STATUS,
        ControlRequest::Block { .. } => opcode::BLOCK,
        ControlRequest::PoolAdd { .. } => opcode::POOL_ADD,
        ControlRequest::PoolRemove { .. } => opcode::POOL_REMOVE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_survives_a_round_trip() {
        let requests = [
            ControlRequest::TenantPut {
                tenant: 7,
                mode: PutMode::Add,
                max_live: 10,
                binds_per_s: 5,
                lookups_per_s: 1000,
                x_lookups_per_s: 10,
                token: b"a-token-of-16-bytes",
                hashed: false,
            },
            ControlRequest::TenantStatus {
                tenant: 7,
                suspended: true,
            },
            ControlRequest::Block {
                tenant: None,
                caller: Number::from_digits(b"13800138000"),
                add: true,
            },
            ControlRequest::PoolAdd {
                tenant: 7,
                first: 700_123_400_000_000,
                last: 700_123_400_099_999,
                area: *b"0755",
                province: 0,
            },
            ControlRequest::PoolRemove {
                tenant: 7,
                first: 700_123_400_000_000,
                last: 700_123_400_099_999,
                force: true,
            },
        ];
        for request in requests {
            let mut body = Vec::new();
            encode(&request, &mut body);
            assert_eq!(from_client(opcode_of(&request), &body), Ok(request));
        }
    }

    /// A client may not present a credential as already hashed: the log
    /// alone carries hashes, so a client cannot plant one.
    #[test]
    fn a_client_cannot_send_a_hashed_credential() {
        let request = ControlRequest::TenantPut {
            tenant: 1,
            mode: PutMode::Upsert,
            max_live: 0,
            binds_per_s: 0,
            lookups_per_s: 0,
            x_lookups_per_s: 0,
            token: &[0; 32],
            hashed: true,
        };
        let mut body = Vec::new();
        encode(&request, &mut body);
        assert!(from_client(opcode::TENANT_PUT, &body).is_err());
        assert_eq!(from_log(opcode::TENANT_PUT, &body), Ok(request));
    }

    #[test]
    fn short_and_odd_bodies_are_refused() {
        for op in [
            opcode::TENANT_PUT,
            opcode::TENANT_STATUS,
            opcode::BLOCK,
            opcode::POOL_ADD,
            opcode::POOL_REMOVE,
        ] {
            for len in 0..20 {
                let _ = from_client(op, &vec![0xFF; len]);
            }
        }
        assert!(from_client(opcode::TENANT_STATUS, &[1, 0, 0, 0, 2, 0, 0, 0]).is_err());
    }
}

/// TRACE_X body: X, the second, the caller (8 zero bytes: any).
pub const TRACE_X_BYTES: usize = 20;
/// TRACE_ORDER body: tenant, order length, 3 reserved, the order (32).
pub const TRACE_ORDER_BYTES: usize = 40;

/// A question to the traceability history.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TraceRequest<'a> {
    /// Which bindings routed `x` at `at_s` (only those of `caller`, if given).
    AtX {
        /// The virtual number.
        x: Number,
        /// The second, Unix time.
        at_s: u32,
        /// The caller, or `Number::NONE`.
        caller: Number,
    },
    /// Every binding of an order.
    Order {
        /// The tenant.
        tenant: u32,
        /// The order reference.
        order: &'a [u8],
    },
}

/// Decodes a TRACE_X or TRACE_ORDER body.
pub fn decode_trace(op: u8, body: &[u8]) -> Result<TraceRequest<'_>, DecodeError> {
    if op == opcode::TRACE_X {
        expect_len(body, TRACE_X_BYTES)?;
        return Ok(TraceRequest::AtX {
            x: number_at(body, 0),
            at_s: u32_at(body, 8),
            caller: number_at(body, 12),
        });
    }
    expect_len(body, TRACE_ORDER_BYTES)?;
    let len = usize::from(body[4]);
    if body[5..8].iter().any(|&b| b != 0) {
        return Err(bad_frame("reserved bytes are not zero"));
    }
    if len == 0 || len > 32 || body[8 + len..].iter().any(|&b| b != 0) {
        return Err(bad_request("order length must be 1-32 with zero padding"));
    }
    Ok(TraceRequest::Order {
        tenant: tenant_at(body)?,
        order: &body[8..8 + len],
    })
}

/// Encodes a trace request; returns its opcode.
pub fn encode_trace(request: &TraceRequest<'_>, out: &mut Vec<u8>) -> u8 {
    match *request {
        TraceRequest::AtX { x, at_s, caller } => {
            out.extend_from_slice(&x.0);
            out.extend_from_slice(&at_s.to_le_bytes());
            out.extend_from_slice(&caller.0);
            opcode::TRACE_X
        }
        TraceRequest::Order { tenant, order } => {
            out.extend_from_slice(&tenant.to_le_bytes());
            out.push(u8::try_from(order.len()).unwrap_or(u8::MAX));
            out.extend_from_slice(&[0, 0, 0]);
            let mut padded = [0u8; 32];
            let n = order.len().min(32);
            padded[..n].copy_from_slice(&order[..n]);
            out.extend_from_slice(&padded);
            opcode::TRACE_ORDER
        }
    }
}
