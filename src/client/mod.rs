//! A blocking Rust client for the x700 protocol, pipelined: many requests
//! in flight on one connection, answers matched by request id (they may
//! arrive out of order). Used by the CLI's `--server` mode, benchmarks and
//! tests. `ClusterClient` (cluster.rs) drives several of them: writes to
//! the leader, lookups failing over between the nodes it knows.

mod cluster;

pub use cluster::ClusterClient;

use crate::binding::{Binding, BindingId, LookupQuery, LookupResult, Update};
use crate::number::Number;
use crate::protocol::codec::{self, BindBody, LeaderHint, UnbindBody};
use crate::protocol::frame::{next_frame, Header, HEADER_BYTES};
use crate::protocol::{limits, opcode, status, Role, VERSION, VERSION_MIN};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// What went wrong talking to a node.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The node refused HELLO or closed the connection.
    #[error("refused: {}", status::name(*.0))]
    Refused(u8),
    /// The node sent something this client cannot read.
    #[error("protocol: {0}")]
    Protocol(&'static str),
    /// The node does not speak the version asked for; the newest it does.
    #[error("the node speaks protocol versions up to {max}")]
    Unsupported {
        /// The node's newest version.
        max: u16,
    },
}

/// What a node says in its HELLO answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// Protocol version it speaks.
    pub version: u16,
    /// Table shards.
    pub shard_count: u16,
    /// Node id.
    pub node_id: u32,
    /// Leader hint (0 = none).
    pub leader_hint: u32,
}

/// An answer to a write: its status and, on success or conflict, details.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteReply {
    /// Status code.
    pub status: u8,
    /// The binding (ok) or the clashing binding (conflict), if known.
    pub binding_id: Option<BindingId>,
    /// Expiry of a bound binding.
    pub expires_at_s: Option<u32>,
    /// False for an idempotent retry.
    pub created: Option<bool>,
}

/// What a WAIT_INDEX answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexReply {
    /// OK (the node has applied the index), BEHIND (it had not when the
    /// wait ended), or another refusal.
    pub status: u8,
    /// The node's applied index when it answered (0 with a refusal that
    /// carries none).
    pub applied_index: u64,
}

/// A connection to a node.
pub struct Client {
    stream: TcpStream,
    out: Vec<u8>,
    input: Vec<u8>,
    start: usize,
    next_request_id: u32,
    /// The node's HELLO answer.
    pub node: NodeInfo,
    /// What the last write answered `NOT_LEADER` said of the leader
    /// (`None` if that answer had no body: a server before the hint).
    pub not_leader: Option<LeaderHint>,
}

impl Client {
    /// Connects and says HELLO with the role and credential.
    pub fn connect(
        address: impl ToSocketAddrs,
        role: Role,
        credential: &str,
    ) -> Result<Client, ClientError> {
        Client::open(TcpStream::connect(address)?, role, credential)
    }

