//! The messages between nodes and their bodies (docs/PROTOCOL.md part 2):
//! pure encoders and decoders over bytes. Every field is fixed-width
//! little-endian; variable parts (entries, addresses, snapshot bytes) carry
//! their length in front. Decoders are strict (reserved bytes zero, lists in
//! order, nothing left over) so that a body re-encodes to the same bytes,
//! and they never panic: any input is a message or a `DecodeError`.

use super::frame::{push_header, Header, Kind, ENTRIES_PER_APPEND_MAX, FRAME_BYTES_MAX};
use crate::replication::batch::WriteBatch;
use crate::replication::types::TypeConfig;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::SnapshotMeta;
use openraft::{
    BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, StoredMembership, Vote,
};
use std::collections::{BTreeMap, BTreeSet};

/// Version of the protocol between nodes, sent in HELLO.
pub const PEER_VERSION: u16 = 1;
/// Bytes of a handshake nonce and of a proof (HMAC-SHA256).
pub const NONCE_BYTES: usize = 32;
/// Most nodes a membership lists, and most voters in one of its configs.
pub const MEMBERS_MAX: usize = 64;
/// Longest raft or client address in a membership, in bytes.
pub const ADDRESS_BYTES_MAX: usize = 255;
/// Longest snapshot id, in bytes.
pub const SNAPSHOT_ID_BYTES_MAX: usize = 255;
/// Longest message of an ERROR answer, in bytes.
pub const ERROR_MESSAGE_BYTES_MAX: usize = 1024;

/// Bytes of an encoded vote.
const VOTE_BYTES: usize = 24;
/// Bytes of an encoded optional log id.
const LOG_ID_BYTES: usize = 32;
/// Bytes of an entry's header in APPEND_ENTRIES.
const ENTRY_HEADER_BYTES: usize = 32;
/// Bytes of an APPEND_ENTRIES body before its entries.
const APPEND_FIXED_BYTES: usize = VOTE_BYTES + 2 * LOG_ID_BYTES + 8;

/// The first handshake message, from the connecting node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// `PEER_VERSION` of the sender.
    pub version: u16,
    /// The cluster the sender belongs to.
    pub cluster_id: u64,
    /// The sender's node id.
    pub node_id: u64,
    /// The node id the sender means to reach.
    pub target_id: u64,
    /// The sender's random challenge.
    pub nonce: [u8; NONCE_BYTES],
}

/// The accepting node's answer to HELLO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelloAnswer {
    /// `PEER_VERSION` of the answerer.
    pub version: u16,
    /// The cluster the answerer belongs to.
    pub cluster_id: u64,
    /// The answerer's node id.
    pub node_id: u64,
    /// The answerer's random challenge.
    pub nonce: [u8; NONCE_BYTES],
}

/// Why a request was not served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    /// The handshake failed: wrong secret, cluster, node id or version.
    Refused = 1,
    /// The request could not be decoded.
    Malformed = 2,
    /// The node's Raft has stopped.
    Stopped = 3,
    /// The node cannot serve this request (a snapshot it cannot install).
    Unsupported = 4,
}

impl ErrorCode {
    fn from_code(code: u16) -> Option<ErrorCode> {
        Some(match code {
            1 => ErrorCode::Refused,
            2 => ErrorCode::Malformed,
            3 => ErrorCode::Stopped,
            4 => ErrorCode::Unsupported,
            _ => return None,
        })
    }
}

/// An ERROR answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorAnswer {
    /// What went wrong.
    pub code: ErrorCode,
    /// For the operator's log; at most `ERROR_MESSAGE_BYTES_MAX` bytes.
    pub message: String,
}

/// Every message between nodes.
#[derive(Debug)]
pub enum Message {
    /// Handshake, first step.
    Hello(Hello),
    /// Handshake, the accepting node's answer.
    HelloAnswer(HelloAnswer),
    /// Handshake, the connecting node's proof.
    Proof([u8; NONCE_BYTES]),
    /// Handshake done: the accepting node's proof.
    Welcome([u8; NONCE_BYTES]),
    /// VOTE request.
    Vote(VoteRequest<u64>),
    /// VOTE answer.
    VoteAnswer(VoteResponse<u64>),
    /// APPEND_ENTRIES request.
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// APPEND_ENTRIES answer.
    AppendEntriesAnswer(AppendEntriesResponse<u64>),
    /// INSTALL_SNAPSHOT request (one chunk).
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// INSTALL_SNAPSHOT answer.
    InstallSnapshotAnswer(InstallSnapshotResponse<u64>),
    /// ERROR answer.
    Error(ErrorAnswer),
}

