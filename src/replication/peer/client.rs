//! `PeerNetwork`: openraft's network over TCP. openraft asks for a client
//! per target (one per replication stream, one per election); every client
//! of one target shares one `Link`, so a node holds one connection per peer.
//! Requests on a link are serialised: a request holds the link's connection
//! until its answer arrives or its time (`RPCOption::soft_ttl`) runs out.
//! A connection that failed or timed out mid-request is dropped (its stream
//! position is unknown) and the next request connects again, handshake
//! first.
//!
//! Failures map to openraft's errors so it paces itself: a peer that cannot
//! be connected to, refuses the handshake or whose Raft has stopped is
//! `Unreachable` (openraft backs off); a request that timed out or lost its
//! connection is a `Network` error (openraft retries at once, so a live
//! follower keeps its heartbeats); an APPEND_ENTRIES over `FRAME_BYTES_MAX`
//! is `PayloadTooLarge` with the number of entries that fit.

use super::codec::{self, Hello, Message, PEER_VERSION};
use super::frame::Kind;
use super::handshake::{self, Role};
use super::{read_frame, PeerConfig, PeerStats, RefusalLog};
use crate::replication::types::TypeConfig;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Longest a connection plus handshake may take, whatever the request's
/// own time allows.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Most peers one node keeps links to (a membership holds at most
/// `codec::MEMBERS_MAX` nodes).
const LINKS_MAX: usize = codec::MEMBERS_MAX;

/// The network factory openraft is given on a node with peers.
#[derive(Clone)]
pub struct PeerNetwork {
    shared: Arc<Shared>,
}

struct Shared {
    own_id: u64,
    config: PeerConfig,
    stats: Arc<PeerStats>,
    refusals: Arc<RefusalLog>,
    links: Mutex<HashMap<u64, Arc<Link>>>,
}

/// One peer: its connection (if open) and the request id counter.
struct Link {
    target: u64,
    connection: tokio::sync::Mutex<Option<Connection>>,
    request_ids: AtomicU64,
}

struct Connection {
    raft_addr: String,
    stream: TcpStream,
}

