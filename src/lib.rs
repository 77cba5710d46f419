//! x700: the translation engine for China's 700 privacy-number range.
//!
//! Parts, as in DESIGN.md: `number` (parsing and the 8-byte encoding),
//! `binding` (the model), `table` (memory-mapped shards: records, index,
//! expiry), `store` (a data directory of shards), `server` and `client`
//! (the wire), `bench` (load benchmarks over the wire), `cli` (the `x700`
//! command).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod bench;
pub mod binding;
pub mod capture;
pub mod cli;
pub mod client;
pub mod frontend;
pub mod history;
pub mod log;
pub mod number;
pub mod pool;
pub mod protocol;
pub mod replay;
pub mod replication;
pub mod server;
pub mod store;
pub mod synth;
pub mod sys;
pub mod table;
pub mod tenant;
