//! Arguments of the commands on bindings: `bind axb|axn|axe`, `lookup`,
//! `unbind`, `update` and `query`, offline (`--data`) or over the wire
//! (`--server`).

use super::StoreArgs;
use clap::{Args, Subcommand};

/// `x700 bind <mode>`.
#[derive(Subcommand, Debug)]
pub enum BindCommand {
    /// A and B bound on X: each reaches the other through X.
    Axb(BindAxbArgs),
    /// X belongs to A: anyone calling X reaches A.
    Axn(BindAxnArgs),
    /// X plus an extension reaches A.
    Axe(BindAxeArgs),
}

/// Options shared by every bind.
#[derive(Args, Debug)]
pub struct BindCommon {
    /// Store options.
    #[command(flatten)]
    pub store: StoreArgs,
    /// The virtual number (700 + 12 digits). For AXB it may be left out
    /// with --area: the node chooses X in the tenant's pool.
    #[arg(long, value_name = "X")]
    pub x: Option<String>,
    /// Party A (the owner for AXN and AXE).
    #[arg(long, value_name = "A")]
    pub a: String,
    /// Tenant (business user) id.
    #[arg(long)]
    pub tenant: u32,
    /// Order reference, 1 to 32 bytes.
    #[arg(long)]
    pub order: String,
    /// Lifetime in seconds.
    #[arg(long = "ttl-s", value_name = "S")]
    pub ttl_s: u32,
    /// both, a2b or b2a.
    #[arg(long, default_value = "both")]
    pub direction: String,
    /// Record calls on this binding.
    #[arg(long)]
    pub record: bool,
}

/// `x700 bind axb`.
#[derive(Args, Debug)]
pub struct BindAxbArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: BindCommon,
    /// Party B.
    #[arg(long, value_name = "B")]
    pub b: String,
    /// Instead of --x: the node chooses X in this area (code) of the
    /// tenant's pool; the answer carries it.
    #[arg(long, value_name = "CODE", conflicts_with = "x")]
    pub area: Option<String>,
    /// With --area: where X may come from when the area has none free:
    /// province (same province), then any (any area of the pool).
    #[arg(long, value_name = "province|any", requires = "area")]
    pub fallback: Option<String>,
}

/// `x700 bind axn`.
#[derive(Args, Debug)]
pub struct BindAxnArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: BindCommon,
    /// Where A's own calls to X go.
    #[arg(long, value_name = "NUMBER")]
    pub default_callee: Option<String>,
}

/// `x700 bind axe`.
#[derive(Args, Debug)]
pub struct BindAxeArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: BindCommon,
    /// The extension, 1 to 4 digits.
    #[arg(long, value_name = "E")]
    pub ext: String,
}

/// `x700 lookup`.
#[derive(Args, Debug)]
pub struct LookupArgs {
    /// Store options.
    #[command(flatten)]
    pub store: StoreArgs,
    /// The calling number.
    #[arg(long)]
    pub caller: String,
    /// The dialled virtual number X.
    #[arg(long)]
    pub called: String,
    /// The dialled extension (AXE).
    #[arg(long, value_name = "E")]
    pub ext: Option<String>,
}

/// `x700 unbind`.
#[derive(Args, Debug)]
pub struct UnbindArgs {
    /// Store options.
    #[command(flatten)]
    pub store: StoreArgs,
    /// The binding id.
    #[arg(long, conflicts_with_all = ["x", "party", "ext"], required_unless_present = "x")]
    pub id: Option<u64>,
    /// The virtual number (with --party or --ext).
    #[arg(long, value_name = "X")]
    pub x: Option<String>,
    /// A party of the binding on X (AXB's A or B, AXN's A).
    #[arg(long, requires = "x", conflicts_with = "ext")]
    pub party: Option<String>,
    /// The extension of the AXE binding on X.
    #[arg(long, value_name = "E", requires = "x")]
    pub ext: Option<String>,
}

/// `x700 update`.
#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// Store options.
    #[command(flatten)]
    pub store: StoreArgs,
    /// The binding id.
    #[arg(long)]
    pub id: u64,
    /// New lifetime from now, seconds.
    #[arg(long = "ttl-s", value_name = "S")]
    pub ttl_s: Option<u32>,
    /// New direction: both, a2b or b2a.
    #[arg(long)]
    pub direction: Option<String>,
    /// New recording flag.
    #[arg(long, value_name = "BOOL")]
    pub record: Option<bool>,
    /// New B (AXB) or default callee (AXN).
    #[arg(long, value_name = "B")]
    pub b: Option<String>,
}

/// `x700 query`.
#[derive(Args, Debug)]
pub struct QueryArgs {
    /// Store options.
    #[command(flatten)]
    pub store: StoreArgs,
    /// The binding id.
    #[arg(long)]
    pub id: u64,
}
