//! Crossing cores: requests for another loop's shards go out in one batch
//! per loop and per iteration; its answers come back the same way. Queues
//! are bounded: a full one answers BUSY, and answers are never dropped.

use super::{offset, Worker, LOOKUP_ANSWER_BYTES};
use crate::binding::{LookupQuery, LookupResult, Reject};
use crate::protocol::codec;
use crate::protocol::status;
use crate::server::apply::{apply_batch, capture_set, swap_in, PartialAnswers};
use crate::server::cross::{Message, Origin, WorkItem};
use crate::server::dispatch::{self, Op};
use crossbeam_channel::TrySendError;

impl Worker {
    pub(super) fn send_outgoing(&mut self) {
        for owner in 0..self.outgoing.len() {
            if self.outgoing[owner].is_empty() {
                continue;
            }
            let items = std::mem::take(&mut self.outgoing[owner]);
            let message = Message::Work {
                from: self.index,
                items,
            };
            match self.shared.senders[owner].try_send(message) {
                Ok(()) => {
                    let _ = self.shared.wakers[owner].wake();
                }
                Err(
                    TrySendError::Full(Message::Work { items, .. })
                    | TrySendError::Disconnected(Message::Work { items, .. }),
                ) => {
                    // The other core is saturated: say so instead of queueing
                    // without bound.
                    for item in items {
                        self.unforward(item.origin);
                        self.deliver_status(
                            item.origin,
                            dispatch::op_opcode(&item.op),
                            status::BUSY,
                            item.request_id,
                        );
                    }
                }
                Err(_) => {}
            }
        }
    }

    pub(super) fn unforward(&mut self, origin: Origin) {
        if let Origin::Tcp { token, generation } = origin {
            if let Some(conn) = self.conns.get_mut(token as usize) {
                if conn.generation == generation {
                    conn.in_flight = conn.in_flight.saturating_sub(1);
                }
            }
        }
    }

    /// Handles what other loops and the replica sent. At most one chunk of
    /// committed writes is applied per call: the rest waits for the next
    /// iteration (`inbox_more` keeps the loop from sleeping meanwhile), so
    /// a long catch-up never stops lookups for long.
    pub(super) fn drain_inbox(&mut self) {
        self.inbox_more = false;
        let mut applied = false;
        loop {
            let message = if applied {
                // Only answers and forwarded work pass an applied chunk in
                // this call; the next Apply waits.
                match self.inbox.try_recv() {
                    Ok(Message::Apply { batches, reply }) => {
                        self.held_apply = Some((batches, reply));
                        self.inbox_more = true;
                        break;
                    }
                    Ok(message) => message,
                    Err(_) => break,
                }
            } else if let Some((batches, reply)) = self.held_apply.take() {
                Message::Apply { batches, reply }
            } else {
                match self.inbox.try_recv() {
                    Ok(message) => message,
                    Err(_) => break,
                }
            };
            if matches!(message, Message::Apply { .. }) {
                applied = true;
            }
            match message {
                Message::Work { from, items } => self.serve_remote(from, items),
                Message::Adopt { stream, peer } => self.adopt(stream, peer),
                Message::Written { items, frames } => self.deliver_written(&items, &frames),
                Message::Done { items, frames } => {
                    for (origin, start, end) in items {
                        self.unforward(origin);
                        self.deliver(origin, &frames[start as usize..end as usize]);
                    }
                }
                Message::Apply { batches, reply } => {
                    // Lookups already read see the state before these
                    // writes; answer them first.
                    self.run_lookups();
                    let parts = batches
                        .iter()
                        .map(|(index, batch)| {
                            let mut part = PartialAnswers::default();
                            apply_batch(&mut self.set, *index, batch, &mut part);
                            part
                        })
                        .collect();
                    let _ = reply.send(parts);
                }
                Message::Capture {
                    applied_next,
                    reply,
                } => {
                    let _ = reply.send(capture_set(&mut self.set, applied_next));
                }
                Message::SwapIn { staging, reply } => {
                    // Lookups already read are answered from the tables
                    // they were read against.
                    self.run_lookups();
                    let _ = reply.send(swap_in(&mut self.set, &staging));
                }
                Message::Checksum { reply } => {
                    // Between batches: every apply before this message is
                    // in, none after it.
                    self.run_lookups();
                    let _ = reply.send(self.set.checksums());
                }
            }
        }
    }

    /// Executes requests forwarded by another loop, in order, and queues
    /// their answers back.
    pub(super) fn serve_remote(&mut self, from: usize, items: Vec<WorkItem>) {
        // The lookup buffers are shared: answer this loop's own gathered
        // lookups before borrowing them for the remote batch.
        self.run_lookups();
        let mut frames = Vec::with_capacity(items.len() * LOOKUP_ANSWER_BYTES);
        let mut done = Vec::with_capacity(items.len());
        let mut i = 0;
        while i < items.len() {
            let run = items[i..]
                .iter()
                .take_while(|item| matches!(item.op, Op::Lookup(_)))
                .count();
            if run > 0 {
                self.lookups.clear();
                self.lookups
                    .extend(items[i..i + run].iter().map(|item| match item.op {
                        Op::Lookup(query) => query,
                        _ => LookupQuery::default(),
                    }));
                self.answers
                    .resize(run, LookupResult::Reject(Reject::NotBound));
                self.set
                    .lookup_batch(&self.lookups, &mut self.answers[..run], self.now_s);
                for (item, answer) in items[i..i + run].iter().zip(&self.answers) {
                    let start = frames.len();
                    codec::encode_lookup_answer(&mut frames, item.request_id, answer);
                    done.push((item.origin, offset(start), offset(frames.len())));
                }
                self.lookups.clear();
                // Counted here, by the loop that answers: time from the
                // start of this iteration (the requesting loop's own wait
                // is not in it).
                let latency_ns =
                    u64::try_from(self.iteration_started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                self.metrics.latency(latency_ns, run as u64);
                i += run;
                continue;
            }
            let item = &items[i];
            let start = frames.len();
            let op_code = dispatch::op_opcode(&item.op);
            dispatch::execute_write(
                &mut self.set,
                &item.op,
                &item.access,
                op_code,
                item.request_id,
                self.now_s,
                &mut frames,
            );
            done.push((item.origin, offset(start), offset(frames.len())));
            i += 1;
        }
        let reply = Message::Done {
            items: done,
            frames,
        };
        self.send_reply(from, reply);
    }

    pub(super) fn send_reply(&mut self, to: usize, reply: Message) {
        match self.shared.senders[to].try_send(reply) {
            Ok(()) => {
                let _ = self.shared.wakers[to].wake();
            }
            // Answers are never dropped: keep them and retry next iteration.
            Err(TrySendError::Full(reply) | TrySendError::Disconnected(reply)) => {
                self.unsent_replies.push((to, reply))
            }
        }
    }

    pub(super) fn retry_replies(&mut self) {
        for (to, reply) in std::mem::take(&mut self.unsent_replies) {
            self.send_reply(to, reply);
        }
    }
}
