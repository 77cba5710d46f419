//! Round trips and refusals of the request and answer codec.
use super::*;
use crate::binding::Binding;
use crate::number::{parse_extension, parse_real, parse_virtual, XPolicy};
use crate::protocol::frame::next_frame;

fn only_frame(bytes: &[u8]) -> (Header, &[u8]) {
    let (header, frame) = next_frame(bytes, 64 * 1024).unwrap().unwrap();
    assert_eq!(frame.len(), bytes.len());
    (header, &frame[HEADER_BYTES..])
}

#[test]
fn extensions_round_trip() {
    for text in ["1", "12", "012", "0012", "9999"] {
        let key = parse_extension(text).unwrap();
        assert_eq!(decode_extension(encode_extension(key)), Ok(key), "{text}");
    }
    assert_eq!(
        encode_extension(parse_extension("12").unwrap()),
        [0x12, 0xFF]
    );
    assert!(decode_extension([0x1F, 0x2F]).is_err());
    assert!(decode_extension([0xA1, 0xFF]).is_err());
}

#[test]
fn lookup_round_trips() {
    let query = LookupQuery {
        caller: parse_real("13800138000").unwrap(),
        x: parse_virtual("700123456789012", XPolicy::default()).unwrap(),
        extension: parse_extension("12").unwrap(),
    };
    let mut out = Vec::new();
    encode_lookup(&mut out, 42, &query, false);
    assert_eq!(out.len(), 32);
    let (header, body) = only_frame(&out);
    assert_eq!(header.request_id, 42);
    assert_eq!(
        decode_request(&header, body),
        Ok(Request::Lookup {
            query,
            voice: false
        })
    );
}

#[test]
fn bind_update_unbind_round_trip() {
    let bind = BindBody {
        mode: Mode::Axe,
        x: parse_virtual("700123456789012", XPolicy::default()).unwrap(),
        a: parse_real("13800138000").unwrap(),
        b: parse_extension("0012").unwrap(),
        tenant: 9,
        ttl_s: 600,
        direction: Direction::BToA,
        recording: true,
        order: OrderRef::new(b"order-77").unwrap(),
    };
    let mut out = Vec::new();
    encode_bind(&mut out, 1, &bind);
    let (header, body) = only_frame(&out);
    assert_eq!(decode_request(&header, body), Ok(Request::Bind(bind)));

    let update = Update {
        ttl_s: Some(60),
        direction: None,
        recording: Some(false),
        b: Some(parse_real("13900139000").unwrap()),
    };
    out.clear();
    encode_update(&mut out, 2, BindingId(5), &update);
    let (header, body) = only_frame(&out);
    assert_eq!(
        decode_request(&header, body),
        Ok(Request::Update(UpdateBody {
            binding_id: BindingId(5),
            update
        }))
    );

    for unbind in [
        UnbindBody::Id(BindingId(77)),
        UnbindBody::Party {
            x: bind.x,
            party: bind.a,
        },
        UnbindBody::Party {
            x: bind.x,
            party: bind.b,
        },
    ] {
        out.clear();
        encode_unbind(&mut out, 3, &unbind);
        let (header, body) = only_frame(&out);
        assert_eq!(decode_request(&header, body), Ok(Request::Unbind(unbind)));
    }
}

#[test]
fn binding_body_round_trips() {
    let binding = Binding {
        id: BindingId(0x0001_0000_0100_0002),
        x: parse_virtual("700123456789012", XPolicy::default()).unwrap(),
        parties: Parties::Axn {
            a: parse_real("13800138000").unwrap(),
            default_callee: Some(parse_real("01012345678").unwrap()),
        },
        tenant: 3,
        order: OrderRef::new(b"o-1").unwrap(),
        ttl_s: 60,
        expires_at_s: 1_800_000_060,
        created_at_s: 1_800_000_000,
        direction: Direction::AToB,
        recording: true,
    };
    assert_eq!(decode_binding(&binding_body(&binding)), Some(binding));
}

#[test]
fn malformed_bodies_are_refused_not_panicked_on() {
    let header = |op| Header {
        length: 0,
        opcode: op,
        status: 0,
        request_id: 0,
    };
    assert_eq!(
        decode_request(&header(0x77), &[]).unwrap_err().status,
        status::UNKNOWN_OPCODE
    );
    assert_eq!(
        decode_request(&header(opcode::LOOKUP), &[0; 19])
            .unwrap_err()
            .status,
        status::BAD_FRAME
    );
    assert_eq!(
        decode_request(&header(opcode::HELLO), &[1, 0, 1, 9, 0])
            .unwrap_err()
            .status,
        status::BAD_FRAME
    );
    let mut bind = [0u8; BIND_BYTES];
    bind[34] = 33;
    assert_eq!(
        decode_request(&header(opcode::BIND_AXB), &bind)
            .unwrap_err()
            .status,
        status::BAD_REQUEST
    );
    assert_eq!(
        decode_request(&header(opcode::UPDATE), &[0; UPDATE_BYTES])
            .unwrap_err()
            .status,
        status::BAD_REQUEST
    );
}

