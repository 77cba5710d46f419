//! What event loops send each other: batches of requests for shards the
//! receiver owns, and batches of answers going back. Queues are bounded
//! (`limits.queue_batches_max`); a full queue answers BUSY.

use super::auth::Access;
use super::dispatch::Op;

/// Where an answer must go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A TCP connection: slab token and generation.
    Tcp {
        /// Slab key of the connection.
        token: u32,
        /// Its generation.
        generation: u32,
    },
    /// A slot of a UDP datagram being answered.
    Udp {
        /// Slab key of the pending datagram.
        datagram: u32,
        /// Position of the lookup in the datagram.
        slot: u16,
    },
    /// An ENUM query (UDP or TCP) waiting for its lookup.
    Enum {
        /// Slab key of the pending query (`worker::enum_dns`).
        query: u32,
    },
    /// A SIP request waiting for its lookup (`worker::sip`).
    Sip {
        /// Slab key of the pending request.
        pending: u32,
    },
}

/// One forwarded request.
#[derive(Clone, Debug)]
pub struct WorkItem {
    /// Where the answer goes.
    pub origin: Origin,
    /// The client's request id.
    pub request_id: u32,
    /// The checked request.
    pub op: Op,
    /// The session's tenant scope (writes).
    pub access: Access,
}

/// A message between event loops.
pub enum Message {
    /// Requests for the receiver's shards, from event loop `from`.
    Work {
        /// Sender's index.
        from: usize,
        /// The requests, in the order they were read.
        items: Vec<WorkItem>,
    },
    /// Committed write batches to apply to the receiver's shards.
    Apply {
        /// (log index, batch), in log order.
        batches: std::sync::Arc<Vec<(u64, crate::replication::WriteBatch)>>,
        /// Gets the receiver's answers, one part per batch.
        reply: tokio::sync::oneshot::Sender<Vec<super::apply::PartialAnswers>>,
    },
    /// Capture the receiver's shards for a checkpoint.
    Capture {
        /// Log index after the last applied entry.
        applied_next: u64,
        /// Gets the images.
        reply:
            tokio::sync::oneshot::Sender<Result<Vec<crate::table::checkpoint::ShardImage>, String>>,
    },
    /// Replace the receiver's shards by their copies staged in the
    /// directory (a snapshot from the leader: `ShardSet::swap_in`).
    SwapIn {
        /// The staging directory, inside the data directory.
        staging: std::sync::Arc<std::path::PathBuf>,
        /// Gets the outcome.
        reply: tokio::sync::oneshot::Sender<Result<(), String>>,
    },
    /// Checksum the receiver's shards for `cluster verify`.
    Checksum {
        /// Gets one part per owned shard.
        reply: tokio::sync::oneshot::Sender<Vec<crate::store::checksum::ShardSum>>,
    },
    /// A connection another loop accepted, for this loop to serve
    /// (already counted node-wide and per source).
    Adopt {
        /// The socket.
        stream: mio::net::TcpStream,
        /// The peer's address.
        peer: std::net::SocketAddr,
    },
    /// Answers to writes (from the log): `frames[start..end]` goes to
    /// `origin`, and each connection has one write less pending.
    Written {
        /// Destinations and byte ranges.
        items: Vec<(Origin, u32, u32)>,
        /// The answer frames, back to back.
        frames: Vec<u8>,
    },
    /// Answers: `frames[start..end]` goes to `origin`.
    Done {
        /// Destinations and byte ranges.
        items: Vec<(Origin, u32, u32)>,
        /// The answer frames, back to back.
        frames: Vec<u8>,
    },
}
