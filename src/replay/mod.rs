//! `x700 replay`: sending a capture's requests again to a server and
//! comparing its answers with the captured ones. Each stage is its own
//! file: `plan` (which requests, on which connection, when), `run`
//! (connections, sending, reading answers), `ids` (captured binding ids to
//! the replayed node's), `diff` (comparing two answers) and `report`
//! (counts, latency percentiles, the JSON).

pub mod diff;
pub mod ids;
pub mod plan;
pub mod report;
pub mod run;
