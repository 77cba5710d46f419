//! One connection of a client thread: its request slots, the requests it
//! makes (open or closed loop), one `send` per turn, and the answers one
//! `recv` brought, matched to their requests by request id (x700) or by
//! order (Redis). Buffers and slots are allocated once: nothing per request.
//!
//! The requests and answers are plain work on the two buffers (`fill`,
//! `unsent`/`wrote`, `input_room`/`received`); the I/O is the driver's:
//! `flush` and `read_answers` here for the `mio` loop (`driver.rs`), one
//! io_uring submission per turn for `uring.rs`.

use super::redis::{answer_of, decode_reply};
use super::schedule::{Place, Schedule, Window};
use super::tally::Tally;
use super::workload::{Generator, Op, OpKind};
use crate::number::Number;
use crate::protocol::codec;
use crate::protocol::frame::{next_frame, HEADER_BYTES};
use crate::protocol::{limits, status};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;

use super::driver::Phase;
use super::wire::{encode, Wire};

/// Bytes of received, unparsed answers a connection holds (many answers
/// per `recv`; the largest answer frame fits).
const INPUT_BYTES: usize = 256 * 1024;

/// Unsent request bytes above which a connection stops making requests
/// until the socket drains.
const OUTPUT_HIGH_WATER_BYTES: usize = 256 * 1024;

/// Most requests one connection makes per turn, so reads are not starved.
const REQUESTS_PER_TURN_MAX: usize = 4096;

/// A request on the wire, waiting for its answer.
#[derive(Clone, Copy, Debug)]
struct Slot {
    busy: bool,
    measured: bool,
    kind: OpKind,
    request_id: u32,
    intended_ns: u64,
    sent_ns: u64,
    /// The route a lookup must get (`NONE`: a reject).
    callee: Number,
    /// A fresh binding's index, to unbind later; `u64::MAX` if none.
    fresh_index: u64,
}

const FREE: Slot = Slot {
    busy: false,
    measured: false,
    kind: OpKind::Lookup,
    request_id: 0,
    intended_ns: 0,
    sent_ns: 0,
    callee: Number::NONE,
    fresh_index: u64::MAX,
};

/// One connection and its request stream.
pub(super) struct Connection {
    pub(super) stream: mio::net::TcpStream,
    out: Vec<u8>,
    out_sent: usize,
    input: Box<[u8]>,
    input_start: usize,
    input_end: usize,
    slots: Box<[Slot]>,
    mask: u32,
    next_request_id: u32,
    /// Redis answers in order: the id of the next answer.
    next_answer_id: u32,
    in_flight: usize,
    generator: Generator,
    pub(super) schedule: Option<Schedule>,
    window: Window,
    done_sending: bool,
    closed: bool,
}

impl Connection {
    pub(super) fn new(
        stream: TcpStream,
        generator: Generator,
        schedule: Option<Schedule>,
        window: Window,
        pipeline: usize,
    ) -> Connection {
        let capacity = pipeline.next_power_of_two();
        Connection {
            stream: mio::net::TcpStream::from_std(stream),
            out: Vec::with_capacity(OUTPUT_HIGH_WATER_BYTES + REQUESTS_PER_TURN_MAX * 128),
            out_sent: 0,
            input: vec![0u8; INPUT_BYTES].into_boxed_slice(),
            input_start: 0,
            input_end: 0,
            slots: vec![FREE; capacity].into_boxed_slice(),
            // capacity <= PIPELINE_MAX rounded up: fits u32.
            mask: u32::try_from(capacity - 1).unwrap_or(u32::MAX),
            next_request_id: 1,
            next_answer_id: 1,
            in_flight: 0,
            generator,
            schedule,
            window,
            done_sending: false,
            closed: false,
        }
    }

    pub(super) fn finished(&self) -> bool {
        self.closed || (self.done_sending && self.in_flight == 0)
    }

    /// True if a request could go now (room in the pipeline and the socket).
    pub(super) fn has_room(&self, pipeline: usize) -> bool {
        !self.closed
            && !self.done_sending
            && self.in_flight < pipeline
            && !self.slots[(self.next_request_id & self.mask) as usize].busy
            && self.out.len() - self.out_sent < OUTPUT_HIGH_WATER_BYTES
    }

    /// Makes every request that is due and fits, then writes.
    pub(super) fn make_requests(
        &mut self,
        phase: &Phase,
        now_ns: u64,
        now_s: u32,
        tally: &mut Tally,
    ) {
        self.fill(phase, now_ns, now_s, tally);
        self.flush(tally);
    }

    /// True once the connection failed or closed.
    pub(super) fn closed(&self) -> bool {
        self.closed
    }

