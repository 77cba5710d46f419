//! The one vector loop of the lookup path: which entries of an index bucket
//! carry a tag. Apart from `mapped.rs` this is the only table module that
//! needs `unsafe`: an aligned 16-byte load has no safe form.
#![allow(unsafe_code)]

#[cfg(not(target_arch = "x86_64"))]
use super::layout::entry;
use super::layout::Bucket;

/// One bit per entry whose tag is `tag` (empty entries have tag 0 and links
/// 0xFF, which no data tag equals): four 128-bit compares.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn tag_matches(bucket: &Bucket, tag: u32) -> u32 {
    use std::arch::x86_64::{
        __m128i, _mm_castsi128_ps, _mm_cmpeq_epi32, _mm_load_si128, _mm_movemask_ps,
        _mm_set1_epi32, _mm_srli_epi32,
    };
    // Tags are at most 0xFF: the cast keeps the value.
    #[allow(clippy::cast_possible_wrap)]
    let wanted = tag as i32;
    let quarters = bucket.entries.as_ptr().cast::<__m128i>();
    let mut matches = 0;
    for quarter in 0..4 {
        // SAFETY: SSE2 is part of every x86_64 target, so its intrinsics
        // are always available; `Bucket` is 64 bytes aligned to 64, so each
        // of its four 16-byte quarters is an aligned load inside it.
        let bits = unsafe {
            let entries = _mm_load_si128(quarters.add(quarter));
            let equal = _mm_cmpeq_epi32(_mm_srli_epi32::<24>(entries), _mm_set1_epi32(wanted));
            _mm_movemask_ps(_mm_castsi128_ps(equal))
        };
        // movemask yields 4 bits: no sign or truncation.
        #[allow(clippy::cast_sign_loss)]
        let bits = bits as u32;
        matches |= bits << (4 * quarter);
    }
    matches
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
