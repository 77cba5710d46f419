//! A TCP session's frames: HELLO first (role and credential), then each
//! request checked for its role and numbers and routed to the loop that owns
//! its shard.

use super::Worker;
use crate::protocol::codec::{self, Request};
use crate::protocol::frame::{push_frame, Header};
use crate::protocol::{opcode, status};
use crate::replication::Member;
use crate::server::auth::{self, Access, HelloOutcome};
use crate::server::cross::Message;
use crate::server::cross::Origin;
use crate::server::dispatch::{self, Op};
use crate::server::metrics::Guard;

impl Worker {
    pub(super) fn handle_frame(&mut self, token: usize, header: &Header, body: &[u8]) {
        let request_id = header.request_id;
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let Some(role) = conn.session.as_ref().map(|s| s.role) else {
            self.handle_hello(token, header, body);
            return;
        };
        let request = match codec::decode_request(header, body) {
            Ok(request) => request,
            Err(error) => {
                self.answer(token, header.opcode, error.status, request_id, &[]);
                return;
            }
        };
        if !auth::permits(role, header.opcode) {
            self.answer(token, header.opcode, status::UNAUTHORISED, request_id, &[]);
            return;
        }
        // The tenant a bind is for is checked with the role, before its
        // numbers (PROTOCOL.md section 11): a platform learns nothing about
        // a number's validity for a tenant it may not act for.
        if let Request::Bind(bind) = &request {
            let allowed = conn
                .session
                .as_ref()
                .is_some_and(|s| s.access.allows(bind.tenant));
            if !allowed {
                self.answer(token, header.opcode, status::UNAUTHORISED, request_id, &[]);
                return;
            }
        }
        // The node's unsent output is at its limit: nothing new is done
        // until clients read (PING still answers, it is how a client checks
        // the node is alive).
        if self.output_full && header.opcode != opcode::PING {
            self.metrics.guard(Guard::OutputFull, 1);
            self.answer(token, header.opcode, status::BUSY, request_id, &[]);
            return;
        }
        let origin = Origin::Tcp {
            token: u32::try_from(token).unwrap_or(u32::MAX),
            generation: conn.generation,
        };
        match request {
            Request::Hello { .. } => {
                self.answer(token, header.opcode, status::BAD_REQUEST, request_id, &[])
            }
            Request::Ping => self.answer(token, header.opcode, status::OK, request_id, &[]),
            Request::ClusterStatus => {
                let status_json = self.shared.cluster_status_json();
                self.answer(
                    token,
                    header.opcode,
                    status::OK,
                    request_id,
                    status_json.as_bytes(),
                );
            }
            Request::ClusterInit(text) => self.cluster_init(origin, request_id, text),
            Request::Stats => {
                let stats = self.shared.stats_json();
                self.answer(
                    token,
                    header.opcode,
                    status::OK,
                    request_id,
                    stats.as_bytes(),
                );
            }
            Request::Lookup { query, .. } => match dispatch::check_lookup(&query, self.policy) {
                Ok(query) => self.route(origin, request_id, Op::Lookup(query), Access::AllTenants),
                Err(code) => self.answer(token, header.opcode, code, request_id, &[]),
            },
            ref write => match dispatch::check_write(write, self.policy) {
                Ok(op) => {
                    // Writes are rare: cloning the tenant list's Arc is fine here.
                    let access = self
                        .conns
                        .get(token)
                        .and_then(|c| c.session.as_ref())
                        .map_or(Access::AllTenants, |s| s.access.clone());
                    if matches!(op, Op::Query(_)) {
                        self.route(origin, request_id, op, access);
                    } else {
                        // Changes go through the log, whichever shard
                        // they touch; the loop that owns it applies them.
                        self.propose(origin, header, body, &access);
                    }
                }
                Err(code) => self.answer(token, header.opcode, code, request_id, &[]),
            },
        }
    }

    /// CLUSTER_INIT: parses the members and initialises the cluster on a
    /// thread of its own (it waits for the Raft core), answering through
    /// the loop's inbox: the event loop never blocks on it.
    fn cluster_init(&mut self, origin: Origin, request_id: u32, text: &str) {
        let members = match parse_members(text) {
            Ok(members) => members,
            Err(reason) => {
                if let Origin::Tcp { token, .. } = origin {
                    self.answer(
                        token as usize,
                        opcode::CLUSTER_INIT,
                        status::BAD_REQUEST,
                        request_id,
                        reason.as_bytes(),
                    );
                }
                return;
            }
        };
        let Some(replica) = self.shared.replica.get().cloned() else {
            self.deliver_status(
                origin,
                opcode::CLUSTER_INIT,
                status::UNAVAILABLE,
                request_id,
            );
            return;
        };
        if replica.raft_addr().is_none() {
            if let Origin::Tcp { token, .. } = origin {
                self.answer(
                    token as usize,
                    opcode::CLUSTER_INIT,
                    status::BAD_REQUEST,
                    request_id,
                    b"this node runs alone: start every member with --raft ADDR",
                );
            }
            return;
        }
        if !self.admit(origin, opcode::CLUSTER_INIT, request_id) {
            return;
        }
        let inbox = self.shared.senders[self.index].clone();
        let waker = std::sync::Arc::clone(&self.shared.wakers[self.index]);
        let spawned = std::thread::Builder::new()
            .name("x700-cluster-init".into())
            .spawn(move || {
                let (code, body) = match replica.initialize(&members) {
                    Ok(()) => (status::OK, Vec::new()),
                    Err(reason) => (status::BAD_REQUEST, reason.into_bytes()),
                };
                let mut frames = Vec::new();
                push_frame(&mut frames, opcode::CLUSTER_INIT, code, request_id, &body);
                let end = u32::try_from(frames.len()).unwrap_or(u32::MAX);
                let _ = inbox.send(Message::Done {
                    items: vec![(origin, 0, end)],
                    frames,
                });
                let _ = waker.wake();
            });
        if spawned.is_err() {
            self.unforward(origin);
            self.deliver_status(origin, opcode::CLUSTER_INIT, status::INTERNAL, request_id);
        }
    }