impl PeerNetwork {
    /// A network for node `own_id` of the cluster `config` describes.
    pub fn new(
        own_id: u64,
        config: PeerConfig,
        stats: Arc<PeerStats>,
        refusals: Arc<RefusalLog>,
    ) -> PeerNetwork {
        PeerNetwork {
            shared: Arc::new(Shared {
                own_id,
                config,
                stats,
                refusals,
                links: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn link(&self, target: u64) -> Arc<Link> {
        let new_link = || {
            Arc::new(Link {
                target,
                connection: tokio::sync::Mutex::new(None),
                request_ids: AtomicU64::new(1),
            })
        };
        let Ok(mut links) = self.shared.links.lock() else {
            return new_link();
        };
        if !links.contains_key(&target) && links.len() >= LINKS_MAX {
            // Members were replaced many times over: forget idle links.
            links.retain(|_, link| Arc::strong_count(link) > 1);
        }
        Arc::clone(links.entry(target).or_insert_with(new_link))
    }
}

/// openraft's client for one target.
pub struct PeerClient {
    shared: Arc<Shared>,
    link: Arc<Link>,
    raft_addr: String,
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerClient {
        let raft_addr = super::Member::of(target, node).raft_addr;
        PeerClient {
            shared: Arc::clone(&self.shared),
            link: self.link(target),
            raft_addr,
        }
    }
}

/// Why a request got no answer.
enum Failure {
    /// Back off: cannot connect, refused, or the peer's Raft stopped.
    Unreachable(String),
    /// Retry: timed out or the connection broke mid-request.
    Network(String),
    /// Split the request: this many entries fit.
    TooLarge(u64),
}

impl Failure {
    fn into_rpc<E: std::error::Error>(self) -> RPCError<u64, BasicNode, E> {
        match self {
            Failure::Unreachable(why) => {
                RPCError::Unreachable(Unreachable::new(&std::io::Error::other(why)))
            }
            Failure::Network(why) => {
                RPCError::Network(NetworkError::new(&std::io::Error::other(why)))
            }
            Failure::TooLarge(entries) => {
                RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(entries))
            }
        }
    }
}

impl PeerClient {
    /// Sends `request` and waits for its answer of kind `answer_kind`.
    async fn call(
        &self,
        request: &Message,
        answer_kind: Kind,
        option: &RPCOption,
    ) -> Result<Message, Failure> {
        let outcome = self.try_call(request, answer_kind, option).await;
        if outcome.is_err() {
            self.shared
                .stats
                .request_failures
                .fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }

    async fn try_call(
        &self,
        request: &Message,
        answer_kind: Kind,
        option: &RPCOption,
    ) -> Result<Message, Failure> {
        if self.link.target == self.shared.own_id {
            return Err(Failure::Unreachable(
                "a node never connects to itself".into(),
            ));
        }
        let request_id = self.link.request_ids.fetch_add(1, Ordering::Relaxed);
        let frame = codec::encode(request, request_id).map_err(|too_large| {
            if too_large.entries_fit > 0 {
                Failure::TooLarge(too_large.entries_fit)
            } else {
                Failure::Unreachable(too_large.to_string())
            }
        })?;
        let ttl = option.soft_ttl();
        let exchange = async {
            let mut slot = self.link.connection.lock().await;
            // Taken out for the request: if it fails or is cancelled midway,
            // it is dropped (closed), never reused at an unknown position.
            let mut connection = match slot.take() {
                Some(c) if c.raft_addr == self.raft_addr => c,
                _ => self.connect().await?,
            };
            let answer = exchange(&mut connection.stream, &frame).await;
            let (header, body) = answer.map_err(|e| {
                Failure::Network(format!(
                    "node {} at {}: {e}",
                    self.link.target, self.raft_addr
                ))
            })?;
            let message = codec::decode(&header, &body)
                .map_err(|e| Failure::Unreachable(format!("node {}: {e}", self.link.target)))?;
            if header.request_id != request_id {
                return Err(Failure::Unreachable(format!(
                    "node {} answered request {} for {request_id}",
                    self.link.target, header.request_id
                )));
            }
            match message {
                Message::Error(error) => Err(Failure::Unreachable(format!(
                    "node {} answered {:?}: {}",
                    self.link.target, error.code, error.message
                ))),
                message if message.kind() == answer_kind => {
                    *slot = Some(connection);
                    Ok(message)
                }
                other => Err(Failure::Unreachable(format!(
                    "node {} answered {:?} to {:?}",
                    self.link.target,
                    other.kind(),
                    request.kind()
                ))),
            }
        };
        match tokio::time::timeout(ttl, exchange).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Failure::Network(format!(
                "node {} at {}: no answer within {ttl:?}",
                self.link.target, self.raft_addr
            ))),
        }
    }

    /// Opens a connection to the target and runs the handshake.
    async fn connect(&self) -> Result<Connection, Failure> {
        let unreachable = |why: String| {
            Failure::Unreachable(format!(
                "node {} at {}: {why}",
                self.link.target, self.raft_addr
            ))
        };
        let connecting = async {
            let stream = TcpStream::connect(&self.raft_addr)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let _ = stream.set_nodelay(true);
            let peer = stream.peer_addr().map_err(|e| unreachable(e.to_string()))?;
            self.handshake(stream, peer).await
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| unreachable(format!("no handshake within {CONNECT_TIMEOUT:?}")))??;
        self.shared
            .stats
            .connected_out
            .fetch_add(1, Ordering::Relaxed);
        Ok(Connection {
            raft_addr: self.raft_addr.clone(),
            stream,
        })
    }

    async fn handshake(
        &self,
        mut stream: TcpStream,
        peer: SocketAddr,
    ) -> Result<TcpStream, Failure> {
        let shared = &self.shared;
        let refused = |reason: String| {
            shared.stats.refused_out.fetch_add(1, Ordering::Relaxed);
            shared.refusals.refused("outgoing", peer, &reason);
            Failure::Unreachable(format!("node {} at {peer}: {reason}", self.link.target))
        };
        let io = |e: std::io::Error| {
            Failure::Unreachable(format!("node {} at {peer}: {e}", self.link.target))
        };
        let hello = Hello {
            version: PEER_VERSION,
            cluster_id: shared.config.cluster_id,
            node_id: shared.own_id,
            target_id: self.link.target,
            nonce: handshake::nonce().map_err(Failure::Unreachable)?,
        };
        let frame = codec::encode(&Message::Hello(hello.clone()), 0)
            .map_err(|e| Failure::Unreachable(e.to_string()))?;
        let (header, body) = exchange(&mut stream, &frame).await.map_err(io)?;
        let answer = match codec::decode(&header, &body) {
            Ok(Message::HelloAnswer(answer)) => answer,
            Ok(Message::Error(error)) => {
                return Err(refused(format!("it refused us: {}", error.message)))
            }
            Ok(other) => return Err(refused(format!("answered {:?} to HELLO", other.kind()))),
            Err(e) => return Err(refused(e.to_string())),
        };
        let transcript = handshake::check_answer(&answer, &hello)
            .map_err(|reason| refused(reason.to_string()))?;
        let proof = handshake::prove(&shared.config.secret, Role::Connecting, &transcript);
        let frame = codec::encode(&Message::Proof(proof), 0)
            .map_err(|e| Failure::Unreachable(e.to_string()))?;
        let (header, body) = exchange(&mut stream, &frame).await.map_err(io)?;
        match codec::decode(&header, &body) {
            Ok(Message::Welcome(proof)) => {
                if handshake::verify(&shared.config.secret, Role::Accepting, &transcript, &proof) {
                    Ok(stream)
                } else {
                    Err(refused(
                        handshake::Refusal::Secret(answer.node_id).to_string(),
                    ))
                }
            }
            Ok(Message::Error(error)) => Err(refused(format!("it refused us: {}", error.message))),
            Ok(other) => Err(refused(format!("answered {:?} to PROOF", other.kind()))),
            Err(e) => Err(refused(e.to_string())),
        }
    }
}

/// Writes one frame and reads one back.
async fn exchange(
    stream: &mut TcpStream,
    frame: &[u8],
) -> std::io::Result<(super::frame::Header, Vec<u8>)> {
    stream.write_all(frame).await?;
    read_frame(stream).await
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        match self
            .call(
                &Message::AppendEntries(rpc),
                Kind::AppendEntriesAnswer,
                &option,
            )
            .await
        {
            Ok(Message::AppendEntriesAnswer(answer)) => Ok(answer),
            Ok(_) => Err(Failure::Unreachable("unexpected answer".into()).into_rpc()),
            Err(failure) => Err(failure.into_rpc()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        match self
            .call(
                &Message::InstallSnapshot(rpc),
                Kind::InstallSnapshotAnswer,
                &option,
            )
            .await
        {
            Ok(Message::InstallSnapshotAnswer(answer)) => Ok(answer),
            Ok(_) => Err(Failure::Unreachable("unexpected answer".into()).into_rpc()),
            Err(failure) => Err(failure.into_rpc()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        match self
            .call(&Message::Vote(rpc), Kind::VoteAnswer, &option)
            .await
        {
            Ok(Message::VoteAnswer(answer)) => Ok(answer),
            Ok(_) => Err(Failure::Unreachable("unexpected answer".into()).into_rpc()),
            Err(failure) => Err(failure.into_rpc()),
        }
    }
}
