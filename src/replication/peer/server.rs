//! `PeerServer`: accepts peers on the raft address (on the replica's tokio
//! runtime), runs the accepting side of the handshake, then reads requests
//! one at a time, hands each to openraft (`Raft::vote`,
//! `Raft::append_entries`; snapshots through `snapshot_in`) and writes its
//! answer.
//! A peer that fails the handshake gets an ERROR answer (code 1) and the
//! connection closes; the refusal is counted and logged with the peer's
//! address. A request that cannot be decoded is answered ERROR (code 2) and
//! the connection closes; so does one that finds the Raft stopped (code 3).

use super::codec::{self, ErrorAnswer, ErrorCode, HelloAnswer, Message, PEER_VERSION};
use super::handshake::{self, Refusal, Role};
use super::snapshot_in::SnapshotReceiver;
use super::{read_frame, PeerConfig, PeerStats, RefusalLog};
use crate::replication::types::TypeConfig;
use openraft::raft::AppendEntriesResponse;
use openraft::Raft;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// Most peer connections a node holds at once; more are closed at accept.
pub const PEER_CONNECTIONS_MAX: usize = 64;
/// Longest the handshake may take before the connection closes.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// A connection with no request for this long closes (a leader's
/// heartbeats arrive every 50 ms; the connecting side reconnects on
/// demand).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The peer listener, running.
pub struct PeerServer {
    accept: tokio::task::JoinHandle<()>,
    local_addr: SocketAddr,
}

struct Context {
    raft: Raft<TypeConfig>,
    own_id: u64,
    config: PeerConfig,
    stats: Arc<PeerStats>,
    refusals: Arc<RefusalLog>,
    snapshots: SnapshotReceiver,
}

impl PeerServer {
    /// Starts accepting peers on `listener` for the Raft of node `own_id`.
    /// Must be called within a tokio runtime (the replica's).
    pub fn start(
        listener: TcpListener,
        raft: Raft<TypeConfig>,
        own_id: u64,
        config: PeerConfig,
        stats: Arc<PeerStats>,
        refusals: Arc<RefusalLog>,
        data_dir: &std::path::Path,
    ) -> std::io::Result<PeerServer> {
        let local_addr = listener.local_addr()?;
        let context = Arc::new(Context {
            raft,
            own_id,
            config,
            stats,
            refusals,
            snapshots: SnapshotReceiver::new(data_dir),
        });
        let accept = tokio::spawn(accept_loop(listener, context));
        Ok(PeerServer { accept, local_addr })
    }

    /// The address peers reach this node at.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting peers (connections already open end when their Raft
    /// stops).
    pub fn stop(&self) {
        self.accept.abort();
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, context: Arc<Context>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(PEER_CONNECTIONS_MAX));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                // Out of descriptors, most likely: wait rather than spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            context
                .refusals
                .refused("incoming", peer, &"too many peer connections");
            continue;
        };
        let context = Arc::clone(&context);
        tokio::spawn(async move {
            serve(stream, peer, &context).await;
            drop(slot);
        });
    }
}

async fn send(stream: &mut TcpStream, message: &Message, request_id: u64) -> std::io::Result<()> {
    let frame = codec::encode(message, request_id).map_err(std::io::Error::other)?;
    stream.write_all(&frame).await
}

fn error(code: ErrorCode, message: impl ToString) -> Message {
    Message::Error(ErrorAnswer {
        code,
        message: message.to_string(),
    })
}

async fn serve(mut stream: TcpStream, peer: SocketAddr, context: &Context) {
    let _ = stream.set_nodelay(true);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept_handshake(&mut stream, context)).await {
        Ok(Ok(())) => {}
        Ok(Err(Some(refusal))) => {
            context.stats.refused_in.fetch_add(1, Ordering::Relaxed);
            context.refusals.refused("incoming", peer, &refusal);
            let _ = send(&mut stream, &error(ErrorCode::Refused, refusal), 0).await;
            return;
        }
        Ok(Err(None)) | Err(_) => return,
    }
    context.stats.connected_in.fetch_add(1, Ordering::Relaxed);
    loop {
        let (header, body) = match tokio::time::timeout(IDLE_TIMEOUT, read_frame(&mut stream)).await
        {
            Ok(Ok(frame)) => frame,
            Ok(Err(_)) | Err(_) => return,
        };
        let (answer, keep) = match codec::decode(&header, &body) {
            Ok(request) => answer(request, context).await,
            Err(e) => (error(ErrorCode::Malformed, e), false),
        };
        if send(&mut stream, &answer, header.request_id).await.is_err() || !keep {
            return;
        }
    }
}

/// The accepting side of the handshake. `Err(Some(_))`: the peer is
/// refused; `Err(None)`: the connection failed or spoke out of turn.
async fn accept_handshake(
    stream: &mut TcpStream,
    context: &Context,
) -> Result<(), Option<Refusal>> {
    let (header, body) = read_frame(stream).await.map_err(|_| None)?;
    let Ok(Message::Hello(hello)) = codec::decode(&header, &body) else {
        return Err(None);
    };
    handshake::check_hello(&hello, context.config.cluster_id, context.own_id).map_err(Some)?;
    let nonce = handshake::nonce().map_err(|_| None)?;
    let answer = Message::HelloAnswer(HelloAnswer {
        version: PEER_VERSION,
        cluster_id: context.config.cluster_id,
        node_id: context.own_id,
        nonce,
    });
    send(stream, &answer, 0).await.map_err(|_| None)?;
    let (header, body) = read_frame(stream).await.map_err(|_| None)?;
    let Ok(Message::Proof(proof)) = codec::decode(&header, &body) else {
        return Err(None);
    };
    let transcript = handshake::Transcript {
        cluster_id: context.config.cluster_id,
        connecting_id: hello.node_id,
        accepting_id: context.own_id,
        connecting_nonce: hello.nonce,
        accepting_nonce: nonce,
    };
    if !handshake::verify(
        &context.config.secret,
        Role::Connecting,
        &transcript,
        &proof,
    ) {
        return Err(Some(Refusal::Secret(hello.node_id)));
    }
    let proof = handshake::prove(&context.config.secret, Role::Accepting, &transcript);
    send(stream, &Message::Welcome(proof), 0)
        .await
        .map_err(|_| None)
}

/// Serves one request: its answer, and whether the connection stays open.
async fn answer(request: Message, context: &Context) -> (Message, bool) {
    let raft = &context.raft;
    match request {
        Message::Vote(rpc) => match raft.vote(rpc).await {
            Ok(answer) => (Message::VoteAnswer(answer), true),
            Err(e) => (error(ErrorCode::Stopped, e), false),
        },
        Message::AppendEntries(rpc) => {
            let commit_index = rpc.leader_commit.map_or(0, |log_id| log_id.index);
            match raft.append_entries(rpc).await {
                Ok(answer) => {
                    // A leader of a past term is not the one to measure lag against.
                    if !matches!(answer, AppendEntriesResponse::HigherVote(_)) {
                        context.stats.leader_contacted(commit_index);
                    }
                    (Message::AppendEntriesAnswer(answer), true)
                }
                Err(e) => (error(ErrorCode::Stopped, e), false),
            }
        }
        Message::InstallSnapshot(rpc) => context.snapshots.receive(raft, rpc).await,
        other => (
            error(
                ErrorCode::Malformed,
                format!("{:?} is not a request after the handshake", other.kind()),
            ),
            false,
        ),
    }
}
