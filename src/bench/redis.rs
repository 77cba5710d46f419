//! Redis as the benchmark's other target: the same bindings stored the way
//! Redis-based number-protection platforms store them, spoken over RESP
//! (written here by hand: a few commands, no client library).
//!
//! Layouts (`--redis-layout`), per AXB binding (X, A, B), value
//! `callee|binding|expires_at_s|recording` (what a route answer carries):
//! - `keys`: key `x:<X>:<A>` -> `<B>|...` and `x:<X>:<B>` -> `<A>|...`;
//!   lookup `GET x:<X>:<caller>`, bind `MSET` of both, unbind `DEL` of both.
//! - `hash`: the same entries as fields of small hashes: hash
//!   `h:<X mod buckets>`, field `<X div buckets>:<caller>`, with the bucket
//!   count chosen for about `HASH_FIELDS_PER_KEY` fields per hash; lookup
//!   `HGET`, bind `HSET` of both fields, unbind `HDEL`.
//!
//! AXE bindings use the extension as the selector (`#<digits>`, one entry).
//! Encoding and decoding are pure functions over byte slices; a reply that
//! cannot be parsed is an error, never a panic.

use super::params::{RedisLayout, HASH_FIELDS_PER_KEY};
use super::workload::{decimal, Op, OpKind, SynthBinding};
use crate::binding::Mode;
use crate::number::Number;
use crate::protocol::status;

/// Fewest hashes in the `hash` layout (a write-only run may start empty).
pub const HASH_BUCKETS_MIN: u64 = 1024;
/// Longest reply line (status, error, integer, bulk length) accepted.
pub const LINE_BYTES_MAX: usize = 4096;
/// Largest bulk reply accepted.
pub const BULK_BYTES_MAX: usize = 1 << 20;
/// Room for one key, field or value.
const TEXT_BYTES: usize = 64;

/// A short byte string built without allocation.
struct Text {
    bytes: [u8; TEXT_BYTES],
    len: usize,
}