#[test]
fn not_leader_body_round_trips_and_bad_ones_do_not_decode() {
    let mut body = Vec::new();
    encode_not_leader_body(&mut body, 2, "127.0.0.1:7702");
    assert_eq!(&body[..9], &[2, 0, 0, 0, 0, 0, 0, 0, 14]);
    let hint = decode_not_leader(&body).unwrap();
    assert_eq!(hint.leader_id, 2);
    assert_eq!(hint.client_addr, "127.0.0.1:7702");
    // Bytes a later version adds after the address are skipped.
    body.extend_from_slice(&[9, 9]);
    assert_eq!(decode_not_leader(&body), Some(hint));
    // Unknown leader: id 0, empty address.
    let mut unknown = Vec::new();
    encode_not_leader_body(&mut unknown, 0, "");
    assert_eq!(unknown, vec![0u8; 9]);
    assert_eq!(decode_not_leader(&unknown), Some(LeaderHint::default()));
    // A server before this addition sends an empty body.
    assert_eq!(decode_not_leader(&[]), None);
    // An address length past the body, or text that is not UTF-8.
    assert_eq!(decode_not_leader(&[1, 0, 0, 0, 0, 0, 0, 0, 5, b'a']), None);
    assert_eq!(decode_not_leader(&[1, 0, 0, 0, 0, 0, 0, 0, 1, 0xff]), None);
    // An address too long for its length byte is sent as unknown.
    let mut long = Vec::new();
    encode_not_leader_body(&mut long, 3, &"a".repeat(300));
    assert_eq!(decode_not_leader(&long).unwrap().client_addr, "");
}

/// WAIT_INDEX (item 11 of step 6): the request's bytes, its refusals, and
/// the answer body a client reads the applied index from.
#[test]
fn wait_index_round_trips_and_bad_ones_are_refused() {
    let mut out = Vec::new();
    encode_wait_index(&mut out, 20, 0x0102, 2500);
    assert_eq!(
        out,
        [
            24, 0, 0, 0, 0x11, 0, 0, 0, 20, 0, 0, 0, // header
            0x02, 0x01, 0, 0, 0, 0, 0, 0, // index 258
            0xc4, 0x09, 0, 0, // timeout_ms 2500
        ]
    );
    let (header, body) = only_frame(&out);
    assert_eq!(
        decode_request(&header, body),
        Ok(Request::WaitIndex {
            index: 258,
            timeout_ms: 2500
        })
    );
    // The longest wait is accepted, one more millisecond is not.
    let limit = crate::protocol::limits::WAIT_INDEX_TIMEOUT_MS_MAX;
    for (timeout_ms, expected) in [(limit, status::OK), (limit + 1, status::BAD_REQUEST)] {
        out.clear();
        encode_wait_index(&mut out, 21, 1, timeout_ms);
        let (header, body) = only_frame(&out);
        let decoded = decode_request(&header, body).map_or_else(|e| e.status, |_| status::OK);
        assert_eq!(decoded, expected);
    }
    // A body of the wrong length is a framing error.
    let short = Header {
        length: 20,
        opcode: opcode::WAIT_INDEX,
        status: 0,
        request_id: 1,
    };
    assert_eq!(
        decode_request(&short, &[0; 8]).unwrap_err().status,
        status::BAD_FRAME
    );
    // The answer body: the applied index, exactly 8 bytes.
    assert_eq!(decode_wait_index_answer(&7u64.to_le_bytes()), Some(7));
    assert_eq!(decode_wait_index_answer(&[7, 0, 0, 0]), None);
    assert_eq!(decode_wait_index_answer(&[0; 9]), None);
}

/// The two statuses step 6 adds keep their codes and names: clients and
/// dashboards key on both.
#[test]
fn outcome_unknown_and_behind_have_their_codes_and_names() {
    assert_eq!(status::OUTCOME_UNKNOWN, 42);
    assert_eq!(status::name(status::OUTCOME_UNKNOWN), "outcome_unknown");
    assert_eq!(status::BEHIND, 43);
    assert_eq!(status::name(status::BEHIND), "behind");
}
