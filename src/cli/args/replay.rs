//! Arguments of `x700 replay`: a capture's requests sent again to a
//! server, its answers compared with the captured ones.

use clap::Args;
use std::path::PathBuf;

/// `x700 replay CAPTURE --server ADDR`.
#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The capture file (pcap or pcapng, from tcpdump, tshark or a node).
    #[arg(value_name = "CAPTURE")]
    pub capture: PathBuf,
    /// The server to replay to.
    #[arg(long, value_name = "ADDR")]
    pub server: std::net::SocketAddr,
    /// Where captured UDP lookups go (default: the `--server` address).
    #[arg(long, value_name = "ADDR")]
    pub udp: Option<std::net::SocketAddr>,
    /// The captured server's port: the side of a connection that uses it
    /// is the server.
    #[arg(long, value_name = "P", default_value_t = crate::capture::SERVER_PORT_DEFAULT)]
    pub port: u16,
    /// 1: the captured timing; N: N times faster; max: as fast as the
    /// server answers.
    #[arg(long, value_name = "1|N|max", default_value = "1")]
    pub speed: String,
    /// The credential every replayed HELLO carries (the captured ones are
    /// not reused).
    #[arg(long, value_name = "T")]
    pub token: Option<String>,
    /// A TOML file of credentials by role (`switch = "..."`, `platform =
    /// "..."`, `admin = "..."`); a role it lacks uses `--token`.
    #[arg(long, value_name = "FILE")]
    pub tokens: Option<PathBuf>,
    /// Compare binding ids, seconds left and expiry times too. Binding
    /// ids are compared through the ids learned from the replayed BIND
    /// answers (a fresh node gives other ids than the captured one).
    #[arg(long)]
    pub exact: bool,
    /// Replay only these: `opcode=lookup,bind_axb` or `conn=0,2`
    /// (connection numbers as `x700 decode` prints them); repeatable.
    #[arg(long, value_name = "KEY=VALUES")]
    pub filter: Vec<String>,
    /// Write the full report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}
