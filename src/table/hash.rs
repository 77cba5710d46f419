//! Hashing of index keys and of X for shard choice.
//!
//! A key is (X, party): party is a real number, an extension key, or
//! `Number::NONE` for X's representative. One 64-bit hash gives the bucket
//! (low bits, by linear hashing) and the tag (top 8 bits); the shard comes
//! from a second, independent mix of X alone, so every key of one X lands in
//! one shard.

use crate::number::Number;

const SEED_KEY: u64 = 0x243F_6A88_85A3_08D3;
const SEED_PARTY: u64 = 0x1319_8A2E_0370_7344;
const SEED_SHARD: u64 = 0xA409_3822_299F_31D0;
const MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

/// Multiplies as 128 bits and folds the halves: a fast, well-mixing step.
#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    // Truncations are the point: fold the two 64-bit halves together.
    #[allow(clippy::cast_possible_truncation)]
    let folded = (product as u64) ^ ((product >> 64) as u64);
    folded
}

/// Hash of an index key.
#[inline(always)]
pub fn key_hash(x: Number, party: Number) -> u64 {
    let h = fold(x.word() ^ SEED_KEY, party.word() ^ SEED_PARTY);
    fold(h, MULTIPLIER)
}

/// The 8-bit tag stored beside a slot: never 0 (empty) or 0xFF (link).
#[inline(always)]
pub fn tag_of(hash: u64) -> u32 {
    // Shift leaves 8 bits: no truncation.
    #[allow(clippy::cast_possible_truncation)]
    let tag = (hash >> 56) as u32;
    tag.clamp(1, 0xFE)
}

/// The shard that owns X, out of `shard_count`.
#[inline(always)]
pub fn shard_of(x: Number, shard_count: u16) -> u16 {
    let h = fold(x.word() ^ SEED_SHARD, MULTIPLIER);
    // (h * n) >> 64 maps h uniformly onto 0..n without division; the result
    // is below n, so it fits u16.
    #[allow(clippy::cast_possible_truncation)]
    let shard = ((u128::from(h) * u128::from(shard_count)) >> 64) as u16;
    shard
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_avoid_reserved_values() {
        for h in [0u64, u64::MAX, 0x00FF_FFFF_FFFF_FFFF, 0xFF00_0000_0000_0000] {
            let tag = tag_of(h);
            assert!((1..=0xFE).contains(&tag));
        }
    }

    #[test]
    fn shards_spread_evenly() {
        let mut counts = [0u32; 8];
        for i in 0..80_000u64 {
            let x = Number::from_digits(format!("700{:012}", i * 7919).as_bytes());
            counts[usize::from(shard_of(x, 8))] += 1;
        }
        for count in counts {
            assert!((9_000..11_000).contains(&count), "{counts:?}");
        }
    }
}
