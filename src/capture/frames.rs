//! From byte streams to x700 frames: splitting each direction of a TCP
//! connection (and each UDP datagram) into frames, finding the frame
//! boundaries again after a hole or when the capture starts mid-stream,
//! and, once each connection's client and server are known, pairing each
//! request with its answer by request id.

use crate::protocol::codec::{
    BINDING_BYTES, BIND_ANSWER_BYTES, BIND_BYTES, CONFLICT_BYTES, HELLO_ANSWER_BYTES,
    HELLO_FIXED_BYTES, LOOKUP_BYTES, NOT_LEADER_ADDR_BYTES_MAX, NOT_LEADER_FIXED_BYTES,
    QUERY_BYTES, ROUTE_BYTES, UNBIND_BYTES, UPDATE_BYTES, WAIT_INDEX_ANSWER_BYTES,
    WAIT_INDEX_BYTES,
};
use crate::protocol::frame::{next_frame, Header, HEADER_BYTES};
use crate::protocol::limits::{ANSWER_FRAME_BYTES_MAX, CREDENTIAL_BYTES_MAX};
use crate::protocol::opcode;
use std::collections::{HashMap, VecDeque};

/// The largest frame either side may send (answers are the larger).
pub const FRAME_BYTES_MAX: u32 = ANSWER_FRAME_BYTES_MAX;
/// Headers in a row that must look sane before a stream whose frame
/// boundaries are unknown is taken as framed there (fewer if the stream
/// ends exactly at the end of a frame).
pub const SYNC_HEADERS: usize = 3;
/// Bytes held while looking for frame boundaries: past this the oldest are
/// dropped.
pub const SYNC_BYTES_MAX: usize = 4 * FRAME_BYTES_MAX as usize;

/// A frame read from the capture.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Frame {
    /// Capture time of the packet that carried its last byte, nanoseconds
    /// since the Unix epoch.
    pub time_ns: u64,
    /// Its header.
    pub header: Header,
    /// The whole frame, header included.
    pub bytes: Vec<u8>,
    /// For a request, the index of its answer among the connection's
    /// answers; for an answer, the index of its request.
    pub pair: Option<usize>,
}

/// The opcodes of protocol version 1: a header with any other is not taken
/// for a frame boundary.
fn known_opcode(code: u8) -> bool {
    matches!(
        code,
        opcode::HELLO
            | opcode::PING
            | opcode::STATS
            | opcode::LOOKUP
            | opcode::WAIT_INDEX
            | opcode::BIND_AXB
            | opcode::BIND_AXN
            | opcode::BIND_AXE
            | opcode::UPDATE
            | opcode::UNBIND
            | opcode::QUERY
            | opcode::CLUSTER_STATUS
            | opcode::CLUSTER_INIT
            | opcode::CLUSTER_ADD_NODE
            | opcode::CLUSTER_REMOVE_NODE
            | opcode::CLUSTER_VERIFY
    )
}

/// Whether a frame of `length` bytes (header included) can carry `code`,
/// as a request or as any of its answers (PROTOCOL.md section 7): a PING
/// is never longer than its header, a LOOKUP is 12, 32 or 44 bytes. Text
/// and JSON bodies (STATS, the cluster opcodes) may have any length.
fn plausible_length(code: u8, length: u32) -> bool {
    let body = (length as usize).saturating_sub(HEADER_BYTES);
    let not_leader = (NOT_LEADER_FIXED_BYTES..=NOT_LEADER_FIXED_BYTES + NOT_LEADER_ADDR_BYTES_MAX)
        .contains(&body);
    match code {
        opcode::PING => body == 0,
        opcode::HELLO => {
            body == 0
                || body == HELLO_ANSWER_BYTES
                || (HELLO_FIXED_BYTES..=HELLO_FIXED_BYTES + CREDENTIAL_BYTES_MAX).contains(&body)
        }
        opcode::LOOKUP => matches!(body, 0 | LOOKUP_BYTES | ROUTE_BYTES),
        opcode::WAIT_INDEX => matches!(body, 0 | WAIT_INDEX_BYTES | WAIT_INDEX_ANSWER_BYTES),
        opcode::BIND_AXB | opcode::BIND_AXN | opcode::BIND_AXE => {
            matches!(body, 0 | BIND_BYTES | BIND_ANSWER_BYTES | CONFLICT_BYTES) || not_leader
        }
        // A conflict answer's body is as long as a QUERY request's (8).
        opcode::UPDATE | opcode::UNBIND | opcode::QUERY => {
            matches!(
                body,
                0 | UPDATE_BYTES | UNBIND_BYTES | QUERY_BYTES | BINDING_BYTES
            ) || not_leader
        }
        _ => true,
    }
}