    fn deliver_status(&mut self, origin: Origin, op: u8, code: u8, request_id: u32) {
        let mut frame = Vec::with_capacity(crate::protocol::HEADER_BYTES);
        push_frame(&mut frame, op, code, request_id, &[]);
        self.deliver(origin, &frame);
    }

    /// The HELLO answer's `leader_hint`: the leader's id on a cluster
    /// member (0 while none is known, or for an id past `u32`), this node's
    /// own id on a node that runs alone (it takes every write).
    fn leader_hint(&self) -> u32 {
        let Some(replica) = self.shared.replica.get() else {
            return 0;
        };
        if replica.raft_addr().is_none() {
            return self.shared.config.node_id;
        }
        replica
            .leader_id()
            .and_then(|id| u32::try_from(id).ok())
            .unwrap_or(0)
    }

    pub(super) fn handle_hello(&mut self, token: usize, header: &Header, body: &[u8]) {
        let request_id = header.request_id;
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let decoded = if header.opcode == opcode::HELLO {
            codec::decode_request(header, body)
        } else {
            Err(codec::DecodeError {
                status: status::UNAUTHORISED,
                reason: "HELLO must come first",
            })
        };
        let outcome = match decoded {
            Ok(Request::Hello {
                version,
                role,
                credential,
            }) => auth::hello(
                &self.shared.config.credentials,
                version,
                role,
                credential,
                conn.peer_is_loopback,
            ),
            _ => HelloOutcome::Unauthorised,
        };
        match outcome {
            HelloOutcome::Accepted(session) => {
                conn.session = Some(session);
                let body = codec::hello_answer_body(
                    self.set.shard_count(),
                    self.shared.config.node_id,
                    self.leader_hint(),
                );
                self.answer(token, opcode::HELLO, status::OK, request_id, &body);
            }
            HelloOutcome::Unauthorised => {
                conn.closing = true;
                let peer = conn.peer;
                if let Some(suppressed) = self.client_log.admit(self.now_s) {
                    eprintln!(
                        "x700: refused HELLO from {peer}: unknown token, or a role it does not \
                         grant ({suppressed} similar lines suppressed)"
                    );
                }
                self.answer(token, header.opcode, status::UNAUTHORISED, request_id, &[]);
            }
            HelloOutcome::UnsupportedVersion => {
                conn.closing = true;
                let mut versions = [0u8; 4];
                versions[0..2].copy_from_slice(&crate::protocol::VERSION_MIN.to_le_bytes());
                versions[2..4].copy_from_slice(&crate::protocol::VERSION.to_le_bytes());
                self.answer(
                    token,
                    opcode::HELLO,
                    status::UNSUPPORTED_VERSION,
                    request_id,
                    &versions,
                );
            }
        }
    }
}

/// Parses `ID=RAFT_ADDR=CLIENT_ADDR` members separated by spaces.
pub(crate) fn parse_members(text: &str) -> Result<Vec<Member>, String> {
    let mut members = Vec::new();
    for word in text.split_whitespace() {
        let mut parts = word.splitn(3, '=');
        let (Some(id), Some(raft_addr), Some(client_addr)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!(
                "member {word:?}: expected ID=RAFT_ADDR=CLIENT_ADDR"
            ));
        };
        let id: u64 = id
            .parse()
            .ok()
            .filter(|&id| id > 0)
            .ok_or_else(|| format!("member {word:?}: the id must be a number from 1"))?;
        for address in [raft_addr, client_addr] {
            address
                .parse::<std::net::SocketAddr>()
                .map_err(|_| format!("member {word:?}: {address:?} is not an address:port"))?;
        }
        members.push(Member {
            id,
            raft_addr: raft_addr.to_string(),
            client_addr: client_addr.to_string(),
        });
    }
    if members.is_empty() {
        return Err("no members".into());
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::parse_members;

    #[test]
    fn members_parse_and_bad_ones_are_named() {
        let members =
            parse_members("1=127.0.0.1:7801=127.0.0.1:7701 2=127.0.0.1:7802=127.0.0.1:7702")
                .unwrap();
        assert_eq!(members.len(), 2);
        assert_eq!(members[1].id, 2);
        assert_eq!(members[1].client_addr, "127.0.0.1:7702");
        assert!(parse_members("").is_err());
        assert!(parse_members("0=127.0.0.1:1=127.0.0.1:2").is_err());
        assert!(parse_members("1=nowhere=127.0.0.1:2")
            .unwrap_err()
            .contains("nowhere"));
        assert!(parse_members("1=127.0.0.1:1").is_err());
    }
}