impl Message {
    /// The frame kind this message travels as.
    pub fn kind(&self) -> Kind {
        match self {
            Message::Hello(_) => Kind::Hello,
            Message::HelloAnswer(_) => Kind::HelloAnswer,
            Message::Proof(_) => Kind::Proof,
            Message::Welcome(_) => Kind::Welcome,
            Message::Vote(_) => Kind::Vote,
            Message::VoteAnswer(_) => Kind::VoteAnswer,
            Message::AppendEntries(_) => Kind::AppendEntries,
            Message::AppendEntriesAnswer(_) => Kind::AppendEntriesAnswer,
            Message::InstallSnapshot(_) => Kind::InstallSnapshot,
            Message::InstallSnapshotAnswer(_) => Kind::InstallSnapshotAnswer,
            Message::Error(_) => Kind::Error,
        }
    }
}

/// A body that is not a valid message of its kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("peer message: {0}")]
pub struct DecodeError(pub &'static str);

/// A message too large for one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("peer message over {FRAME_BYTES_MAX} bytes; {entries_fit} entries would fit")]
pub struct TooLarge {
    /// For APPEND_ENTRIES: how many of the first entries fit in one frame
    /// (at least 1); 0 for other messages.
    pub entries_fit: u64,
}

/// Encodes `message` as a whole frame answering or asking `request_id`.
pub fn encode(message: &Message, request_id: u64) -> Result<Vec<u8>, TooLarge> {
    let mut body = Vec::new();
    match message {
        Message::Hello(hello) => {
            push_version(&mut body, hello.version);
            body.extend_from_slice(&hello.cluster_id.to_le_bytes());
            body.extend_from_slice(&hello.node_id.to_le_bytes());
            body.extend_from_slice(&hello.target_id.to_le_bytes());
            body.extend_from_slice(&hello.nonce);
        }
        Message::HelloAnswer(answer) => {
            push_version(&mut body, answer.version);
            body.extend_from_slice(&answer.cluster_id.to_le_bytes());
            body.extend_from_slice(&answer.node_id.to_le_bytes());
            body.extend_from_slice(&answer.nonce);
        }
        Message::Proof(proof) | Message::Welcome(proof) => body.extend_from_slice(proof),
        Message::Vote(request) => {
            push_vote(&mut body, &request.vote);
            push_log_id(&mut body, request.last_log_id.as_ref());
        }
        Message::VoteAnswer(answer) => {
            push_vote(&mut body, &answer.vote);
            body.push(u8::from(answer.vote_granted));
            body.extend_from_slice(&[0; 7]);
            push_log_id(&mut body, answer.last_log_id.as_ref());
        }
        Message::AppendEntries(request) => return encode_append(request, request_id),
        Message::AppendEntriesAnswer(answer) => {
            let (result, log_id, vote) = match answer {
                AppendEntriesResponse::Success => (0u8, None, None),
                AppendEntriesResponse::PartialSuccess(log_id) => (1, log_id.as_ref(), None),
                AppendEntriesResponse::Conflict => (2, None, None),
                AppendEntriesResponse::HigherVote(vote) => (3, None, Some(vote)),
            };
            body.push(result);
            body.extend_from_slice(&[0; 7]);
            push_log_id(&mut body, log_id);
            match vote {
                Some(vote) => push_vote(&mut body, vote),
                None => body.extend_from_slice(&[0; VOTE_BYTES]),
            }
        }
        Message::InstallSnapshot(request) => {
            let id = request.meta.snapshot_id.as_bytes();
            if id.len() > SNAPSHOT_ID_BYTES_MAX {
                return Err(TooLarge { entries_fit: 0 });
            }
            push_vote(&mut body, &request.vote);
            push_log_id(&mut body, request.meta.last_log_id.as_ref());
            push_log_id(&mut body, request.meta.last_membership.log_id().as_ref());
            body.extend_from_slice(&request.offset.to_le_bytes());
            body.push(u8::from(request.done));
            body.extend_from_slice(&[0; 3]);
            body.extend_from_slice(&len_u32(id.len()).to_le_bytes());
            body.extend_from_slice(&len_u32(request.data.len()).to_le_bytes());
            body.extend_from_slice(&[0; 4]);
            body.extend_from_slice(id);
            body.extend_from_slice(&request.data);
            push_membership(&mut body, request.meta.last_membership.membership())
                .map_err(|_| TooLarge { entries_fit: 0 })?;
        }
        Message::InstallSnapshotAnswer(answer) => push_vote(&mut body, &answer.vote),
        Message::Error(error) => {
            let mut end = error.message.len().min(ERROR_MESSAGE_BYTES_MAX);
            while !error.message.is_char_boundary(end) {
                end -= 1;
            }
            body.extend_from_slice(&(error.code as u16).to_le_bytes());
            body.extend_from_slice(&[0; 2]);
            body.extend_from_slice(&len_u32(end).to_le_bytes());
            body.extend_from_slice(&error.message.as_bytes()[..end]);
        }
    }
    frame_of(message.kind(), request_id, &body)
}

fn frame_of(kind: Kind, request_id: u64, body: &[u8]) -> Result<Vec<u8>, TooLarge> {
    if super::frame::HEADER_BYTES + body.len() > FRAME_BYTES_MAX {
        return Err(TooLarge { entries_fit: 0 });
    }
    let mut out = Vec::with_capacity(super::frame::HEADER_BYTES + body.len());
    push_header(&mut out, kind, request_id, body.len());
    out.extend_from_slice(body);
    Ok(out)
}

/// Lengths here are bounded by `FRAME_BYTES_MAX` (16 MiB) before they are
/// written, so they fit a `u32`.
fn len_u32(length: usize) -> u32 {
    u32::try_from(length).unwrap_or(u32::MAX)
}

fn encode_append(
    request: &AppendEntriesRequest<TypeConfig>,
    request_id: u64,
) -> Result<Vec<u8>, TooLarge> {
    let mut body = Vec::new();
    push_vote(&mut body, &request.vote);
    push_log_id(&mut body, request.prev_log_id.as_ref());
    push_log_id(&mut body, request.leader_commit.as_ref());
    body.extend_from_slice(&len_u32(request.entries.len()).to_le_bytes());
    body.extend_from_slice(&[0; 4]);
    debug_assert_eq!(body.len(), APPEND_FIXED_BYTES);
    for (count, entry) in request.entries.iter().enumerate() {
        let too_large = TooLarge {
            entries_fit: (count as u64).max(1),
        };
        if count >= ENTRIES_PER_APPEND_MAX {
            return Err(too_large);
        }
        let (kind, payload) = match &entry.payload {
            EntryPayload::Blank => (0u8, Vec::new()),
            EntryPayload::Normal(batch) => (1, batch.encode()),
            EntryPayload::Membership(membership) => {
                let mut bytes = Vec::new();
                push_membership(&mut bytes, membership).map_err(|_| too_large)?;
                (2, bytes)
            }
        };
        if super::frame::HEADER_BYTES + body.len() + ENTRY_HEADER_BYTES + payload.len()
            > FRAME_BYTES_MAX
        {
            return Err(too_large);
        }
        push_log_id_fields(&mut body, &entry.log_id);
        body.push(kind);
        body.extend_from_slice(&[0; 3]);
        body.extend_from_slice(&len_u32(payload.len()).to_le_bytes());
        body.extend_from_slice(&payload);
    }
    frame_of(Kind::AppendEntries, request_id, &body)
}

fn push_version(out: &mut Vec<u8>, version: u16) {
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&[0; 6]);
}

