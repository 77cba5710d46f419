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
