//! The table checksum `x700 cluster verify` compares across members: one
//! CRC-32C per shard over its used slots (`Shard::content_checksum`),
//! computed by the loop that owns the shard, then combined in shard order.
//! Each shard also says up to which log index it has applied, so a node
//! reports a checksum only when every shard stands at the same index.

use super::ShardSet;

/// One shard's part of the checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardSum {
    /// Shard id.
    pub shard: u16,
    /// The log index after the last entry this shard applied.
    pub applied_next: u64,
    /// `Shard::content_checksum`.
    pub crc: u32,
    /// Live bindings.
    pub bindings_live: u32,
}

/// A node's checksum over all its shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableSum {
    /// The last log index every shard has applied (0: none).
    pub applied_index: u64,
    /// The combined checksum.
    pub checksum: u32,
    /// Live bindings in all shards.
    pub bindings_live: u64,
}

/// Why a node cannot give one checksum now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SumError {
    /// Shards stand at different log indexes (an apply is between loops):
    /// ask again.
    Moving,
    /// A shard is missing or counted twice (a programmer error upstream,
    /// answered rather than asserted: it comes back over a channel).
    Incomplete(String),
}

impl ShardSet {
    /// The checksum parts of the owned shards.
    pub fn checksums(&self) -> Vec<ShardSum> {
        self.owned()
            .map(|shard| ShardSum {
                shard: shard.id(),
                applied_next: shard.applied_log_index(),
                crc: shard.content_checksum(),
                bindings_live: shard.live_bindings(),
            })
            .collect()
    }
}

/// Combines every shard's part (from every loop, in any order) into the
/// node's checksum: a CRC-32C over each shard's id and CRC, in shard order.
pub fn combine(mut sums: Vec<ShardSum>, shard_count: u16) -> Result<TableSum, SumError> {
    sums.sort_by_key(|sum| sum.shard);
    let ids_ok = sums.len() == usize::from(shard_count)
        && sums
            .iter()
            .enumerate()
            .all(|(i, sum)| usize::from(sum.shard) == i);
    if !ids_ok {
        return Err(SumError::Incomplete(format!(
            "{} shard checksums for {shard_count} shards",
            sums.len()
        )));
    }
    let applied_next = sums.first().map_or(0, |sum| sum.applied_next);
    if sums.iter().any(|sum| sum.applied_next != applied_next) {
        return Err(SumError::Moving);
    }
    let mut checksum = 0;
    let mut bindings_live = 0;
    for sum in &sums {
        let mut part = [0u8; 6];
        part[0..2].copy_from_slice(&sum.shard.to_le_bytes());
        part[2..6].copy_from_slice(&sum.crc.to_le_bytes());
        checksum = crc32c::crc32c_append(checksum, &part);
        bindings_live += u64::from(sum.bindings_live);
    }
    Ok(TableSum {
        applied_index: applied_next.saturating_sub(1),
        checksum,
        bindings_live,
    })
}

#[cfg(test)]
mod tests {
    use super::{combine, ShardSum, SumError};

    fn sum(shard: u16, applied_next: u64, crc: u32) -> ShardSum {
        ShardSum {
            shard,
            applied_next,
            crc,
            bindings_live: 1,
        }
    }

    #[test]
    fn parts_combine_in_shard_order_and_any_difference_shows() {
        let a = combine(vec![sum(1, 5, 20), sum(0, 5, 10)], 2).unwrap();
        let b = combine(vec![sum(0, 5, 10), sum(1, 5, 20)], 2).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.applied_index, 4);
        assert_eq!(a.bindings_live, 2);
        let c = combine(vec![sum(0, 5, 10), sum(1, 5, 21)], 2).unwrap();
        assert_ne!(a.checksum, c.checksum);
        // Swapping the two shards' contents is a difference too.
        let d = combine(vec![sum(0, 5, 20), sum(1, 5, 10)], 2).unwrap();
        assert_ne!(a.checksum, d.checksum);
    }

    #[test]
    fn shards_at_different_indexes_or_missing_are_no_checksum() {
        assert_eq!(
            combine(vec![sum(0, 5, 10), sum(1, 6, 20)], 2),
            Err(SumError::Moving)
        );
        assert!(matches!(
            combine(vec![sum(0, 5, 10)], 2),
            Err(SumError::Incomplete(_))
        ));
        assert!(matches!(
            combine(vec![sum(0, 5, 10), sum(0, 5, 10)], 2),
            Err(SumError::Incomplete(_))
        ));
    }
}
