//! A TCP session's frames: HELLO first (role and credential), then each
//! request checked for its role and numbers and routed to the loop that owns
//! its shard.

use super::Worker;
use crate::client::{Client, ClientError};
use crate::protocol::codec::control::{self, ControlRequest};
use crate::protocol::codec::{self, Request};
use crate::protocol::frame::{push_frame, Header};
use crate::protocol::Role;
use crate::protocol::{opcode, status};
use crate::replication::{Member, Replica};
use crate::server::auth::{self, Access, HelloOutcome};
use crate::server::cross::Message;
use crate::server::cross::Origin;
use crate::server::dispatch::{self, Op};
use crate::server::metrics::Guard;
use crate::store::checksum::{self, SumError};
use std::sync::Arc;
use std::time::Duration;

impl Worker {
    pub(super) fn handle_frame(&mut self, token: usize, header: &Header, body: &[u8]) {
        let request_id = header.request_id;
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let Some((role, version)) = conn.session.as_ref().map(|s| (s.role, s.version)) else {
            self.handle_hello(token, header, body);
            return;
        };
        // A session of an older version hears what a server of that version
        // would say about a later opcode.
        if opcode::version_of(header.opcode) > version {
            self.answer(
                token,
                header.opcode,
                status::UNKNOWN_OPCODE,
                request_id,
                &[],
            );
            return;
        }
        // The hot path: a well-formed LOOKUP that may be served now is
        // decoded and checked in place, without building a `Request`.
        // Anything else about it (a bad body, a refused role, a full
        // output) is answered by the general path below, as before.
        if header.opcode == opcode::LOOKUP
            && body.len() == codec::LOOKUP_BYTES
            && !self.output_full
            && auth::permits(role, opcode::LOOKUP)
        {
            if let Ok((query, _)) = codec::decode_lookup(body) {
                let origin = Origin::Tcp {
                    token: u32::try_from(token).unwrap_or(u32::MAX),
                    generation: conn.generation,
                };
                match dispatch::check_lookup(&query, self.policy) {
                    Ok(query) => {
                        self.route_lookup(origin, request_id, query);
                    }
                    Err(code) => self.answer(token, header.opcode, code, request_id, &[]),
                }
                return;
            }
        }
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
            Request::ClusterAddNode(text) => self.cluster_add_node(origin, request_id, text),
            Request::ClusterRemoveNode(node_id) => {
                self.cluster_remove_node(origin, request_id, node_id);
            }
            Request::ClusterVerify => self.cluster_verify(origin, request_id),
            Request::WaitIndex { index, timeout_ms } => {
                self.wait_index(token, request_id, index, timeout_ms);
            }
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
            Request::Control(control) => match self.pool_remove_refusal(&control) {
                Some(code) => self.answer(token, header.opcode, code, request_id, &[]),
                None => self.propose_control(origin, header, &control),
            },
            Request::BindAuto(auto) => {
                let access = self.session_access(token);
                self.propose_auto(origin, header, body, &auto, &access);
            }
            Request::Trace(trace) => {
                let access = self.session_access(token);
                let (code, json) = match self.set.control().trace_json(&trace, |t| access.allows(t))
                {
                    Ok(json) => (status::OK, json),
                    Err(reason) => {
                        eprintln!("x700: trace: {reason}");
                        (status::INTERNAL, String::new())
                    }
                };
                self.answer(token, header.opcode, code, request_id, json.as_bytes());
            }
            Request::PoolShow(tenant) => {
                let allowed = self
                    .conns
                    .get(token)
                    .and_then(|c| c.session.as_ref())
                    .is_some_and(|s| s.access.allows(tenant));
                let (code, json) = if !allowed {
                    (status::UNAUTHORISED, String::new())
                } else if self.set.control().registry().tenant(tenant).is_none() {
                    (status::UNKNOWN_TENANT, String::new())
                } else {
                    (status::OK, self.set.control().pool_json(tenant))
                };
                self.answer(token, header.opcode, code, request_id, json.as_bytes());
            }
            Request::TenantShow(tenant) => {
                let registry = self.set.control().registry();
                let access = self.session_access(token);
                let (code, json) = match tenant {
                    Some(t) if !access.allows(t) => (status::UNAUTHORISED, String::new()),
                    Some(t) if registry.tenant(t).is_none() => {
                        (status::UNKNOWN_TENANT, String::new())
                    }
                    Some(t) => (status::OK, registry.tenant_json(t)),
                    None if access != Access::AllTenants => (status::UNAUTHORISED, String::new()),
                    None => (status::OK, registry.list_json()),
                };
                self.answer(token, header.opcode, code, request_id, json.as_bytes());
            }
            Request::Lookup { query, .. } => match dispatch::check_lookup(&query, self.policy) {
                Ok(query) => self.route_lookup(origin, request_id, query),
                Err(code) => self.answer(token, header.opcode, code, request_id, &[]),
            },
            ref write => match dispatch::check_write(write, self.policy) {
                Ok(op) => {
                    let access = self.session_access(token);
                    let quota = match op {
                        Op::Bind(request) => self.quota_refusal(request.tenant),
                        _ => None,
                    };
                    if let Some(code) = quota {
                        self.answer(token, header.opcode, code, request_id, &[]);
                    } else if matches!(op, Op::Query(_)) {
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

    /// The tenant scope of connection `token`'s session (every tenant if it
    /// has none). Writes and registry reads are rare: cloning the tenant
    /// list's `Arc` is fine there.
    fn session_access(&self, token: usize) -> Access {
        self.conns
            .get(token)
            .and_then(|c| c.session.as_ref())
            .map_or(Access::AllTenants, |s| s.access.clone())
    }

    /// A control write (tenants, blocklists): proposed alone in its batch,
    /// so the loops apply it between the entries before and after it. A
    /// credential goes into the log as its SHA-256 only.
    fn propose_control(&mut self, origin: Origin, header: &Header, request: &ControlRequest<'_>) {
        let hash;
        let mut logged = *request;
        if let ControlRequest::TenantPut {
            token,
            hashed: false,
            ..
        } = request
        {
            if !token.is_empty() {
                hash = crate::tenant::token_hash(token);
                if let ControlRequest::TenantPut { token, hashed, .. } = &mut logged {
                    *token = &hash;
                    *hashed = true;
                }
            }
        }
        let mut body = Vec::new();
        control::encode(&logged, &mut body);
        self.flush_proposal();
        self.propose(origin, header, &body, &Access::AllTenants);
        self.flush_proposal();
    }

    /// CLUSTER_INIT: parses the members, checks that each answers with
    /// this node's shard count and versions, and initialises the cluster.
    fn cluster_init(&mut self, origin: Origin, request_id: u32, text: &str) {
        let members = match parse_members(text) {
            Ok(members) => members,
            Err(reason) => {
                self.answer_reason(origin, opcode::CLUSTER_INIT, request_id, &reason);
                return;
            }
        };
        let candidate = self.candidate_check();
        self.cluster_job(origin, opcode::CLUSTER_INIT, request_id, move |replica| {
            for member in members.iter().filter(|m| m.id != replica.node_id()) {
                candidate.check(member, false)?;
            }
            replica.initialize(&members)
        });
    }

    /// CLUSTER_ADD_NODE: at the leader, checks the new member (its node id,
    /// shard count and versions, asked over its client address), adds it as
    /// a learner and, once it has caught up, makes it a voter.
    fn cluster_add_node(&mut self, origin: Origin, request_id: u32, text: &str) {
        let member = match parse_members(text) {
            Ok(mut members) if members.len() == 1 => members.remove(0),
            Ok(_) => {
                let reason = "CLUSTER_ADD_NODE takes one member";
                self.answer_reason(origin, opcode::CLUSTER_ADD_NODE, request_id, reason);
                return;
            }
            Err(reason) => {
                self.answer_reason(origin, opcode::CLUSTER_ADD_NODE, request_id, &reason);
                return;
            }
        };
        let candidate = self.candidate_check();
        self.cluster_job(
            origin,
            opcode::CLUSTER_ADD_NODE,
            request_id,
            move |replica| {
                leads(&replica)?;
                // The id rule first: it needs no network.
                replica.check_new_member(&member)?;
                // An id not in the membership must come on an empty node
                // (one in it is a learner whose promotion is retried).
                let retrying = replica.members().iter().any(|m| m.id == member.id);
                candidate.check(&member, !retrying)?;
                replica.add_member(&member, CATCH_UP_WAIT)
            },
        );
    }

    /// CLUSTER_REMOVE_NODE: at the leader, removes a member.
    fn cluster_remove_node(&mut self, origin: Origin, request_id: u32, node_id: u64) {
        self.cluster_job(
            origin,
            opcode::CLUSTER_REMOVE_NODE,
            request_id,
            move |replica| {
                leads(&replica)?;
                replica.remove_member(node_id)
            },
        );
    }

    /// CLUSTER_VERIFY: every loop checksums the shards it owns, between two
    /// of its batches (so every apply before the request is in each part);
    /// the parts are combined on a thread of their own. The parts count
    /// only when every shard stands at the same applied index; otherwise
    /// the answer is BUSY and the caller asks again.
    fn cluster_verify(&mut self, origin: Origin, request_id: u32) {
        let senders = self.shared.senders.clone();
        let wakers = self.shared.wakers.clone();
        let shard_count = self.shared.table_shards;
        let node_id = self.shared.config.node_id;
        self.cluster_job_answer(origin, opcode::CLUSTER_VERIFY, request_id, move |_| {
            let mut parts = Vec::with_capacity(senders.len());
            for (sender, waker) in senders.iter().zip(&wakers) {
                let (reply, part) = tokio::sync::oneshot::channel();
                if sender.send(Message::Checksum { reply }).is_err() {
                    return (status::INTERNAL, b"an event loop stopped".to_vec());
                }
                let _ = waker.wake();
                parts.push(part);
            }
            let mut sums = Vec::new();
            for part in parts {
                match part.blocking_recv() {
                    Ok(mut more) => sums.append(&mut more),
                    Err(_) => return (status::INTERNAL, b"an event loop stopped".to_vec()),
                }
            }
            match checksum::combine(sums, shard_count) {
                Ok(sum) => {
                    let body = serde_json::json!({
                        "node_id": node_id,
                        "applied_index": sum.applied_index,
                        "checksum": format!("{:08x}", sum.checksum),
                        "bindings_live": sum.bindings_live,
                        "table_shards": shard_count,
                    });
                    (status::OK, body.to_string().into_bytes())
                }
                Err(SumError::Moving) => (
                    status::BUSY,
                    b"shards are between two applies: ask again".to_vec(),
                ),
                Err(SumError::Incomplete(reason)) => (status::INTERNAL, reason.into_bytes()),
            }
        });
    }

    /// What a joining member must match: this node's shard count and
    /// versions; it is asked over its client address with this node's
    /// first admin credential (members share credentials; none: protected
    /// mode, loopback only).
    fn candidate_check(&self) -> CandidateCheck {
        let token = self
            .shared
            .config
            .credentials
            .iter()
            .find(|c| c.role == Role::Admin.as_str())
            .map(|c| c.token.clone())
            .unwrap_or_default();
        CandidateCheck {
            token,
            table_shards: self.shared.table_shards,
        }
    }

    /// Runs `job` (which waits for the Raft core or other nodes) on a thread
    /// of its own for a cluster-of-several opcode; its error becomes a
    /// BAD_REQUEST answer naming it, or NOT_LEADER. The event loop never
    /// blocks on it.
    fn cluster_job(
        &mut self,
        origin: Origin,
        op: u8,
        request_id: u32,
        job: impl FnOnce(Arc<Replica>) -> Result<(), String> + Send + 'static,
    ) {
        let clustered = self
            .shared
            .replica
            .get()
            .is_none_or(|replica| replica.raft_addr().is_some());
        if !clustered {
            let reason = "this node runs alone: start every member with --raft ADDR";
            self.answer_reason(origin, op, request_id, reason);
            return;
        }
        self.cluster_job_answer(origin, op, request_id, move |replica| {
            let asked = Arc::clone(&replica);
            match job(replica) {
                Ok(()) => (status::OK, Vec::new()),
                Err(reason) if reason == NOT_LEADER_REASON => {
                    (status::NOT_LEADER, not_leader_body(&asked))
                }
                Err(reason) => (status::BAD_REQUEST, reason.into_bytes()),
            }
        });
    }

    /// Runs `job` on a thread of its own and answers with what it returns
    /// (status, body), through this loop's inbox.
    fn cluster_job_answer(
        &mut self,
        origin: Origin,
        op: u8,
        request_id: u32,
        job: impl FnOnce(Arc<Replica>) -> (u8, Vec<u8>) + Send + 'static,
    ) {
        let Some(replica) = self.shared.replica.get().cloned() else {
            self.deliver_status(origin, op, status::UNAVAILABLE, request_id);
            return;
        };
        if !self.admit(origin, op, request_id) {
            return;
        }
        let inbox = self.shared.senders[self.index].clone();
        let waker = Arc::clone(&self.shared.wakers[self.index]);
        let spawned = std::thread::Builder::new()
            .name("x700-cluster".into())
            .spawn(move || {
                let (code, body) = job(replica);
                let mut frames = Vec::new();
                push_frame(&mut frames, op, code, request_id, &body);
                let end = u32::try_from(frames.len()).unwrap_or(u32::MAX);
                let _ = inbox.send(Message::Done {
                    items: vec![(origin, 0, end)],
                    frames,
                });
                let _ = waker.wake();
            });
        if spawned.is_err() {
            self.unforward(origin);
            self.deliver_status(origin, op, status::INTERNAL, request_id);
        }
    }

    /// Answers BAD_REQUEST with `reason` at once.
    fn answer_reason(&mut self, origin: Origin, op: u8, request_id: u32, reason: &str) {
        if let Origin::Tcp { token, .. } = origin {
            self.answer(
                token as usize,
                op,
                status::BAD_REQUEST,
                request_id,
                reason.as_bytes(),
            );
        }
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
                &self.set.control().registry(),
                version,
                role,
                credential,
                conn.peer_is_loopback,
            ),
            _ => HelloOutcome::Unauthorised,
        };
        match outcome {
            HelloOutcome::Accepted(session) => {
                let version = session.version;
                conn.session = Some(session);
                let body = codec::hello_answer_body(
                    version,
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

/// How long `add-node` waits for a new member to catch up before giving
/// up (it stays a learner; running add-node again promotes it).
const CATCH_UP_WAIT: Duration = Duration::from_secs(120);

/// The error text `leads` returns: the job answers NOT_LEADER.
const NOT_LEADER_REASON: &str = "not_leader";

/// The body of a NOT_LEADER answer to a membership change, as for writes
/// (PROTOCOL.md section 8): the leader this node knows of (0 if none) and
/// its client address from the membership (empty if unknown).
fn not_leader_body(replica: &Replica) -> Vec<u8> {
    let leader_id = replica.leader_id().unwrap_or(0);
    let address = replica
        .members()
        .into_iter()
        .find(|member| member.id == leader_id)
        .map(|member| member.client_addr)
        .unwrap_or_default();
    let mut body = Vec::with_capacity(codec::NOT_LEADER_FIXED_BYTES + address.len());
    codec::encode_not_leader_body(&mut body, leader_id, &address);
    body
}

/// Membership changes are made at the leader; elsewhere they answer
/// NOT_LEADER naming the leader (the CLI follows it).
fn leads(replica: &Replica) -> Result<(), String> {
    if replica.leader_id() == Some(replica.node_id()) {
        Ok(())
    } else {
        Err(NOT_LEADER_REASON.into())
    }
}

/// What a node joining this one's cluster must match (issue item 12:
/// binding ids encode the shard, and log entries are raw frames applied to
/// tables of a fixed shard count).
struct CandidateCheck {
    token: String,
    table_shards: u16,
}

impl CandidateCheck {
    /// Asks `member` (at its client address) for its CLUSTER_STATUS and
    /// refuses it if it is another node id, runs alone, or differs in
    /// table shards or any version; and, when `empty` says so, if it
    /// already knows a membership: a node removed from this cluster (still
    /// running, or restarted on its directory) would come back under a
    /// retired id, and a member of another cluster does not belong here. A
    /// new node knows no members until it joins.
    fn check(&self, member: &Member, empty: bool) -> Result<(), String> {
        let id = member.id;
        let unreachable = |e: ClientError| format!("node {id} at {}: {e}", member.client_addr);
        let mut client = Client::connect(member.client_addr.as_str(), Role::Admin, &self.token)
            .map_err(unreachable)?;
        let (code, body) = client
            .request(opcode::CLUSTER_STATUS, &[])
            .map_err(unreachable)?;
        let fields: serde_json::Value = (code == status::OK)
            .then(|| serde_json::from_slice(&body).ok())
            .flatten()
            .ok_or_else(|| format!("node {id}: no CLUSTER_STATUS answer"))?;
        if fields["node_id"].as_u64() != Some(id) {
            return Err(format!(
                "the node at {} is node {}, not {id}",
                member.client_addr, fields["node_id"]
            ));
        }
        if fields["raft_addr"].is_null() {
            return Err(format!("node {id} runs alone (started without --raft)"));
        }
        let shards = fields["table_shards"].as_u64();
        if shards != Some(u64::from(self.table_shards)) {
            return Err(format!(
                "node {id} has {} table shards, this cluster {}: binding ids and log \
                 entries depend on the shard count",
                fields["table_shards"], self.table_shards
            ));
        }
        let versions = crate::server::member_versions();
        if fields["versions"] != versions {
            return Err(format!(
                "node {id} speaks versions {}, this cluster {versions}",
                fields["versions"]
            ));
        }
        let known = fields["members"].as_array().map_or(0, Vec::len);
        if empty && known > 0 {
            return Err(format!(
                "node {id} already belongs to a cluster (it knows {known} members): the id of \
                 a node removed from this one stays retired; start a new node on an empty \
                 directory under a new id"
            ));
        }
        Ok(())
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