fn push_vote(out: &mut Vec<u8>, vote: &Vote<u64>) {
    out.extend_from_slice(&vote.leader_id.term.to_le_bytes());
    out.extend_from_slice(&vote.leader_id.node_id.to_le_bytes());
    out.push(u8::from(vote.committed));
    out.extend_from_slice(&[0; 7]);
}

fn push_log_id_fields(out: &mut Vec<u8>, log_id: &LogId<u64>) {
    out.extend_from_slice(&log_id.leader_id.term.to_le_bytes());
    out.extend_from_slice(&log_id.leader_id.node_id.to_le_bytes());
    out.extend_from_slice(&log_id.index.to_le_bytes());
}

fn push_log_id(out: &mut Vec<u8>, log_id: Option<&LogId<u64>>) {
    match log_id {
        Some(log_id) => {
            out.push(1);
            out.extend_from_slice(&[0; 7]);
            push_log_id_fields(out, log_id);
        }
        None => out.extend_from_slice(&[0; LOG_ID_BYTES]),
    }
}

/// Encodes a membership: its configs (voter ids), then every node with
/// its raft and client addresses (a node no config names is a learner).
/// Fails (`TooLarge`) if it has more than `MEMBERS_MAX` nodes or voters, more than two
/// configs, or an address over `ADDRESS_BYTES_MAX`.
pub fn push_membership(
    out: &mut Vec<u8>,
    membership: &Membership<u64, BasicNode>,
) -> Result<(), TooLarge> {
    let over = TooLarge { entries_fit: 0 };
    let configs = membership.get_joint_config();
    let nodes: Vec<_> = membership.nodes().collect();
    if configs.len() > 2 || nodes.len() > MEMBERS_MAX {
        return Err(over);
    }
    out.push(u8::try_from(configs.len()).map_err(|_| over)?);
    out.push(0);
    out.extend_from_slice(&u16::try_from(nodes.len()).map_err(|_| over)?.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    for config in configs {
        if config.len() > MEMBERS_MAX {
            return Err(over);
        }
        out.extend_from_slice(&u16::try_from(config.len()).map_err(|_| over)?.to_le_bytes());
        out.extend_from_slice(&[0; 6]);
        for id in config {
            out.extend_from_slice(&id.to_le_bytes());
        }
    }
    for (id, node) in nodes {
        let (raft, client, flags) = match node.addr.split_once('|') {
            Some((raft, client)) => (raft, client, 1u8),
            None => (node.addr.as_str(), "", 0u8),
        };
        if raft.len() > ADDRESS_BYTES_MAX || client.len() > ADDRESS_BYTES_MAX {
            return Err(over);
        }
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&u16::try_from(raft.len()).map_err(|_| over)?.to_le_bytes());
        out.extend_from_slice(&u16::try_from(client.len()).map_err(|_| over)?.to_le_bytes());
        out.push(flags);
        out.extend_from_slice(&[0; 3]);
        out.extend_from_slice(raft.as_bytes());
        out.extend_from_slice(client.as_bytes());
    }
    Ok(())
}

