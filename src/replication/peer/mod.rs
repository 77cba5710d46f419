//! The transport between nodes: Raft's messages over TCP on the node's raft
//! address, in x700's own framing (docs/PROTOCOL.md part 2). Layers, from
//! the bytes up:
//!
//! - `frame`: the 16-byte header, splitting a stream into frames (pure);
//! - `codec`: each message's body, encoded and decoded (pure);
//! - `handshake`: the mutual challenge-response over the cluster secret
//!   (pure);
//! - `client`: `PeerNetwork`, openraft's network factory: one TCP
//!   connection per peer, requests serialised on it, reconnected on demand;
//! - `server`: `PeerServer`, which accepts peers on the raft address,
//!   checks the handshake and hands each request to openraft;
//! - `snapshot_in`: a snapshot from the leader, received, checked and
//!   staged before openraft installs it.
//!
//! A peer that fails the handshake (wrong secret, other cluster, our own
//! node id) is refused, counted in `PeerStats` and logged with its address,
//! at most one line per `REFUSAL_LOG_INTERVAL`.

pub mod client;
pub mod codec;
pub mod frame;
pub mod handshake;
pub mod server;
pub mod snapshot_in;

pub use client::PeerNetwork;
pub use handshake::ClusterSecret;
pub use server::PeerServer;

use openraft::BasicNode;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How a node takes part in a cluster of several.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// The cluster's id: both sides of a connection must name the same.
    pub cluster_id: u64,
    /// The cluster secret every member holds.
    pub secret: ClusterSecret,
    /// Where this node listens for peers (its raft address; port 0 picks
    /// one, see `Replica::raft_addr`).
    pub listen: SocketAddr,
}

/// A member of the cluster as `Replica::initialize` and the membership
/// entries know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its node id (never reused).
    pub id: u64,
    /// Where its peers reach it.
    pub raft_addr: String,
    /// Where clients reach it (empty if unknown).
    pub client_addr: String,
}

impl Member {
    /// The node openraft stores for this member: `addr` is
    /// `"raft_addr|client_addr"`, or the raft address alone when the
    /// client address is empty.
    pub fn node(&self) -> BasicNode {
        if self.client_addr.is_empty() {
            BasicNode::new(&self.raft_addr)
        } else {
            BasicNode::new(format!("{}|{}", self.raft_addr, self.client_addr))
        }
    }

    /// The member behind an openraft node.
    pub fn of(id: u64, node: &BasicNode) -> Member {
        let (raft_addr, client_addr) = node.addr.split_once('|').unwrap_or((&node.addr, ""));
        Member {
            id,
            raft_addr: raft_addr.to_string(),
            client_addr: client_addr.to_string(),
        }
    }
}

/// Counters of the transport, for metrics.
#[derive(Debug, Default)]
pub struct PeerStats {
    /// Handshakes this node refused (a peer without the secret, of another
    /// cluster, or claiming our id).
    pub refused_in: AtomicU64,
    /// Handshakes that failed when this node connected (refused by the peer,
    /// or the peer failed our check).
    pub refused_out: AtomicU64,
    /// Connections this node opened to peers, handshake done.
    pub connected_out: AtomicU64,
    /// Connections peers opened to this node, handshake done.
    pub connected_in: AtomicU64,
    /// Requests to peers that failed (unreachable, timed out, closed).
    pub request_failures: AtomicU64,
    /// The last append (entries or heartbeat) a leader sent here that was
    /// not refused for its term: when, and the leader's commit index then.
    pub leader_contact: Mutex<Option<LeaderContact>>,
}

/// A leader's append as a follower last received it (`PeerStats`).
#[derive(Clone, Copy, Debug)]
pub struct LeaderContact {
    /// When it arrived.
    pub at: Instant,
    /// The leader's commit index it carried (0: nothing committed yet).
    pub commit_index: u64,
}

impl PeerStats {
    /// Notes an append from the leader, committed up to `commit_index`.
    pub fn leader_contacted(&self, commit_index: u64) {
        if let Ok(mut contact) = self.leader_contact.lock() {
            *contact = Some(LeaderContact {
                at: Instant::now(),
                commit_index,
            });
        }
    }

    /// The last append from a leader, if any arrived since start.
    pub fn leader_contact(&self) -> Option<LeaderContact> {
        self.leader_contact.lock().ok().and_then(|contact| *contact)
    }
}

/// At most one refusal line per this interval; the next line says how many
/// were not logged.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Logs refusals, rate-limited.
#[derive(Debug, Default)]
pub struct RefusalLog {
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl RefusalLog {
    /// Logs that `peer` was refused because of `reason`, unless a line was
    /// logged less than `REFUSAL_LOG_INTERVAL` ago.
    pub fn refused(&self, direction: &str, peer: SocketAddr, reason: &dyn std::fmt::Display) {
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < REFUSAL_LOG_INTERVAL) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last = Some(now);
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        let more = if suppressed > 0 {
            format!(" ({suppressed} more refusals not logged)")
        } else {
            String::new()
        };
        eprintln!("x700: peer {peer} refused ({direction}): {reason}{more}");
    }
}

/// Reads one whole frame from `stream`: header and body.
pub(crate) async fn read_frame<R: tokio::io::AsyncRead + Unpin>(
    stream: &mut R,
) -> std::io::Result<(frame::Header, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; frame::HEADER_BYTES];
    stream.read_exact(&mut head).await?;
    let header = frame::decode_header(&head)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
    let mut body = vec![0u8; header.length as usize - frame::HEADER_BYTES];
    stream.read_exact(&mut body).await?;
    Ok((header, body))
}
