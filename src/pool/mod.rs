//! Number pools and automatic X selection: the pure core of step 8's pools.
//!
//! - [`area`]: area codes, provinces (a default table), fallback steps.
//! - [`range`]: a range of 700 numbers as integers; `x_value` / `x_number`.
//! - [`pools`]: every tenant's ranges, no overlap, owner of an X.
//! - [`allocator`]: X selection for AXB as online edge colouring, with
//!   max pairs per X, cool-off, stickiness and lazy expiry.
//! - [`sim`]: the allocation simulator behind `perf/alloc-sim.sh`.
//!
//! Nothing here reads a clock or an unseeded hash: time comes in as
//! `now_s` arguments and every decision is a function of the calls made so
//! far, so replicas applying the same log choose the same X.

pub mod allocator;
pub mod area;
mod codec;
mod hash;
pub mod pools;
pub mod range;
mod recent;
mod runs;
pub mod sim;

pub use allocator::{AllocConfig, Allocator, AreaStats, Exhausted};
pub use area::{AreaCode, Fallback, Province};
pub use codec::Corrupt;
pub use pools::{PoolError, Pools, RemoveOutcome};
pub use range::{x_number, x_number_checked, x_value, PoolRange};
