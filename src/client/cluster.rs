//! A client of a cluster: several node addresses, one session per node at
//! most, opened when first needed.
//!
//! Writes (BIND, UPDATE, UNBIND) go to the node last known to lead. A
//! `NOT_LEADER` answer names the leader's client address (PROTOCOL.md
//! section 8): the client learns it, opens a session there and sends the
//! write again, at most `LEADER_FOLLOWS_MAX` times per write. While no
//! leader is known (an election is under way) or a node cannot be reached,
//! it tries the next node it knows after a short pause, at most
//! `ATTEMPTS_MAX` times per write.
//!
//! A write whose connection broke after it was sent may or may not have
//! happened. A BIND is sent again (binding the same parties again returns
//! the same binding, `created` false); an UPDATE or UNBIND is not, and the
//! caller hears the error (the next call opens a new session).
//!
//! Lookups and QUERY go to one node (the first that answered); when its
//! connection fails or it answers `UNAVAILABLE` (stopping), the client moves
//! to the next node it knows and asks again, each node at most once per
//! request. A read is answered from that node's tables: a follower may not
//! yet hold the latest writes (PROTOCOL.md section 7.9). `read_index` and
//! `lookup_after` bound that (WAIT_INDEX, PROTOCOL.md section 7.10).

use super::{Client, ClientError, IndexReply, WriteReply};
use crate::binding::{Binding, BindingId, LookupQuery, LookupResult, Update};
use crate::protocol::{status, BindBody, Role, UnbindBody};
use std::time::Duration;

/// `NOT_LEADER` answers naming a leader that one write follows.
pub const LEADER_FOLLOWS_MAX: usize = 3;

/// Tries of one write in all: follows, and moves to another node while no
/// leader is known or a node is unreachable.
pub const ATTEMPTS_MAX: usize = 30;

/// Pause before trying another node without a named leader: with
/// `ATTEMPTS_MAX`, a write waits about 3 s for an election.
pub const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Longest wait for one TCP connection to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Node addresses one client keeps, given and learned.
pub const NODES_MAX: usize = 16;

/// Result of an UPDATE, UNBIND or QUERY: the binding, or the refusal.
type BindingAnswer = Result<Binding, WriteReply>;

/// Sessions with the nodes of a cluster (module documentation).
pub struct ClusterClient {
    role: Role,
    credential: String,
    /// Client addresses, as given, then as learned from `NOT_LEADER`.
    nodes: Vec<String>,
    /// `sessions[i]`: the open session with `nodes[i]`, if any.
    sessions: Vec<Option<Client>>,
    /// The node lookups and queries go to.
    reader: usize,
    /// The node writes go to: the leader as last heard.
    writer: usize,
}

impl ClusterClient {
    /// A client of the nodes at `addresses` (at most `NODES_MAX`), with a
    /// session open on the first that accepts one. Fails if none can be
    /// reached, or at once if a node refuses the HELLO for any reason but
    /// stopping (the credential or role is wrong everywhere alike).
    pub fn connect(
        addresses: &[&str],
        role: Role,
        credential: &str,
    ) -> Result<ClusterClient, ClientError> {
        let nodes: Vec<String> = addresses
            .iter()
            .take(NODES_MAX)
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .collect();
        if nodes.is_empty() {
            return Err(ClientError::Protocol("no node address"));
        }
        let mut client = ClusterClient {
            role,
            credential: credential.to_string(),
            sessions: nodes.iter().map(|_| None).collect(),
            nodes,
            reader: 0,
            writer: 0,
        };
        let mut failure = None;
        for index in 0..client.nodes.len() {
            match client.session(index) {
                Ok(_) => {
                    client.reader = index;
                    client.writer = index;
                    return Ok(client);
                }
                Err(ClientError::Refused(code)) if code != status::UNAVAILABLE => {
                    return Err(ClientError::Refused(code));
                }
                Err(error) => failure = Some(error),
            }
        }
        Err(failure.unwrap_or(ClientError::Protocol("no node address")))
    }

