//! Phase 2's two ways of applying a batch: over the wire to a running node
//! (`Remote`: the batch's binds pipelined on one session) or into a stopped
//! node's data directory (`Offline`: the store's own bind and unbind).
//! Both answer each bind alike, so the batching above them is one code.

use super::rows::Row;
use crate::binding::{BindRequest, BindingId, Parties, WriteError};
use crate::client::{Client, ClientError};
use crate::number::Number;
use crate::protocol::codec::{self, CONFLICT_BYTES};
use crate::protocol::{status, BindBody, UnbindBody};
use crate::store::Store;

/// Requests one session keeps in flight: enough to hide the round trip,
/// well under any node's per-connection limit.
pub const WINDOW: usize = 64;

/// What one bind of a batch got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Bound: `created` false when an identical live binding was there.
    Bound {
        /// The binding.
        binding_id: BindingId,
        /// Whether this bind made it.
        created: bool,
    },
    /// Refused by the node or the store.
    Refused {
        /// Status name (`conflict`, `unauthorised`, ...).
        status: String,
        /// Why, in words.
        reason: String,
    },
}

/// Where a batch goes.
pub enum Sink {
    /// A running node.
    Remote(Remote),
    /// A stopped node's data directory, opened by this command.
    Offline(Store),
}

impl Sink {
    /// Sends every row's bind; one answer per row, in order. `Err` when
    /// the session broke: some of the binds may have been applied.
    pub fn bind_batch(&mut self, rows: &[Row]) -> Result<Vec<Answer>, String> {
        match self {
            Sink::Remote(remote) => remote.bind_batch(rows).map_err(|e| e.to_string()),
            Sink::Offline(store) => Ok(rows
                .iter()
                .map(|row| match store.bind(&row.request) {
                    Ok(bound) => Answer::Bound {
                        binding_id: bound.binding_id,
                        created: bound.created,
                    },
                    Err(error) => Answer::Refused {
                        status: error.status().to_string(),
                        reason: error.to_string(),
                    },
                })
                .collect()),
        }
    }

    /// Removes the bindings `ids` (compensation); returns those it could
    /// not remove, with why. A binding already gone (expired, or unbound
    /// by someone else) counts as removed.
    pub fn unbind_all(&mut self, ids: &[BindingId]) -> Vec<(BindingId, String)> {
        match self {
            Sink::Remote(remote) => match remote.unbind_all(ids) {
                Ok(failed) => failed,
                Err(error) => ids.iter().map(|id| (*id, error.to_string())).collect(),
            },
            Sink::Offline(store) => ids
                .iter()
                .filter_map(|id| match store.unbind(*id) {
                    Ok(_) | Err(WriteError::NotFound) => None,
                    Err(error) => Some((*id, error.to_string())),
                })
                .collect(),
        }
    }
}

/// A session with a node that pipelines binds and unbinds.
pub struct Remote {
    client: Client,
    /// Request id of the next request: far from the small ids the client's
    /// own calls (HELLO) used, so no stray answer is mistaken for ours.
    next_request_id: u32,
}

/// The wire body of a bind request.
pub fn bind_body(request: &BindRequest) -> BindBody {
    let (a, b) = match request.parties {
        Parties::Axb { a, b } => (a, b),
        Parties::Axn { a, default_callee } => (a, default_callee.unwrap_or(Number::NONE)),
        Parties::Axe { a, extension } => (a, extension),
    };
    BindBody {
        mode: request.parties.mode(),
        x: request.x,
        a,
        b,
        tenant: request.tenant,
        ttl_s: request.ttl_s,
        direction: request.direction,
        recording: request.recording,
        order: request.order,
    }
}

impl Remote {
    /// Pipelining on an open session.
    pub fn new(client: Client) -> Remote {
        Remote {
            client,
            next_request_id: 1 << 30,
        }
    }

    /// Sends `count` requests (`encode(out, request_id, i)` writes the
    /// i-th) with at most `WINDOW` unanswered, and returns each answer's
    /// status and body in request order.
    fn pipeline(
        &mut self,
        count: usize,
        encode: impl Fn(&mut Vec<u8>, u32, usize),
    ) -> Result<Vec<(u8, Vec<u8>)>, ClientError> {
        let base = self.next_request_id;
        let count_u32 =
            u32::try_from(count).map_err(|_| ClientError::Protocol("batch too large"))?;
        self.next_request_id = base.wrapping_add(count_u32);
        let mut answers: Vec<Option<(u8, Vec<u8>)>> = vec![None; count];
        let (mut sent, mut received) = (0usize, 0usize);
        let mut out = Vec::with_capacity(WINDOW * 64);
        while received < count {
            out.clear();
            while sent < count && sent - received < WINDOW {
                // sent < count, which fits u32 (checked above).
                let offset = u32::try_from(sent).unwrap_or(u32::MAX);
                encode(&mut out, base.wrapping_add(offset), sent);
                sent += 1;
            }
            if !out.is_empty() {
                self.client.send_raw(&out)?;
            }
            let (header, body) = self.client.read_frame()?;
            let index = header.request_id.wrapping_sub(base) as usize;
            if let Some(slot @ None) = answers.get_mut(index) {
                *slot = Some((header.status, body));
                received += 1;
            }
        }
        Ok(answers.into_iter().flatten().collect())
    }

    fn bind_batch(&mut self, rows: &[Row]) -> Result<Vec<Answer>, ClientError> {
        let bodies: Vec<BindBody> = rows.iter().map(|row| bind_body(&row.request)).collect();
        let answers = self.pipeline(bodies.len(), |out, id, i| {
            codec::encode_bind(out, id, &bodies[i]);
        })?;
        Ok(answers
            .into_iter()
            .map(|(code, body)| bind_answer(code, &body))
            .collect())
    }

    fn unbind_all(&mut self, ids: &[BindingId]) -> Result<Vec<(BindingId, String)>, ClientError> {
        let answers = self.pipeline(ids.len(), |out, request_id, i| {
            codec::encode_unbind(out, request_id, &UnbindBody::Id(ids[i]));
        })?;
        Ok(ids
            .iter()
            .zip(answers)
            .filter(|(_, (code, _))| *code != status::OK && *code != status::NOT_FOUND)
            .map(|(id, (code, _))| (*id, status::name(code).to_string()))
            .collect())
    }
}

/// Reads one bind answer.
fn bind_answer(code: u8, body: &[u8]) -> Answer {
    if code == status::OK {
        return match codec::decode_bind_answer(body) {
            Some((binding_id, _, created)) => Answer::Bound {
                binding_id,
                created,
            },
            None => Answer::Refused {
                status: "internal".into(),
                reason: "the bind answer does not decode".into(),
            },
        };
    }
    let reason = if code == status::CONFLICT && body.len() == CONFLICT_BYTES {
        let mut bytes = [0u8; CONFLICT_BYTES];
        bytes.copy_from_slice(body);
        format!("conflict with live binding {}", u64::from_le_bytes(bytes))
    } else if code == status::NOT_LEADER {
        match codec::decode_not_leader(body) {
            Some(hint) if !hint.client_addr.is_empty() => format!(
                "this node does not lead: import through the leader at {}",
                hint.client_addr
            ),
            _ => "this node does not lead: import through the leader".to_string(),
        }
    } else {
        status::name(code).to_string()
    };
    Answer::Refused {
        status: status::name(code).to_string(),
        reason,
    }
}
