//! Parsing and normalisation of virtual numbers, real numbers and extensions.
//!
//! Normalisation makes one spelling per number, so a number is never stored
//! twice: `+86`, `0086` and (before an 11-digit mobile) a bare `86` are
//! removed. After `+86`/`0086`, a national number that is neither a mobile,
//! a 700 number nor a service number (400, 800, 95xxx, 96xxx) is a fixed line
//! written without its trunk prefix, and gets its leading `0` back:
//! `+86 10 12345678` and `010 12345678` are the same line.
//!
//! Two levels of checking: a *national* number is any well-formed real
//! number (what a legacy X or the party of an UNBIND may be); a *real party*
//! (`parse_real`, `check_real`) is a national number outside the reserved
//! ranges of `super::reserved` (700 numbers, emergency and service numbers).

use super::reserved::reserved_range;
use super::{
    Number, DIGITS_MAX, EXTENSION_DIGITS_MAX, REAL_DIGITS_MIN, VIRTUAL_DIGITS, VIRTUAL_PREFIX,
};

/// Why a string is not an acceptable number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    /// Empty input.
    #[error("number is empty")]
    Empty,
    /// A character other than a digit (and one leading `+`).
    #[error("number {0:?} contains a character that is not a digit")]
    NotDigits(String),
    /// Too few or too many digits after normalisation.
    #[error("number {input:?} has {digits} digits; allowed {min} to {max}")]
    Length {
        /// What was given.
        input: String,
        /// Digits after normalisation.
        digits: usize,
        /// Fewest allowed.
        min: usize,
        /// Most allowed.
        max: usize,
    },
    /// A virtual number outside the 700 range while legacy numbers are off.
    #[error("virtual number {0:?} is not a 15-digit 700 number (legacy virtual numbers are not enabled on this node)")]
    NotVirtual(String),
    /// A well-formed number that may not be a real party (see
    /// `RESERVED_RANGES`). Carries no allocation: the lookup path may
    /// produce it for every request.
    #[error("number {number} cannot be a real party: it is {what}")]
    Reserved {
        /// The number, in national form.
        number: Number,
        /// Which reserved range holds it.
        what: &'static str,
    },
}

/// Whether legacy (non-700) virtual numbers are accepted: only during the
/// regulator's transition period, by node configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XPolicy {
    /// Accept any valid real number as X as well as 700 numbers.
    pub allow_legacy: bool,
}

/// Parses a virtual number X.
///
/// Strictly: exactly 15 digits beginning `700` (after removing a country
/// prefix). With `policy.allow_legacy`, any national number is accepted too
/// (reserved ranges included: legacy X numbers are often 95 numbers).
pub fn parse_virtual(input: &str, policy: XPolicy) -> Result<Number, NumberError> {
    let digits = plain_digits(input)?;
    let national = strip_country(&digits);
    if national.len() == VIRTUAL_DIGITS && national.starts_with(VIRTUAL_PREFIX.as_bytes()) {
        return Ok(Number::from_digits(national));
    }
    if policy.allow_legacy {
        return parse_national(input);
    }
    Err(NumberError::NotVirtual(input.to_string()))
}

/// Parses and normalises a real party (A, B, a default callee, a caller): 3
/// to 15 national digits, outside the reserved ranges (`RESERVED_RANGES`).
pub fn parse_real(input: &str) -> Result<Number, NumberError> {
    let number = parse_national(input)?;
    let (digits, len) = number_digits(number)?;
    refuse_reserved(number, &digits[..len])
}

/// Parses and normalises a national number: 3 to 15 digits, reserved or
/// not (a legacy X may be a 95 service number).
pub fn parse_national(input: &str) -> Result<Number, NumberError> {
    let digits = plain_digits(input)?;
    let (national, len) = normalise_national(&digits);
    if !(REAL_DIGITS_MIN..=DIGITS_MAX).contains(&len) {
        return Err(NumberError::Length {
            input: input.to_string(),
            digits: len,
            min: REAL_DIGITS_MIN,
            max: DIGITS_MAX,
        });
    }
    Ok(Number::from_digits(&national[..len]))
}

