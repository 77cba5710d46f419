//! Arguments of `x700 load` (synthetic AXB bindings, into a data
//! directory or over the wire) and `x700 demo` (load, then look up).

use super::StoreArgs;
use clap::Args;
use std::path::PathBuf;

/// `x700 load`.
#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Store options.
    #[command(flatten)]
    pub store: StoreArgs,
    /// How many synthetic AXB bindings.
    #[arg(long)]
    pub bindings: u64,
    /// Seed: the same seed gives the same bindings.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Lifetime of each binding, seconds (default 30 days).
    #[arg(long = "ttl-s", default_value_t = 30 * 24 * 3600)]
    pub ttl_s: u32,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// With --server: TCP connections, each with 256 binds in flight
    /// (default 4).
    #[arg(long, value_name = "N", conflicts_with = "data")]
    pub connections: Option<usize>,
    /// AXB pairs sharing each X, as in real number pools (1 to 200; 1:
    /// every binding its own X). `x700 bench --pairs-per-x` must match.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=crate::synth::PAIRS_PER_X_MAX))]
    pub pairs_per_x: u64,
}

/// `x700 demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// The data directory.
    #[arg(long, default_value = "x700-data")]
    pub data: PathBuf,
    /// Synthetic bindings to load first.
    #[arg(long, default_value_t = 200_000)]
    pub bindings: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}
