//! Command-line arguments (clap). Names here are a contract: users' scripts
//! and checks call `x700 bind axb --data DIR --x X --a A --b B ...`.
//!
//! This file holds the top-level parser, the options every data command
//! shares (`StoreArgs`) and the small commands (`decode`, `stats`,
//! `check`); each larger command's flags have a file of their own, named
//! after it, and are re-exported here.

mod bench;
mod binding;
mod cluster;
mod load;
mod replay;
mod serve;
mod tenancy;

pub use bench::*;
pub use binding::*;
pub use cluster::*;
pub use load::*;
pub use replay::*;
pub use serve::*;
pub use tenancy::*;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// x700: translation engine for the 700 privacy-number range.
#[derive(Parser, Debug)]
#[command(name = "x700", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a binding (AXB, AXN or AXE).
    #[command(subcommand)]
    Bind(BindCommand),
    /// Ask where a call from CALLER to X goes.
    Lookup(LookupArgs),
    /// Remove a binding, by id or by X plus a party.
    Unbind(UnbindArgs),
    /// Change a binding's expiry, direction, recording flag or B.
    Update(UpdateArgs),
    /// Show a binding by id.
    Query(QueryArgs),
    /// Bind synthetic AXB bindings: into a data directory, or over the
    /// wire to a running node (--server).
    Load(LoadArgs),
    /// Counts and sizes of a data directory, or a running node's STATS.
    Stats(StatsArgs),
    /// Read every record and index entry of a data directory and verify them.
    Check(CheckArgs),
    /// Load and look up bindings in a local data directory, to see x700 work.
    Demo(DemoArgs),
    /// Run a node: the binary protocol over TCP (and UDP), admin HTTP.
    Serve(Box<ServeArgs>),
    /// Load benchmark over the wire (open or closed loop), against a node
    /// or Redis.
    Bench(Box<BenchArgs>),
    /// A cluster of several nodes: initialise it, see its members.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Print the x700 frames of a packet capture (pcap or pcapng), one
    /// line each.
    Decode(DecodeArgs),
    /// Send a capture's requests again to a server and compare its answers
    /// with the captured ones.
    Replay(ReplayArgs),
    /// Bind the rows of a CSV file (a migration from another platform):
    /// the whole file checked first, then sent in batches, each undone if
    /// any of its rows is refused.
    Import(super::import::ImportArgs),
    /// Tenants (business users): add, change, suspend, resume, show, list.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Caller blocklists: a tenant's (--tenant) or the global one.
    #[command(subcommand)]
    Block(BlockCommand),
    /// Number pools: the ranges of 700 numbers a tenant binds on.
    #[command(subcommand)]
    Pool(PoolCommand),
    /// Ask the traceability history: which binding routed X at a time
    /// (--x, --at), or an order's bindings (--tenant, --order).
    Trace(TraceArgs),
}

impl Command {
    /// Whether to print JSON.
    pub fn json(&self) -> bool {
        match self {
            Command::Bind(BindCommand::Axb(b)) => b.common.store.json,
            Command::Bind(BindCommand::Axn(b)) => b.common.store.json,
            Command::Bind(BindCommand::Axe(b)) => b.common.store.json,
            Command::Lookup(a) => a.store.json,
            Command::Unbind(a) => a.store.json,
            Command::Update(a) => a.store.json,
            Command::Query(a) => a.store.json,
            Command::Load(a) => a.store.json,
            Command::Stats(a) => a.store.json,
            Command::Check(a) => a.json,
            Command::Demo(a) => a.json,
            Command::Cluster(ClusterCommand::Init(a)) => a.cluster.json,
            Command::Cluster(ClusterCommand::Status(a) | ClusterCommand::Verify(a)) => a.json,
            Command::Cluster(ClusterCommand::AddNode(a)) => a.cluster.json,
            Command::Cluster(ClusterCommand::RemoveNode(a)) => a.cluster.json,
            Command::Decode(a) => a.json,
            Command::Import(a) => a.store.json,
            Command::Tenant(TenantCommand::Add(a) | TenantCommand::Set(a)) => a.json,
            Command::Tenant(
                TenantCommand::Suspend(a) | TenantCommand::Resume(a) | TenantCommand::Show(a),
            ) => a.store.json,
            Command::Tenant(TenantCommand::List(a)) => a.store.json,
            Command::Block(BlockCommand::Add(a) | BlockCommand::Remove(a)) => a.store.json,
            Command::Pool(PoolCommand::Add(a)) => a.store.json,
            Command::Pool(PoolCommand::Remove(a)) => a.store.json,
            Command::Pool(PoolCommand::Show(a)) => a.store.json,
            Command::Trace(a) => a.store.json,
            Command::Serve(_) | Command::Bench(_) | Command::Replay(_) => false,
        }
    }
}

/// Options every data command takes: a local data directory (offline) or
/// a running node (`--server`).
#[derive(Args, Debug)]
pub struct StoreArgs {
    /// The data directory (offline use).
    #[arg(long, value_name = "DIR", required_unless_present = "server")]
    pub data: Option<PathBuf>,
    /// A running node's TCP address (instead of --data).
    #[arg(long, value_name = "ADDR", conflicts_with = "data")]
    pub server: Option<String>,
    /// Credential for --server (empty: protected mode, loopback only).
    #[arg(long, value_name = "T", default_value = "")]
    pub token: String,
    /// Role to ask for with --server: switch, platform or admin (default:
    /// switch for lookup, admin for stats, platform otherwise).
    #[arg(long)]
    pub role: Option<String>,
    /// Shards of a data directory this command creates (ignored if it exists).
    #[arg(long, default_value_t = crate::store::SHARDS_DEFAULT, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub shards: u16,
    /// Accept legacy (non-700) virtual numbers: only during the regulator's
    /// transition period.
    #[arg(long)]
    pub allow_legacy_x: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

impl StoreArgs {
    /// The options of an offline command on `data`, every other one at its
    /// default.
    pub fn offline(data: PathBuf, json: bool) -> StoreArgs {
        StoreArgs {
            data: Some(data),
            server: None,
            token: String::new(),
            role: None,
            shards: crate::store::SHARDS_DEFAULT,
            allow_legacy_x: false,
            json,
        }
    }
}

/// `x700 decode CAPTURE`.
#[derive(Args, Debug)]
pub struct DecodeArgs {
    /// The capture file (pcap or pcapng, from tcpdump, tshark or a node).
    #[arg(value_name = "CAPTURE")]
    pub capture: PathBuf,
    /// The server's port: the side of a connection that uses it is the
    /// server.
    #[arg(long, value_name = "P", default_value_t = crate::capture::SERVER_PORT_DEFAULT)]
    pub port: u16,
    /// One JSON object per frame, then a summary object.
    #[arg(long)]
    pub json: bool,
}

/// `x700 stats`.
#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Store options.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `x700 check`: offline only (it reads every file of a directory no node
/// is using), so it offers no --server.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The data directory.
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

impl CheckArgs {
    /// The options `check` runs with.
    pub fn stats_args(&self) -> StatsArgs {
        StatsArgs {
            store: StoreArgs::offline(self.data.clone(), self.json),
        }
    }
}
