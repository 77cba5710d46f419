//! Proves that every hex example in docs/PROTOCOL.md is exactly what the
//! codec's encoders produce, so a vendor writing a client from the document
//! alone sends and expects the same bytes as x700 itself.
//!
//! Each example in the document is a line `example NAME:` followed by lines
//! whose text before the first double space is the frame's bytes in hex; this
//! test collects those bytes and compares them with the encoder output.

use x700::binding::{
    Binding, BindingId, Direction, LookupQuery, LookupResult, Mode, OrderRef, Parties, Reject,
    Route, Update,
};
use x700::number::{parse_extension, parse_real, parse_virtual, Number, XPolicy};
use x700::protocol::codec::control::{self, ControlRequest, PutMode};
use x700::protocol::codec::{
    bind_answer_body, binding_body, encode_bind, encode_hello, encode_lookup, encode_lookup_answer,
    encode_not_leader_body, encode_query, encode_unbind, encode_update, encode_wait_index,
    hello_answer_body, BindBody, UnbindBody,
};
use x700::protocol::frame::push_frame;
use x700::protocol::{opcode, status, Role, VERSION, VERSION_MIN};

/// The document the examples must match.
const PROTOCOL_MD: &str = include_str!("../docs/PROTOCOL.md");

/// The binding id used throughout: shard 1, generation 1, slot 42.
const BINDING_ID: BindingId = BindingId(0x0001_0000_0100_002A);
/// Seconds since the Unix epoch at which the example binding was created.
const CREATED_AT_S: u32 = 1_780_000_000;

fn x_main() -> Number {
    parse_virtual("700123456789012", XPolicy::default()).unwrap()
}
fn x_shared() -> Number {
    parse_virtual("700123456789013", XPolicy::default()).unwrap()
}
fn real(text: &str) -> Number {
    parse_real(text).unwrap()
}

fn axb_bind() -> BindBody {
    BindBody {
        mode: Mode::Axb,
        x: x_main(),
        a: real("13800138000"),
        b: real("13900139000"),
        tenant: 7,
        ttl_s: 3600,
        direction: Direction::Both,
        recording: true,
        order: OrderRef::new(b"order-20260501-0001").unwrap(),
    }
}

fn frame(build: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    build(&mut out);
    out
}

/// A control request's frame, as a client encodes it.
fn control_frame(request_id: u32, request: &ControlRequest<'_>) -> Vec<u8> {
    let mut body = Vec::new();
    control::encode(request, &mut body);
    frame(|out| push_frame(out, control::opcode_of(request), 0, request_id, &body))
}

