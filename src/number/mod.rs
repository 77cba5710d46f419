//! Phone numbers: parsing, normalisation and the fixed 8-byte encoding.
//!
//! Every number x700 stores or compares is a [`Number`]: up to 15 decimal
//! digits in packed BCD, most significant digit first, the unused low nibbles
//! filled with `F`. `700123456789012` is stored as `70 01 23 45 67 89 01 2F`,
//! so a hex dump of a table reads like the number itself, and a fixed line's
//! leading zero (`010...`) survives. The all-zero pattern never encodes a
//! number (it would be sixteen digits) and marks "no number".

mod parse;
mod reserved;

pub use parse::{
    check_national, check_real, check_virtual, parse_extension, parse_national, parse_real,
    parse_virtual, NumberError, XPolicy,
};
pub use reserved::{reserved_range, ReservedRange, RESERVED_RANGES};

/// Most digits a number may have (ITU-T E.164 limit).
pub const DIGITS_MAX: usize = 15;
/// Fewest digits a national number may have (a legacy X may be a short
/// service number such as `95123`). A real party needs more: everything
/// shorter than a subscriber number is in `RESERVED_RANGES`.
pub const REAL_DIGITS_MIN: usize = 3;
/// Digits in a 700 virtual number.
pub const VIRTUAL_DIGITS: usize = 15;
/// Prefix every strict virtual number begins with.
pub const VIRTUAL_PREFIX: &str = "700";
/// Most digits in an AXE extension.
pub const EXTENSION_DIGITS_MAX: usize = 4;

/// A number in the fixed 8-byte BCD encoding (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Number(pub [u8; 8]);

/// Nibble that marks "unused digit position".
const FILL: u8 = 0xF;
/// Nibble that opens an extension key, so `12` the extension can never equal a
/// number: numbers begin with a decimal digit.
const EXTENSION_MARK: u8 = 0xE;

impl Number {
    /// The leading decimal digits of the encoding, most significant first,
    /// up to the first nibble that is not a digit (the `F` fill).
    pub fn leading_digits(self) -> impl Iterator<Item = u8> {
        (0..16)
            .map(move |i| {
                if i % 2 == 0 {
                    self.0[i / 2] >> 4
                } else {
                    self.0[i / 2] & 0xF
                }
            })
            .take_while(|&nibble| nibble <= 9)
    }

    /// The "no number" value: all zero bytes.
    pub const NONE: Number = Number([0; 8]);

    /// Encodes a string of 1 to 15 ASCII digits. The caller has validated the
    /// digits; anything else is a programmer error.
    pub fn from_digits(digits: &[u8]) -> Number {
        assert!(!digits.is_empty() && digits.len() <= DIGITS_MAX);
        let mut nibbles = [FILL; 16];
        for (slot, digit) in nibbles.iter_mut().zip(digits) {
            assert!(digit.is_ascii_digit());
            *slot = digit - b'0';
        }
        Number::from_nibbles(&nibbles)
    }

    /// Encodes an AXE extension (1 to 4 digits, validated by the caller) as a
    /// key that no real number can collide with: `E`, the digits, `F` fill.
    pub(crate) fn extension_key(digits: &[u8]) -> Number {
        assert!(!digits.is_empty() && digits.len() <= EXTENSION_DIGITS_MAX);
        let mut nibbles = [FILL; 16];
        nibbles[0] = EXTENSION_MARK;
        for (slot, digit) in nibbles[1..].iter_mut().zip(digits) {
            assert!(digit.is_ascii_digit());
            *slot = digit - b'0';
        }
        Number::from_nibbles(&nibbles)
    }