/// Whether the bytes at the front of `bytes` can be a frame header: a
/// possible length for a known opcode, zero reserved bytes. `None` when fewer
/// than 12 bytes are there.
fn sane_header(bytes: &[u8]) -> Option<Option<u32>> {
    let head = bytes.first_chunk::<HEADER_BYTES>()?;
    let header = Header::read(head);
    let sane = (HEADER_BYTES as u32..=FRAME_BYTES_MAX).contains(&header.length)
        && known_opcode(header.opcode)
        && plausible_length(header.opcode, header.length)
        && head[6] == 0
        && head[7] == 0;
    Some(sane.then_some(header.length))
}

/// Whether frames can start at the front of `bytes`: `Some(true)` if
/// `SYNC_HEADERS` sane headers follow each other (or sane headers reach
/// exactly the end), `Some(false)` if not, `None` if more bytes are needed
/// to tell.
fn chain_starts(bytes: &[u8]) -> Option<bool> {
    let mut at = 0usize;
    for _ in 0..SYNC_HEADERS {
        if at == bytes.len() && at > 0 {
            return Some(true);
        }
        match sane_header(&bytes[at..]) {
            None => return None,
            Some(None) => return Some(false),
            Some(Some(length)) => at += length as usize,
        }
        if at > bytes.len() {
            return None;
        }
    }
    Some(true)
}

/// Splits one direction of a TCP connection into frames.
#[derive(Default, Debug)]
pub struct Splitter {
    buffer: Vec<u8>,
    /// Frame boundaries are known: the buffer starts at a frame.
    synced: bool,
    /// Times framing was lost (a hole, or an impossible header) and looked
    /// for again.
    pub resyncs: u64,
    /// Bytes dropped while looking for frame boundaries.
    pub dropped_bytes: u64,
}

impl Splitter {
    /// A splitter for a stream read from its first byte (its SYN was seen):
    /// it starts at a frame.
    pub fn from_start() -> Splitter {
        Splitter {
            synced: true,
            ..Splitter::default()
        }
    }

    /// Takes the stream's next bytes (`time_ns` their capture time), appends
    /// the frames they complete to `out`.
    pub fn data(&mut self, time_ns: u64, bytes: &[u8], out: &mut Vec<Frame>) {
        self.buffer.extend_from_slice(bytes);
        loop {
            if !self.synced && !self.sync() {
                return;
            }
            match next_frame(&self.buffer, FRAME_BYTES_MAX) {
                Ok(Some((header, frame))) => {
                    let length = frame.len();
                    out.push(Frame {
                        time_ns,
                        header,
                        bytes: frame.to_vec(),
                        pair: None,
                    });
                    self.buffer.drain(..length);
                }
                Ok(None) => return,
                Err(_) => {
                    // This stream's framing is broken here: look again from
                    // the next byte.
                    self.synced = false;
                    self.resyncs += 1;
                    self.drop_front(1);
                }
            }
        }
    }

    /// Bytes the capture does not hold: the frame they cut is lost, and
    /// the boundaries must be found again.
    pub fn gap(&mut self) {
        self.dropped_bytes += self.buffer.len() as u64;
        self.buffer.clear();
        self.synced = false;
        self.resyncs += 1;
    }

