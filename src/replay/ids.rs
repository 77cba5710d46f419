//! Binding ids across a replay. The node replayed to gives its binds other
//! ids than the captured node did, so an UPDATE, an UNBIND by id or a QUERY
//! sent with its captured id would name nothing (or another binding). Each
//! replayed answer to a BIND whose captured answer is there teaches the map
//! one pair: the captured answer's id, the replayed answer's id. A later
//! request naming a captured id is sent with the replayed id instead; if a
//! planned BIND that will teach its id has not been answered yet, the
//! request waits for it (at most `ID_WAIT`). Ids the map never learns are
//! sent as captured and counted.

use super::plan::{ConnectionPlan, Plan, PlannedRequest};
use super::run::Answer;
use crate::binding::BindingId;
use crate::protocol::codec::{
    decode_bind_answer, decode_request, encode_query, encode_unbind, encode_update, Request,
    UnbindBody,
};
use crate::protocol::frame::{Header, HEADER_BYTES};
use crate::protocol::{opcode, status};
use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Longest wait of a request for the BIND answer that teaches its id.
pub const ID_WAIT: Duration = Duration::from_secs(5);

/// A captured id that planned BINDs will teach.
#[derive(Clone, Copy, Debug)]
struct Awaited {
    /// Those BINDs not yet answered (or given up on).
    binds: usize,
    /// The earliest planned offset among them: a request planned before it
    /// does not wait (the BIND would come after it, on its own connection
    /// perhaps).
    first_offset_ns: u64,
}

#[derive(Default)]
struct State {
    /// Captured id to replayed id.
    learned: HashMap<u64, u64>,
    awaited: HashMap<u64, Awaited>,
    remapped: u64,
    unmapped: u64,
}

/// What the map did over a replay.
#[derive(Clone, Debug, Default)]
pub struct IdSummary {
    /// Captured id to replayed id, every pair learned.
    pub learned: HashMap<u64, u64>,
    /// Requests sent with their id rewritten.
    pub remapped: u64,
    /// Requests naming an id the map did not hold, sent as captured.
    pub unmapped: u64,
}

/// The captured-to-replayed id map one replay's connections share.
#[derive(Default)]
pub struct IdMap {
    state: Mutex<State>,
    changed: Condvar,
}

/// The id the captured answer of a planned BIND carries, if it was `OK`.
pub fn taught_by(request: &PlannedRequest) -> Option<u64> {
    if !matches!(
        request.opcode,
        opcode::BIND_AXB | opcode::BIND_AXN | opcode::BIND_AXE
    ) {
        return None;
    }
    bind_answer_id(request.captured_answer.as_deref()?)
}

/// The id a whole BIND answer frame carries, if it is `OK`.
fn bind_answer_id(frame: &[u8]) -> Option<u64> {
    let header = Header::read(frame.first_chunk()?);
    if header.status != status::OK {
        return None;
    }
    decode_bind_answer(&frame[HEADER_BYTES..]).map(|(id, _, _)| id.0)
}

/// The request a frame holds if it names a binding by id (UPDATE, UNBIND
/// by id, QUERY), with that id. Malformed ones name nothing: they go as
/// captured, the node refuses them alike.
fn named_id(frame: &[u8]) -> Option<(Header, Request<'_>, u64)> {
    let header = Header::read(frame.first_chunk()?);
    let request = decode_request(&header, &frame[HEADER_BYTES..]).ok()?;
    let id = match request {
        Request::Update(update) => update.binding_id,
        Request::Unbind(UnbindBody::Id(id)) => id,
        Request::Query(query) => query.binding_id,
        _ => return None,
    };
    Some((header, request, id.0))
}

