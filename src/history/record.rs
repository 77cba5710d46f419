//! One event on disk: a length-prefixed, CRC32C-checked, variable-length
//! record. Pure encode and decode over bytes; decoding never panics.
//!
//! Times and log indexes are stored as differences from the segment's base
//! (its header holds `first_index` and `base_at_s`), as LEB128 varints, so a
//! record decodes on its own given its segment: an index entry can point
//! straight at it. See the module docs of `history` for the byte layout.

use super::event::{Event, EventKind, ORDER_BYTES_MAX};
use crate::number::Number;

/// Bytes before the payload: its length.
pub const LEN_BYTES: usize = 1;
/// Bytes after the payload: CRC32C of length and payload.
pub const CRC_BYTES: usize = 4;
/// Largest payload: kind 1, two varints of 10, id 8, x 8, created varint
/// 10, tenant 5, a 8, b 8, expiry 10, credential 5, order 1 + 32.
pub const PAYLOAD_BYTES_MAX: usize = 1 + 10 + 10 + 8 + 8 + 10 + 5 + 8 + 8 + 10 + 5 + 1 + 32;
/// Largest record on disk.
pub const RECORD_BYTES_MAX: usize = LEN_BYTES + PAYLOAD_BYTES_MAX + CRC_BYTES;
const _: () = assert!(PAYLOAD_BYTES_MAX <= 255);

/// What a segment's records are relative to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Base {
    /// Log index of the segment's first record.
    pub first_index: u64,
    /// `at_s` of the segment's first record.
    pub at_s: u32,
}

/// Why bytes are not a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes end before the record does (a torn tail, or end of data).
    Short,
    /// The length byte is zero (never written) or the CRC does not match.
    Crc,
    /// The CRC matches but a field is out of range.
    Field(&'static str),
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        // Truncation intended: the low seven bits, with the "more" flag.
        out.push((value as u8 & 0x7F) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// Appends `event`'s record to `out`; returns its length in bytes.
///
/// # Panics
/// If the order is longer than `ORDER_BYTES_MAX`, the mode above 3 or the
/// log index below the segment's base: `History::append` checks all three
/// before it encodes (an assertion just before the write, as STYLE asks).
pub fn encode(event: &Event, base: Base, out: &mut Vec<u8>) -> usize {
    assert!(event.order.len() <= ORDER_BYTES_MAX);
    assert!(event.mode <= 3);
    assert!(event.log_index >= base.first_index);
    let start = out.len();
    out.push(0); // length, filled below
    out.push(event.kind.code() | (event.mode << 2));
    put_varint(out, event.log_index - base.first_index);
    put_varint(out, zigzag(i64::from(event.at_s) - i64::from(base.at_s)));
    out.extend_from_slice(&event.binding_id.to_le_bytes());
    out.extend_from_slice(&event.x.0);
    if event.kind != EventKind::Created {
        put_varint(
            out,
            zigzag(i64::from(event.at_s) - i64::from(event.created_s)),
        );
    }
    if event.kind.carries_fields() {
        put_varint(out, u64::from(event.tenant));
        out.extend_from_slice(&event.a.0);
        out.extend_from_slice(&event.b.0);
        put_varint(
            out,
            zigzag(i64::from(event.expires_at_s) - i64::from(event.at_s)),
        );
        put_varint(out, u64::from(event.credential));
        // Cannot truncate: asserted <= 32 above.
        out.push(event.order.len() as u8);
        out.extend_from_slice(&event.order);
    }
    let payload = out.len() - start - LEN_BYTES;
    assert!(payload <= PAYLOAD_BYTES_MAX);
    // Cannot truncate: PAYLOAD_BYTES_MAX <= 255, asserted at compile time.
    out[start] = payload as u8;
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.len() - start
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or(DecodeError::Field("payload ends early"))?;
        self.at += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::Field("varint longer than 10 bytes"))
    }

    fn eight(&mut self) -> Result<[u8; 8], DecodeError> {
        let s = self
            .bytes
            .get(self.at..self.at + 8)
            .ok_or(DecodeError::Field("payload ends early"))?;
        self.at += 8;
        let mut out = [0u8; 8];
        out.copy_from_slice(s);
        Ok(out)
    }

    fn number(&mut self) -> Result<Number, DecodeError> {
        let n = Number(self.eight()?);
        if !n.is_well_formed() {
            return Err(DecodeError::Field("malformed number"));
        }
        Ok(n)
    }

    fn time(&mut self, from: u32) -> Result<u32, DecodeError> {
        let t = i64::from(from) + unzigzag(self.varint()?);
        u32::try_from(t).map_err(|_| DecodeError::Field("time out of range"))
    }
}

