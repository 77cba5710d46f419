//! The numbers that may never be a real party (A, B, an AXN default callee,
//! the caller of a lookup): the one place that lists them.
//!
//! A real party is a person's or a business's line. Three kinds of number
//! look like one but are not:
//! - **virtual numbers**: a party that is itself an X sends the call back
//!   into x700, so three AXN binds could make a loop X1 -> X2 -> X3 -> X1;
//! - **emergency and short service numbers**: a binding must never route a
//!   call to 110, nor let a platform show X to the police;
//! - **fragments**: anything shorter than a subscriber number is a short
//!   code or a typing error, never a person.
//!
//! Long business numbers stay accepted: `400`/`800` hotlines (a default
//! callee may be a company's hotline) and `106` SMS gateways (they send
//! messages to AXN owners).

/// A range of national numbers (the normalised form `check_real` returns)
/// that may not be a real party.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReservedRange {
    /// Leading digits, ASCII; empty matches every number.
    pub prefix: &'static [u8],
    /// Fewest digits a number of the range has.
    pub digits_min: usize,
    /// Most digits a number of the range has.
    pub digits_max: usize,
    /// What the range is, for error messages.
    pub what: &'static str,
}

/// Every range of national numbers that may not be a real party, checked in
/// this order. China's numbering plan (MIIT) gives these lengths:
/// - a local subscriber number has 7 or 8 digits, a fixed line in national
///   form `0` + a 2- or 3-digit area code + the local number (10 to 12
///   digits), a mobile 11 digits beginning `1`;
/// - emergency numbers are 3 digits: 110 police, 119 fire, 120 ambulance,
///   122 traffic accidents, 112 (GSM emergency), 999 (Red Cross ambulance in
///   Beijing and other cities); 114 is directory enquiries;
/// - carrier and public service numbers are 5 or 6 digits: 10000, 10010,
///   10086 (carriers), 12110 (police by SMS), 12119 (forest fire), 12315,
///   12345, 12395 (maritime distress), 95xxx and 95xxxx (national services:
///   banks, airlines, utilities), 96xxx and 96xxxx (local public services).
///
/// So the first range (everything under 7 digits) holds every emergency and
/// short service number; the others catch the longer spellings of service
/// numbers and the 700 range itself. The numbers are compared in national
/// form, after `+86`/`0086`/`86` are removed, so `+86 110` (normalised to
/// `0110`) is refused like `110`.
pub const RESERVED_RANGES: [ReservedRange; 5] = [
    ReservedRange {
        prefix: b"",
        digits_min: 1,
        digits_max: 6,
        what: "an emergency or short service number (shorter than any subscriber number)",
    },
    ReservedRange {
        prefix: b"1",
        digits_min: 7,
        digits_max: 10,
        what: "a service code (a number beginning 1 and shorter than a mobile)",
    },
    ReservedRange {
        prefix: b"0",
        digits_min: 7,
        digits_max: 9,
        what: "an area code before a short code (shorter than any fixed line)",
    },
    ReservedRange {
        prefix: b"95",
        digits_min: 7,
        digits_max: 15,
        what: "a 95 service number (never a subscriber)",
    },
    ReservedRange {
        prefix: b"700",
        digits_min: 15,
        digits_max: 15,
        what: "a 700 virtual number (a party that is an X loops calls through x700)",
    },
];

/// The reserved range that holds `national` (ASCII digits in national form),
/// if any. A handful of comparisons, no allocation: the lookup path runs it
/// for every caller that is not a mobile.
#[inline]
pub fn reserved_range(national: &[u8]) -> Option<&'static ReservedRange> {
    RESERVED_RANGES.iter().find(|range| {
        (range.digits_min..=range.digits_max).contains(&national.len())
            && national.starts_with(range.prefix)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emergency_and_service_numbers_are_reserved() {
        for number in [
            "110",
            "112",
            "119",
            "120",
            "122",
            "999",
            "114",
            "10000",
            "10086",
            "12110",
            "12119",
            "12315",
            "12345",
            "12395",
            "95588",
            "955880",
            "96110",
            "961234",
            "1008611",
            "0110",
            "0755110",
            "07551234",
            "075512345",
            "95013123456",
            "700123456789012",
        ] {
            assert!(
                reserved_range(number.as_bytes()).is_some(),
                "{number} is not reserved"
            );
        }
    }

    #[test]
    fn subscriber_and_business_numbers_are_not() {
        for number in [
            "13800138000",
            "19912345678",
            "01012345678",
            "075512345678",
            "0571123456",
            "62345678",
            "6234567",
            "4001234567",
            "8001234567",
            "106912345678",
            "70012345678901",
            "0044207946000",
        ] {
            assert_eq!(reserved_range(number.as_bytes()), None, "{number}");
        }
    }
}