impl IdMap {
    /// A map that awaits the ids the planned BINDs' captured answers carry.
    pub fn new(plan: &Plan) -> IdMap {
        let mut state = State::default();
        for request in plan.connections.iter().flat_map(|c| &c.requests) {
            let Some(captured) = taught_by(request) else {
                continue;
            };
            let awaited = state.awaited.entry(captured).or_insert(Awaited {
                binds: 0,
                first_offset_ns: request.offset_ns,
            });
            awaited.binds += 1;
            awaited.first_offset_ns = awaited.first_offset_ns.min(request.offset_ns);
        }
        IdMap {
            state: Mutex::new(state),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a replay thread panicked: the pairs
        // learned are still right.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Learns from the replayed answer to the planned BIND `request`
    /// (`None`: it will never come). Anything else is ignored.
    pub fn learn(&self, request: &PlannedRequest, answer: Option<&[u8]>) {
        let Some(captured) = taught_by(request) else {
            return;
        };
        let mut state = self.lock();
        if let Some(replayed) = answer.and_then(bind_answer_id) {
            state.learned.insert(captured, replayed);
        }
        if let Some(awaited) = state.awaited.get_mut(&captured) {
            awaited.binds = awaited.binds.saturating_sub(1);
            if awaited.binds == 0 {
                state.awaited.remove(&captured);
            }
        }
        drop(state);
        self.changed.notify_all();
    }

    /// Tells the map that the BINDs of `connection` without an answer in
    /// `answers` (its HELLO refused, the server gone) will teach nothing:
    /// requests of other connections waiting for their ids go on at once.
    pub fn give_up(&self, connection: &ConnectionPlan, answers: &[Answer]) {
        let mut answered = vec![false; connection.requests.len()];
        for answer in answers {
            if let Some(seen) = answered.get_mut(answer.request) {
                *seen = true;
            }
        }
        let unanswered = connection.requests.iter().zip(answered);
        for (request, _) in unanswered.filter(|(_, seen)| !seen) {
            self.learn(request, None);
        }
    }

    /// Appends the frame to send for `request` to `out`: as captured, or
    /// with the binding id it names rewritten to the replayed one, after
    /// waiting (at most `ID_WAIT`) for a BIND still to teach it.
    pub fn push_request(&self, request: &PlannedRequest, out: &mut Vec<u8>) {
        let Some((header, named, captured)) = named_id(&request.bytes) else {
            out.extend_from_slice(&request.bytes);
            return;
        };
        let waits = |state: &mut State| {
            !state.learned.contains_key(&captured)
                && state
                    .awaited
                    .get(&captured)
                    .is_some_and(|awaited| awaited.first_offset_ns <= request.offset_ns)
        };
        let mut state = self.lock();
        if waits(&mut state) {
            state = self
                .changed
                .wait_timeout_while(state, ID_WAIT, waits)
                .map_or_else(|poisoned| poisoned.into_inner().0, |(state, _)| state);
        }
        let Some(&replayed) = state.learned.get(&captured) else {
            state.unmapped += 1;
            out.extend_from_slice(&request.bytes);
            return;
        };
        state.remapped += 1;
        drop(state);
        let id = header.request_id;
        let replayed = BindingId(replayed);
        match named {
            Request::Update(update) => encode_update(out, id, replayed, &update.update),
            Request::Unbind(_) => encode_unbind(out, id, &UnbindBody::Id(replayed)),
            _ => encode_query(out, id, replayed),
        }
    }

    /// The pairs learned and the counts, once the replay is over.
    pub fn summary(&self) -> IdSummary {
        let state = self.lock();
        IdSummary {
            learned: state.learned.clone(),
            remapped: state.remapped,
            unmapped: state.unmapped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::Protocol;
    use crate::protocol::codec::{bind_answer_body, QueryBody};
    use crate::protocol::push_frame;
    use crate::protocol::Role;
    use crate::replay::plan::{ConnectionPlan, Hello};
    use std::time::Instant;

    fn planned(offset_ns: u64, bytes: Vec<u8>, captured_answer: Option<Vec<u8>>) -> PlannedRequest {
        let header = Header::read(bytes.first_chunk().expect("a whole header"));
        PlannedRequest {
            offset_ns,
            request_id: header.request_id,
            opcode: header.opcode,
            bytes,
            captured_answer,
        }
    }

    /// A BIND (its body is never read here) answered `OK` with `id`.
    fn bind(offset_ns: u64, id: u64) -> PlannedRequest {
        let mut request = Vec::new();
        push_frame(&mut request, opcode::BIND_AXB, 0, 1, &[0; 8]);
        let mut answer = Vec::new();
        let body = bind_answer_body(BindingId(id), 100, true);
        push_frame(&mut answer, opcode::BIND_AXB, status::OK, 1, &body);
        planned(offset_ns, request, Some(answer))
    }

    fn query(offset_ns: u64, id: u64) -> PlannedRequest {
        let mut request = Vec::new();
        encode_query(&mut request, 2, BindingId(id));
        planned(offset_ns, request, None)
    }

    /// One TCP connection per list of requests.
    fn plan_of(connections: Vec<Vec<PlannedRequest>>) -> Plan {
        let connections = connections.into_iter().enumerate();
        Plan {
            connections: connections
                .map(|(connection, requests)| ConnectionPlan {
                    connection,
                    protocol: Protocol::Tcp,
                    hello: Hello {
                        request_id: 0,
                        version: 1,
                        role: Role::Admin,
                    },
                    requests,
                })
                .collect(),
        }
    }

    fn queried_id(frame: &[u8]) -> u64 {
        let header = Header::read(frame.first_chunk().expect("header"));
        match decode_request(&header, &frame[HEADER_BYTES..]) {
            Ok(Request::Query(QueryBody { binding_id })) => binding_id.0,
            other => panic!("not a query: {other:?}"),
        }
    }

    #[test]
    fn a_learned_id_is_rewritten_and_an_unknown_one_goes_as_captured() {
        let binding = bind(0, 40);
        let plan = plan_of(vec![vec![binding.clone(), query(10, 40), query(20, 99)]]);
        let ids = IdMap::new(&plan);
        let mut answer = Vec::new();
        let body = bind_answer_body(BindingId(7), 100, true);
        push_frame(&mut answer, opcode::BIND_AXB, status::OK, 1, &body);
        ids.learn(&binding, Some(&answer));
        let mut out = Vec::new();
        ids.push_request(&plan.connections[0].requests[1], &mut out);
        assert_eq!(queried_id(&out), 7);
        out.clear();
        ids.push_request(&plan.connections[0].requests[2], &mut out);
        assert_eq!(out, plan.connections[0].requests[2].bytes);
        let summary = ids.summary();
        assert_eq!((summary.remapped, summary.unmapped), (1, 1));
        assert_eq!(summary.learned.get(&40), Some(&7));
    }

    #[test]
    fn a_request_waits_for_the_bind_that_teaches_its_id_and_not_past_a_refusal() {
        let binding = bind(0, 40);
        let plan = plan_of(vec![vec![binding.clone(), query(10, 40)]]);
        let ids = IdMap::new(&plan);
        let started = Instant::now();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                let mut refused = Vec::new();
                push_frame(&mut refused, opcode::BIND_AXB, status::CONFLICT, 1, &[0; 8]);
                ids.learn(&binding, Some(&refused));
            });
            let mut out = Vec::new();
            ids.push_request(&plan.connections[0].requests[1], &mut out);
            // The refusal taught nothing: the query goes as captured, once
            // the bind was answered and well before `ID_WAIT`.
            assert_eq!(out, plan.connections[0].requests[1].bytes);
        });
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(started.elapsed() < ID_WAIT);
        assert_eq!(ids.summary().unmapped, 1);
    }

    /// Guards a wait of `ID_WAIT` per request: a connection that never
    /// started (HELLO refused) still owed the map its BINDs.
    #[test]
    fn a_connection_that_failed_releases_the_ids_its_binds_would_teach() {
        let plan = plan_of(vec![vec![bind(0, 40)], vec![query(10, 40)]]);
        let ids = IdMap::new(&plan);
        ids.give_up(&plan.connections[0], &[]);
        let started = Instant::now();
        let mut out = Vec::new();
        let waiting = &plan.connections[1].requests[0];
        ids.push_request(waiting, &mut out);
        assert!(started.elapsed() < ID_WAIT / 2);
        assert_eq!(out, waiting.bytes);
        assert_eq!(ids.summary().unmapped, 1);
    }
}
