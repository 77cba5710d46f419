//! Writes: every BIND, UPDATE and UNBIND a loop reads in one iteration goes
//! into one write batch, proposed to the replica at the end of the
//! iteration. The answers come back (as a `Message::Done`) once the batch is
//! in the log, fsync'd and applied by the loops that own its shards.
//!
//! A member that is not the leader refuses writes `NOT_LEADER`, naming the
//! leader (PROTOCOL.md section 8). openraft tells the refusal its id, on its
//! own runtime; the loop adds the leader's client address from the
//! membership when it delivers the answer (`deliver_written`), because the
//! callback on that runtime must not hold the replica (dropping the last
//! handle there would drop the runtime from inside itself).

use super::Worker;
use crate::protocol::codec::{decode_not_leader, encode_not_leader_body, NOT_LEADER_FIXED_BYTES};
use crate::protocol::frame::{push_frame, Header, HEADER_BYTES};
use crate::protocol::status;
use crate::replication::{Answers, Refusal, WriteBatch};
use crate::server::auth::Access;
use crate::server::cross::{Message, Origin};

/// A write waiting for its answer: where it goes and what it was.
#[derive(Clone, Copy, Debug)]
pub(super) struct PendingWrite {
    pub origin: Origin,
    pub opcode: u8,
    pub request_id: u32,
}

fn refusal_status(refusal: Refusal) -> u8 {
    match refusal {
        Refusal::Busy => status::BUSY,
        Refusal::DiskFull => status::DISK_FULL,
        Refusal::Stopped => status::UNAVAILABLE,
        Refusal::NotLeader(_) => status::NOT_LEADER,
        Refusal::OutcomeUnknown => status::OUTCOME_UNKNOWN,
    }
}

/// The message that carries a batch's answers (or its refusal) back.
fn answers_message(pending: &[PendingWrite], outcome: Result<Answers, Refusal>) -> Message {
    let mut items = Vec::with_capacity(pending.len());
    let mut frames = match outcome {
        Ok(Answers(frames)) => frames,
        Err(refusal) => {
            let code = refusal_status(refusal);
            // The leader's id only: the loop adds its address on delivery.
            let mut body = Vec::new();
            if let Refusal::NotLeader(leader_id) = refusal {
                encode_not_leader_body(&mut body, leader_id.unwrap_or(0), "");
            }
            let mut frames = Vec::with_capacity(pending.len() * (HEADER_BYTES + body.len()));
            for write in pending {
                push_frame(&mut frames, write.opcode, code, write.request_id, &body);
            }
            frames
        }
    };
    let mut at = 0usize;
    for write in pending {
        let length = frames
            .get(at..)
            .and_then(|rest| rest.first_chunk::<HEADER_BYTES>())
            .map(|head| Header::read(head).length as usize)
            .filter(|&length| length >= HEADER_BYTES && at + length <= frames.len());
        let (start, end) = if let Some(length) = length {
            (at, at + length)
        } else {
            // One answer per write is an invariant of the state machine;
            // should it ever break, the client still hears about its write.
            let start = frames.len();
            push_frame(
                &mut frames,
                write.opcode,
                status::INTERNAL,
                write.request_id,
                &[],
            );
            (start, frames.len())
        };
        at = end.max(at);
        items.push((write.origin, offset(start), offset(end)));
    }
    Message::Written { items, frames }
}

fn offset(position: usize) -> u32 {
    u32::try_from(position).unwrap_or(u32::MAX)
}

impl Worker {
    /// Adds a checked write to this iteration's batch; false if it was
    /// answered at once instead (`busy`, or too large for a batch).
    pub(super) fn propose(
        &mut self,
        origin: Origin,
        header: &Header,
        body: &[u8],
        access: &Access,
    ) -> bool {
        if !self.admit(origin, header.opcode, header.request_id) {
            return false;
        }
        let mut frame = std::mem::take(&mut self.scratch);
        frame.clear();
        push_frame(&mut frame, header.opcode, 0, header.request_id, body);
        let tenants = match access {
            Access::AllTenants => None,
            Access::Tenants(list) => Some(&list[..]),
        };
        let credential = match origin {
            Origin::Tcp { token, .. } => self
                .conns
                .get(token as usize)
                .and_then(|c| c.session.as_ref())
                .map_or(0, |s| s.credential),
            Origin::Udp { .. } | Origin::Enum { .. } | Origin::Sip { .. } => 0,
        };
        if !self.proposal.push_from(tenants, credential, &frame) {
            self.flush_proposal();
            if !self.proposal.push_from(tenants, credential, &frame) {
                self.scratch = frame;
                self.unforward(origin);
                self.deliver_status(
                    origin,
                    header.opcode,
                    status::BAD_REQUEST,
                    header.request_id,
                );
                return false;
            }
        }
        self.scratch = frame;
        self.pending_writes.push(PendingWrite {
            origin,
            opcode: header.opcode,
            request_id: header.request_id,
        });
        if let Origin::Tcp { token, .. } = origin {
            if let Some(conn) = self.conns.get_mut(token as usize) {
                conn.writes_pending += 1;
            }
        }
        true
    }

