//! The one vector loop of the lookup path: which entries of an index bucket
//! carry a tag. Apart from `mapped.rs` this is the only table module that
//! needs `unsafe`: an aligned 16-byte load has no safe form.
#![allow(unsafe_code)]

#[cfg(not(target_arch = "x86_64"))]
use super::layout::entry;
use super::layout::Bucket;

/// One bit per entry whose tag is `tag` (empty entries have tag 0 and links
/// 0xFF, which no data tag equals): the 16 tags are shifted down and packed
/// into one vector of bytes, compared at once, and their mask taken once.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn tag_matches(bucket: &Bucket, tag: u32) -> u32 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_load_si128, _mm_movemask_epi8, _mm_packs_epi32,
        _mm_packus_epi16, _mm_set1_epi8, _mm_srli_epi32,
    };
    // Tags are at most 0xFF: the cast keeps the byte.
    #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
    let wanted = tag as i8;
    let quarters = bucket.entries.as_ptr().cast::<__m128i>();
    // SAFETY: SSE2 is part of every x86_64 target, so its intrinsics are
    // always available; `Bucket` is 64 bytes aligned to 64, so each of its
    // four 16-byte quarters is an aligned load inside it.
    let bits = unsafe {
        let tags = |quarter: usize| _mm_srli_epi32::<24>(_mm_load_si128(quarters.add(quarter)));
        // Each 32-bit lane holds a tag of 0 to 255: neither pack saturates,
        // and the 16 bytes come out in entry order.
        let low = _mm_packs_epi32(tags(0), tags(1));
        let high = _mm_packs_epi32(tags(2), tags(3));
        let bytes = _mm_packus_epi16(low, high);
        _mm_movemask_epi8(_mm_cmpeq_epi8(bytes, _mm_set1_epi8(wanted)))
    };
    // movemask yields 16 bits: no sign or truncation.
    #[allow(clippy::cast_sign_loss)]
    let bits = bits as u32;
    bits
}

/// One bit per entry whose tag is `tag`. Written without early exit so the
/// compiler can turn it into vector compares.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub fn tag_matches(bucket: &Bucket, tag: u32) -> u32 {
    let mut matches = 0u32;
    for (i, &e) in bucket.entries.iter().enumerate() {
        matches |= u32::from(entry::tag(e) == tag) << i;
    }
    matches
}