    /// The node addresses this client knows, given and learned.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// The address writes go to: the leader as last heard.
    pub fn leader_addr(&self) -> &str {
        &self.nodes[self.writer]
    }

    /// The address lookups go to.
    pub fn reader_addr(&self) -> &str {
        &self.nodes[self.reader]
    }

    /// The session with `nodes[index]`, opened if need be.
    fn session(&mut self, index: usize) -> Result<&mut Client, ClientError> {
        let slot = &mut self.sessions[index];
        if slot.is_none() {
            *slot = Some(Client::connect_timeout(
                self.nodes[index].as_str(),
                self.role,
                &self.credential,
                CONNECT_TIMEOUT,
            )?);
        }
        slot.as_mut()
            .ok_or(ClientError::Protocol("session just opened is missing"))
    }

    /// The index of `address`, added if new and there is room.
    fn learn(&mut self, address: &str) -> Option<usize> {
        if let Some(index) = self.nodes.iter().position(|n| n == address) {
            return Some(index);
        }
        if self.nodes.len() >= NODES_MAX {
            return None;
        }
        self.nodes.push(address.to_string());
        self.sessions.push(None);
        Some(self.nodes.len() - 1)
    }

    fn next_node(&self, index: usize) -> usize {
        (index + 1) % self.nodes.len()
    }

    /// Sends a write where the leader is, following `NOT_LEADER` (module
    /// documentation). `status_of` reads an answer's status; `resend` says
    /// whether the write may be sent again after its connection broke.
    fn write<T>(
        &mut self,
        resend: bool,
        mut call: impl FnMut(&mut Client) -> Result<T, ClientError>,
        status_of: impl Fn(&T) -> u8,
    ) -> Result<T, ClientError> {
        let mut follows = 0;
        let mut last: Option<Result<T, ClientError>> = None;
        for _ in 0..ATTEMPTS_MAX {
            let index = self.writer;
            let session = match self.session(index) {
                Ok(session) => session,
                Err(ClientError::Refused(code)) if code != status::UNAVAILABLE => {
                    return Err(ClientError::Refused(code));
                }
                Err(error) => {
                    // Not connected (or the node is stopping): nothing was
                    // sent, any node may take it.
                    last = Some(Err(error));
                    self.writer = self.next_node(index);
                    std::thread::sleep(RETRY_PAUSE);
                    continue;
                }
            };
            let answer = match call(session) {
                Ok(answer) => answer,
                Err(error) => {
                    self.sessions[index] = None;
                    self.writer = self.next_node(index);
                    if !resend || !matches!(error, ClientError::Io(_)) {
                        return Err(error);
                    }
                    last = Some(Err(error));
                    std::thread::sleep(RETRY_PAUSE);
                    continue;
                }
            };
            let code = status_of(&answer);
            if code == status::OUTCOME_UNKNOWN && resend {
                // The node lost its leadership with the write in its log:
                // an idempotent write goes again, to the leader as found
                // from the next node; the first one's fate no longer
                // matters (PROTOCOL.md section 8).
                last = Some(Ok(answer));
                self.writer = self.next_node(index);
                std::thread::sleep(RETRY_PAUSE);
                continue;
            }
            if code != status::NOT_LEADER {
                return Ok(answer);
            }
            let named = self.sessions[index]
                .as_ref()
                .and_then(|s| s.not_leader.as_ref())
                .map(|hint| hint.client_addr.clone())
                .filter(|address| !address.is_empty() && *address != self.nodes[index]);
            last = Some(Ok(answer));
            match named.and_then(|address| self.learn(&address)) {
                Some(leader) if follows < LEADER_FOLLOWS_MAX => {
                    follows += 1;
                    self.writer = leader;
                }
                Some(_) => break,
                None => {
                    // No leader known here (an election), or an address
                    // this client cannot keep: ask another node shortly.
                    self.writer = self.next_node(index);
                    std::thread::sleep(RETRY_PAUSE);
                }
            }
        }
        last.unwrap_or(Err(ClientError::Protocol("no attempt made")))
    }

