//! Segment files: the log is a run of files `log/<first index, 20 digits>.seg`,
//! each preallocated to `SEGMENT_BYTES` (so a full disk shows when a segment
//! is created, not in the middle of an append) and filled with records from
//! byte 64. `scan` is the pure recovery step: it walks a segment's bytes and
//! says where the valid records end and whether what follows is a torn tail
//! (a crash mid-write: cut it off) or corruption (refuse to start).
//!
//! Header (64 bytes, little-endian):
//!
//! | offset | width | field |
//! |---|---|---|
//! | 0 | 8 | magic `X700LOG\0` |
//! | 8 | 4 | format version (1) |
//! | 12 | 4 | zero |
//! | 16 | 8 | store nonce (ties the segment to its data directory) |
//! | 24 | 8 | index of the first record |
//! | 32 | 28 | zero |
//! | 60 | 4 | CRC32C of bytes 0..60 |

use super::record::{decode, Decoded, LogRecord};

/// Segment header bytes; records start here.
pub const HEADER_BYTES: usize = 64;
/// Bytes each segment is preallocated to.
pub const SEGMENT_BYTES: u64 = 64 << 20;
/// Magic of a segment header.
pub const MAGIC: [u8; 8] = *b"X700LOG\0";
/// Version of the segment and record format.
pub const FORMAT_VERSION: u32 = 1;
/// Largest log index a segment may start at: far beyond any real log
/// (2^62 entries), and small enough that index arithmetic never overflows.
pub const INDEX_MAX: u64 = 1 << 62;

/// Encodes a segment header.
pub fn header(store_nonce: u64, first_index: u64) -> [u8; HEADER_BYTES] {
    let mut bytes = [0u8; HEADER_BYTES];
    bytes[0..8].copy_from_slice(&MAGIC);
    bytes[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes[16..24].copy_from_slice(&store_nonce.to_le_bytes());
    bytes[24..32].copy_from_slice(&first_index.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..60]);
    bytes[60..64].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// Checks a segment header; returns the first index it declares.
pub fn check_header(bytes: &[u8], store_nonce: u64) -> Result<u64, String> {
    let Some(head) = bytes.get(..HEADER_BYTES) else {
        return Err(format!("{} bytes, shorter than the header", bytes.len()));
    };
    if head[0..8] != MAGIC {
        return Err("bad magic: not an x700 log segment".into());
    }
    let word = |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    let long = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&head[at..at + 8]);
        u64::from_le_bytes(b)
    };
    if crc32c::crc32c(&head[..60]) != word(60) {
        return Err("header checksum mismatch".into());
    }
    if word(8) != FORMAT_VERSION {
        return Err(format!(
            "format version {}, this build reads version {FORMAT_VERSION}",
            word(8)
        ));
    }
    if long(16) != store_nonce {
        return Err("segment belongs to another data directory".into());
    }
    if long(24) > INDEX_MAX {
        return Err(format!("first index {} is beyond any log", long(24)));
    }
    Ok(long(24))
}

