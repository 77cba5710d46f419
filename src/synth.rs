//! Deterministic synthetic bindings for `x700 load`, benchmarks and tests:
//! binding `i` of seed `s` is always the same, with X uniformly random over
//! the full 700 space and A, B uniformly random mobiles.
//!
//! Pairs per X (`--pairs-per-x N`, `draws`): real pools put many AXB pairs
//! on one X. With N above 1, bindings `g*N .. g*N+N-1` share the X of group
//! `g`, each with its own A and B; with N = 1 every binding has its own X,
//! exactly the bindings of every earlier release.

use crate::binding::{BindRequest, Direction, LookupQuery, OrderRef, Parties};
use crate::number::Number;

/// One splitmix64 step: a fast, well-distributed 64-bit generator.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Most AXB pairs that share one X (`--pairs-per-x`).
pub const PAIRS_PER_X_MAX: u64 = 200;
/// A and B draw 9 random digits.
const PARTY_VALUES: u64 = 1_000_000_000;
/// X draws 12 random digits after `700`.
const X_VALUES: u64 = 1_000_000_000_000;
/// Salt of the group stream when pairs share X, so that a shared X is never
/// the X a binding of the plain stream would have (AXN bindings keep theirs).
const POOL_SALT: u64 = 0x9001_5EED_0000_0003;

/// Checks a `--pairs-per-x` value: 1 to `PAIRS_PER_X_MAX`.
pub fn check_pairs_per_x(pairs_per_x: u64) -> Result<(), String> {
    if (1..=PAIRS_PER_X_MAX).contains(&pairs_per_x) {
        Ok(())
    } else {
        Err(format!(
            "--pairs-per-x must be 1 to {PAIRS_PER_X_MAX} (got {pairs_per_x})"
        ))
    }
}

/// The random values behind binding `i` of `seed` with its own X: X's 12
/// digits, A's 9 and B's 9.
fn plain_draws(seed: u64, i: u64) -> (u64, u64, u64) {
    let mut state = seed ^ i.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    let x = splitmix64(&mut state) % X_VALUES;
    let a = splitmix64(&mut state) % PARTY_VALUES;
    let b = splitmix64(&mut state) % PARTY_VALUES;
    (x, a, b)
}

/// The random values behind AXB binding `i` of `seed` when `pairs_per_x`
/// pairs share each X (X's 12 digits, A's 9, B's 9): the one rule both
/// `x700 load` and `x700 bench` follow, so they agree on every key.
///
/// `pairs_per_x` 1 (or 0): `plain_draws`, every binding its own X.
/// Above 1: binding `i` is pair `i % N` of group `i / N`; the group's X
/// comes from a salted stream, and pair `j`'s A is the group's base A plus
/// an offset drawn in `[j * W, (j + 1) * W)` with `W = 10^9 / 200` (B
/// likewise). The windows are disjoint, so no two pairs of one X share a
/// number (a conflict would leave a lookup unanswerable), and A and B stay
/// uniformly spread over their 9 digits.
pub fn draws(seed: u64, i: u64, pairs_per_x: u64) -> (u64, u64, u64) {
    if pairs_per_x <= 1 {
        return plain_draws(seed, i);
    }
    let (group, pair) = (i / pairs_per_x, i % pairs_per_x);
    let (x, base_a, base_b) = plain_draws(seed ^ POOL_SALT, group);
    let window = PARTY_VALUES / PAIRS_PER_X_MAX;
    let mut state = (seed ^ POOL_SALT).rotate_left(17) ^ i.wrapping_mul(0xA076_1D64_78BD_642F);
    // pair < PAIRS_PER_X_MAX (checked by the callers' flags; taken modulo
    // here so a larger value cannot overflow): the offset stays below 10^9.
    let slot = (pair % PAIRS_PER_X_MAX) * window;
    let a = (base_a + slot + splitmix64(&mut state) % window) % PARTY_VALUES;
    let b = (base_b + slot + splitmix64(&mut state) % window) % PARTY_VALUES;
    (x, a, b)
}

/// Writes `value` as exactly `width` decimal digits into `out`.
fn digits_into(out: &mut [u8], mut value: u64) {
    for slot in out.iter_mut().rev() {
        // value % 10 < 10: fits u8.
        #[allow(clippy::cast_possible_truncation)]
        let digit = (value % 10) as u8;
        *slot = b'0' + digit;
        value /= 10;
    }
}

/// The parties of synthetic binding `i`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyntheticBinding {
    /// Virtual number: 700 + 12 random digits.
    pub x: Number,
    /// A: 13 + 9 random digits.
    pub a: Number,
    /// B: 15 + 9 random digits.
    pub b: Number,
}

/// A reproducible stream of AXB bindings, each with its own X.
#[derive(Clone, Copy, Debug)]
pub struct Synthetic {
    /// The seed.
    pub seed: u64,
}

impl Synthetic {
    /// Binding number `i`.
    pub fn binding(&self, i: u64) -> SyntheticBinding {
        self.pooled(i, 1)
    }