    fn from_nibbles(nibbles: &[u8; 16]) -> Number {
        let mut bytes = [0u8; 8];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = (nibbles[2 * i] << 4) | nibbles[2 * i + 1];
        }
        Number(bytes)
    }

    fn nibble(self, i: usize) -> u8 {
        let byte = self.0[i / 2];
        if i.is_multiple_of(2) {
            byte >> 4
        } else {
            byte & 0xF
        }
    }

    /// True for the "no number" value.
    pub fn is_none(self) -> bool {
        self == Number::NONE
    }

    /// One flag at the top bit of each nibble that is not a decimal digit,
    /// the sixteen nibbles tested at once (SWAR): no loop, no branch.
    #[inline(always)]
    fn not_digit_flags(self) -> u64 {
        const LOW_NIBBLES: u64 = 0x0F0F_0F0F_0F0F_0F0F;
        const SIX: u64 = 0x0606_0606_0606_0606;
        const CARRY: u64 = 0x1010_1010_1010_1010;
        let word = u64::from_be_bytes(self.0);
        // Each nibble alone in a byte: adding 6 carries into bit 4 exactly
        // when the nibble is 10 or more (at most 21: no carry out of a byte).
        let low = ((word & LOW_NIBBLES) + SIX) & CARRY;
        let high = (((word >> 4) & LOW_NIBBLES) + SIX) & CARRY;
        (high << 3) | (low >> 1)
    }

    /// For a plain number (digits, then `F` fill to the end): how many
    /// digits. `None` for NONE, extension keys and malformed bytes. No
    /// allocation and no loop: the wire path calls it for every number of
    /// every request.
    #[inline]
    pub fn digit_run(self) -> Option<usize> {
        let word = u64::from_be_bytes(self.0);
        let digits = (self.not_digit_flags().leading_zeros() / 4) as usize;
        // Everything after the digits must be fill.
        let fill_bits = 64 - 4 * digits;
        let fill_mask = if fill_bits == 64 {
            u64::MAX
        } else {
            (1u64 << fill_bits) - 1
        };
        ((1..=DIGITS_MAX).contains(&digits) && word & fill_mask == fill_mask).then_some(digits)
    }

    /// True for a Chinese mobile as the wire carries it: 11 digits from `1`,
    /// then fill. The per-request fast path of `check_real`.
    #[inline(always)]
    pub fn is_mobile(self) -> bool {
        const FILL_5: u64 = 0xF_FFFF;
        let word = u64::from_be_bytes(self.0);
        self.not_digit_flags() == 0x8_8888 && word & FILL_5 == FILL_5 && word >> 60 == 1
    }

    /// True for a standard virtual number: `700` and 12 more digits, then
    /// fill. The per-request fast path of `check_virtual`.
    #[inline(always)]
    pub fn is_standard_virtual(self) -> bool {
        let word = u64::from_be_bytes(self.0);
        self.not_digit_flags() == 0x8 && word & 0xF == 0xF && word >> 52 == 0x700
    }

    /// True if this is an extension key rather than a phone number.
    pub fn is_extension(self) -> bool {
        self.nibble(0) == EXTENSION_MARK
    }

    /// The number as a 64-bit word, for hashing.
    pub fn word(self) -> u64 {
        u64::from_le_bytes(self.0)
    }

    /// Decodes the digits (an extension key yields its extension digits).
    /// Returns an empty string for [`Number::NONE`].
    pub fn digits(self) -> String {
        if self.is_none() {
            return String::new();
        }
        let start = usize::from(self.is_extension());
        (start..16)
            .map(|i| self.nibble(i))
            .take_while(|&n| n <= 9)
            .map(|n| char::from(b'0' + n))
            .collect()
    }

    /// True if the bytes are a well-formed encoding: a number (1 to 15
    /// digits then fill), an extension key, or NONE. Used when reading
    /// records back from disk.
    pub fn is_well_formed(self) -> bool {
        if self.is_none() {
            return true;
        }
        let start = usize::from(self.is_extension());
        let digits = (start..16).take_while(|&i| self.nibble(i) <= 9).count();
        let limit = if start == 1 {
            EXTENSION_DIGITS_MAX
        } else {
            DIGITS_MAX
        };
        digits >= 1 && digits <= limit && (start + digits..16).all(|i| self.nibble(i) == FILL)
    }
}