/// Every example the document shows, by name, built with the codec.
fn examples() -> Vec<(&'static str, Vec<u8>)> {
    let route = Route {
        callee: real("13900139000"),
        display: x_main(),
        recording: true,
        binding_id: BINDING_ID,
        expires_in_s: 3540,
    };
    let binding = Binding {
        id: BINDING_ID,
        x: x_main(),
        parties: Parties::Axb {
            a: real("13800138000"),
            b: real("13900139000"),
        },
        tenant: 7,
        order: OrderRef::new(b"order-20260501-0001").unwrap(),
        ttl_s: 3600,
        expires_at_s: CREATED_AT_S + 3600,
        created_at_s: CREATED_AT_S,
        direction: Direction::Both,
        recording: true,
    };
    vec![
        (
            "hello",
            frame(|out| encode_hello(out, 1, VERSION_MIN, Role::Admin, b"secret")),
        ),
        (
            "bind_not_leader",
            frame(|out| {
                let mut body = Vec::new();
                encode_not_leader_body(&mut body, 2, "10.0.0.2:7700");
                push_frame(out, opcode::BIND_AXB, status::NOT_LEADER, 5, &body);
            }),
        ),
        (
            "hello_ok",
            frame(|out| {
                push_frame(
                    out,
                    opcode::HELLO,
                    status::OK,
                    1,
                    &hello_answer_body(1, 2, 1, 0),
                );
            }),
        ),
        (
            "hello_unauthorised",
            frame(|out| push_frame(out, opcode::HELLO, status::UNAUTHORISED, 1, &[])),
        ),
        (
            "hello_unsupported_version",
            frame(|out| {
                let mut body = Vec::new();
                body.extend_from_slice(&VERSION_MIN.to_le_bytes());
                body.extend_from_slice(&VERSION.to_le_bytes());
                push_frame(out, opcode::HELLO, status::UNSUPPORTED_VERSION, 1, &body);
            }),
        ),
        (
            "ping",
            frame(|out| push_frame(out, opcode::PING, 0, 2, &[])),
        ),
        (
            "ping_ok",
            frame(|out| push_frame(out, opcode::PING, status::OK, 2, &[])),
        ),
        (
            "tenant_put",
            control_frame(
                5,
                &ControlRequest::TenantPut {
                    tenant: 7,
                    mode: PutMode::Add,
                    max_live: 1000,
                    binds_per_s: 100,
                    lookups_per_s: 5000,
                    x_lookups_per_s: 20,
                    token: b"token",
                    hashed: false,
                },
            ),
        ),
        (
            "tenant_status",
            control_frame(
                6,
                &ControlRequest::TenantStatus {
                    tenant: 7,
                    suspended: true,
                },
            ),
        ),
        (
            "block",
            control_frame(
                7,
                &ControlRequest::Block {
                    tenant: None,
                    caller: real("13800138000"),
                    add: true,
                },
            ),
        ),
        (
            "pool_add",
            control_frame(
                8,
                &ControlRequest::PoolAdd {
                    tenant: 7,
                    first: 700_123_400_000_000,
                    last: 700_123_400_099_999,
                    area: *b"0755",
                    province: 0,
                },
            ),
        ),
        (
            "bind_axb_auto",
            frame(|out| {
                let auto = x700::protocol::codec::auto::AutoBindBody {
                    bind: BindBody {
                        mode: x700::binding::Mode::Axb,
                        x: Number::NONE,
                        a: real("13800138000"),
                        b: real("13900139000"),
                        tenant: 7,
                        ttl_s: 3600,
                        direction: x700::binding::Direction::Both,
                        recording: false,
                        order: x700::binding::OrderRef::new(b"order").expect("order"),
                    },
                    area: *b"0755",
                    reach: x700::protocol::codec::auto::Reach::Province,
                };
                x700::protocol::codec::auto::encode_auto_bind(out, 9, &auto);
            }),
        ),
        (
            "lookup",
            frame(|out| {
                let query = LookupQuery {
                    caller: real("13800138000"),
                    x: x_main(),
                    extension: Number::NONE,
                };
                encode_lookup(out, 3, &query, true);
            }),
        ),
        (
            "lookup_route",
            frame(|out| encode_lookup_answer(out, 3, &LookupResult::Route(route))),
        ),
        (
            "lookup_extension_sms",
            frame(|out| {
                let query = LookupQuery {
                    caller: real("13700137000"),
                    x: x_shared(),
                    extension: parse_extension("0012").unwrap(),
                };
                encode_lookup(out, 4, &query, false);
            }),
        ),
        (
            "lookup_not_a_party",
            frame(|out| {
                encode_lookup_answer(out, 5, &LookupResult::Reject(Reject::NotAParty));
            }),
        ),
        (
            "lookup_unavailable",
            frame(|out| push_frame(out, opcode::LOOKUP, status::UNAVAILABLE, 3, &[])),
        ),
        ("bind_axb", frame(|out| encode_bind(out, 6, &axb_bind()))),
        (
            "bind_ok",
            frame(|out| {
                let body = bind_answer_body(BINDING_ID, CREATED_AT_S + 3600, true);
                push_frame(out, opcode::BIND_AXB, status::OK, 6, &body);
            }),
        ),
        (
            "bind_conflict",
            frame(|out| {
                let clashing = BindingId(0x0001_0000_0100_0007);
                push_frame(
                    out,
                    opcode::BIND_AXB,
                    status::CONFLICT,
                    6,
                    &clashing.0.to_le_bytes(),
                );
            }),
        ),
        (
            "bind_unauthorised",
            frame(|out| push_frame(out, opcode::BIND_AXB, status::UNAUTHORISED, 6, &[])),
        ),
        (
            "bind_axn",
            frame(|out| {
                let bind = BindBody {
                    mode: Mode::Axn,
                    b: Number::NONE,
                    direction: Direction::BToA,
                    recording: false,
                    order: OrderRef::new(b"ride-9").unwrap(),
                    ..axb_bind()
                };
                encode_bind(out, 7, &bind);
            }),
        ),
        (
            "bind_axe",
            frame(|out| {
                let bind = BindBody {
                    mode: Mode::Axe,
                    x: x_shared(),
                    a: real("13600136000"),
                    b: parse_extension("0012").unwrap(),
                    ttl_s: 86_400,
                    recording: false,
                    order: OrderRef::new(b"parcel-55").unwrap(),
                    ..axb_bind()
                };
                encode_bind(out, 8, &bind);
            }),
        ),
        (
            "unknown_opcode",
            frame(|out| push_frame(out, 0x77, status::UNKNOWN_OPCODE, 9, &[])),
        ),
        (
            "bad_frame",
            frame(|out| push_frame(out, opcode::LOOKUP, status::BAD_FRAME, 10, &[])),
        ),
        (
            "update",
            frame(|out| {
                let update = Update {
                    ttl_s: Some(7200),
                    direction: None,
                    recording: Some(false),
                    b: None,
                };
                encode_update(out, 11, BINDING_ID, &update);
            }),
        ),
        (
            "unbind_id",
            frame(|out| encode_unbind(out, 12, &UnbindBody::Id(BINDING_ID))),
        ),
        (
            "unbind_party",
            frame(|out| {
                let unbind = UnbindBody::Party {
                    x: x_main(),
                    party: real("13900139000"),
                };
                encode_unbind(out, 13, &unbind);
            }),
        ),
        (
            "unbind_extension",
            frame(|out| {
                let unbind = UnbindBody::Party {
                    x: x_shared(),
                    party: parse_extension("0012").unwrap(),
                };
                encode_unbind(out, 14, &unbind);
            }),
        ),
        ("query", frame(|out| encode_query(out, 15, BINDING_ID))),
        (
            "query_binding",
            frame(|out| {
                push_frame(out, opcode::QUERY, status::OK, 15, &binding_body(&binding));
            }),
        ),
        (
            "query_not_found",
            frame(|out| push_frame(out, opcode::QUERY, status::NOT_FOUND, 15, &[])),
        ),
        (
            "wait_index",
            frame(|out| encode_wait_index(out, 20, 258, 2500)),
        ),
        (
            "wait_index_ok",
            frame(|out| {
                push_frame(
                    out,
                    opcode::WAIT_INDEX,
                    status::OK,
                    20,
                    &260u64.to_le_bytes(),
                );
            }),
        ),
        (
            "wait_index_behind",
            frame(|out| {
                push_frame(
                    out,
                    opcode::WAIT_INDEX,
                    status::BEHIND,
                    20,
                    &250u64.to_le_bytes(),
                );
            }),
        ),
    ]
}

