//! A pool range: consecutive 700 numbers, handled as integers, with the area
//! and province they serve.

use super::area::{AreaCode, Province};
use crate::number::Number;

/// The lowest X value: `700` followed by twelve zeros.
pub const X_VALUE_MIN: u64 = 700_000_000_000_000;
/// The highest X value: `700` followed by twelve nines.
pub const X_VALUE_MAX: u64 = 700_999_999_999_999;
/// Most numbers in one range (a city's pool is rarely above a few million;
/// the limit keeps a typing slip from claiming a whole prefix).
pub const RANGE_NUMBERS_MAX: u64 = 100_000_000;

/// The X in `number` as an integer (`700123400000000`), or `None` unless it
/// is a strict 15-digit 700 number.
pub fn x_value(number: Number) -> Option<u64> {
    if number.digit_run() != Some(crate::number::VIRTUAL_DIGITS) {
        return None;
    }
    let value = number
        .leading_digits()
        .fold(0u64, |value, digit| value * 10 + u64::from(digit));
    (X_VALUE_MIN..=X_VALUE_MAX)
        .contains(&value)
        .then_some(value)
}

/// The number whose [`x_value`] is `value`. `value` must lie in
/// `X_VALUE_MIN..=X_VALUE_MAX` (ranges are checked when added, and the
/// allocator only hands out values inside them): anything else is a
/// programmer error. Use [`x_number_checked`] on untrusted input.
pub fn x_number(value: u64) -> Number {
    x_number_checked(value).expect("x_number: value outside the 700 range")
}

/// [`x_number`] for untrusted input: `None` outside the 700 range.
pub fn x_number_checked(value: u64) -> Option<Number> {
    if !(X_VALUE_MIN..=X_VALUE_MAX).contains(&value) {
        return None;
    }
    let mut digits = [0u8; 15];
    let mut rest = value;
    for slot in digits.iter_mut().rev() {
        // `rest % 10` is a single decimal digit.
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    Some(Number::from_digits(&digits))
}

/// One range of a tenant's pool: every X from `first` to `last` inclusive,
/// serving `area`. `province` is what fallback compares; [`PoolRange::new`]
/// fills it from the default table and an operator may override it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolRange {
    /// First X value in the range.
    pub first: u64,
    /// Last X value in the range (inclusive).
    pub last: u64,
    /// The city the range serves.
    pub area: AreaCode,
    /// The province fallback uses; never `Unknown` once added to a pool.
    pub province: Province,
}

impl PoolRange {
    /// A range with the default province of its area.
    pub fn new(first: u64, last: u64, area: AreaCode) -> PoolRange {
        PoolRange {
            first,
            last,
            area,
            province: area.province(),
        }
    }

    /// How many numbers the range holds (`last >= first` once added).
    pub fn numbers(&self) -> u64 {
        self.last.saturating_sub(self.first) + 1
    }

    /// True if `x` lies in the range.
    pub fn contains(&self, x: u64) -> bool {
        (self.first..=self.last).contains(&x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x_values_round_trip_and_refuse_non_700_numbers() {
        let x = Number::from_digits(b"700123400000000");
        assert_eq!(x_value(x), Some(700_123_400_000_000));
        assert_eq!(x_number(700_123_400_000_000), x);
        assert_eq!(x_number(X_VALUE_MIN).digits(), "700000000000000");
        assert_eq!(x_number(X_VALUE_MAX).digits(), "700999999999999");
        assert_eq!(x_value(Number::from_digits(b"13800138000")), None);
        assert_eq!(x_value(Number::from_digits(b"701123400000000")), None);
        assert_eq!(x_value(Number::from_digits(b"70012340000000")), None);
        assert_eq!(x_value(Number::NONE), None);
        assert_eq!(x_number_checked(X_VALUE_MAX + 1), None);
        assert_eq!(x_number_checked(X_VALUE_MIN - 1), None);
    }
}