impl Text {
    fn new() -> Text {
        Text {
            bytes: [0; TEXT_BYTES],
            len: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        // Every text here is at most 50 bytes (numbers of at most 20
        // digits and short prefixes): TEXT_BYTES is enough.
        self.bytes[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn push_decimal(&mut self, value: u64) {
        let mut digits = [0u8; 20];
        let count = decimal(value, &mut digits);
        self.push(&digits[..count]);
    }

    /// The number's digits; an extension key as `#` and its digits.
    fn push_number(&mut self, number: Number) {
        for i in 0..16 {
            let nibble = if i % 2 == 0 {
                number.0[i / 2] >> 4
            } else {
                number.0[i / 2] & 0xF
            };
            match nibble {
                0..=9 => self.push(&[b'0' + nibble]),
                0xE => self.push(b"#"),
                _ => break,
            }
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The decimal value of a number's digits (X has 15: below 2^50).
fn number_value(number: Number) -> u64 {
    number
        .leading_digits()
        .fold(0u64, |value, digit| value * 10 + u64::from(digit))
}

/// Writes one RESP command (an array of bulk strings).
pub fn push_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    let mut digits = [0u8; 20];
    out.push(b'*');
    let count = decimal(args.len() as u64, &mut digits);
    out.extend_from_slice(&digits[..count]);
    out.extend_from_slice(b"\r\n");
    for arg in args {
        out.push(b'$');
        let count = decimal(arg.len() as u64, &mut digits);
        out.extend_from_slice(&digits[..count]);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// One reply, reduced to what the benchmark checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+...` (MSET's `+OK`).
    Simple,
    /// `-...`.
    Error,
    /// `:n`.
    Integer(i64),
    /// `$-1` (GET or HGET of nothing).
    Nil,
    /// A bulk string; `callee` is its digits before the first `|`, or
    /// `Number::NONE` if they are not a number.
    Bulk {
        /// The callee the value names.
        callee: Number,
    },
}

/// Why a reply stream cannot be read; the connection must close.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    /// A reply type this client never asks for, or a malformed line.
    #[error("unexpected RESP reply: {0}")]
    Unexpected(&'static str),
}

/// Takes one reply from the front of `input`: `Ok(Some((bytes, reply)))`,
/// `Ok(None)` if more bytes are needed.
pub fn decode_reply(input: &[u8]) -> Result<Option<(usize, Reply)>, RespError> {
    let search = &input[..input.len().min(LINE_BYTES_MAX)];
    let Some(line_end) = search.windows(2).position(|w| w == b"\r\n") else {
        if input.len() >= LINE_BYTES_MAX {
            return Err(RespError::Unexpected("line too long"));
        }
        return Ok(None);
    };
    if line_end == 0 {
        return Err(RespError::Unexpected("empty line"));
    }
    let line = &input[1..line_end];
    let after_line = line_end + 2;
    match input[0] {
        b'+' => Ok(Some((after_line, Reply::Simple))),
        b'-' => Ok(Some((after_line, Reply::Error))),
        b':' => {
            let value = integer(line).ok_or(RespError::Unexpected("bad integer"))?;
            Ok(Some((after_line, Reply::Integer(value))))
        }
        b'$' => {
            let length = integer(line).ok_or(RespError::Unexpected("bad bulk length"))?;
            if length == -1 {
                return Ok(Some((after_line, Reply::Nil)));
            }
            let length = usize::try_from(length)
                .ok()
                .filter(|&l| l <= BULK_BYTES_MAX)
                .ok_or(RespError::Unexpected("bulk length out of range"))?;
            let end = after_line + length + 2;
            if input.len() < end {
                return Ok(None);
            }
            if &input[end - 2..end] != b"\r\n" {
                return Err(RespError::Unexpected("bulk string not ended by CRLF"));
            }
            let value = &input[after_line..after_line + length];
            let digits = value.split(|&b| b == b'|').next().unwrap_or_default();
            Ok(Some((
                end,
                Reply::Bulk {
                    callee: callee_of(digits),
                },
            )))
        }
        _ => Err(RespError::Unexpected("reply type not used by this client")),
    }
}

fn integer(text: &[u8]) -> Option<i64> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

fn callee_of(digits: &[u8]) -> Number {
    let valid = (1..=crate::number::DIGITS_MAX).contains(&digits.len())
        && digits.iter().all(u8::is_ascii_digit);
    if valid {
        Number::from_digits(digits)
    } else {
        Number::NONE
    }
}

/// The status (x700's codes, so reports read the same) and callee of a
/// reply to a request of this kind.
pub fn answer_of(reply: Reply, kind: OpKind) -> (u8, Number) {
    match (reply, kind) {
        (Reply::Error, _) => (status::INTERNAL, Number::NONE),
        (Reply::Bulk { callee }, OpKind::Lookup) => (status::OK, callee),
        (Reply::Nil, OpKind::Lookup) => (status::NOT_BOUND, Number::NONE),
        (Reply::Simple | Reply::Integer(_), OpKind::Bind) => (status::OK, Number::NONE),
        (Reply::Integer(removed), OpKind::Unbind) if removed > 0 => (status::OK, Number::NONE),
        (Reply::Integer(_), OpKind::Unbind) => (status::NOT_FOUND, Number::NONE),
        _ => (status::BAD_FRAME, Number::NONE),
    }
}

/// Encodes the benchmark's requests in one layout.
#[derive(Clone, Copy, Debug)]
pub struct RedisCodec {
    layout: RedisLayout,
    buckets: u64,
    ttl_s: u32,
}

impl RedisCodec {
    /// The codec for a store of about `bindings` bindings.
    pub fn new(layout: RedisLayout, bindings: u64, ttl_s: u32) -> RedisCodec {
        let buckets = (bindings * 2)
            .div_ceil(HASH_FIELDS_PER_KEY)
            .max(HASH_BUCKETS_MIN);
        RedisCodec {
            layout,
            buckets,
            ttl_s,
        }
    }

    /// Hashes in the `hash` layout.
    pub fn buckets(&self) -> u64 {
        self.buckets
    }

    /// The key (keys layout) or hash and field (hash layout) of the entry
    /// for `selector` (a caller, or an AXE extension key) on `x`.
    fn entry(&self, x: Number, selector: Number) -> (Text, Text) {
        let mut key = Text::new();
        let mut field = Text::new();
        match self.layout {
            RedisLayout::Keys => {
                key.push(b"x:");
                key.push_number(x);
                key.push(b":");
                key.push_number(selector);
            }
            RedisLayout::Hash => {
                let value = number_value(x);
                key.push(b"h:");
                key.push_decimal(value % self.buckets);
                field.push_decimal(value / self.buckets);
                field.push(b":");
                field.push_number(selector);
            }
        }
        (key, field)
    }

    fn value(&self, callee: Number, binding: &SynthBinding, now_s: u32) -> Text {
        let mut value = Text::new();
        value.push_number(callee);
        value.push(b"|");
        value.push_decimal(binding.index);
        value.push(b"|");
        value.push_decimal(u64::from(now_s) + u64::from(self.ttl_s));
        value.push(b"|0");
        value
    }

    /// Appends the command for `op` (`now_s`: the clock, for expiry times).
    pub fn encode(&self, op: &Op, now_s: u32, out: &mut Vec<u8>) {
        match op {
            Op::Lookup { query, .. } => {
                let selector = if query.extension.is_none() {
                    query.caller
                } else {
                    query.extension
                };
                let (key, field) = self.entry(query.x, selector);
                match self.layout {
                    RedisLayout::Keys => push_command(out, &[b"GET", key.as_bytes()]),
                    RedisLayout::Hash => {
                        push_command(out, &[b"HGET", key.as_bytes(), field.as_bytes()]);
                    }
                }
            }
            Op::Bind(binding) => self.encode_bind(binding, now_s, out),
            Op::Unbind(binding) => self.encode_unbind(binding, out),
        }
    }

    fn encode_bind(&self, binding: &SynthBinding, now_s: u32, out: &mut Vec<u8>) {
        if binding.mode == Mode::Axe {
            let (key, field) = self.entry(binding.x, binding.b);
            let value = self.value(binding.a, binding, now_s);
            match self.layout {
                RedisLayout::Keys => {
                    push_command(out, &[b"SET", key.as_bytes(), value.as_bytes()]);
                }
                RedisLayout::Hash => push_command(
                    out,
                    &[b"HSET", key.as_bytes(), field.as_bytes(), value.as_bytes()],
                ),
            }
            return;
        }
        let (key_a, field_a) = self.entry(binding.x, binding.a);
        let (key_b, field_b) = self.entry(binding.x, binding.b);
        let to_b = self.value(binding.b, binding, now_s);
        let to_a = self.value(binding.a, binding, now_s);
        match self.layout {
            RedisLayout::Keys => push_command(
                out,
                &[
                    b"MSET",
                    key_a.as_bytes(),
                    to_b.as_bytes(),
                    key_b.as_bytes(),
                    to_a.as_bytes(),
                ],
            ),
            // Both parties' fields live in X's hash.
            RedisLayout::Hash => push_command(
                out,
                &[
                    b"HSET",
                    key_a.as_bytes(),
                    field_a.as_bytes(),
                    to_b.as_bytes(),
                    field_b.as_bytes(),
                    to_a.as_bytes(),
                ],
            ),
        }
    }

    fn encode_unbind(&self, binding: &SynthBinding, out: &mut Vec<u8>) {
        let (key_a, field_a) = self.entry(binding.x, binding.a);
        if binding.mode == Mode::Axe {
            let (key, field) = self.entry(binding.x, binding.b);
            match self.layout {
                RedisLayout::Keys => push_command(out, &[b"DEL", key.as_bytes()]),
                RedisLayout::Hash => {
                    push_command(out, &[b"HDEL", key.as_bytes(), field.as_bytes()]);
                }
            }
            return;
        }
        let (key_b, field_b) = self.entry(binding.x, binding.b);
        match self.layout {
            RedisLayout::Keys => {
                push_command(out, &[b"DEL", key_a.as_bytes(), key_b.as_bytes()]);
            }
            RedisLayout::Hash => push_command(
                out,
                &[
                    b"HDEL",
                    key_a.as_bytes(),
                    field_a.as_bytes(),
                    field_b.as_bytes(),
                ],
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::params::ModeMix;
    use crate::bench::workload::Catalog;

    fn text(bytes: &[u8]) -> String {
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn commands_are_resp_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        push_command(&mut out, &[b"GET", b"x:1"]);
        assert_eq!(out, b"*2\r\n$3\r\nGET\r\n$3\r\nx:1\r\n");
    }

    #[test]
    fn keys_layout_encodes_lookups_binds_unbinds() {
        let catalog = Catalog::new(1, ModeMix::AXB, 0);
        let binding = catalog.loaded(3);
        let (query, callee) = catalog.hit(&binding, 0);
        let codec = RedisCodec::new(RedisLayout::Keys, 10, 60);
        let (x, a, b) = (binding.x.digits(), binding.a.digits(), binding.b.digits());
        let mut out = Vec::new();
        codec.encode(
            &Op::Lookup {
                query,
                callee: Some(callee),
            },
            1000,
            &mut out,
        );
        let key = format!("x:{x}:{a}");
        assert_eq!(
            text(&out),
            format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len())
        );
        out.clear();
        codec.encode(&Op::Bind(binding), 1000, &mut out);
        let to_b = format!("{b}|3|1060|0");
        let to_a = format!("{a}|3|1060|0");
        let key_b = format!("x:{x}:{b}");
        assert_eq!(
            text(&out),
            format!(
                "*5\r\n$4\r\nMSET\r\n${}\r\n{key}\r\n${}\r\n{to_b}\r\n${}\r\n{key_b}\r\n${}\r\n{to_a}\r\n",
                key.len(),
                to_b.len(),
                key_b.len(),
                to_a.len()
            )
        );
        out.clear();
        codec.encode(&Op::Unbind(binding), 1000, &mut out);
        assert!(text(&out).starts_with("*3\r\n$3\r\nDEL\r\n"));
    }

    #[test]
    fn hash_layout_buckets_by_x_and_fields_name_the_caller() {
        let catalog = Catalog::new(1, ModeMix::AXB, 0);
        let binding = catalog.loaded(5);
        let codec = RedisCodec::new(RedisLayout::Hash, 1_000_000, 60);
        assert_eq!(codec.buckets(), 20_000);
        let value: u64 = binding.x.digits().parse().unwrap();
        let (key, field) = codec.entry(binding.x, binding.b);
        assert_eq!(text(key.as_bytes()), format!("h:{}", value % 20_000));
        assert_eq!(
            text(field.as_bytes()),
            format!("{}:{}", value / 20_000, binding.b.digits())
        );
        let mut out = Vec::new();
        let (query, callee) = catalog.hit(&binding, 1);
        codec.encode(
            &Op::Lookup {
                query,
                callee: Some(callee),
            },
            0,
            &mut out,
        );
        assert!(text(&out).starts_with("*3\r\n$4\r\nHGET\r\n"));
        assert!(text(&out).ends_with(&format!("{}\r\n", text(field.as_bytes()))));
        let axe = Catalog::new(1, ModeMix::parse("axe=1").unwrap(), 0).loaded(7);
        let (_, field) = codec.entry(axe.x, axe.b);
        assert!(text(field.as_bytes()).ends_with(":#0007"));
    }

    #[test]
    fn replies_decode_in_pieces_and_bad_ones_are_errors() {
        let stream = b"+OK\r\n:2\r\n$-1\r\n$20\r\n13800138000|7|1060|0\r\n-ERR no\r\n";
        let mut replies = Vec::new();
        let mut at = 0;
        while let Some((used, reply)) = decode_reply(&stream[at..]).unwrap() {
            replies.push(reply);
            at += used;
        }
        assert_eq!(at, stream.len());
        let callee = Number::from_digits(b"13800138000");
        assert_eq!(
            replies,
            [
                Reply::Simple,
                Reply::Integer(2),
                Reply::Nil,
                Reply::Bulk { callee },
                Reply::Error
            ]
        );
        for cut in 0..stream.len() - 1 {
            // Every prefix is either complete replies or a clean "need more".
            let mut at = 0;
            while let Some((used, _)) = decode_reply(&stream[at..cut]).unwrap() {
                at += used;
            }
            assert!(at <= cut);
        }
        assert_eq!(
            decode_reply(b"$3\r\nabc\r\n").unwrap(),
            Some((
                9,
                Reply::Bulk {
                    callee: Number::NONE
                }
            ))
        );
        assert!(decode_reply(b"*1\r\n").is_err());
        assert!(decode_reply(b"$3\r\nabcXY").is_err());
        assert!(decode_reply(b"$99999999999\r\n").is_err());
        assert!(decode_reply(&[b'+'; LINE_BYTES_MAX]).is_err());
        assert_eq!(answer_of(Reply::Nil, OpKind::Lookup).0, status::NOT_BOUND);
        assert_eq!(
            answer_of(Reply::Integer(0), OpKind::Unbind).0,
            status::NOT_FOUND
        );
        assert_eq!(answer_of(Reply::Integer(0), OpKind::Bind).0, status::OK);
        assert_eq!(
            answer_of(Reply::Simple, OpKind::Lookup).0,
            status::BAD_FRAME
        );
    }
}