/// How a segment's written part ends.
#[derive(Debug, PartialEq, Eq)]
pub enum Tail {
    /// Zeros (or the end of the file) after the last record.
    Clean,
    /// An incomplete or damaged last record with nothing valid after it: a
    /// crash mid-write. Everything from `offset` is cut off.
    Torn {
        /// Where the torn record starts.
        offset: u64,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// A damaged record followed by valid ones, or records out of order:
    /// the acknowledged part of the log is damaged.
    Corrupt {
        /// Where the damage is.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

/// What a scan found.
#[derive(Debug)]
pub struct Scan {
    /// Offset of every valid record, in order.
    pub offsets: Vec<u32>,
    /// Where the valid records end (the next append goes here).
    pub end: u64,
    /// The last valid record.
    pub last: Option<LogRecord>,
    /// Whatever follows the valid records.
    pub tail: Tail,
}

/// Walks the records of a segment (`bytes` is the whole file) that must
/// start at `first_index`. Pure: the caller decides what to do with a torn
/// tail (cut it) or corruption (refuse).
pub fn scan(bytes: &[u8], first_index: u64) -> Scan {
    let mut offsets = Vec::new();
    let mut at = HEADER_BYTES;
    let mut last: Option<LogRecord> = None;
    let tail = loop {
        // Wrapping: `first_index` comes from a file and may be anything
        // (`check_header` refuses absurd ones before a log trusts them).
        let expected = first_index.wrapping_add(offsets.len() as u64);
        match decode(&bytes[at.min(bytes.len())..]) {
            Decoded::End => break Tail::Clean,
            Decoded::Record(record, length) => {
                if record.index != expected {
                    break Tail::Corrupt {
                        offset: at as u64,
                        reason: format!("record index {} where {expected} was due", record.index),
                    };
                }
                offsets.push(u32::try_from(at).unwrap_or(u32::MAX));
                at += length;
                last = Some(record);
            }
            Decoded::Bad(reason) => {
                // A torn write leaves nothing valid behind it. A valid
                // record right after a bad one means the damage is inside
                // data that was written (and acknowledged) before.
                if valid_record_follows(bytes, at, expected.wrapping_add(1)) {
                    break Tail::Corrupt {
                        offset: at as u64,
                        reason: format!("{reason}, and valid records follow"),
                    };
                }
                break Tail::Torn {
                    offset: at as u64,
                    reason,
                };
            }
        }
    };
    Scan {
        offsets,
        end: at as u64,
        last,
        tail,
    }
}

fn valid_record_follows(bytes: &[u8], at: usize, next_index: u64) -> bool {
    let Some(prefix) = bytes.get(at..at + 4) else {
        return false;
    };
    let length = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    let next = at + super::record::PREFIX_BYTES + length;
    match bytes.get(next..).map(decode) {
        Some(Decoded::Record(record, _)) => record.index == next_index,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::RecordKind;
    use super::*;

    fn segment(first: u64, count: u64) -> (Vec<u8>, Vec<usize>) {
        let mut bytes = header(7, first).to_vec();
        let mut starts = Vec::new();
        for index in first..first + count {
            starts.push(bytes.len());
            LogRecord {
                index,
                term: 1,
                leader: 1,
                kind: RecordKind::Writes,
                payload: vec![index as u8; 30],
            }
            .encode(&mut bytes);
        }
        bytes.resize(bytes.len() + 4096, 0);
        (bytes, starts)
    }

    #[test]
    fn clean_segment_scans_whole() {
        let (bytes, starts) = segment(10, 5);
        assert_eq!(check_header(&bytes, 7), Ok(10));
        let scan = scan(&bytes, 10);
        assert_eq!(scan.tail, Tail::Clean);
        assert_eq!(scan.offsets.len(), 5);
        assert_eq!(scan.last.map(|r| r.index), Some(14));
        assert_eq!(scan.offsets[3] as usize, starts[3]);
    }

    #[test]
    fn torn_last_record_is_cut() {
        let (mut bytes, starts) = segment(0, 4);
        let last = starts[3];
        for byte in &mut bytes[last + 20..] {
            *byte = 0;
        }
        let scan = scan(&bytes, 0);
        assert_eq!(scan.offsets.len(), 3);
        assert!(matches!(scan.tail, Tail::Torn { offset, .. } if offset == last as u64));
    }

    #[test]
    fn damage_before_valid_records_is_corruption() {
        let (mut bytes, starts) = segment(0, 4);
        bytes[starts[1] + 30] ^= 0x40;
        let scan = scan(&bytes, 0);
        assert_eq!(scan.offsets.len(), 1);
        assert!(matches!(scan.tail, Tail::Corrupt { offset, .. } if offset == starts[1] as u64));
    }

    /// Regression: the fuzzer (target `log`) found `scan` overflowing on a
    /// segment whose header claims a first index near `u64::MAX`.
    #[test]
    fn an_absurd_first_index_neither_overflows_nor_is_trusted() {
        let (bytes, _) = segment(0, 3);
        let scan = scan(&bytes, u64::MAX);
        assert!(scan.offsets.is_empty());
        assert!(check_header(&header(7, INDEX_MAX + 1), 7).is_err());
        assert_eq!(check_header(&header(7, INDEX_MAX), 7), Ok(INDEX_MAX));
    }

    #[test]
    fn wrong_nonce_or_damaged_header_is_refused() {
        let (mut bytes, _) = segment(0, 1);
        assert!(check_header(&bytes, 8).is_err());
        bytes[30] ^= 1;
        assert!(check_header(&bytes, 7).is_err());
    }
}
