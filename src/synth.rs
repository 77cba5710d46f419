//! Deterministic synthetic bindings for `x700 load`, benchmarks and tests:
//! binding `i` of seed `s` is always the same, with X uniformly random over
//! the full 700 space and A, B uniformly random mobiles.

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

/// A reproducible stream of AXB bindings.
#[derive(Clone, Copy, Debug)]
pub struct Synthetic {
    /// The seed.
    pub seed: u64,
}

impl Synthetic {
    /// Binding number `i`.
    pub fn binding(&self, i: u64) -> SyntheticBinding {
        let mut state = self.seed ^ i.wrapping_mul(0xD6E8_FEB8_6659_FD93);
        let mut x = *b"700000000000000";
        digits_into(&mut x[3..], splitmix64(&mut state) % 1_000_000_000_000);
        let mut a = *b"13000000000";
        digits_into(&mut a[2..], splitmix64(&mut state) % 1_000_000_000);
        let mut b = *b"15000000000";
        digits_into(&mut b[2..], splitmix64(&mut state) % 1_000_000_000);
        SyntheticBinding {
            x: Number::from_digits(&x),
            a: Number::from_digits(&a),
            b: Number::from_digits(&b),
        }
    }

    /// The bind request for binding `i`, tenant 1, order "load-<i>".
    pub fn request(&self, i: u64, ttl_s: u32) -> BindRequest {
        let binding = self.binding(i);
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
}