impl std::fmt::Debug for Number {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_none() {
            write!(f, "Number(none)")
        } else if self.is_extension() {
            write!(f, "Ext({})", self.digits())
        } else {
            write!(f, "Number({})", self.digits())
        }
    }
}

impl std::fmt::Display for Number {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.digits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_bcd_most_significant_first_f_filled() {
        let x = Number::from_digits(b"700123456789012");
        assert_eq!(x.0, [0x70, 0x01, 0x23, 0x45, 0x67, 0x89, 0x01, 0x2F]);
        assert_eq!(x.digits(), "700123456789012");
    }

    #[test]
    fn leading_zeros_survive() {
        let fixed = Number::from_digits(b"01012345678");
        assert_eq!(fixed.0, [0x01, 0x01, 0x23, 0x45, 0x67, 0x8F, 0xFF, 0xFF]);
        assert_eq!(fixed.digits(), "01012345678");
        assert_ne!(fixed, Number::from_digits(b"1012345678"));
    }

    #[test]
    fn extension_keys_never_equal_numbers() {
        let ext = Number::extension_key(b"123");
        assert!(ext.is_extension());
        assert_eq!(ext.digits(), "123");
        assert_ne!(ext, Number::from_digits(b"123"));
        assert!(ext.is_well_formed());
    }

    /// The nibble-at-a-time definition `digit_run` must agree with.
    fn digit_run_by_nibbles(number: Number) -> Option<usize> {
        let digits = (0..16).take_while(|&i| number.nibble(i) <= 9).count();
        ((1..=DIGITS_MAX).contains(&digits) && (digits..16).all(|i| number.nibble(i) == FILL))
            .then_some(digits)
    }

    proptest::proptest! {
        #[test]
        fn digit_run_agrees_with_the_nibble_loop(bytes: [u8; 8], digits in 0usize..=16, fill: bool) {
            // Random words are rarely well formed: also build digits + fill.
            let mut built = bytes;
            if fill {
                for i in digits..16 {
                    built[i / 2] |= if i % 2 == 0 { 0xF0 } else { 0x0F };
                }
                for i in 0..digits {
                    let keep = if i % 2 == 0 { 0x0F } else { 0xF0 };
                    let digit = (bytes[i / 2] >> (4 * (i % 2))) % 10;
                    built[i / 2] = (built[i / 2] & keep) | if i % 2 == 0 { digit << 4 } else { digit };
                }
            }
            for number in [Number(bytes), Number(built)] {
                proptest::prop_assert_eq!(number.digit_run(), digit_run_by_nibbles(number), "{:02x?}", number.0);
                let digits = number.digits();
                proptest::prop_assert_eq!(
                    number.is_mobile(),
                    digit_run_by_nibbles(number) == Some(11) && digits.starts_with('1'),
                    "{:02x?}", number.0
                );
                proptest::prop_assert_eq!(
                    number.is_standard_virtual(),
                    digit_run_by_nibbles(number) == Some(VIRTUAL_DIGITS) && digits.starts_with(VIRTUAL_PREFIX),
                    "{:02x?}", number.0
                );
            }
        }
    }

    #[test]
    fn digit_runs() {
        assert_eq!(Number::from_digits(b"13800138000").digit_run(), Some(11));
        assert_eq!(
            Number::from_digits(b"700123456789012").digit_run(),
            Some(15)
        );
        assert_eq!(Number::from_digits(b"1").digit_run(), Some(1));
        assert_eq!(Number::NONE.digit_run(), None);
        assert_eq!(Number::extension_key(b"12").digit_run(), None);
        assert_eq!(
            Number([0x13, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]).digit_run(),
            None
        );
    }

    #[test]
    fn well_formedness_rejects_garbage() {
        assert!(Number::NONE.is_well_formed());
        assert!(Number::from_digits(b"13800138000").is_well_formed());
        assert!(!Number([0x12, 0xF3, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]).is_well_formed());
        assert!(!Number([0xFF; 8]).is_well_formed());
        assert!(!Number([0x11; 8]).is_well_formed());
    }
}