    /// Sends a read to the reader node, failing over to the next one when
    /// its connection fails or `unavailable` says it is stopping.
    fn read<T>(
        &mut self,
        mut call: impl FnMut(&mut Client) -> Result<T, ClientError>,
        unavailable: impl Fn(&T) -> bool,
    ) -> Result<T, ClientError> {
        let mut last = None;
        for _ in 0..self.nodes.len() {
            let index = self.reader;
            let outcome = self.session(index).and_then(&mut call);
            let fail_over = match &outcome {
                Ok(answer) => unavailable(answer),
                Err(ClientError::Io(_) | ClientError::Refused(status::UNAVAILABLE)) => true,
                Err(_) => false,
            };
            if !fail_over {
                return outcome;
            }
            self.sessions[index] = None;
            self.reader = self.next_node(index);
            last = Some(outcome);
        }
        last.unwrap_or(Err(ClientError::Protocol("no node address")))
    }

    /// One lookup, failing over between the nodes.
    pub fn lookup(&mut self, query: &LookupQuery) -> Result<LookupResult, ClientError> {
        self.read(|client| client.lookup(query), |_| false)
    }

    /// QUERY, failing over between the nodes.
    pub fn query(&mut self, binding_id: BindingId) -> Result<BindingAnswer, ClientError> {
        self.read(
            |client| client.query(binding_id),
            |answer| matches!(answer, Err(reply) if reply.status == status::UNAVAILABLE),
        )
    }

    /// The index covering every write this client had answered, asked of
    /// the node its writes go to (WAIT_INDEX 0). Should the leadership have
    /// moved since those writes, the new leader may not have applied them
    /// all yet: then the index may fall short of them.
    pub fn read_index(&mut self) -> Result<u64, ClientError> {
        let index = self.writer;
        let outcome = self.session(index).and_then(Client::read_index);
        if outcome.is_err() {
            self.sessions[index] = None;
        }
        outcome
    }

    /// A lookup served once the reader node has applied `index` (or once
    /// `timeout_ms` passed: the `IndexReply` says which), failing over
    /// between the nodes like `lookup`.
    pub fn lookup_after(
        &mut self,
        index: u64,
        timeout_ms: u32,
        query: &LookupQuery,
    ) -> Result<(IndexReply, LookupResult), ClientError> {
        self.read(
            |client| client.lookup_after(index, timeout_ms, query),
            |(reply, _)| reply.status == status::UNAVAILABLE,
        )
    }

    /// BIND at the leader (sent again after a broken connection or an
    /// `outcome_unknown`: a bind is idempotent; the answer is then the
    /// binding's, `created` 0 if the first one was applied).
    pub fn bind(&mut self, bind: &BindBody) -> Result<WriteReply, ClientError> {
        self.write(true, |client| client.bind(bind), |reply| reply.status)
    }

    /// BIND_AXB_AUTO at the leader (sent again after `outcome_unknown`: a
    /// retried automatic bind gets the X and binding the first one made).
    pub fn bind_auto(
        &mut self,
        auto: &crate::protocol::codec::auto::AutoBindBody,
    ) -> Result<(WriteReply, Option<crate::number::Number>), ClientError> {
        self.write(
            true,
            |client| client.bind_auto(auto),
            |(reply, _)| reply.status,
        )
    }

    /// UPDATE at the leader.
    pub fn update(
        &mut self,
        binding_id: BindingId,
        update: &Update,
    ) -> Result<BindingAnswer, ClientError> {
        self.write(
            false,
            |client| client.update(binding_id, update),
            binding_status,
        )
    }

    /// UNBIND at the leader.
    pub fn unbind(&mut self, target: &UnbindBody) -> Result<BindingAnswer, ClientError> {
        self.write(false, |client| client.unbind(target), binding_status)
    }
}

fn binding_status(answer: &BindingAnswer) -> u8 {
    match answer {
        Ok(_) => status::OK,
        Err(reply) => reply.status,
    }
}