/// Reads fields off a body, front to back.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < count {
            return Err(DecodeError(what));
        }
        let (head, rest) = self.bytes.split_at(count);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn zeros(&mut self, count: usize) -> Result<(), DecodeError> {
        if self.take(count, "truncated")?.iter().any(|&b| b != 0) {
            return Err(DecodeError("reserved bytes not zero"));
        }
        Ok(())
    }

    fn flag(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError(what)),
        }
    }

    fn text(&mut self, count: usize, what: &'static str) -> Result<String, DecodeError> {
        std::str::from_utf8(self.take(count, what)?)
            .map(str::to_string)
            .map_err(|_| DecodeError(what))
    }

    fn finish(&self) -> Result<(), DecodeError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(DecodeError("bytes after the message"))
        }
    }

    fn version(&mut self) -> Result<u16, DecodeError> {
        let version = self.u16("version")?;
        self.zeros(6)?;
        Ok(version)
    }

    fn vote(&mut self) -> Result<Vote<u64>, DecodeError> {
        let term = self.u64("vote term")?;
        let node = self.u64("vote node")?;
        let committed = self.flag("vote committed flag")?;
        self.zeros(7)?;
        Ok(if committed {
            Vote::new_committed(term, node)
        } else {
            Vote::new(term, node)
        })
    }

    fn log_id_fields(&mut self) -> Result<LogId<u64>, DecodeError> {
        let term = self.u64("log id term")?;
        let leader = self.u64("log id leader")?;
        let index = self.u64("log id index")?;
        Ok(LogId::new(CommittedLeaderId::new(term, leader), index))
    }

    fn log_id(&mut self) -> Result<Option<LogId<u64>>, DecodeError> {
        if self.flag("log id present flag")? {
            self.zeros(7)?;
            self.log_id_fields().map(Some)
        } else {
            self.zeros(LOG_ID_BYTES - 1)?;
            Ok(None)
        }
    }

    fn membership(&mut self) -> Result<Membership<u64, BasicNode>, DecodeError> {
        let config_count = self.u8("membership config count")?;
        self.zeros(1)?;
        let node_count = usize::from(self.u16("membership node count")?);
        self.zeros(4)?;
        if config_count > 2 || node_count > MEMBERS_MAX {
            return Err(DecodeError("membership over its bounds"));
        }
        let mut configs = Vec::new();
        for _ in 0..config_count {
            let voter_count = usize::from(self.u16("voter count")?);
            self.zeros(6)?;
            if voter_count > MEMBERS_MAX {
                return Err(DecodeError("membership over its bounds"));
            }
            let mut voters = BTreeSet::new();
            let mut previous = None;
            for _ in 0..voter_count {
                let id = self.u64("voter id")?;
                if previous.is_some_and(|p| p >= id) {
                    return Err(DecodeError("voter ids not in increasing order"));
                }
                previous = Some(id);
                voters.insert(id);
            }
            configs.push(voters);
        }
        let mut nodes = BTreeMap::new();
        let mut previous = None;
        for _ in 0..node_count {
            let id = self.u64("node id")?;
            let raft_bytes = usize::from(self.u16("raft address length")?);
            let client_bytes = usize::from(self.u16("client address length")?);
            let has_client = self.flag("node flags")?;
            self.zeros(3)?;
            if previous.is_some_and(|p| p >= id) {
                return Err(DecodeError("node ids not in increasing order"));
            }
            previous = Some(id);
            if raft_bytes > ADDRESS_BYTES_MAX || client_bytes > ADDRESS_BYTES_MAX {
                return Err(DecodeError("address too long"));
            }
            let raft = self.text(raft_bytes, "raft address")?;
            let client = self.text(client_bytes, "client address")?;
            if raft.contains('|') || (!has_client && !client.is_empty()) {
                return Err(DecodeError("address fields inconsistent"));
            }
            let addr = if has_client {
                format!("{raft}|{client}")
            } else {
                raft
            };
            nodes.insert(id, BasicNode { addr });
        }
        if configs.iter().flatten().any(|id| !nodes.contains_key(id)) {
            return Err(DecodeError("a voter is not among the nodes"));
        }
        Ok(Membership::new(configs, nodes))
    }
}

