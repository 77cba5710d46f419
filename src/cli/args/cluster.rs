//! Arguments of `x700 cluster ...`: init, status, add-node, remove-node
//! and verify, each against a running member (`--server`), as admin.

use clap::{Args, Subcommand};

/// `x700 cluster ...`: against a running member (`--server`), as admin.
#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Initialise a new cluster with its first members (run once, against
    /// any one of them; every member started with `--raft`).
    Init(ClusterInitArgs),
    /// The cluster as this member sees it: leader, term, members.
    Status(ClusterArgs),
    /// Add a member: checked (node id, table shards, versions), added as a
    /// learner, promoted to voter once caught up (sent to the leader).
    AddNode(ClusterAddNodeArgs),
    /// Remove a member (sent to the leader).
    RemoveNode(ClusterRemoveNodeArgs),
    /// Every member's table checksum at one log index, and whether they
    /// agree (exit 1 if not).
    Verify(ClusterArgs),
}

/// `x700 cluster add-node`.
#[derive(Args, Debug)]
pub struct ClusterAddNodeArgs {
    /// Common options.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The new member, ID=RAFT_ADDR=CLIENT_ADDR (a new id: ids are never
    /// reused).
    #[arg(long = "member", value_name = "ID=RAFT_ADDR=CLIENT_ADDR")]
    pub member: String,
}

/// `x700 cluster remove-node`.
#[derive(Args, Debug)]
pub struct ClusterRemoveNodeArgs {
    /// Common options.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The member to remove.
    #[arg(long, value_name = "ID")]
    pub node_id: u64,
}

/// Options of every cluster command.
#[derive(Args, Debug)]
pub struct ClusterArgs {
    /// A member's TCP (client) address.
    #[arg(long, value_name = "ADDR")]
    pub server: String,
    /// An admin credential (empty: protected mode, loopback only).
    #[arg(long, value_name = "T", default_value = "")]
    pub token: String,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `x700 cluster init`.
#[derive(Args, Debug)]
pub struct ClusterInitArgs {
    /// Common options.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// A first member, ID=RAFT_ADDR=CLIENT_ADDR (repeat for each).
    #[arg(
        long = "member",
        value_name = "ID=RAFT_ADDR=CLIENT_ADDR",
        required = true
    )]
    pub members: Vec<String>,
}
