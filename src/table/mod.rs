//! The binding table: memory-mapped record files plus a linear-hashing
//! index, one set per shard. Pure data structures over mapped bytes; time
//! comes in as `now_s` arguments, never from a clock.

pub mod checkpoint;
pub mod error;
pub mod file;
pub mod hash;
pub mod index;
pub mod layout;
pub mod mapped;
pub mod meta_file;
pub mod page_check;
pub mod records;
pub mod route;
pub mod rules;
pub mod shard;
pub mod snapshot;
pub mod tag_scan;
pub mod tenant_counts;

pub use error::TableError;
pub use rules::BindOutcome;
pub use shard::{ClockSkew, Shard, ShardStats};