/// Decodes the body of a frame whose header is `header`.
pub fn decode(header: &Header, body: &[u8]) -> Result<Message, DecodeError> {
    let mut r = Reader { bytes: body };
    let message = match header.kind {
        Kind::Hello => Message::Hello(Hello {
            version: r.version()?,
            cluster_id: r.u64("cluster id")?,
            node_id: r.u64("node id")?,
            target_id: r.u64("target node id")?,
            nonce: r.array("nonce")?,
        }),
        Kind::HelloAnswer => Message::HelloAnswer(HelloAnswer {
            version: r.version()?,
            cluster_id: r.u64("cluster id")?,
            node_id: r.u64("node id")?,
            nonce: r.array("nonce")?,
        }),
        Kind::Proof => Message::Proof(r.array("proof")?),
        Kind::Welcome => Message::Welcome(r.array("proof")?),
        Kind::Vote => Message::Vote(VoteRequest {
            vote: r.vote()?,
            last_log_id: r.log_id()?,
        }),
        Kind::VoteAnswer => {
            let vote = r.vote()?;
            let vote_granted = r.flag("granted flag")?;
            r.zeros(7)?;
            Message::VoteAnswer(VoteResponse {
                vote,
                vote_granted,
                last_log_id: r.log_id()?,
            })
        }
        Kind::AppendEntries => Message::AppendEntries(decode_append(&mut r)?),
        Kind::AppendEntriesAnswer => {
            let result = r.u8("append result")?;
            r.zeros(7)?;
            let log_id = r.log_id()?;
            let answer = match result {
                0 | 2 => {
                    if log_id.is_some() {
                        return Err(DecodeError("log id in an answer that has none"));
                    }
                    r.zeros(VOTE_BYTES)?;
                    if result == 0 {
                        AppendEntriesResponse::Success
                    } else {
                        AppendEntriesResponse::Conflict
                    }
                }
                1 => {
                    r.zeros(VOTE_BYTES)?;
                    AppendEntriesResponse::PartialSuccess(log_id)
                }
                3 => {
                    if log_id.is_some() {
                        return Err(DecodeError("log id in an answer that has none"));
                    }
                    AppendEntriesResponse::HigherVote(r.vote()?)
                }
                _ => return Err(DecodeError("append result unknown")),
            };
            Message::AppendEntriesAnswer(answer)
        }
        Kind::InstallSnapshot => {
            let vote = r.vote()?;
            let last_log_id = r.log_id()?;
            let membership_log_id = r.log_id()?;
            let offset = r.u64("snapshot offset")?;
            let done = r.flag("snapshot done flag")?;
            r.zeros(3)?;
            let id_bytes = r.u32("snapshot id length")? as usize;
            let data_bytes = r.u32("snapshot data length")? as usize;
            r.zeros(4)?;
            if id_bytes > SNAPSHOT_ID_BYTES_MAX {
                return Err(DecodeError("snapshot id too long"));
            }
            let snapshot_id = r.text(id_bytes, "snapshot id")?;
            let data = r.take(data_bytes, "snapshot data")?.to_vec();
            let membership = r.membership()?;
            Message::InstallSnapshot(InstallSnapshotRequest {
                vote,
                meta: SnapshotMeta {
                    last_log_id,
                    last_membership: StoredMembership::new(membership_log_id, membership),
                    snapshot_id,
                },
                offset,
                data,
                done,
            })
        }
        Kind::InstallSnapshotAnswer => {
            Message::InstallSnapshotAnswer(InstallSnapshotResponse { vote: r.vote()? })
        }
        Kind::Error => {
            let code = ErrorCode::from_code(r.u16("error code")?)
                .ok_or(DecodeError("error code unknown"))?;
            r.zeros(2)?;
            let length = r.u32("error message length")? as usize;
            if length > ERROR_MESSAGE_BYTES_MAX {
                return Err(DecodeError("error message too long"));
            }
            Message::Error(ErrorAnswer {
                code,
                message: r.text(length, "error message")?,
            })
        }
    };
    r.finish()?;
    Ok(message)
}

