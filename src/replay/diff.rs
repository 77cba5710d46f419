//! Comparing a replayed answer with the captured answer to the same
//! request. Statuses always; bodies byte for byte, except the fields that
//! differ between two nodes holding the same bindings (binding ids,
//! seconds left and expiry times, log indexes, node state as JSON), which
//! are compared only when exact.

use crate::protocol::codec::{BINDING_BYTES, BIND_ANSWER_BYTES, ROUTE_BYTES};
use crate::protocol::frame::{Header, HEADER_BYTES};
use crate::protocol::{opcode, status};
use std::ops::Range;

/// How much of an answer's body is compared when not exact.
enum Compared {
    /// The whole body except these ranges (body offsets).
    BodyExcept(&'static [Range<usize>]),
    /// The status only: the body is node state.
    StatusOnly,
}

/// LOOKUP route: binding id (16..24) and seconds left (24..28).
const ROUTE_VOLATILE: &[Range<usize>] = &[16..24, 24..28];
/// Bind answer: binding id (0..8) and expiry (8..12).
const BIND_ANSWER_VOLATILE: &[Range<usize>] = &[0..8, 8..12];
/// Binding: id (0..8), expiry and creation times (44..52).
const BINDING_VOLATILE: &[Range<usize>] = &[0..8, 44..52];

fn compared(header: &Header, body_len: usize) -> Compared {
    let ok = header.status == status::OK;
    match header.opcode {
        opcode::LOOKUP if ok && body_len == ROUTE_BYTES => Compared::BodyExcept(ROUTE_VOLATILE),
        opcode::BIND_AXB | opcode::BIND_AXN | opcode::BIND_AXE
            if ok && body_len == BIND_ANSWER_BYTES =>
        {
            Compared::BodyExcept(BIND_ANSWER_VOLATILE)
        }
        opcode::UPDATE | opcode::UNBIND | opcode::QUERY if ok && body_len == BINDING_BYTES => {
            Compared::BodyExcept(BINDING_VOLATILE)
        }
        opcode::PING => Compared::BodyExcept(&[]),
        // Rejects carry no body: nothing to hide.
        _ if body_len == 0 => Compared::BodyExcept(&[]),
        // Conflict ids, leader hints, log indexes, JSON node state.
        _ => Compared::StatusOnly,
    }
}

fn header_of(frame: &[u8]) -> Option<Header> {
    frame.first_chunk::<HEADER_BYTES>().map(Header::read)
}

/// The status of a whole answer frame, if it has a header.
pub fn status_of(frame: &[u8]) -> Option<u8> {
    header_of(frame).map(|header| header.status)
}

/// Whether the replayed answer `new` says the same as the captured answer
/// `old` (whole frames, header included).
pub fn same_answer(old: &[u8], new: &[u8], exact: bool) -> bool {
    if exact {
        return old == new;
    }
    let (Some(old_header), Some(new_header)) = (header_of(old), header_of(new)) else {
        return old == new;
    };
    if (old_header.opcode, old_header.status) != (new_header.opcode, new_header.status) {
        return false;
    }
    let old_body = &old[HEADER_BYTES..];
    let new_body = &new[HEADER_BYTES..];
    match compared(&old_header, old_body.len()) {
        Compared::StatusOnly => true,
        Compared::BodyExcept(volatile) => {
            old_body.len() == new_body.len()
                && (0..old_body.len())
                    .filter(|at| !volatile.iter().any(|range| range.contains(at)))
                    .all(|at| old_body[at] == new_body[at])
        }
    }
}

/// Bytes as lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::push_frame;

    fn answer(code: u8, status_code: u8, body: &[u8]) -> Vec<u8> {
        let mut frame = Vec::new();
        push_frame(&mut frame, code, status_code, 9, body);
        frame
    }

    #[test]
    fn lookup_routes_differ_only_in_id_and_time_unless_exact() {
        let mut body = [7u8; ROUTE_BYTES];
        let old = answer(opcode::LOOKUP, status::OK, &body);
        body[16] = 1;
        body[27] = 2;
        let new = answer(opcode::LOOKUP, status::OK, &body);
        assert!(same_answer(&old, &new, false));
        assert!(!same_answer(&old, &new, true));
        body[0] = 0;
        let callee_changed = answer(opcode::LOOKUP, status::OK, &body);
        assert!(!same_answer(&old, &callee_changed, false));
        let not_bound = answer(opcode::LOOKUP, status::NOT_BOUND, &[]);
        assert!(!same_answer(&old, &not_bound, false));
    }

    #[test]
    fn truncated_frames_never_panic() {
        assert!(!same_answer(&[1, 2], &[1], false));
        assert!(same_answer(&[1, 2], &[1, 2], false));
        assert_eq!(status_of(&[0; 5]), None);
    }
}