/// The bytes of example `name` as the document writes them, or `None` if
/// the document has no such example.
fn documented(name: &str) -> Option<Vec<u8>> {
    let marker = format!("example {name}:");
    let mut lines = PROTOCOL_MD.lines();
    lines.find(|line| line.trim() == marker)?;
    let mut bytes = Vec::new();
    for line in lines {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with("```") || line.starts_with("example ") {
            break;
        }
        let hex = line.split("  ").next().unwrap_or("");
        for pair in hex.split_whitespace() {
            let byte = u8::from_str_radix(pair, 16)
                .unwrap_or_else(|_| panic!("example {name}: {pair:?} is not a hex byte"));
            assert_eq!(pair.len(), 2, "example {name}: {pair:?} is not two digits");
            bytes.push(byte);
        }
    }
    Some(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn every_example_in_the_document_is_what_the_encoders_produce() {
    for (name, encoded) in examples() {
        let documented =
            documented(name).unwrap_or_else(|| panic!("docs/PROTOCOL.md has no example {name}"));
        assert_eq!(
            hex(&documented),
            hex(&encoded),
            "example {name} in docs/PROTOCOL.md differs from the encoder output"
        );
    }
}

#[test]
fn the_document_has_no_example_the_test_does_not_check() {
    let checked: Vec<&str> = examples().iter().map(|(name, _)| *name).collect();
    for line in PROTOCOL_MD.lines() {
        let Some(name) = line.trim().strip_prefix("example ") else {
            continue;
        };
        let name = name.trim_end_matches(':');
        assert!(checked.contains(&name), "example {name} is not checked");
    }
}