/// Decodes the record at the start of `bytes`; returns the event and the
/// record's length. Never panics.
pub fn decode(bytes: &[u8], base: Base) -> Result<(Event, usize), DecodeError> {
    let Some(&len) = bytes.first() else {
        return Err(DecodeError::Short);
    };
    if len == 0 {
        return Err(DecodeError::Crc);
    }
    let total = LEN_BYTES + usize::from(len) + CRC_BYTES;
    let Some(record) = bytes.get(..total) else {
        return Err(DecodeError::Short);
    };
    let body = &record[..total - CRC_BYTES];
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&record[total - CRC_BYTES..]);
    if crc32c::crc32c(body) != u32::from_le_bytes(crc) {
        return Err(DecodeError::Crc);
    }
    let mut r = Reader {
        bytes: &body[LEN_BYTES..],
        at: 0,
    };
    let head = r.byte()?;
    if head >> 4 != 0 {
        return Err(DecodeError::Field("reserved bits set"));
    }
    let kind = EventKind::from_code(head);
    let log_index = base
        .first_index
        .checked_add(r.varint()?)
        .ok_or(DecodeError::Field("log index out of range"))?;
    let at_s = r.time(base.at_s)?;
    let binding_id = u64::from_le_bytes(r.eight()?);
    let mut event = Event::new(kind, at_s, log_index, binding_id);
    event.mode = (head >> 2) & 3;
    event.x = r.number()?;
    event.created_s = if kind == EventKind::Created {
        at_s
    } else {
        let back = unzigzag(r.varint()?);
        u32::try_from(i64::from(at_s) - back)
            .map_err(|_| DecodeError::Field("created out of range"))?
    };
    if kind.carries_fields() {
        event.tenant =
            u32::try_from(r.varint()?).map_err(|_| DecodeError::Field("tenant out of range"))?;
        event.a = r.number()?;
        event.b = r.number()?;
        event.expires_at_s = r.time(at_s)?;
        event.credential = u32::try_from(r.varint()?)
            .map_err(|_| DecodeError::Field("credential out of range"))?;
        let order_len = usize::from(r.byte()?);
        if order_len > ORDER_BYTES_MAX {
            return Err(DecodeError::Field("order longer than 32 bytes"));
        }
        let order = r
            .bytes
            .get(r.at..r.at + order_len)
            .ok_or(DecodeError::Field("payload ends early"))?;
        event.order = order.to_vec();
        r.at += order_len;
    }
    if r.at != r.bytes.len() {
        return Err(DecodeError::Field("bytes after the last field"));
    }
    Ok((event, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created() -> Event {
        let mut e = Event::new(EventKind::Created, 1_800_000_100, 1_000_007, 0xAB_CDEF);
        e.tenant = 7;
        e.mode = 0;
        e.x = Number::from_digits(b"700123456789012");
        e.a = Number::from_digits(b"13800138000");
        e.b = Number::from_digits(b"13900139000");
        e.order = b"ORD-2026-11-30-000001".to_vec();
        e.expires_at_s = 1_800_003_700;
        e.credential = 3;
        e.created_s = e.at_s;
        e
    }

    const BASE: Base = Base {
        first_index: 1_000_000,
        at_s: 1_800_000_000,
    };

    #[test]
    fn every_kind_round_trips_and_sizes_are_as_documented() {
        let mut out = Vec::new();
        let n = encode(&created(), BASE, &mut out);
        // 1 len + 1 kind + 1 index delta + 2 time delta + 8 id + 8 x +
        // 1 tenant + 16 parties + 2 expiry delta + 1 credential + 1 + 21 order + 4 crc.
        assert_eq!(n, 67);
        // The example in the module docs of `history`.
        let hex: String = out[..22].iter().map(|b| format!("{b:02x} ")).collect();
        assert_eq!(
            hex.trim_end(),
            "3e 00 07 c8 01 ef cd ab 00 00 00 00 00 70 01 23 45 67 89 01 2f 07"
        );
        assert_eq!(decode(&out, BASE).unwrap(), (created(), n));
        let mut end = Event::new(EventKind::Unbound, 1_800_000_900, 1_000_099, 0xAB_CDEF);
        end.x = created().x;
        end.created_s = 1_800_000_100;
        let mut out = Vec::new();
        let n = encode(&end, BASE, &mut out);
        // 1 + 1 + 1 + 2 + 8 + 8 + 2 created delta + 4.
        assert_eq!(n, 27);
        assert_eq!(decode(&out, BASE).unwrap(), (end, n));
    }

    /// Random bytes (and random bytes behind a valid length and CRC, so the
    /// field checks run) never panic the decoder.
    #[test]
    fn random_bytes_never_panic() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..20_000 {
            let mut bytes = vec![0u8; 1 + (state % 140) as usize];
            for b in &mut bytes {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = state as u8;
            }
            let _ = decode(&bytes, BASE);
            // Make it pass the length and CRC checks.
            let payload = bytes.len() - 1;
            if payload <= PAYLOAD_BYTES_MAX && payload > 0 {
                bytes[0] = payload as u8;
                let crc = crc32c::crc32c(&bytes);
                bytes.extend_from_slice(&crc.to_le_bytes());
                let _ = decode(&bytes, BASE);
            }
        }
    }

    #[test]
    fn a_flipped_bit_or_a_cut_is_refused_never_a_panic() {
        let mut out = Vec::new();
        let n = encode(&created(), BASE, &mut out);
        for cut in 0..n {
            assert!(decode(&out[..cut], BASE).is_err());
        }
        for bit in 0..n * 8 {
            let mut bad = out.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            if let Ok((e, _)) = decode(&bad, BASE) {
                panic!("bit {bit} flipped and still decoded: {e:?}");
            }
        }
    }
}