    /// Proposes the batch gathered this iteration.
    pub(super) fn flush_proposal(&mut self) {
        if self.proposal.is_empty() {
            return;
        }
        let mut batch = std::mem::replace(&mut self.proposal, WriteBatch::new(0));
        batch.now_s = self.now_s;
        let pending = std::mem::take(&mut self.pending_writes);
        let Some(replica) = self.shared.replica.get().cloned() else {
            let message = answers_message(&pending, Err(Refusal::Busy));
            self.deliver_message(message);
            return;
        };
        let inbox = self.shared.senders[self.index].clone();
        let waker = std::sync::Arc::clone(&self.shared.wakers[self.index]);
        let shared_pending = pending.clone();
        let done: crate::replication::Done = Box::new(move |outcome| {
            // The loop empties its inbox every iteration and never blocks,
            // so this send waits at most one iteration.
            let _ = inbox.send(answers_message(&shared_pending, outcome));
            let _ = waker.wake();
        });
        if let Err((refusal, _)) = replica.submit(batch, done) {
            let message = answers_message(&pending, Err(refusal));
            self.deliver_message(message);
        }
    }

    /// Delivers a `Written` message's answers here and now.
    fn deliver_message(&mut self, message: Message) {
        if let Message::Written { items, frames } = message {
            self.deliver_written(&items, &frames);
        }
    }

    /// Delivers the answers of writes: each releases its connection's
    /// in-flight slot and pending write (which may release a held read).
    /// A `NOT_LEADER` answer gets the leader's client address here.
    pub(super) fn deliver_written(&mut self, items: &[(Origin, u32, u32)], frames: &[u8]) {
        let mut addresses = LeaderAddresses::default();
        let mut completed = Vec::new();
        for &(origin, start, end) in items {
            self.unforward(origin);
            if let Origin::Tcp { token, generation } = origin {
                self.write_answered(token as usize, generation);
            }
            let frame = &frames[start as usize..end as usize];
            self.auto_answered(origin, frame);
            if self.complete_not_leader(frame, &mut addresses, &mut completed) {
                self.deliver(origin, &completed);
            } else {
                self.deliver(origin, frame);
            }
        }
    }

    /// Rebuilds a `NOT_LEADER` answer that names a leader without its
    /// address into `completed`, with the address the membership gives it;
    /// false (nothing to do) for any other frame.
    fn complete_not_leader(
        &self,
        frame: &[u8],
        addresses: &mut LeaderAddresses,
        completed: &mut Vec<u8>,
    ) -> bool {
        let Some(header) = frame.first_chunk::<HEADER_BYTES>().map(Header::read) else {
            return false;
        };
        if header.status != status::NOT_LEADER {
            return false;
        }
        let Some(hint) = decode_not_leader(&frame[HEADER_BYTES..]) else {
            return false;
        };
        if hint.leader_id == 0 || !hint.client_addr.is_empty() {
            return false;
        }
        let address = addresses.of(self.shared.replica.get().map(AsRef::as_ref), hint.leader_id);
        if address.is_empty() {
            return false;
        }
        let mut body = Vec::with_capacity(NOT_LEADER_FIXED_BYTES + address.len());
        encode_not_leader_body(&mut body, hint.leader_id, address);
        completed.clear();
        push_frame(
            completed,
            header.opcode,
            header.status,
            header.request_id,
            &body,
        );
        true
    }
}

/// The leader's client address, read from the membership once per
/// delivered batch (a refused batch names one leader).
#[derive(Default)]
struct LeaderAddresses {
    /// The leader id asked for and its address (empty if not a member).
    known: Option<(u64, String)>,
}

impl LeaderAddresses {
    fn of(&mut self, replica: Option<&crate::replication::Replica>, leader_id: u64) -> &str {
        let stale = self.known.as_ref().is_none_or(|(id, _)| *id != leader_id);
        if stale {
            let address = replica
                .and_then(|replica| {
                    replica
                        .members()
                        .into_iter()
                        .find(|member| member.id == leader_id)
                })
                .map(|member| member.client_addr)
                .unwrap_or_default();
            self.known = Some((leader_id, address));
        }
        self.known
            .as_ref()
            .map_or("", |(_, address)| address.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::{answers_message, PendingWrite};
    use crate::protocol::codec::decode_not_leader;
    use crate::protocol::frame::{Header, HEADER_BYTES};
    use crate::protocol::{opcode, status};
    use crate::replication::Refusal;
    use crate::server::cross::{Message, Origin};

    /// Guards the bug that a refused write's `NOT_LEADER` answer had an
    /// empty body: every write of the batch now names the leader's id (the
    /// loop adds the address on delivery), and 0 when none is known.
    #[test]
    fn a_not_leader_refusal_names_the_leader_in_every_answer() {
        let pending: Vec<PendingWrite> = (1..=2)
            .map(|request_id| PendingWrite {
                origin: Origin::Tcp {
                    token: 0,
                    generation: 0,
                },
                opcode: opcode::BIND_AXB,
                request_id,
            })
            .collect();
        for (leader, expected) in [(Some(3), 3), (None, 0)] {
            let Message::Written { items, frames } =
                answers_message(&pending, Err(Refusal::NotLeader(leader)))
            else {
                panic!("not a Written message");
            };
            assert_eq!(items.len(), 2);
            for (at, &(_, start, end)) in items.iter().enumerate() {
                let frame = &frames[start as usize..end as usize];
                let header = Header::read(frame.first_chunk::<HEADER_BYTES>().unwrap());
                assert_eq!(header.status, status::NOT_LEADER);
                assert_eq!(header.request_id, u32::try_from(at + 1).unwrap());
                let hint = decode_not_leader(&frame[HEADER_BYTES..]).unwrap();
                assert_eq!((hint.leader_id, hint.client_addr.as_str()), (expected, ""));
            }
        }
    }
}