/// Parses an AXE extension: 1 to 4 digits, kept exactly as dialled.
pub fn parse_extension(input: &str) -> Result<Number, NumberError> {
    if input.is_empty() {
        return Err(NumberError::Empty);
    }
    if !input.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NumberError::NotDigits(input.to_string()));
    }
    if input.len() > EXTENSION_DIGITS_MAX {
        return Err(NumberError::Length {
            input: input.to_string(),
            digits: input.len(),
            min: 1,
            max: EXTENSION_DIGITS_MAX,
        });
    }
    Ok(Number::extension_key(input.as_bytes()))
}

/// Longest plausible spelling: `+0086` plus 15 digits, with room to spare.
const INPUT_BYTES_MAX: usize = 24;

/// A number's spelling, checked, on the stack: the SIP front-end parses
/// numbers per call, and an allocation there would be one per call.
struct Spelling {
    bytes: [u8; INPUT_BYTES_MAX],
    len: usize,
}

impl std::ops::Deref for Spelling {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The input's digits, with an optional leading `+` kept as a marker.
/// Rejects empty input, other characters and absurd lengths; no
/// allocation unless it refuses.
fn plain_digits(input: &str) -> Result<Spelling, NumberError> {
    if input.is_empty() {
        return Err(NumberError::Empty);
    }
    let bytes = input.as_bytes();
    let body = bytes.strip_prefix(b"+").unwrap_or(bytes);
    if body.is_empty() || !body.iter().all(u8::is_ascii_digit) {
        return Err(NumberError::NotDigits(input.to_string()));
    }
    if bytes.len() > INPUT_BYTES_MAX {
        return Err(NumberError::Length {
            input: input.chars().take(INPUT_BYTES_MAX).collect(),
            digits: body.len(),
            min: REAL_DIGITS_MIN,
            max: DIGITS_MAX,
        });
    }
    let mut spelling = Spelling {
        bytes: [0; INPUT_BYTES_MAX],
        len: bytes.len(),
    };
    spelling.bytes[..bytes.len()].copy_from_slice(bytes);
    Ok(spelling)
}

/// Removes `+86` or `0086`, or a bare `86` in front of a 15-digit 700 number
/// or an 11-digit mobile. Returns the rest.
fn strip_country(digits: &[u8]) -> &[u8] {
    if let Some(rest) = digits.strip_prefix(b"+86") {
        return rest;
    }
    if let Some(rest) = digits.strip_prefix(b"0086") {
        return rest;
    }
    if let Some(rest) = digits.strip_prefix(b"86") {
        if is_mobile(rest) || (rest.len() == VIRTUAL_DIGITS && rest.starts_with(b"700")) {
            return rest;
        }
    }
    digits.strip_prefix(b"+").unwrap_or(digits)
}

/// Room for the longest input `plain_digits` accepts plus a trunk zero.
const NATIONAL_BUFFER: usize = 32;

/// The national form of a real number (see the module docs), on the stack:
/// no allocation, so the wire path can use it per request.
fn normalise_national(digits: &[u8]) -> ([u8; NATIONAL_BUFFER], usize) {
    let had_country = digits.starts_with(b"+86") || digits.starts_with(b"0086");
    let national = strip_country(digits);
    let keeps_form = national.starts_with(b"0")
        || is_mobile(national)
        || national.starts_with(b"700")
        || national.starts_with(b"400")
        || national.starts_with(b"800")
        || national.starts_with(b"95")
        || national.starts_with(b"96");
    let mut out = [0u8; NATIONAL_BUFFER];
    let mut len = 0;
    if had_country && !keeps_form && !national.is_empty() {
        out[0] = b'0';
        len = 1;
    }
    let take = national.len().min(NATIONAL_BUFFER - len);
    out[len..len + take].copy_from_slice(&national[..take]);
    (out, len + take)
}

/// Checks and normalises a real party (A, B, a default callee, a caller)
/// that arrived already encoded (from the wire): a national number (see
/// `check_national`) outside the reserved ranges (`RESERVED_RANGES`). No
/// allocation; a mobile takes a few comparisons.
#[inline]
pub fn check_real(number: Number) -> Result<Number, NumberError> {
    // Fast path: a mobile (11 digits from 1) has no prefix to remove and is
    // in no reserved range.
    if number.is_mobile() {
        return Ok(number);
    }
    check_real_slowly(number)
}

/// `check_real` for anything but a mobile.
#[inline(never)]
fn check_real_slowly(number: Number) -> Result<Number, NumberError> {
    let (national, len) = national_digits(number)?;
    refuse_reserved(Number::from_digits(&national[..len]), &national[..len])
}

/// Checks and normalises a national number that arrived already encoded:
/// well formed, not an extension, 3 to 15 digits after removing a `0086`
/// or (before a mobile) `86` prefix, reserved or not (a legacy X, the party
/// that names a binding to remove). No allocation.
pub fn check_national(number: Number) -> Result<Number, NumberError> {
    if number.digit_run() == Some(11) && number.0[0] >> 4 == 1 {
        return Ok(number);
    }
    let (national, len) = national_digits(number)?;
    Ok(Number::from_digits(&national[..len]))
}

/// `number` unless its national digits fall in a reserved range.
fn refuse_reserved(number: Number, national: &[u8]) -> Result<Number, NumberError> {
    match reserved_range(national) {
        Some(range) => Err(NumberError::Reserved {
            number,
            what: range.what,
        }),
        None => Ok(number),
    }
}

/// The national digits of an encoded number, checked for length, on the
/// stack.
fn national_digits(number: Number) -> Result<([u8; NATIONAL_BUFFER], usize), NumberError> {
    let (digits, len) = number_digits(number)?;
    let (national, national_len) = normalise_national(&digits[..len]);
    if !(REAL_DIGITS_MIN..=DIGITS_MAX).contains(&national_len) {
        return Err(NumberError::Length {
            input: number.digits(),
            digits: national_len,
            min: REAL_DIGITS_MIN,
            max: DIGITS_MAX,
        });
    }
    Ok((national, national_len))
}

/// Checks a virtual number that arrived already encoded: a 15-digit 700
/// number, or with `policy.allow_legacy` any national number (reserved
/// ranges included: legacy X numbers are often 95 service numbers).
#[inline]
pub fn check_virtual(number: Number, policy: XPolicy) -> Result<Number, NumberError> {
    if number.is_standard_virtual() {
        return Ok(number);
    }
    check_virtual_slowly(number, policy)
}

/// `check_virtual` for anything but a standard 700 number.
#[inline(never)]
fn check_virtual_slowly(number: Number, policy: XPolicy) -> Result<Number, NumberError> {
    let (digits, len) = number_digits(number)?;
    if len == VIRTUAL_DIGITS && digits.starts_with(VIRTUAL_PREFIX.as_bytes()) {
        return Ok(number);
    }
    if policy.allow_legacy {
        return check_national(number);
    }
    Err(NumberError::NotVirtual(number.digits()))
}

/// The ASCII digits of an encoded number, on the stack.
fn number_digits(number: Number) -> Result<([u8; 16], usize), NumberError> {
    if number.is_none() {
        return Err(NumberError::Empty);
    }
    if !number.is_well_formed() || number.is_extension() {
        return Err(NumberError::NotDigits(format!("{:02x?}", number.0)));
    }
    let mut digits = [0u8; 16];
    let mut len = 0;
    for digit in number.leading_digits() {
        digits[len] = b'0' + digit;
        len += 1;
    }
    Ok((digits, len))
}

/// An 11-digit number beginning with `1`: a Chinese mobile.
fn is_mobile(digits: &[u8]) -> bool {
    digits.len() == 11 && digits[0] == b'1'
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: XPolicy = XPolicy {
        allow_legacy: false,
    };
    const LEGACY: XPolicy = XPolicy { allow_legacy: true };

    #[test]
    fn virtual_numbers_are_strict_by_default() {
        assert_eq!(
            parse_virtual("700123456789012", STRICT).unwrap().digits(),
            "700123456789012"
        );
        assert_eq!(
            parse_virtual("+86700123456789012", STRICT)
                .unwrap()
                .digits(),
            "700123456789012"
        );
        assert!(matches!(
            parse_virtual("70012345678901", STRICT),
            Err(NumberError::NotVirtual(_))
        ));
        assert!(matches!(
            parse_virtual("13800138000", STRICT),
            Err(NumberError::NotVirtual(_))
        ));
        assert!(matches!(
            parse_virtual("7001234567890123", STRICT),
            Err(NumberError::NotVirtual(_))
        ));
    }

    #[test]
    fn legacy_virtual_numbers_only_when_enabled() {
        assert_eq!(
            parse_virtual("+8613800138000", LEGACY).unwrap().digits(),
            "13800138000"
        );
        assert_eq!(parse_virtual("95123", LEGACY).unwrap().digits(), "95123");
    }

    #[test]
    fn every_spelling_of_a_mobile_is_one_number() {
        let canonical = parse_real("13800138000").unwrap();
        for spelling in ["+8613800138000", "008613800138000", "8613800138000"] {
            assert_eq!(parse_real(spelling).unwrap(), canonical, "{spelling}");
        }
    }

    #[test]
    fn fixed_lines_regain_their_trunk_zero() {
        let canonical = parse_real("01012345678").unwrap();
        assert_eq!(parse_real("+861012345678").unwrap(), canonical);
        assert_eq!(parse_real("00861012345678").unwrap(), canonical);
        assert_eq!(parse_real("+864001234567").unwrap().digits(), "4001234567");
    }

    #[test]
    fn bare_86_is_only_stripped_before_a_mobile() {
        // 86 then 9 digits is not a country prefix: keep all 11 digits.
        assert_eq!(parse_real("86123456789").unwrap().digits(), "86123456789");
    }

    #[test]
    fn bad_real_numbers_are_rejected() {
        assert_eq!(parse_real(""), Err(NumberError::Empty));
        assert!(matches!(parse_real("12"), Err(NumberError::Length { .. })));
        assert!(matches!(
            parse_real("1234567890123456"),
            Err(NumberError::Length { .. })
        ));
        assert!(matches!(
            parse_real("138-0013-8000"),
            Err(NumberError::NotDigits(_))
        ));
        assert!(matches!(parse_real("+"), Err(NumberError::NotDigits(_))));
        assert!(matches!(
            parse_real("1".repeat(1000).as_str()),
            Err(NumberError::Length { .. })
        ));
        assert!(matches!(
            parse_real("１２３"),
            Err(NumberError::NotDigits(_))
        ));
    }

    #[test]
    fn encoded_numbers_are_checked_and_normalised() {
        let mobile = parse_real("13800138000").unwrap();
        assert_eq!(check_real(mobile), Ok(mobile));
        assert_eq!(
            check_real(Number::from_digits(b"8613800138000")),
            Ok(mobile)
        );
        assert_eq!(
            check_real(Number::from_digits(b"008613800138000")),
            Ok(mobile)
        );
        assert!(check_real(Number::from_digits(b"12")).is_err());
        assert!(check_real(Number::NONE).is_err());
        assert!(check_real(Number([0x12; 8])).is_err());
        assert!(check_real(Number::extension_key(b"123")).is_err());
        let x = parse_virtual("700123456789012", STRICT).unwrap();
        assert_eq!(check_virtual(x, STRICT), Ok(x));
        assert!(check_virtual(mobile, STRICT).is_err());
        assert_eq!(check_virtual(mobile, LEGACY), Ok(mobile));
    }

    /// Guards step 5 item 8: a 700 number, an emergency number or a short
    /// service number was accepted as a real party.
    #[test]
    fn reserved_numbers_are_no_real_party_in_any_spelling() {
        for spelling in [
            "110",
            "+86110",
            "0086110",
            "120",
            "999",
            "12395",
            "95588",
            "+8695588",
            "0755110",
            "+86755110",
            "700123456789012",
            "86700123456789012",
            "+86700123456789012",
        ] {
            assert!(
                matches!(parse_real(spelling), Err(NumberError::Reserved { .. })),
                "{spelling}: {:?}",
                parse_real(spelling)
            );
            assert!(parse_national(spelling).is_ok(), "{spelling}");
        }
        for digits in ["110", "0086110", "95588", "700123456789012", "0755110"] {
            let encoded = Number::from_digits(digits.as_bytes());
            assert!(
                matches!(check_real(encoded), Err(NumberError::Reserved { .. })),
                "{digits}"
            );
            assert!(check_national(encoded).is_ok(), "{digits}");
        }
        // A legacy X may still be a service number.
        let legacy = Number::from_digits(b"95588");
        assert_eq!(check_virtual(legacy, LEGACY), Ok(legacy));
    }

    #[test]
    fn extensions() {
        assert_eq!(parse_extension("0012").unwrap().digits(), "0012");
        assert!(parse_extension("12345").is_err());
        assert!(parse_extension("").is_err());
        assert!(parse_extension("1a").is_err());
    }
}
