//! Comparing a replayed answer with the captured answer to the same
//! request. Statuses always; bodies byte for byte, except the fields that
//! differ between two nodes holding the same bindings (binding ids,
//! seconds left and expiry times, log indexes, node state as JSON), which
//! are compared only when exact. Binding ids are compared modulo the ids a
//! replay learned (`super::ids`): a captured id the replayed node gave
//! another id must come back as that id.

use crate::protocol::codec::{BINDING_BYTES, BIND_ANSWER_BYTES, ROUTE_BYTES};
use crate::protocol::frame::{Header, HEADER_BYTES};
use crate::protocol::{opcode, status};
use std::collections::HashMap;
use std::ops::Range;

/// How much of an answer's body is compared when not exact.
enum Compared {
    /// The whole body except these ranges (body offsets).
    BodyExcept(&'static [Range<usize>]),
    /// The status only: the body is node state.
    StatusOnly,
}

/// Where a LOOKUP route carries its binding id.
const ROUTE_ID: Range<usize> = 16..24;
/// Where a bind answer, a binding and a CONFLICT body carry theirs.
const BODY_ID: Range<usize> = 0..8;
/// A CONFLICT body: the id in the way.
const CONFLICT_BYTES: usize = 8;
/// LOOKUP route: binding id and seconds left (24..28).
const ROUTE_VOLATILE: &[Range<usize>] = &[ROUTE_ID, 24..28];
/// Bind answer: binding id and expiry (8..12).
const BIND_ANSWER_VOLATILE: &[Range<usize>] = &[BODY_ID, 8..12];
/// Binding: id, expiry and creation times (44..52).
const BINDING_VOLATILE: &[Range<usize>] = &[BODY_ID, 44..52];

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

/// Where an answer's body carries a binding id, if it does.
fn id_range(header: &Header, body_len: usize) -> Option<Range<usize>> {
    let binds = matches!(
        header.opcode,
        opcode::BIND_AXB | opcode::BIND_AXN | opcode::BIND_AXE
    );
    let names = matches!(
        header.opcode,
        opcode::UPDATE | opcode::UNBIND | opcode::QUERY
    );
    match header.status {
        status::OK if header.opcode == opcode::LOOKUP && body_len == ROUTE_BYTES => Some(ROUTE_ID),
        status::OK if binds && body_len == BIND_ANSWER_BYTES => Some(BODY_ID),
        status::OK if names && body_len == BINDING_BYTES => Some(BODY_ID),
        status::CONFLICT
            if (binds || header.opcode == opcode::UPDATE) && body_len == CONFLICT_BYTES =>
        {
            Some(BODY_ID)
        }
        _ => None,
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
/// `old` (whole frames, header included); `ids` maps captured binding ids
/// to replayed ones (an id it lacks must come back unchanged).
pub fn same_answer(old: &[u8], new: &[u8], exact: bool, ids: &HashMap<u64, u64>) -> bool {
    if exact {
        return same_modulo_ids(old, new, ids);
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

/// Byte for byte, but for the binding id an answer carries: the replayed
/// one must be the captured one's replayed id.
fn same_modulo_ids(old: &[u8], new: &[u8], ids: &HashMap<u64, u64>) -> bool {
    let Some(range) = header_of(old).and_then(|header| id_range(&header, old.len() - HEADER_BYTES))
    else {
        return old == new;
    };
    let at = HEADER_BYTES + range.start..HEADER_BYTES + range.end;
    let id = |frame: &[u8]| {
        frame
            .get(at.clone())
            .and_then(|bytes| bytes.try_into().ok())
            .map(u64::from_le_bytes)
    };
    let (Some(old_id), Some(new_id)) = (id(old), id(new)) else {
        return old == new;
    };
    old.len() == new.len()
        && ids.get(&old_id).copied().unwrap_or(old_id) == new_id
        && old[..at.start] == new[..at.start]
        && old[at.end..] == new[at.end..]
}

/// Bytes as lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::push_frame;

    fn none() -> HashMap<u64, u64> {
        HashMap::new()
    }

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
        assert!(same_answer(&old, &new, false, &none()));
        assert!(!same_answer(&old, &new, true, &none()));
        body[0] = 0;
        let callee_changed = answer(opcode::LOOKUP, status::OK, &body);
        assert!(!same_answer(&old, &callee_changed, false, &none()));
        let not_bound = answer(opcode::LOOKUP, status::NOT_BOUND, &[]);
        assert!(!same_answer(&old, &not_bound, false, &none()));
    }

    #[test]
    fn truncated_frames_never_panic() {
        assert!(!same_answer(&[1, 2], &[1], false, &none()));
        assert!(same_answer(&[1, 2], &[1, 2], false, &none()));
        assert_eq!(status_of(&[0; 5]), None);
    }

    #[test]
    fn exact_compares_binding_ids_through_the_learned_ids() {
        let mut body = [0u8; BINDING_BYTES];
        body[..8].copy_from_slice(&40u64.to_le_bytes());
        let old = answer(opcode::QUERY, status::OK, &body);
        body[..8].copy_from_slice(&7u64.to_le_bytes());
        let new = answer(opcode::QUERY, status::OK, &body);
        let learned = HashMap::from([(40, 7)]);
        assert!(same_answer(&old, &new, true, &learned));
        assert!(!same_answer(&old, &new, true, &none()));
        assert!(!same_answer(&old, &old, true, &learned));
        // Without exact the id is not compared at all.
        assert!(same_answer(&old, &new, false, &none()));
        // Any other byte still counts.
        body[20] = 1;
        let other = answer(opcode::QUERY, status::OK, &body);
        assert!(!same_answer(&old, &other, true, &learned));
        let conflict = answer(opcode::BIND_AXB, status::CONFLICT, &40u64.to_le_bytes());
        let moved = answer(opcode::BIND_AXB, status::CONFLICT, &7u64.to_le_bytes());
        assert!(same_answer(&conflict, &moved, true, &learned));
    }
}
