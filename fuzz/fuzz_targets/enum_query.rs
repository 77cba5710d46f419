//! Fuzz target for the ENUM front-end: arbitrary bytes read as a DNS
//! query, and every answer the zone could give it written. The check is
//! in `fuzz/check_enum.rs`, shared with `tests/enum_dns.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../check_enum.rs");

fuzz_target!(|bytes: &[u8]| {
    check_enum(bytes);
});
