//! Arguments of the commands for tenants and what belongs to them:
//! `tenant`, `block`, `pool` and `trace` (protocol version 2).

use super::StoreArgs;
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// `x700 trace`.
#[derive(Args, Debug)]
pub struct TraceArgs {
    /// The virtual number routed.
    #[arg(long, value_name = "X", requires = "at", conflicts_with = "order")]
    pub x: Option<String>,
    /// When: RFC 3339 (2026-05-03T14:03:00+08:00) or Unix seconds.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Only the binding that routed this caller.
    #[arg(long, value_name = "C", requires = "x")]
    pub caller: Option<String>,
    /// The tenant of the order.
    #[arg(long, value_name = "T", requires = "order")]
    pub tenant: Option<u32>,
    /// The order reference.
    #[arg(long, value_name = "O", requires = "tenant")]
    pub order: Option<String>,
    /// Where, and how to print.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `x700 pool ...`.
#[derive(Subcommand, Debug)]
pub enum PoolCommand {
    /// Add a range of 700 numbers to a tenant's pool, tagged with its area.
    Add(PoolAddArgs),
    /// Remove a range (refused while numbers of it are in live bindings,
    /// unless --force).
    Remove(PoolRemoveArgs),
    /// A tenant's ranges, numbers in use and free, by area.
    Show(PoolShowArgs),
}

/// `x700 pool add`.
#[derive(Args, Debug)]
pub struct PoolAddArgs {
    /// The tenant.
    #[arg(long, value_name = "T")]
    pub tenant: u32,
    /// The range, FIRST-LAST (15-digit 700 numbers, both included).
    #[arg(long, value_name = "FIRST-LAST")]
    pub range: String,
    /// The area code of the city the range serves (3 or 4 digits: 010,
    /// 0755).
    #[arg(long, value_name = "CODE")]
    pub area: String,
    /// The province, for the province fallback (default: the area's, from
    /// the built-in table), e.g. guangdong.
    #[arg(long, value_name = "P")]
    pub province: Option<String>,
    /// Where, and how to print.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `x700 pool remove`.
#[derive(Args, Debug)]
pub struct PoolRemoveArgs {
    /// The tenant.
    #[arg(long, value_name = "T")]
    pub tenant: u32,
    /// The range, exactly as added: FIRST-LAST.
    #[arg(long, value_name = "FIRST-LAST")]
    pub range: String,
    /// Remove it even while numbers of it are in live bindings (they live
    /// on until they end; no new binding is made on the range).
    #[arg(long)]
    pub force: bool,
    /// Where, and how to print.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `x700 pool show`.
#[derive(Args, Debug)]
pub struct PoolShowArgs {
    /// The tenant.
    #[arg(long, value_name = "T")]
    pub tenant: u32,
    /// Where, and how to print.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `x700 tenant ...`.
#[derive(Subcommand, Debug)]
pub enum TenantCommand {
    /// Register a tenant with its first platform credential and quotas.
    Add(TenantAddArgs),
    /// Change a tenant's quotas, or give it another credential.
    Set(TenantAddArgs),
    /// Suspend a tenant: lookups of its bindings answer tenant_suspended,
    /// and its binds too, until it is resumed.
    Suspend(TenantArgs),
    /// Resume a suspended tenant.
    Resume(TenantArgs),
    /// One tenant: status, quotas, number of credentials.
    Show(TenantArgs),
    /// Every tenant.
    List(TenantListArgs),
}

/// `x700 tenant add|set`. `--token` is the tenant's credential, so the
/// session's own credential is `--admin-token`.
#[derive(Args, Debug)]
pub struct TenantAddArgs {
    /// The tenant id.
    #[arg(long, value_name = "T")]
    pub tenant: u32,
    /// A platform credential for this tenant (at least 16 bytes); the node
    /// keeps only its SHA-256.
    #[arg(long, value_name = "TOKEN", default_value = "")]
    pub token: String,
    /// Most live bindings (0: no quota).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_live: u32,
    /// Most binds per second, counted at the leader (0: no quota).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub binds_per_s: u32,
    /// Most lookups per second the tenant's bindings answer on each node
    /// (0: no limit); beyond it lookups answer rate_limited.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub lookups_per_s: u32,
    /// Most lookups per second any one of the tenant's X answers on each
    /// node (0: no limit).
    #[arg(long = "x-lookups-per-s", value_name = "N", default_value_t = 0)]
    pub x_lookups_per_s: u32,
    /// Accept a credential shorter than 16 bytes (tests only).
    #[arg(long)]
    pub allow_short_tokens: bool,
    /// The data directory (offline use, a stopped single node).
    #[arg(long, value_name = "DIR", required_unless_present = "server")]
    pub data: Option<PathBuf>,
    /// A running node's TCP address (instead of --data).
    #[arg(long, value_name = "ADDR", conflicts_with = "data")]
    pub server: Option<String>,
    /// The admin credential for --server (empty: protected mode, loopback
    /// only).
    #[arg(long, value_name = "T", default_value = "")]
    pub admin_token: String,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

impl TenantAddArgs {
    /// The store options these stand for.
    pub fn store(&self) -> StoreArgs {
        StoreArgs {
            data: self.data.clone(),
            server: self.server.clone(),
            token: self.admin_token.clone(),
            role: None,
            shards: crate::store::SHARDS_DEFAULT,
            allow_legacy_x: false,
            json: self.json,
        }
    }
}

/// `x700 tenant suspend|resume|show`.
#[derive(Args, Debug)]
pub struct TenantArgs {
    /// The tenant id.
    #[arg(long, value_name = "T")]
    pub tenant: u32,
    /// Where, and how to print.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `x700 tenant list`.
#[derive(Args, Debug)]
pub struct TenantListArgs {
    /// Where, and how to print.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `x700 block ...`.
#[derive(Subcommand, Debug)]
pub enum BlockCommand {
    /// Refuse a caller: on one tenant's numbers (--tenant) or on every one.
    Add(BlockArgs),
    /// Take a caller off a blocklist.
    Remove(BlockArgs),
}

/// `x700 block add|remove`.
#[derive(Args, Debug)]
pub struct BlockArgs {
    /// The caller (a real number; +86 and such are normalised).
    #[arg(long, value_name = "C")]
    pub caller: String,
    /// The tenant whose list (absent: the global list).
    #[arg(long, value_name = "T")]
    pub tenant: Option<u32>,
    /// Where, and how to print.
    #[command(flatten)]
    pub store: StoreArgs,
}