    /// Finds where frames start in the buffer; drops what comes before.
    /// Returns whether it found it. A start that needs more bytes to be
    /// judged does not stop the search (a false start inside a body can
    /// claim a long frame): a verified start further on wins, and only if
    /// there is none are the bytes from the first undecided start kept.
    fn sync(&mut self) -> bool {
        let mut undecided = None;
        for start in 0..self.buffer.len() {
            match chain_starts(&self.buffer[start..]) {
                Some(true) => {
                    self.drop_front(start);
                    self.synced = true;
                    return true;
                }
                Some(false) => {}
                None => {
                    undecided.get_or_insert(start);
                }
            }
        }
        let length = self.buffer.len();
        let keep_from = undecided
            .unwrap_or(length.saturating_sub(HEADER_BYTES - 1))
            .max(length.saturating_sub(SYNC_BYTES_MAX));
        self.drop_front(keep_from);
        false
    }

    fn drop_front(&mut self, bytes: usize) {
        let bytes = bytes.min(self.buffer.len());
        self.dropped_bytes += bytes as u64;
        self.buffer.drain(..bytes);
    }

    /// Bytes left at the end that make no whole frame.
    pub fn leftover_bytes(&self) -> usize {
        self.buffer.len()
    }
}

/// Splits a UDP datagram into its frames (PROTOCOL.md section 2, UDP): back
/// to back, read until the first impossible length or the end.
pub fn split_datagram(time_ns: u64, payload: &[u8], out: &mut Vec<Frame>) {
    let mut rest = payload;
    while let Ok(Some((header, frame))) = next_frame(rest, FRAME_BYTES_MAX) {
        out.push(Frame {
            time_ns,
            header,
            bytes: frame.to_vec(),
            pair: None,
        });
        rest = &rest[frame.len()..];
    }
}

/// Pairs each answer with the oldest unanswered request of the same
/// request id (ids may be reused once answered); sets `pair` on both.
pub fn pair(requests: &mut [Frame], answers: &mut [Frame]) {
    let mut waiting: HashMap<u32, VecDeque<usize>> = HashMap::new();
    let mut next_request = 0usize;
    for (answer_index, answer) in answers.iter_mut().enumerate() {
        // Only requests sent before the answer can be its request.
        while next_request < requests.len() && requests[next_request].time_ns <= answer.time_ns {
            waiting
                .entry(requests[next_request].header.request_id)
                .or_default()
                .push_back(next_request);
            next_request += 1;
        }
        let found = waiting
            .get_mut(&answer.header.request_id)
            .and_then(VecDeque::pop_front);
        if let Some(request_index) = found {
            answer.pair = Some(request_index);
            requests[request_index].pair = Some(answer_index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::push_frame;

    #[test]
    fn a_stream_joined_mid_frame_is_framed_from_the_next_whole_frame() {
        let mut stream = Vec::new();
        for id in 0..4 {
            push_frame(&mut stream, opcode::LOOKUP, 0, id, &[0x77; 20]);
        }
        let mut splitter = Splitter::default();
        let mut out = Vec::new();
        splitter.data(1, &stream[7..], &mut out);
        let ids: Vec<u32> = out.iter().map(|frame| frame.header.request_id).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(splitter.leftover_bytes(), 0);
    }

    #[test]
    fn answers_pair_with_the_oldest_request_of_their_id() {
        let frame = |time_ns, request_id| Frame {
            time_ns,
            header: Header {
                request_id,
                ..Header::default()
            },
            bytes: Vec::new(),
            pair: None,
        };
        let mut requests = vec![frame(1, 5), frame(2, 6), frame(4, 5)];
        let mut answers = vec![frame(3, 6), frame(3, 5), frame(5, 5), frame(6, 9)];
        pair(&mut requests, &mut answers);
        let pairs: Vec<_> = answers.iter().map(|answer| answer.pair).collect();
        assert_eq!(pairs, [Some(1), Some(0), Some(2), None]);
        assert_eq!(requests[2].pair, Some(2));
    }
}