fn decode_append(r: &mut Reader<'_>) -> Result<AppendEntriesRequest<TypeConfig>, DecodeError> {
    let vote = r.vote()?;
    let prev_log_id = r.log_id()?;
    let leader_commit = r.log_id()?;
    let count = r.u32("entry count")? as usize;
    r.zeros(4)?;
    if count > ENTRIES_PER_APPEND_MAX {
        return Err(DecodeError("too many entries"));
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let log_id = r.log_id_fields()?;
        let kind = r.u8("entry kind")?;
        r.zeros(3)?;
        let length = r.u32("entry payload length")? as usize;
        let payload = r.take(length, "entry payload")?;
        let payload = match kind {
            0 if payload.is_empty() => EntryPayload::Blank,
            0 => return Err(DecodeError("blank entry with a payload")),
            1 => EntryPayload::Normal(
                WriteBatch::decode(payload).ok_or(DecodeError("malformed write batch"))?,
            ),
            2 => {
                let mut inner = Reader { bytes: payload };
                let membership = inner.membership()?;
                inner.finish()?;
                EntryPayload::Membership(membership)
            }
            _ => return Err(DecodeError("entry kind unknown")),
        };
        entries.push(Entry { log_id, payload });
    }
    Ok(AppendEntriesRequest {
        vote,
        prev_log_id,
        leader_commit,
        entries,
    })
}