    /// Binding number `i` when `pairs_per_x` pairs share each X (`draws`).
    pub fn pooled(&self, i: u64, pairs_per_x: u64) -> SyntheticBinding {
        let (x_value, a_value, b_value) = draws(self.seed, i, pairs_per_x);
        let mut x = *b"700000000000000";
        digits_into(&mut x[3..], x_value);
        let mut a = *b"13000000000";
        digits_into(&mut a[2..], a_value);
        let mut b = *b"15000000000";
        digits_into(&mut b[2..], b_value);
        SyntheticBinding {
            x: Number::from_digits(&x),
            a: Number::from_digits(&a),
            b: Number::from_digits(&b),
        }
    }

    /// The bind request for binding `i`, tenant 1, order "load-<i>".
    pub fn request(&self, i: u64, ttl_s: u32) -> BindRequest {
        self.pooled_request(i, ttl_s, 1)
    }

    /// The bind request for binding `i` when `pairs_per_x` pairs share
    /// each X, tenant 1, order "load-<i>".
    pub fn pooled_request(&self, i: u64, ttl_s: u32, pairs_per_x: u64) -> BindRequest {
        let binding = self.pooled(i, pairs_per_x);
        let order = format!("load-{i}");
        BindRequest {
            x: binding.x,
            parties: Parties::Axb {
                a: binding.a,
                b: binding.b,
            },
            tenant: 1,
            // "load-" plus at most 20 digits: within the 32-byte limit.
            order: OrderRef::new(order.as_bytes()).unwrap_or_else(|_| unreachable!()),
            ttl_s,
            direction: Direction::Both,
            recording: false,
        }
    }

    /// A lookup that hits binding `i`, from A or B by the low bit of `salt`.
    pub fn hit(&self, i: u64, salt: u64) -> LookupQuery {
        let binding = self.binding(i);
        LookupQuery {
            caller: if salt & 1 == 0 { binding.a } else { binding.b },
            x: binding.x,
            extension: Number::NONE,
        }
    }

    /// A lookup for an X that (almost surely) holds no binding.
    pub fn miss(&self, i: u64) -> LookupQuery {
        let other = Synthetic { seed: !self.seed };
        let binding = other.binding(i);
        LookupQuery {
            caller: binding.a,
            x: binding.x,
            extension: Number::NONE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_valid() {
        let synthetic = Synthetic { seed: 42 };
        assert_eq!(synthetic.binding(7), synthetic.binding(7));
        assert_ne!(synthetic.binding(7), synthetic.binding(8));
        let binding = synthetic.binding(123);
        assert!(binding.x.digits().starts_with("700") && binding.x.digits().len() == 15);
        assert!(binding.a.digits().starts_with("13") && binding.a.digits().len() == 11);
        assert!(binding.b.is_well_formed());
    }

    /// Guards the default key set: with one pair per X the bindings are
    /// those of every release before `--pairs-per-x` (digits computed by
    /// the step-8 build), so data loaded then is still looked up right.
    #[test]
    fn one_pair_per_x_keeps_the_old_bindings() {
        let synthetic = Synthetic { seed: 1 };
        for (i, x, a, b) in [
            (0, "700379200822465", "13066428519", "15282890590"),
            (1, "700248184931039", "13026977078", "15239393410"),
            (1_000_000, "700758994987425", "13408098635", "15309684604"),
        ] {
            for binding in [synthetic.binding(i), synthetic.pooled(i, 1)] {
                assert_eq!(binding.x.digits(), x);
                assert_eq!(binding.a.digits(), a);
                assert_eq!(binding.b.digits(), b);
            }
        }
    }

    #[test]
    fn pairs_share_x_with_distinct_parties() {
        let synthetic = Synthetic { seed: 9 };
        for pairs in [2, 7, PAIRS_PER_X_MAX] {
            for group in 0..3 {
                let bindings: Vec<_> = (group * pairs..(group + 1) * pairs)
                    .map(|i| synthetic.pooled(i, pairs))
                    .collect();
                assert!(bindings.iter().all(|b| b.x == bindings[0].x));
                let mut parties: Vec<_> = bindings.iter().flat_map(|b| [b.a, b.b]).collect();
                parties.sort_unstable_by_key(|n| n.0);
                parties.dedup();
                assert_eq!(parties.len() as u64, 2 * pairs, "{pairs}");
                assert!(bindings
                    .iter()
                    .all(|b| b.a.is_well_formed() && b.b.is_well_formed()));
            }
            assert_ne!(
                synthetic.pooled(0, pairs).x,
                synthetic.pooled(pairs, pairs).x
            );
            // The shared X is not the X binding 0 has with one pair per X.
            assert_ne!(synthetic.pooled(0, pairs).x, synthetic.binding(0).x);
        }
        assert!(check_pairs_per_x(0).is_err() && check_pairs_per_x(201).is_err());
        assert!(check_pairs_per_x(1).is_ok() && check_pairs_per_x(200).is_ok());
    }
}