    /// Encodes every request that is due and fits into the output buffer
    /// (not written yet: `unsent`).
    pub(super) fn fill(&mut self, phase: &Phase, now_ns: u64, now_s: u32, tally: &mut Tally) {
        for _ in 0..REQUESTS_PER_TURN_MAX {
            if !self.has_room(phase.pipeline) {
                break;
            }
            let intended_ns = match &self.schedule {
                Some(schedule) => {
                    let due = schedule.due_ns();
                    if due > now_ns {
                        break;
                    }
                    due
                }
                None => now_ns,
            };
            let measured = match self.window.place(intended_ns) {
                Place::Over => {
                    self.done_sending = true;
                    break;
                }
                Place::Warmup => false,
                Place::Measured => true,
            };
            let Some(op) = self.generator.next_op() else {
                self.done_sending = true;
                break;
            };
            let request_id = self.next_request_id;
            self.next_request_id = self.next_request_id.wrapping_add(1);
            encode(&phase.wire, &op, request_id, now_s, &mut self.out);
            let (callee, fresh_index) = match op {
                Op::Lookup { callee, .. } => (callee.unwrap_or(Number::NONE), u64::MAX),
                Op::Bind(binding) if binding.fresh => (Number::NONE, binding.index),
                _ => (Number::NONE, u64::MAX),
            };
            self.slots[(request_id & self.mask) as usize] = Slot {
                busy: true,
                measured,
                kind: op.kind(),
                request_id,
                intended_ns,
                sent_ns: now_ns,
                callee,
                fresh_index,
            };
            self.in_flight += 1;
            if let Some(schedule) = &mut self.schedule {
                schedule.advance();
            }
            if measured {
                let lag = self.schedule.is_some().then(|| now_ns - intended_ns);
                tally.sent(intended_ns, lag);
            }
        }
    }

    /// Request bytes not written yet.
    pub(super) fn unsent(&self) -> &[u8] {
        &self.out[self.out_sent..]
    }

    /// `count` bytes of `unsent` were written.
    pub(super) fn wrote(&mut self, count: usize) {
        self.out_sent = (self.out_sent + count).min(self.out.len());
        if self.out_sent == self.out.len() {
            self.out.clear();
            self.out_sent = 0;
        }
    }

    /// The free end of the input buffer, after moving unread bytes to its
    /// front if it was full; `None` (and the connection failed) if one
    /// answer fills it all.
    pub(super) fn input_room(&mut self, tally: &mut Tally) -> Option<&mut [u8]> {
        if !self.make_room(tally) {
            return None;
        }
        Some(&mut self.input[self.input_end..])
    }

    /// Moves unread bytes to the front of a full input buffer; false (and
    /// the connection failed) if one answer fills it all.
    fn make_room(&mut self, tally: &mut Tally) -> bool {
        if self.input_end == self.input.len() {
            self.input.copy_within(self.input_start..self.input_end, 0);
            self.input_end -= self.input_start;
            self.input_start = 0;
            if self.input_end == self.input.len() {
                self.fail("an answer larger than the input buffer".into(), tally);
                return false;
            }
        }
        true
    }

    /// `count` bytes arrived at the front of `input_room`: handles every
    /// complete answer; returns how many.
    pub(super) fn received(
        &mut self,
        count: usize,
        wire: &Wire,
        now_ns: u64,
        tally: &mut Tally,
    ) -> u64 {
        self.input_end = (self.input_end + count).min(self.input.len());
        self.take_answers(wire, now_ns, tally)
    }

    /// Writes unsent requests until done or the socket is full.
    pub(super) fn flush(&mut self, tally: &mut Tally) {
        while self.out_sent < self.out.len() {
            match self.stream.write(&self.out[self.out_sent..]) {
                Ok(0) => {
                    self.fail("the server stopped reading".into(), tally);
                    return;
                }
                Ok(n) => self.wrote(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(format!("write: {e}"), tally);
                    return;
                }
            }
        }
    }

