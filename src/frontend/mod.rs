//! The switches' own languages, beside the binary protocol: pure cores that
//! turn a standard request (DNS for ENUM, SIP) into a `LookupQuery` and a
//! lookup's answer into a standard reply. The event loops (`server::worker`)
//! do the I/O.

pub mod enum_dns;
pub mod sip;
