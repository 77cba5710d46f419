//! A TCP session's frames: HELLO first (role and credential), then each
//! request checked for its role and numbers and routed to the loop that owns
//! its shard.

use super::Worker;
use crate::protocol::codec::{self, Request};
use crate::protocol::frame::Header;
use crate::protocol::{opcode, status};
use crate::server::auth::{self, Access, HelloOutcome};
use crate::server::cross::Origin;
use crate::server::dispatch::{self, Op};

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
        let origin = Origin::Tcp {
            token: u32::try_from(token).unwrap_or(u32::MAX),
            generation: conn.generation,
        };
        match request {
            Request::Hello { .. } => {
                self.answer(token, header.opcode, status::BAD_REQUEST, request_id, &[])
            }
            Request::Ping => self.answer(token, header.opcode, status::OK, request_id, &[]),
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
                let body =
                    codec::hello_answer_body(self.set.shard_count(), self.shared.config.node_id, 0);
                self.answer(token, opcode::HELLO, status::OK, request_id, &body);
            }
            HelloOutcome::Unauthorised => {
                conn.closing = true;
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