    /// Reads everything the socket has and handles the answers; `now_ns`
    /// is their arrival time (one clock read per wake-up, not per read).
    pub(super) fn read_answers(&mut self, phase: &Phase, now_ns: u64, tally: &mut Tally) -> u64 {
        let mut answers = 0;
        loop {
            if !self.make_room(tally) {
                return answers;
            }
            let room_len = self.input.len() - self.input_end;
            match self.stream.read(&mut self.input[self.input_end..]) {
                Ok(0) => {
                    self.fail("the server closed the connection".into(), tally);
                    return answers;
                }
                Ok(n) => {
                    let short = n < room_len;
                    answers += self.received(n, &phase.wire, now_ns, tally);
                    // A short read drained the socket: edge-triggered
                    // epoll reports the next arrival, so the would-block
                    // read is skipped (one system call fewer per wake-up).
                    if self.closed || short {
                        return answers;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return answers,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(format!("read: {e}"), tally);
                    return answers;
                }
            }
        }
    }

    /// Handles every complete answer in the input buffer.
    fn take_answers(&mut self, wire: &Wire, now_ns: u64, tally: &mut Tally) -> u64 {
        let mut answers = 0;
        loop {
            let input = &self.input[self.input_start..self.input_end];
            let (used, request_id, status_code, callee, repeat) = match wire {
                Wire::X700 { .. } => match next_frame(input, limits::ANSWER_FRAME_BYTES_MAX) {
                    Ok(Some((header, frame))) => {
                        let ok = header.status == status::OK;
                        let callee = if ok && frame.len() >= HEADER_BYTES + 8 {
                            let mut bytes = [0u8; 8];
                            bytes.copy_from_slice(&frame[HEADER_BYTES..HEADER_BYTES + 8]);
                            Number(bytes)
                        } else {
                            Number::NONE
                        };
                        // Read as a bind answer; only a bind's slot uses it.
                        let repeat = ok
                            && codec::decode_bind_answer(&frame[HEADER_BYTES..])
                                .is_some_and(|(_, _, created)| !created);
                        (
                            frame.len(),
                            header.request_id,
                            header.status,
                            callee,
                            repeat,
                        )
                    }
                    Ok(None) => break,
                    Err(error) => {
                        self.fail(format!("answer framing: {error}"), tally);
                        break;
                    }
                },
                Wire::Redis(_) => match decode_reply(input) {
                    Ok(Some((used, reply))) => {
                        let request_id = self.next_answer_id;
                        self.next_answer_id = self.next_answer_id.wrapping_add(1);
                        let slot = self.slots[(request_id & self.mask) as usize];
                        let (status_code, callee) = answer_of(reply, slot.kind);
                        (used, request_id, status_code, callee, false)
                    }
                    Ok(None) => break,
                    Err(error) => {
                        self.fail(error.to_string(), tally);
                        break;
                    }
                },
            };
            self.input_start += used;
            self.answer(request_id, status_code, callee, repeat, now_ns, tally);
            answers += 1;
        }
        if self.input_start == self.input_end {
            self.input_start = 0;
            self.input_end = 0;
        }
        answers
    }

    /// One answer: checks it against what its request expected. `repeat`:
    /// a bind answered ok found its binding already there.
    #[inline]
    fn answer(
        &mut self,
        request_id: u32,
        status_code: u8,
        callee: Number,
        repeat: bool,
        now_ns: u64,
        tally: &mut Tally,
    ) {
        let slot = &mut self.slots[(request_id & self.mask) as usize];
        if !slot.busy || slot.request_id != request_id {
            tally.late_answers += 1;
            return;
        }
        slot.busy = false;
        let slot = *slot;
        self.in_flight -= 1;
        let correct = match slot.kind {
            OpKind::Lookup if slot.callee.is_none() => {
                matches!(
                    status_code,
                    status::NOT_BOUND
                        | status::EXPIRED
                        | status::DIRECTION_DENIED
                        | status::NOT_A_PARTY
                )
            }
            OpKind::Lookup => status_code == status::OK && callee == slot.callee,
            OpKind::Bind | OpKind::Unbind => status_code == status::OK,
        };
        tally.answers_all += 1;
        if slot.fresh_index != u64::MAX && status_code == status::OK {
            self.generator.bound(slot.fresh_index);
        }
        if slot.measured {
            tally.answered(
                slot.kind,
                status_code,
                correct,
                now_ns.saturating_sub(slot.intended_ns),
                now_ns,
            );
            if !correct && slot.kind == OpKind::Lookup && status_code <= status::BAD_NUMBER {
                tally.wrong_answers += 1;
            }
            if repeat && slot.kind == OpKind::Bind {
                tally.binds_existing += 1;
            }
        }
    }

    /// Gives up on requests unanswered for longer than the timeout.
    pub(super) fn expire(&mut self, timeout_ns: u64, now_ns: u64, tally: &mut Tally) {
        if self.in_flight == 0 {
            return;
        }
        for slot in self.slots.iter_mut() {
            if slot.busy && now_ns.saturating_sub(slot.sent_ns) > timeout_ns {
                slot.busy = false;
                self.in_flight -= 1;
                if slot.measured {
                    tally.timed_out(slot.kind, now_ns - slot.intended_ns.min(now_ns), now_ns);
                }
            }
        }
    }

    /// The connection is unusable: counts what was in flight as lost.
    pub(super) fn fail(&mut self, reason: String, tally: &mut Tally) {
        if self.closed {
            return;
        }
        self.closed = true;
        let mut lost = [(OpKind::Lookup, 0), (OpKind::Bind, 0), (OpKind::Unbind, 0)];
        for slot in self.slots.iter_mut().filter(|s| s.busy) {
            slot.busy = false;
            if slot.measured {
                lost[slot.kind as usize].1 += 1;
            }
        }
        self.in_flight = 0;
        // A connection closed after its last answer is not an error.
        if !(self.done_sending && lost.iter().all(|l| l.1 == 0)) {
            tally.connection_failed(reason, &lost);
        }
    }
}
