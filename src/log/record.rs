//! One log entry on disk: a length-prefixed, CRC32C-checked record. Pure
//! encode and decode over bytes; decoding never panics on any input.
//!
//! Layout (little-endian; byte offsets from the start of the record):
//!
//! | offset | width | field |
//! |---|---|---|
//! | 0 | 4 | `body_bytes`: bytes after this 8-byte prefix (25 ..= `BODY_BYTES_MAX`) |
//! | 4 | 4 | CRC32C of the body |
//! | 8 | 8 | log index |
//! | 16 | 8 | term |
//! | 24 | 8 | node id of the leader that wrote it |
//! | 32 | 1 | kind: 0 blank, 1 write batch, 2 membership |
//! | 33 | n | payload (`body_bytes - 25` bytes) |
//!
//! A zero `body_bytes` marks the end of the written part of a segment
//! (segments are preallocated with zeros).

/// Bytes before the body.
pub const PREFIX_BYTES: usize = 8;
/// Fixed part of the body: index, term, leader, kind.
pub const BODY_FIXED_BYTES: usize = 25;
/// Largest body accepted: a write batch is bounded far below this.
pub const BODY_BYTES_MAX: usize = 16 << 20;

/// What an entry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// Nothing (a new leader's first entry).
    Blank,
    /// A batch of writes (`replication::batch`).
    Writes,
    /// A cluster membership change.
    Membership,
}

impl RecordKind {
    fn code(self) -> u8 {
        match self {
            RecordKind::Blank => 0,
            RecordKind::Writes => 1,
            RecordKind::Membership => 2,
        }
    }

    fn from_code(code: u8) -> Option<RecordKind> {
        match code {
            0 => Some(RecordKind::Blank),
            1 => Some(RecordKind::Writes),
            2 => Some(RecordKind::Membership),
            _ => None,
        }
    }
}

/// A log entry as the log stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// Position in the log, from 0.
    pub index: u64,
    /// Raft term it was written in.
    pub term: u64,
    /// Node id of the leader that wrote it.
    pub leader: u64,
    /// What the payload is.
    pub kind: RecordKind,
    /// The payload bytes.
    pub payload: Vec<u8>,
}

impl LogRecord {
    /// Bytes this record takes on disk.
    pub fn encoded_bytes(&self) -> usize {
        PREFIX_BYTES + BODY_FIXED_BYTES + self.payload.len()
    }

    /// Appends the encoded record to `out`.
    ///
    /// # Panics
    /// If the payload is larger than `BODY_BYTES_MAX` allows: batches are
    /// bounded long before that, so this is a programmer error.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let body_bytes = BODY_FIXED_BYTES + self.payload.len();
        assert!(body_bytes <= BODY_BYTES_MAX, "log record too large");
        let start = out.len();
        out.extend_from_slice(&u32::try_from(body_bytes).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.index.to_le_bytes());
        out.extend_from_slice(&self.term.to_le_bytes());
        out.extend_from_slice(&self.leader.to_le_bytes());
        out.push(self.kind.code());
        out.extend_from_slice(&self.payload);
        let crc = crc32c::crc32c(&out[start + PREFIX_BYTES..]);
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }
}

/// What the bytes at a position hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A whole, valid record and the bytes it took.
    Record(LogRecord, usize),
    /// Zeros: the end of the written part.
    End,
    /// Something that is not a valid record: too short, a length out of
    /// range, a CRC mismatch or an unknown kind.
    Bad(&'static str),
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Decodes the record at the start of `bytes`.
pub fn decode(bytes: &[u8]) -> Decoded {
    if bytes.len() < PREFIX_BYTES {
        return if bytes.iter().all(|&b| b == 0) {
            Decoded::End
        } else {
            Decoded::Bad("truncated length prefix")
        };
    }
    let body_bytes = le_u32(bytes, 0) as usize;
    if body_bytes == 0 {
        return Decoded::End;
    }
    if !(BODY_FIXED_BYTES..=BODY_BYTES_MAX).contains(&body_bytes) {
        return Decoded::Bad("length out of range");
    }
    let Some(body) = bytes.get(PREFIX_BYTES..PREFIX_BYTES + body_bytes) else {
        return Decoded::Bad("record runs past the end of the file");
    };
    if crc32c::crc32c(body) != le_u32(bytes, 4) {
        return Decoded::Bad("checksum mismatch");
    }
    let Some(kind) = RecordKind::from_code(body[24]) else {
        return Decoded::Bad("unknown record kind");
    };
    Decoded::Record(
        LogRecord {
            index: le_u64(body, 0),
            term: le_u64(body, 8),
            leader: le_u64(body, 16),
            kind,
            payload: body[BODY_FIXED_BYTES..].to_vec(),
        },
        PREFIX_BYTES + body_bytes,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(index: u64) -> LogRecord {
        LogRecord {
            index,
            term: 3,
            leader: 1,
            kind: RecordKind::Writes,
            payload: vec![7; 40],
        }
    }

    #[test]
    fn round_trips() {
        let mut bytes = Vec::new();
        sample(9).encode(&mut bytes);
        assert_eq!(bytes.len(), sample(9).encoded_bytes());
        assert_eq!(decode(&bytes), Decoded::Record(sample(9), bytes.len()));
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let mut bytes = Vec::new();
        sample(1).encode(&mut bytes);
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            match decode(&damaged) {
                Decoded::Record(record, _) => panic!("bit {bit} went unnoticed: {record:?}"),
                Decoded::End | Decoded::Bad(_) => {}
            }
        }
    }

    #[test]
    fn zeros_end_and_short_input_is_bad() {
        assert_eq!(decode(&[0; 64]), Decoded::End);
        assert_eq!(decode(&[]), Decoded::End);
        assert!(matches!(decode(&[1, 0, 0]), Decoded::Bad(_)));
        let mut bytes = Vec::new();
        sample(1).encode(&mut bytes);
        assert!(matches!(decode(&bytes[..bytes.len() - 1]), Decoded::Bad(_)));
    }
}
