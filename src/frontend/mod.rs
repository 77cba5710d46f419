//! Front-ends that speak the switches' own protocols (DNS for ENUM, SIP),
//! each a pure core here, served by the event loops (`server::worker`).

pub mod enum_dns;
