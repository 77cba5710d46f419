//! BIND_AXB_AUTO (protocol version 2): an AXB bind that asks the node to
//! choose X in an area of the tenant's pool. A client sends the area where
//! BIND_AXB has X; the leader chooses X and logs the frame with X in that
//! place, so every member applies an ordinary AXB bind.

use super::{bad_request, expect_len, BindBody, DecodeError, BIND_BYTES};
use crate::binding::Mode;
use crate::number::Number;

/// Bytes of an area code in a body: ASCII digits, zero-padded.
pub const AREA_BYTES: usize = 4;
/// BIND_AXB_AUTO answer body: the BIND answer, then X.
pub const BIND_AUTO_ANSWER_BYTES: usize = super::BIND_ANSWER_BYTES + 8;

/// How far from the area asked for X may come.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Reach {
    /// The area only.
    Area,
    /// Then the area's province.
    Province,
    /// Then any area of the tenant's pool.
    Any,
}

/// A BIND_AXB_AUTO as a client sent it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AutoBindBody {
    /// The AXB bind, `x` unset (`Number::NONE`).
    pub bind: BindBody,
    /// The area code, ASCII digits (3 or 4), zero-padded.
    pub area: [u8; AREA_BYTES],
    /// The fallback the request allows.
    pub reach: Reach,
}

/// The area field as text (its digits).
pub fn area_text(area: &[u8; AREA_BYTES]) -> String {
    area.iter()
        .take_while(|&&b| b != 0)
        .map(|&b| char::from(b))
        .collect()
}

/// Reads an area field: 3 or 4 ASCII digits, then zeros.
pub fn decode_area(field: &[u8]) -> Result<[u8; AREA_BYTES], DecodeError> {
    let mut area = [0u8; AREA_BYTES];
    area.copy_from_slice(&field[..AREA_BYTES]);
    let digits = area.iter().take_while(|b| b.is_ascii_digit()).count();
    if !(3..=AREA_BYTES).contains(&digits) || area[digits..].iter().any(|&b| b != 0) {
        return Err(bad_request("area must be 3 or 4 ASCII digits, zero-padded"));
    }
    Ok(area)
}

/// Decodes a BIND_AXB_AUTO body from a client: the area in bytes 0-3,
/// bytes 4-7 zero, the fallback in byte 35; the rest as BIND_AXB.
pub fn decode_auto_bind(body: &[u8]) -> Result<AutoBindBody, DecodeError> {
    expect_len(body, BIND_BYTES)?;
    let area = decode_area(&body[..AREA_BYTES])?;
    if body[AREA_BYTES..8].iter().any(|&b| b != 0) {
        return Err(super::bad_frame("BIND_AXB_AUTO: bytes 4-7 must be zero"));
    }
    let reach = match body[35] {
        0 => Reach::Area,
        1 => Reach::Province,
        2 => Reach::Any,
        _ => {
            return Err(bad_request(
                "fallback must be 0 (none), 1 (province) or 2 (any)",
            ))
        }
    };
    let mut plain = body.to_vec();
    plain[..8].fill(0);
    plain[35] = 0;
    let bind = super::decode_bind(crate::protocol::opcode::BIND_AXB, &plain)?;
    Ok(AutoBindBody {
        bind: BindBody {
            x: Number::NONE,
            ..bind
        },
        area,
        reach,
    })
}

/// The body as the leader logs it: X chosen, in BIND_AXB's place, the
/// fallback kept in byte 35.
pub fn logged_body(client_body: &[u8], x: Number) -> Vec<u8> {
    let mut body = client_body.to_vec();
    body[..8].copy_from_slice(&x.0);
    body
}

/// Decodes a logged BIND_AXB_AUTO body into the AXB bind it is.
pub fn decode_logged_auto_bind(body: &[u8]) -> Result<BindBody, DecodeError> {
    expect_len(body, BIND_BYTES)?;
    let mut plain = body.to_vec();
    plain[35] = 0;
    let bind = super::decode_bind(crate::protocol::opcode::BIND_AXB, &plain)?;
    debug_assert_eq!(bind.mode, Mode::Axb);
    Ok(bind)
}

/// Encodes a BIND_AXB_AUTO request (clients).
pub fn encode_auto_bind(out: &mut Vec<u8>, request_id: u32, auto: &AutoBindBody) {
    let mut body = Vec::with_capacity(BIND_BYTES);
    super::encode_bind_body(
        &mut body,
        &BindBody {
            x: Number::NONE,
            ..auto.bind
        },
    );
    body[..AREA_BYTES].copy_from_slice(&auto.area);
    body[4..8].fill(0);
    body[35] = match auto.reach {
        Reach::Area => 0,
        Reach::Province => 1,
        Reach::Any => 2,
    };
    crate::protocol::frame::push_frame(
        out,
        crate::protocol::opcode::BIND_AXB_AUTO,
        0,
        request_id,
        &body,
    );
}