    /// Connects, giving up on each address the name resolves to after
    /// `timeout`, and says HELLO (a dead host does not hold a failover up
    /// for the system's TCP connect timeout, minutes).
    pub fn connect_timeout(
        address: impl ToSocketAddrs,
        role: Role,
        credential: &str,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let addresses: Vec<SocketAddr> = address.to_socket_addrs()?.collect();
        let mut failure = std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the address resolves to nothing",
        );
        for address in addresses {
            match TcpStream::connect_timeout(&address, timeout) {
                Ok(stream) => return Client::open(stream, role, credential),
                Err(error) => failure = error,
            }
        }
        Err(ClientError::Io(failure))
    }

    /// How long a read waits for the node's answer (30 s from connect).
    /// A request the node answers only once something long is done (a new
    /// member catching up for CLUSTER_ADD_NODE) needs more.
    pub fn set_answer_timeout(&self, timeout: Duration) -> Result<(), ClientError> {
        self.stream.set_read_timeout(Some(timeout))?;
        Ok(())
    }

    /// Opens a session on a connected stream: HELLO and its answer. A node
    /// of an older protocol version answers `UNSUPPORTED_VERSION` with its
    /// range and closes: the session is opened again, once, at the newest
    /// version both speak (PROTOCOL.md section 5).
    fn open(stream: TcpStream, role: Role, credential: &str) -> Result<Client, ClientError> {
        let peer = stream.peer_addr()?;
        match Client::open_at(stream, role, credential, VERSION) {
            Err(ClientError::Unsupported { max }) if (VERSION_MIN..VERSION).contains(&max) => {
                let stream = TcpStream::connect_timeout(&peer, Duration::from_secs(10))?;
                Client::open_at(stream, role, credential, max)
            }
            Err(ClientError::Unsupported { .. }) => {
                Err(ClientError::Refused(status::UNSUPPORTED_VERSION))
            }
            other => other,
        }
    }

    /// Opens a session asking for protocol `version`.
    fn open_at(
        stream: TcpStream,
        role: Role,
        credential: &str,
        version: u16,
    ) -> Result<Client, ClientError> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut client = Client {
            stream,
            out: Vec::with_capacity(64 * 1024),
            input: Vec::with_capacity(256 * 1024),
            start: 0,
            next_request_id: 1,
            node: NodeInfo {
                version: 0,
                shard_count: 0,
                node_id: 0,
                leader_hint: 0,
            },
            not_leader: None,
        };
        let (header, body) = client
            .call(|out, id| codec::encode_hello(out, id, version, role, credential.as_bytes()))?;
        if header.status == status::UNSUPPORTED_VERSION && body.len() == 4 {
            return Err(ClientError::Unsupported {
                max: u16::from_le_bytes([body[2], body[3]]),
            });
        }
        if header.status != status::OK {
            return Err(ClientError::Refused(header.status));
        }
        if body.len() != codec::HELLO_ANSWER_BYTES {
            return Err(ClientError::Protocol("HELLO answer has the wrong length"));
        }
        client.node = NodeInfo {
            version: u16::from_le_bytes([body[0], body[1]]),
            shard_count: u16::from_le_bytes([body[2], body[3]]),
            node_id: u32::from_le_bytes([body[4], body[5], body[6], body[7]]),
            leader_hint: u32::from_le_bytes([body[8], body[9], body[10], body[11]]),
        };
        Ok(client)
    }

    fn take_id(&mut self) -> u32 {
        let id = self.next_request_id;
        self.next_request_id = self.next_request_id.wrapping_add(1);
        id
    }

    /// Sends raw bytes (tests use this for malformed frames).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream.write_all(bytes)?;
        Ok(())
    }

    /// Reads the next answer frame: header and body.
    pub fn read_frame(&mut self) -> Result<(Header, Vec<u8>), ClientError> {
        loop {
            if let Ok(Some((header, frame))) =
                next_frame(&self.input[self.start..], limits::ANSWER_FRAME_BYTES_MAX)
            {
                let body = frame[HEADER_BYTES..].to_vec();
                self.start += frame.len();
                return Ok((header, body));
            }
            self.fill()?;
        }
    }

    /// Sends one request built by `build` and waits for its answer.
    fn call(
        &mut self,
        build: impl FnOnce(&mut Vec<u8>, u32),
    ) -> Result<(Header, Vec<u8>), ClientError> {
        let id = self.take_id();
        self.out.clear();
        build(&mut self.out, id);
        self.stream.write_all(&self.out)?;
        loop {
            let (header, body) = self.read_frame()?;
            if header.request_id == id {
                return Ok((header, body));
            }
        }
    }

    /// One request of `op` with `body`, for the admin opcodes without a
    /// method of their own (CLUSTER_STATUS, CLUSTER_INIT): (status, body).
    pub fn request(&mut self, op: u8, body: &[u8]) -> Result<(u8, Vec<u8>), ClientError> {
        let (header, answer) =
            self.call(|out, id| crate::protocol::frame::push_frame(out, op, 0, id, body))?;
        Ok((header.status, answer))
    }

    /// A control write (TENANT_PUT, TENANT_STATUS, BLOCK; version 2):
    /// (status, JSON body of an `ok`).
    pub fn control(
        &mut self,
        request: &codec::control::ControlRequest<'_>,
    ) -> Result<(u8, String), ClientError> {
        let mut body = Vec::new();
        codec::control::encode(request, &mut body);
        let op = codec::control::opcode_of(request);
        let (header, answer) =
            self.call(|out, id| crate::protocol::frame::push_frame(out, op, 0, id, &body))?;
        self.note_leader(&header, &answer);
        Ok((header.status, String::from_utf8_lossy(&answer).into_owned()))
    }

    /// TENANT_SHOW (version 2): one tenant, or every tenant (`None`), as
    /// JSON.
    pub fn tenant_show(&mut self, tenant: Option<u32>) -> Result<(u8, String), ClientError> {
        let body = tenant.unwrap_or(codec::control::ALL).to_le_bytes();
        let (status, answer) = self.request(opcode::TENANT_SHOW, &body)?;
        Ok((status, String::from_utf8_lossy(&answer).into_owned()))
    }

    /// PING.
    pub fn ping(&mut self) -> Result<u8, ClientError> {
        Ok(self
            .call(|out, id| crate::protocol::frame::push_frame(out, opcode::PING, 0, id, &[]))?
            .0
            .status)
    }

    /// STATS: the node's JSON.
    pub fn stats(&mut self) -> Result<(u8, String), ClientError> {
        let (header, body) = self
            .call(|out, id| crate::protocol::frame::push_frame(out, opcode::STATS, 0, id, &[]))?;
        Ok((header.status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// One lookup. `Err(Refused(status))` for non-lookup statuses.
    pub fn lookup(&mut self, query: &LookupQuery) -> Result<LookupResult, ClientError> {
        let (header, body) = self.call(|out, id| codec::encode_lookup(out, id, query, true))?;
        codec::decode_lookup_answer(&header, &body).map_err(ClientError::Refused)
    }

    /// Many lookups with up to `depth` in flight; `answers[i]` is the
    /// answer to `queries[i]` (status code on the right for BUSY and such).
    /// Each round trip writes every request the window allows in one
    /// `send` and decodes every answer one `recv` brought, in place.
    pub fn lookup_pipelined(
        &mut self,
        queries: &[LookupQuery],
        depth: usize,
        answers: &mut Vec<Result<LookupResult, u8>>,
    ) -> Result<(), ClientError> {
        answers.clear();
        answers.resize(queries.len(), Err(status::INTERNAL));
        let base = self.next_request_id;
        let request_count =
            u32::try_from(queries.len()).map_err(|_| ClientError::Protocol("too many queries"))?;
        self.next_request_id = self.next_request_id.wrapping_add(request_count);
        let depth = depth.max(1);
        let mut sent = 0;
        let mut received = 0;
        while received < queries.len() {
            self.out.clear();
            while sent < queries.len() && sent - received < depth {
                // sent < queries.len() <= u32::MAX.
                let id = base.wrapping_add(u32::try_from(sent).unwrap_or(0));
                codec::encode_lookup(&mut self.out, id, &queries[sent], true);
                sent += 1;
            }
            if !self.out.is_empty() {
                self.stream.write_all(&self.out)?;
            }
            self.fill()?;
            while let Ok(Some((header, frame))) =
                next_frame(&self.input[self.start..], limits::ANSWER_FRAME_BYTES_MAX)
            {
                let length = frame.len();
                let index = header.request_id.wrapping_sub(base) as usize;
                if index < queries.len() {
                    answers[index] = codec::decode_lookup_answer(&header, &frame[HEADER_BYTES..]);
                    received += 1;
                }
                self.start += length;
            }
        }
        Ok(())
    }

    /// Reads once from the socket into the input buffer (after moving
    /// unread bytes to its front).
    fn fill(&mut self) -> Result<(), ClientError> {
        if self.start > 0 {
            let (start, end) = (self.start, self.input.len());
            self.input.copy_within(start..end, 0);
            self.input.truncate(end - start);
            self.start = 0;
        }
        let mut chunk = [0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            return Err(ClientError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "node closed the connection",
            )));
        }
        self.input.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    fn write_reply(header: &Header, body: &[u8]) -> WriteReply {
        let mut reply = WriteReply {
            status: header.status,
            binding_id: None,
            expires_at_s: None,
            created: None,
        };
        if header.status == status::OK {
            if let Some((id, expires_at_s, created)) = codec::decode_bind_answer(body) {
                reply.binding_id = Some(id);
                reply.expires_at_s = Some(expires_at_s);
                reply.created = Some(created);
            }
        } else if header.status == status::CONFLICT && body.len() == codec::CONFLICT_BYTES {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(body);
            let id = u64::from_le_bytes(bytes);
            reply.binding_id = (id != 0).then_some(BindingId(id));
        }
        reply
    }

    /// Keeps what a `NOT_LEADER` answer says of the leader.
    fn note_leader(&mut self, header: &Header, body: &[u8]) {
        if header.status == status::NOT_LEADER {
            self.not_leader = codec::decode_not_leader(body);
        }
    }

    /// WAIT_INDEX: waits up to `timeout_ms` (at most 10,000) for the node
    /// to apply log index `index` (PROTOCOL.md 7.10).
    pub fn wait_index(&mut self, index: u64, timeout_ms: u32) -> Result<IndexReply, ClientError> {
        let (header, body) =
            self.call(|out, id| codec::encode_wait_index(out, id, index, timeout_ms))?;
        Ok(Client::index_reply(&header, &body))
    }

    /// The index a read elsewhere must wait for to see every write this
    /// connection has had answered: WAIT_INDEX 0, sent to the node that
    /// answered them (the leader). It waits behind the connection's
    /// pending writes, and the node applied each before answering it.
    pub fn read_index(&mut self) -> Result<u64, ClientError> {
        let reply = self.wait_index(0, 0)?;
        if reply.status != status::OK {
            return Err(ClientError::Refused(reply.status));
        }
        Ok(reply.applied_index)
    }

    /// A LOOKUP sent behind a WAIT_INDEX in one `send`: the node serves
    /// it once it has applied `index`, or once `timeout_ms` passed (the
    /// first answer says which; the lookup is served either way).
    pub fn lookup_after(
        &mut self,
        index: u64,
        timeout_ms: u32,
        query: &LookupQuery,
    ) -> Result<(IndexReply, LookupResult), ClientError> {
        let wait_id = self.take_id();
        let lookup_id = self.take_id();
        self.out.clear();
        codec::encode_wait_index(&mut self.out, wait_id, index, timeout_ms);
        codec::encode_lookup(&mut self.out, lookup_id, query, true);
        self.stream.write_all(&self.out)?;
        let mut waited = None;
        loop {
            let (header, body) = self.read_frame()?;
            if header.request_id == wait_id {
                waited = Some(Client::index_reply(&header, &body));
            } else if header.request_id == lookup_id {
                let lookup = codec::decode_lookup_answer(&header, &body);
                let waited = waited.ok_or(ClientError::Protocol(
                    "LOOKUP answered before the WAIT_INDEX ahead of it",
                ))?;
                return Ok((waited, lookup.map_err(ClientError::Refused)?));
            }
        }
    }

    fn index_reply(header: &Header, body: &[u8]) -> IndexReply {
        IndexReply {
            status: header.status,
            applied_index: codec::decode_wait_index_answer(body).unwrap_or(0),
        }
    }

    /// BIND_AXB_AUTO (version 2): the answer, and the X the node chose.
    /// A `POOL_EXHAUSTED` answer's body names the area
    /// (`WriteReply::status`; the area is the one asked for).
    pub fn bind_auto(
        &mut self,
        auto: &codec::auto::AutoBindBody,
    ) -> Result<(WriteReply, Option<Number>), ClientError> {
        let (header, body) = self.call(|out, id| codec::auto::encode_auto_bind(out, id, auto))?;
        self.note_leader(&header, &body);
        let x = (header.status == status::OK && body.len() == codec::auto::BIND_AUTO_ANSWER_BYTES)
            .then(|| {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&body[codec::BIND_ANSWER_BYTES..]);
                Number(bytes)
            });
        let bind_part = if x.is_some() {
            &body[..codec::BIND_ANSWER_BYTES]
        } else {
            &body[..]
        };
        Ok((Client::write_reply(&header, bind_part), x))
    }

    /// TRACE_X / TRACE_ORDER (version 2): the bindings found, as JSON.
    pub fn trace(
        &mut self,
        request: &codec::control::TraceRequest<'_>,
    ) -> Result<(u8, String), ClientError> {
        let mut body = Vec::new();
        let op = codec::control::encode_trace(request, &mut body);
        let (status, answer) = self.request(op, &body)?;
        Ok((status, String::from_utf8_lossy(&answer).into_owned()))
    }

    /// POOL_SHOW (version 2): a tenant's pool as JSON.
    pub fn pool_show(&mut self, tenant: u32) -> Result<(u8, String), ClientError> {
        let (status, answer) = self.request(opcode::POOL_SHOW, &tenant.to_le_bytes())?;
        Ok((status, String::from_utf8_lossy(&answer).into_owned()))
    }

    /// BIND_AXB / BIND_AXN / BIND_AXE.
    pub fn bind(&mut self, bind: &BindBody) -> Result<WriteReply, ClientError> {
        let (header, body) = self.call(|out, id| codec::encode_bind(out, id, bind))?;
        self.note_leader(&header, &body);
        Ok(Client::write_reply(&header, &body))
    }

    fn binding_call(
        &mut self,
        build: impl FnOnce(&mut Vec<u8>, u32),
    ) -> Result<Result<Binding, WriteReply>, ClientError> {
        let (header, body) = self.call(build)?;
        self.note_leader(&header, &body);
        if header.status == status::OK {
            return codec::decode_binding(&body)
                .map(Ok)
                .ok_or(ClientError::Protocol("binding answer does not decode"));
        }
        Ok(Err(Client::write_reply(&header, &body)))
    }

    /// UPDATE: the changed binding, or the refusal.
    pub fn update(
        &mut self,
        binding_id: BindingId,
        update: &Update,
    ) -> Result<Result<Binding, WriteReply>, ClientError> {
        self.binding_call(|out, id| codec::encode_update(out, id, binding_id, update))
    }

    /// UNBIND: the removed binding, or the refusal.
    pub fn unbind(
        &mut self,
        target: &UnbindBody,
    ) -> Result<Result<Binding, WriteReply>, ClientError> {
        self.binding_call(|out, id| codec::encode_unbind(out, id, target))
    }

    /// QUERY: the binding, or the refusal.
    pub fn query(
        &mut self,
        binding_id: BindingId,
    ) -> Result<Result<Binding, WriteReply>, ClientError> {
        self.binding_call(|out, id| codec::encode_query(out, id, binding_id))
    }
}
