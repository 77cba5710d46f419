//! Segment data files: `<first log index, 20 digits>.hlog`, a 64-byte header
//! then records back to back (`record.rs`), appended only. `scan` is the
//! pure recovery step: it walks a segment's bytes and says where the valid
//! records end (a torn tail, or the first record the log will replay, is cut
//! there).

use super::event::Event;
use super::record::{decode, Base, DecodeError};

/// Header bytes; records start here.
pub const HEADER_BYTES: usize = 64;
/// Magic of a data file.
pub const MAGIC: [u8; 8] = *b"X700HST\0";
/// Version of the data file and record format.
pub const FORMAT_VERSION: u32 = 1;
/// Data file name suffix.
pub const DATA_SUFFIX: &str = "hlog";
/// Index file name suffix.
pub const INDEX_SUFFIX: &str = "hidx";

/// The file name of a segment's data or index file.
pub fn file_name(first_index: u64, suffix: &str) -> String {
    format!("{first_index:020}.{suffix}")
}

/// The first index a file name declares, if it is one of ours with `suffix`.
pub fn parse_name(name: &str, suffix: &str) -> Option<u64> {
    let stem = name.strip_suffix(suffix)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Encodes a data file header.
pub fn header(base: Base) -> [u8; HEADER_BYTES] {
    let mut bytes = [0u8; HEADER_BYTES];
    bytes[0..8].copy_from_slice(&MAGIC);
    bytes[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes[16..24].copy_from_slice(&base.first_index.to_le_bytes());
    bytes[24..28].copy_from_slice(&base.at_s.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..60]);
    bytes[60..64].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// Checks a data file header; returns the base it declares.
pub fn check_header(bytes: &[u8]) -> Result<Base, String> {
    let Some(head) = bytes.get(..HEADER_BYTES) else {
        return Err(format!("{} bytes, shorter than the header", bytes.len()));
    };
    if head[0..8] != MAGIC {
        return Err("bad magic: not an x700 history segment".into());
    }
    let word = |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    if crc32c::crc32c(&head[..60]) != word(60) {
        return Err("header CRC mismatch".into());
    }
    if word(8) != FORMAT_VERSION {
        return Err(format!(
            "format version {} (this build reads {FORMAT_VERSION})",
            word(8)
        ));
    }
    let mut first = [0u8; 8];
    first.copy_from_slice(&head[16..24]);
    Ok(Base {
        first_index: u64::from_le_bytes(first),
        at_s: word(24),
    })
}

/// What `scan` found.
#[derive(Debug)]
pub struct Scan {
    /// The records kept, with their byte offsets in the file.
    pub events: Vec<(u32, Event)>,
    /// Where the kept records end: the file's new length.
    pub end: usize,
    /// Bytes after `end` that were not a whole valid record (a torn tail).
    pub torn_bytes: usize,
}

/// Walks the records of a data file (`bytes` is the whole file). Stops at
/// the first record that is not whole and valid (a torn tail: a crash cut
/// the last write) or whose log index is `durable_index` or later (the log
/// replays those and `append` writes them again).
pub fn scan(bytes: &[u8], base: Base, durable_index: u64) -> Scan {
    let mut at = HEADER_BYTES.min(bytes.len());
    let mut events = Vec::new();
    let mut torn_bytes = 0;
    while at < bytes.len() {
        match decode(&bytes[at..], base) {
            Ok((event, len)) => {
                if event.log_index >= durable_index {
                    break;
                }
                // Cannot truncate: segments are capped below 4 GiB.
                events.push((at as u32, event));
                at += len;
            }
            Err(DecodeError::Short | DecodeError::Crc | DecodeError::Field(_)) => {
                torn_bytes = bytes.len() - at;
                break;
            }
        }
    }
    Scan {
        events,
        end: at,
        torn_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_strangers_are_ignored() {
        assert_eq!(file_name(42, DATA_SUFFIX), "00000000000000000042.hlog");
        assert_eq!(
            parse_name("00000000000000000042.hlog", DATA_SUFFIX),
            Some(42)
        );
        assert_eq!(parse_name("00000000000000000042.hidx", DATA_SUFFIX), None);
        assert_eq!(parse_name("42.hlog", DATA_SUFFIX), None);
    }

    #[test]
    fn header_round_trips_and_a_flip_is_refused() {
        let base = Base {
            first_index: 9,
            at_s: 1_800_000_000,
        };
        let h = header(base);
        assert_eq!(check_header(&h), Ok(base));
        let mut bad = h;
        bad[20] ^= 1;
        assert!(check_header(&bad).is_err());
    }
}
