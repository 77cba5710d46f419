//! `tenants`: a shard's live bindings per tenant as of its last checkpoint
//! (docs/STORAGE.md section 15), so a start counts them from a few bytes
//! instead of reading every cold record.
//!
//! The file names the meta sequence it belongs to; a start trusts it only
//! when that is the sequence of the checkpoint it opened (a crash between
//! the two leaves them apart, and the shard then counts from its records).

use super::error::TableError;
use std::collections::BTreeMap;
use std::path::Path;

/// The file's name in a shard directory.
pub const FILE_NAME: &str = "tenants";
/// The magic bytes that open the file.
const MAGIC: [u8; 8] = *b"X700TNTS";
/// Bytes before the entries: magic, sequence, entry count, zero.
const HEADER_BYTES: usize = 24;

/// Live bindings per tenant.
pub type TenantCounts = BTreeMap<u32, u32>;

/// The file's bytes: header, `(tenant, live)` pairs as little-endian u32,
/// then the CRC-32C of everything before it.
fn encode(sequence: u64, counts: &TenantCounts) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + counts.len() * 8 + 4);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&sequence.to_le_bytes());
    out.extend_from_slice(
        &u32::try_from(counts.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(&[0; 4]);
    for (&tenant, &live) in counts {
        out.extend_from_slice(&tenant.to_le_bytes());
        out.extend_from_slice(&live.to_le_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn decode(bytes: &[u8], sequence: u64) -> Option<TenantCounts> {
    let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(body.get(at..at + 4)?.try_into().ok()?))
    };
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().ok()?)
        || body.get(..8)? != MAGIC
        || u64::from_le_bytes(body.get(8..16)?.try_into().ok()?) != sequence
    {
        return None;
    }
    let entries = word(16)? as usize;
    if body.len() != HEADER_BYTES + entries * 8 {
        return None;
    }
    (0..entries)
        .map(|i| Some((word(HEADER_BYTES + i * 8)?, word(HEADER_BYTES + i * 8 + 4)?)))
        .collect()
}

/// Replaces the file with `counts` for the checkpoint with meta
/// `sequence`: written beside, synced, renamed over, directory synced.
pub fn write(dir: &Path, sequence: u64, counts: &TenantCounts) -> Result<(), TableError> {
    let path = dir.join(FILE_NAME);
    let staged = dir.join(format!("{FILE_NAME}.tmp"));
    let io = |e| TableError::io(&path, e);
    {
        let file = crate::sys::open_or_create_private(
            std::fs::OpenOptions::new().write(true).truncate(true),
            &staged,
        )
        .map_err(io)?;
        std::io::Write::write_all(&mut &file, &encode(sequence, counts)).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    std::fs::rename(&staged, &path).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| TableError::io(dir, e))
}

/// The counts of the checkpoint with meta `sequence`, if the file holds
/// them whole; `None` if it is missing, damaged or of another checkpoint.
pub fn read(dir: &Path, sequence: u64) -> Option<TenantCounts> {
    decode(&std::fs::read(dir.join(FILE_NAME)).ok()?, sequence)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let counts: TenantCounts = [(0, 5), (7, 1), (u32::MAX, 3)].into_iter().collect();
        let bytes = encode(42, &counts);
        assert_eq!(decode(&bytes, 42), Some(counts.clone()));
        assert_eq!(decode(&bytes, 41), None, "another checkpoint's counts");
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 1;
            assert_eq!(decode(&damaged, 42), None, "flipped byte {at}");
        }
        for len in 0..bytes.len() {
            assert_eq!(decode(&bytes[..len], 42), None, "cut at {len}");
        }
        assert_eq!(
            decode(&encode(1, &TenantCounts::new()), 1),
            Some(TenantCounts::new())
        );
    }
}
