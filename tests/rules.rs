//! Proves the binding rules of DESIGN.md on a real data directory: routing
//! in each mode, conflicts naming the clashing binding, idempotent retries,
//! direction control, expiry (never routed, reclaimed incrementally),
//! ghosts keeping `not_a_party` exact, an X belonging to the tenant of its
//! live bindings, and real parties that are never 700, emergency or service
//! numbers (checked by the functions the server and the log replay run).

use std::sync::Arc;
use x700::binding::{
    BindRequest, Direction, LookupQuery, LookupResult, Mode, OrderRef, Parties, Update, WriteError,
};
use x700::number::{
    check_real, parse_extension, parse_real, parse_virtual, Number, NumberError, XPolicy,
};
use x700::protocol::codec::{BindBody, Request, UnbindBody, UpdateBody};
use x700::protocol::status;
use x700::server::auth::Access;
use x700::server::dispatch::{self, Op};
use x700::store::clock::FakeClock;
use x700::store::Store;

const T0: u32 = 1_800_000_000;

fn x(n: u64) -> Number {
    parse_virtual(&format!("700{n:012}"), XPolicy::default()).unwrap()
}
fn real(s: &str) -> Number {
    parse_real(s).unwrap()
}
fn axb(xn: Number, a: &str, b: &str, order: &str) -> BindRequest {
    BindRequest {
        x: xn,
        parties: Parties::Axb {
            a: real(a),
            b: real(b),
        },
        tenant: 7,
        order: OrderRef::new(order.as_bytes()).unwrap(),
        ttl_s: 600,
        direction: Direction::Both,
        recording: false,
    }
}
fn ask(store: &Store, caller: &str, xn: Number) -> LookupResult {
    store.lookup(&LookupQuery {
        caller: real(caller),
        x: xn,
        extension: Number::NONE,
    })
}
fn callee(result: LookupResult) -> String {
    match result {
        LookupResult::Route(route) => route.callee.digits(),
        LookupResult::Reject(reject) => format!("reject:{}", reject.as_str()),
    }
}
fn store(shards: u16) -> (tempfile::TempDir, Store, FakeClock) {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new(T0);
    let store = Store::create(dir.path(), shards, Arc::new(clock.clone())).unwrap();
    (dir, store, clock)
}

#[test]
fn axb_routes_both_ways_and_rejects_strangers() {
    let (_dir, mut store, _clock) = store(4);
    let out = store
        .bind(&axb(x(1), "13800000001", "13900000002", "o1"))
        .unwrap();
    assert!(out.created);
    assert_eq!(callee(ask(&store, "13800000001", x(1))), "13900000002");
    assert_eq!(callee(ask(&store, "+8613900000002", x(1))), "13800000001");
    assert_eq!(
        callee(ask(&store, "13700000003", x(1))),
        "reject:not_a_party"
    );
    assert_eq!(callee(ask(&store, "13800000001", x(2))), "reject:not_bound");
    store.verify().unwrap();
}

#[test]
fn one_x_carries_many_pairs_but_no_number_twice() {
    let (_dir, mut store, _clock) = store(2);
    let first = store
        .bind(&axb(x(1), "13800000001", "13900000002", "o1"))
        .unwrap();
    store
        .bind(&axb(x(1), "13800000003", "13900000004", "o2"))
        .unwrap();
    assert_eq!(callee(ask(&store, "13800000003", x(1))), "13900000004");
    // A of the first pair again, with someone new: conflict naming the first.
    match store.bind(&axb(x(1), "13800000001", "13900000009", "o3")) {
        Err(WriteError::Conflict { binding_id }) => assert_eq!(binding_id, Some(first.binding_id)),
        other => panic!("expected conflict, got {other:?}"),
    }
    // As B this time.
    assert!(matches!(
        store.bind(&axb(x(1), "13900000009", "13800000001", "o3")),
        Err(WriteError::Conflict { .. })
    ));
    // The same number on another X is fine.
    store
        .bind(&axb(x(2), "13800000001", "13900000009", "o3"))
        .unwrap();
    store.verify().unwrap();
}

#[test]
fn identical_retry_returns_the_same_id() {
    let (_dir, mut store, clock) = store(2);
    let first = store
        .bind(&axb(x(5), "13800000001", "13900000002", "o1"))
        .unwrap();
    clock.advance(3);
    let again = store
        .bind(&axb(x(5), "13800000001", "13900000002", "o1"))
        .unwrap();
    assert_eq!(again.binding_id, first.binding_id);
    assert!(!again.created);
    // Same parties, other order: a conflict, not a retry.
    assert!(matches!(
        store.bind(&axb(x(5), "13800000001", "13900000002", "o2")),
        Err(WriteError::Conflict { .. })
    ));
    assert_eq!(store.stats().unwrap().bindings_live, 1);
}

#[test]
fn axn_owns_x_and_uses_its_default_callee() {
    let (_dir, mut store, _clock) = store(2);
    let request = BindRequest {
        parties: Parties::Axn {
            a: real("13800000001"),
            default_callee: Some(real("01012345678")),
        },
        ..axb(x(9), "13800000001", "13900000002", "o1")
    };
    store.bind(&request).unwrap();
    assert_eq!(callee(ask(&store, "13700000003", x(9))), "13800000001");
    assert_eq!(callee(ask(&store, "13800000001", x(9))), "01012345678");
    // X is exclusive both ways.
    assert!(matches!(
        store.bind(&axb(x(9), "13600000001", "13500000002", "o2")),
        Err(WriteError::Conflict { .. })
    ));
    store
        .bind(&axb(x(10), "13600000001", "13500000002", "o2"))
        .unwrap();
    let axn_on_10 = BindRequest {
        x: x(10),
        ..request
    };
    assert!(matches!(
        store.bind(&axn_on_10),
        Err(WriteError::Conflict { .. })
    ));
}

#[test]
fn axe_routes_by_extension() {
    let (_dir, mut store, _clock) = store(2);
    let ext = parse_extension("0012").unwrap();
    let request = BindRequest {
        parties: Parties::Axe {
            a: real("13800000001"),
            extension: ext,
        },
        ..axb(x(3), "13800000001", "13900000002", "o1")
    };
    store.bind(&request).unwrap();
    let with_ext = LookupQuery {
        caller: real("13700000003"),
        x: x(3),
        extension: ext,
    };
    assert_eq!(callee(store.lookup(&with_ext)), "13800000001");
    let other_ext = LookupQuery {
        extension: parse_extension("0013").unwrap(),
        ..with_ext
    };
    assert_eq!(callee(store.lookup(&other_ext)), "reject:not_bound");
    let second = BindRequest {
        parties: Parties::Axe {
            a: real("13800000005"),
            extension: ext,
        },
        order: OrderRef::new(b"o2").unwrap(),
        ..request
    };
    assert!(matches!(
        store.bind(&second),
        Err(WriteError::Conflict { .. })
    ));
}

#[test]
fn direction_control() {
    let (_dir, mut store, _clock) = store(2);
    let request = BindRequest {
        direction: Direction::AToB,
        ..axb(x(4), "13800000001", "13900000002", "o1")
    };
    let out = store.bind(&request).unwrap();
    assert_eq!(callee(ask(&store, "13800000001", x(4))), "13900000002");
    assert_eq!(
        callee(ask(&store, "13900000002", x(4))),
        "reject:direction_denied"
    );
    store
        .update(
            out.binding_id,
            &Update {
                direction: Some(Direction::Both),
                ..Update::default()
            },
        )
        .unwrap();
    assert_eq!(callee(ask(&store, "13900000002", x(4))), "13800000001");
}

#[test]
fn expired_bindings_are_never_routed_and_are_reclaimed() {
    let (_dir, mut store, clock) = store(2);
    store
        .bind(&axb(x(1), "13800000001", "13900000002", "o1"))
        .unwrap();
    clock.advance(599);
    assert_eq!(callee(ask(&store, "13800000001", x(1))), "13900000002");
    clock.advance(1);
    assert_eq!(callee(ask(&store, "13800000001", x(1))), "reject:expired");
    assert_eq!(callee(ask(&store, "13900000002", x(1))), "reject:expired");
    // A new bind over the expired one succeeds and reclaims it.
    store
        .bind(&axb(x(1), "13800000001", "13900000003", "o2"))
        .unwrap();
    assert_eq!(callee(ask(&store, "13800000001", x(1))), "13900000003");
    assert_eq!(store.stats().unwrap().bindings_live, 1);
    clock.advance(600);
    let removed = store.reclaim_expired(1_000);
    assert_eq!(removed, 1);
    assert_eq!(callee(ask(&store, "13800000001", x(1))), "reject:not_bound");
    store.verify().unwrap();
}

#[test]
fn representative_is_replaced_when_it_goes_first() {
    let (_dir, mut store, _clock) = store(1);
    let first = store
        .bind(&axb(x(1), "13800000001", "13900000002", "o1"))
        .unwrap();
    let second = store
        .bind(&axb(x(1), "13800000003", "13900000004", "o2"))
        .unwrap();
    // The first binding represented X; the second takes over.
    store.unbind(first.binding_id).unwrap();
    assert_eq!(
        callee(ask(&store, "13800000001", x(1))),
        "reject:not_a_party"
    );
    assert_eq!(callee(ask(&store, "13800000003", x(1))), "13900000004");
    assert_eq!(callee(ask(&store, "13900000004", x(1))), "13800000003");
    assert!(store.query(first.binding_id).is_none());
    store.verify().unwrap();
    // An AXN on X conflicts with, and names, the remaining binding.
    let axn = BindRequest {
        parties: Parties::Axn {
            a: real("13600000001"),
            default_callee: None,
        },
        ..axb(x(1), "13800000001", "13900000002", "o3")
    };
    assert!(matches!(
        store.bind(&axn),
        Err(WriteError::Conflict { binding_id: Some(id) }) if id == second.binding_id
    ));
    store.unbind(second.binding_id).unwrap();
    assert_eq!(callee(ask(&store, "13800000003", x(1))), "reject:not_bound");
    let stats = store.stats().unwrap();
    assert_eq!((stats.bindings_live, stats.index_entries), (0, 0));
    store.verify().unwrap();
}

#[test]
fn axn_reclaims_an_x_whose_bindings_all_expired() {
    // Regression: an AXN bind was refused when X's representative had been
    // unbound and its one remaining binding had expired.
    let (_dir, mut store, clock) = store(1);
    let long = BindRequest {
        ttl_s: 1000,
        ..axb(x(1), "13800000001", "13900000002", "o1")
    };
    let first = store.bind(&long).unwrap();
    store
        .bind(&BindRequest {
            ttl_s: 30,
            ..axb(x(1), "13800000003", "13900000004", "o2")
        })
        .unwrap();
    store.unbind(first.binding_id).unwrap();
    clock.advance(30);
    let axn = BindRequest {
        parties: Parties::Axn {
            a: real("13600000001"),
            default_callee: None,
        },
        ..axb(x(1), "13800000001", "13900000002", "o3")
    };
    store.bind(&axn).unwrap();
    assert_eq!(callee(ask(&store, "13700000000", x(1))), "13600000001");
    assert_eq!(store.stats().unwrap().bindings_live, 1);
    store.verify().unwrap();
}

#[test]
fn update_replaces_b_and_checks_conflicts() {
    let (_dir, mut store, _clock) = store(1);
    let first = store
        .bind(&axb(x(1), "13800000001", "13900000002", "o1"))
        .unwrap();
    let second = store
        .bind(&axb(x(1), "13800000003", "13900000004", "o2"))
        .unwrap();
    assert!(matches!(
        store.update(first.binding_id, &Update { b: Some(real("13800000003")), ..Update::default() }),
        Err(WriteError::Conflict { binding_id: Some(id) }) if id == second.binding_id
    ));
    store
        .update(
            first.binding_id,
            &Update {
                b: Some(real("13900000005")),
                ..Update::default()
            },
        )
        .unwrap();
    assert_eq!(callee(ask(&store, "13800000001", x(1))), "13900000005");
    assert_eq!(callee(ask(&store, "13900000005", x(1))), "13800000001");
    assert_eq!(
        callee(ask(&store, "13900000002", x(1))),
        "reject:not_a_party"
    );
    store.verify().unwrap();
}

#[test]
fn table_grows_and_reopens_without_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new(T0);
    let mut store = Store::create(dir.path(), 2, Arc::new(clock.clone())).unwrap();
    let mut ids = Vec::new();
    for i in 0..20_000u64 {
        let out = store
            .bind(&axb(
                x(i),
                &format!("138{i:08}"),
                &format!("139{i:08}"),
                &format!("o{i}"),
            ))
            .unwrap();
        ids.push(out.binding_id);
    }
    store.verify().unwrap();
    store.close().unwrap();
    let store = Store::open(dir.path(), Arc::new(clock)).unwrap();
    for i in (0..20_000u64).step_by(97) {
        assert_eq!(
            callee(ask(&store, &format!("138{i:08}"), x(i))),
            format!("139{i:08}")
        );
        assert_eq!(store.query(ids[i as usize]).unwrap().x, x(i));
    }
    assert_eq!(store.stats().unwrap().bindings_live, 20_000);
    store.verify().unwrap();
}

#[test]
fn second_process_is_locked_out() {
    let (dir, _store, clock) = store(1);
    match Store::open(dir.path(), Arc::new(clock)) {
        Err(e) => assert!(e.to_string().contains("in use"), "{e}"),
        Ok(_) => panic!("opened a locked directory"),
    }
}

// ---- tenants: an X belongs to the tenant of its live bindings ----

fn for_tenant(request: BindRequest, tenant: u32) -> BindRequest {
    BindRequest { tenant, ..request }
}

/// Guards step 5 item 7: tenant 2 could bind a pair on an X that tenant 1
/// was using, and the pair routed, showing tenant 1's number. Every mode,
/// with or without numbers that collide with tenant 1's, gets the same
/// refusal, which names nothing; once tenant 1's bindings have all expired,
/// X is free for anyone.
#[test]
fn a_tenant_binds_only_on_an_x_no_other_tenant_holds() {
    let (_dir, mut store, clock) = store(2);
    let xn = x(40);
    let first = store
        .bind(&axb(xn, "13800000001", "13900000002", "t7"))
        .unwrap();
    let refused = [
        axb(xn, "13600000001", "13600000002", "t8"),
        axb(xn, "13800000001", "13600000002", "t8"),
        axb(xn, "13600000001", "13900000002", "t8"),
        BindRequest {
            parties: Parties::Axn {
                a: real("13600000001"),
                default_callee: None,
            },
            ..axb(xn, "13800000001", "13900000002", "t8")
        },
        BindRequest {
            parties: Parties::Axe {
                a: real("13600000001"),
                extension: parse_extension("12").unwrap(),
            },
            ..axb(xn, "13800000001", "13900000002", "t8")
        },
    ];
    for request in refused {
        let outcome = store.bind(&for_tenant(request, 8));
        assert!(
            matches!(outcome, Err(WriteError::OtherTenant)),
            "{request:?}: {outcome:?}"
        );
        assert_eq!(outcome.unwrap_err().status(), "unauthorised");
    }
    assert_eq!(store.stats().unwrap().bindings_live, 1);
    assert_eq!(callee(ask(&store, "13600000001", xn)), "reject:not_a_party");
    // The owner may add pairs; its identical retry is still a retry.
    store
        .bind(&axb(xn, "13600000001", "13600000002", "t7"))
        .unwrap();
    let again = store
        .bind(&axb(xn, "13800000001", "13900000002", "t7"))
        .unwrap();
    assert_eq!((again.binding_id, again.created), (first.binding_id, false));
    // Expired bindings hold nothing: tenant 8 may take X, then holds it.
    clock.advance(600);
    let theirs = store
        .bind(&for_tenant(axb(xn, "13500000001", "13500000002", "t8"), 8))
        .unwrap();
    assert!(theirs.created);
    assert!(matches!(
        store.bind(&axb(xn, "13400000001", "13400000002", "t7")),
        Err(WriteError::OtherTenant)
    ));
    store.verify().unwrap();
}

/// The tenant rule holds while X's first binding (its representative) is
/// gone or expired: the tenant is found further down X's list.
#[test]
fn the_tenant_of_x_outlives_its_first_binding() {
    let (_dir, mut store, clock) = store(1);
    let xn = x(41);
    let short = store
        .bind(&BindRequest {
            ttl_s: 30,
            ..axb(xn, "13800000001", "13900000002", "t7")
        })
        .unwrap();
    store
        .bind(&axb(xn, "13800000003", "13900000004", "t7"))
        .unwrap();
    clock.advance(30);
    assert!(store.query(short.binding_id).is_none());
    assert!(matches!(
        store.bind(&for_tenant(axb(xn, "13600000001", "13600000002", "t8"), 8)),
        Err(WriteError::OtherTenant)
    ));
    store.reclaim_expired(1_000);
    assert!(matches!(
        store.bind(&for_tenant(axb(xn, "13600000001", "13600000002", "t8"), 8)),
        Err(WriteError::OtherTenant)
    ));
    store.verify().unwrap();
}

// ---- real parties: never a 700, emergency or service number ----

/// Numbers that may not be a real party, as a switch or platform would
/// send them (national digits, sometimes with `86` or `0086`).
const RESERVED: [&str; 16] = [
    "700000000000042",
    "110",
    "112",
    "119",
    "120",
    "122",
    "999",
    "114",
    "10086",
    "12110",
    "12395",
    "95588",
    "96110",
    "0086110",
    "0755110",
    "1008611",
];

/// Ordinary numbers in every spelling a client may use: mobiles and fixed
/// lines with and without `+86`/`0086`/`86` and area codes, local numbers,
/// business hotlines.
const ORDINARY: [&str; 16] = [
    "13800138000",
    "8613800138000",
    "+8613800138000",
    "008613800138000",
    "19912345678",
    "01012345678",
    "+861012345678",
    "00861012345678",
    "075512345678",
    "+8675512345678",
    "057112345678",
    "62345678",
    "6234567",
    "4001234567",
    "8001234567",
    "106912345678",
];

fn wire_number(digits: &str) -> Number {
    Number::from_digits(digits.as_bytes())
}

fn bind_body(mode: Mode, a: Number, b: Number) -> BindBody {
    BindBody {
        mode,
        x: x(50),
        a,
        b,
        tenant: 1,
        ttl_s: 600,
        direction: Direction::Both,
        recording: false,
        order: OrderRef::new(b"o").unwrap(),
    }
}

/// What the server answers a decoded write before executing it.
fn check(request: &Request<'_>) -> Result<Op, u8> {
    dispatch::check_write(request, XPolicy::default())
}

/// Guards step 5 item 8: A, B, an AXN owner or default callee, an AXE
/// owner, an updated B and the caller of a lookup could be a 700 number or
/// an emergency or service number. Each position now answers `bad_number`.
#[test]
fn reserved_numbers_are_refused_in_every_party_position() {
    let ordinary = wire_number("13800138000");
    let extension = parse_extension("12").unwrap();
    for digits in RESERVED {
        let reserved = wire_number(digits);
        let positions = [
            (
                "AXB A",
                Request::Bind(bind_body(Mode::Axb, reserved, ordinary)),
            ),
            (
                "AXB B",
                Request::Bind(bind_body(Mode::Axb, ordinary, reserved)),
            ),
            (
                "AXN owner",
                Request::Bind(bind_body(Mode::Axn, reserved, Number::NONE)),
            ),
            (
                "AXN default callee",
                Request::Bind(bind_body(Mode::Axn, ordinary, reserved)),
            ),
            (
                "AXE owner",
                Request::Bind(bind_body(Mode::Axe, reserved, extension)),
            ),
            (
                "updated B",
                Request::Update(UpdateBody {
                    binding_id: x700::binding::BindingId(1 << 24),
                    update: Update {
                        b: Some(reserved),
                        ..Update::default()
                    },
                }),
            ),
        ];
        for (position, request) in &positions {
            assert_eq!(
                check(request).map(|_| ()),
                Err(status::BAD_NUMBER),
                "{digits} as {position}"
            );
        }
        let lookup = LookupQuery {
            caller: reserved,
            x: x(50),
            extension: Number::NONE,
        };
        assert_eq!(
            dispatch::check_lookup(&lookup, XPolicy::default()),
            Err(status::BAD_NUMBER),
            "{digits} as caller"
        );
        assert!(
            matches!(check_real(reserved), Err(NumberError::Reserved { .. })),
            "{digits}"
        );
    }
}

/// Guards step 5 item 8: three AXN binds, each owned by (or defaulting to)
/// the next X, made a routing loop X1 -> X2 -> X3 -> X1. Run through the
/// server's checks and executor, every one is refused and nothing routes.
#[test]
fn axn_binds_cannot_make_a_routing_loop() {
    let (_dir, mut store, _clock) = store(2);
    let xs = [x(61), x(62), x(63)];
    for (owner_is_next, i) in [(true, 0), (true, 1), (true, 2), (false, 0), (false, 1)] {
        let next = xs[(i + 1) % 3];
        let (a, b) = if owner_is_next {
            (next, Number::NONE)
        } else {
            (wire_number("13800000001"), next)
        };
        let body = BindBody {
            x: xs[i],
            ..bind_body(Mode::Axn, a, b)
        };
        let checked = check(&Request::Bind(body));
        assert_eq!(checked.map(|_| ()), Err(status::BAD_NUMBER), "AXN on X{i}");
    }
    for &xn in &xs {
        assert_eq!(callee(ask(&store, "13700000000", xn)), "reject:not_bound");
    }
    // An ordinary AXN on the same Xs binds and routes.
    let body = BindBody {
        x: xs[0],
        ..bind_body(Mode::Axn, wire_number("13800000001"), Number::NONE)
    };
    let op = check(&Request::Bind(body)).expect("an ordinary AXN passes");
    let mut answer = Vec::new();
    let set = store.shard_set_mut();
    dispatch::execute_write(set, &op, &Access::AllTenants, 0x21, 1, T0, &mut answer);
    assert_eq!(answer[5], status::OK);
    assert_eq!(callee(ask(&store, "13700000000", xs[0])), "13800000001");
}

/// Ordinary mobiles, fixed lines, local numbers and business hotlines, in
/// every spelling, are still accepted in every position, typed or from the
/// wire.
#[test]
fn ordinary_numbers_are_still_real_parties() {
    for spelling in ORDINARY {
        let typed = parse_real(spelling).unwrap_or_else(|e| panic!("{spelling}: {e}"));
        if let Some(digits) = spelling.strip_prefix('+') {
            // `+` never travels on the wire; `0086` does.
            assert_eq!(parse_real(&format!("00{digits}")), Ok(typed));
            continue;
        }
        let wire = wire_number(spelling);
        assert_eq!(check_real(wire), Ok(typed), "{spelling}");
        let other = wire_number("13700000000");
        for request in [
            Request::Bind(bind_body(Mode::Axb, wire, other)),
            Request::Bind(bind_body(Mode::Axb, other, wire)),
            Request::Bind(bind_body(Mode::Axn, other, wire)),
            Request::Bind(bind_body(Mode::Axe, wire, parse_extension("12").unwrap())),
        ] {
            assert!(check(&request).is_ok(), "{spelling} in {request:?}");
        }
        let lookup = LookupQuery {
            caller: wire,
            x: x(50),
            extension: Number::NONE,
        };
        assert!(dispatch::check_lookup(&lookup, XPolicy::default()).is_ok());
    }
}

/// Reserved numbers are refused as parties only: a legacy X may still be a
/// 95 service number, and a binding made before a number was reserved can
/// still be removed by naming that number.
#[test]
fn reserved_numbers_still_name_legacy_xs_and_bindings_to_remove() {
    let legacy = XPolicy { allow_legacy: true };
    let body = BindBody {
        x: wire_number("95013123456"),
        ..bind_body(
            Mode::Axb,
            wire_number("13800000001"),
            wire_number("13900000002"),
        )
    };
    assert!(dispatch::check_write(&Request::Bind(body), legacy).is_ok());
    let unbind = Request::Unbind(UnbindBody::Party {
        x: x(50),
        party: x(51),
    });
    assert!(matches!(check(&unbind), Ok(Op::Unbind(_))));
}

/// Every change a shard makes to a binding is reported, in order, with the
/// binding as it stood: made, updated, unbound at the time of the unbind,
/// and expired at its expiry (not at the later sweep that reclaims it).
/// This is what the traceability history is built from.
#[test]
fn every_change_is_reported_in_order() {
    use x700::binding::ChangeKind;
    let (_dir, mut store, clock) = store(1);
    store
        .shard_set_mut()
        .shard_mut(0)
        .unwrap()
        .record_changes(true);
    let kept = store
        .bind(&axb(x(1), "13800000001", "13900000001", "o1"))
        .unwrap();
    let update = Update {
        ttl_s: Some(60),
        ..Update::default()
    };
    store.update(kept.binding_id, &update).unwrap();
    let gone = store
        .bind(&axb(x(2), "13800000002", "13900000002", "o2"))
        .unwrap();
    clock.advance(5);
    store.unbind(gone.binding_id).unwrap();
    clock.advance(100);
    assert_eq!(store.reclaim_expired(1000), 1);
    let changes = store.shard_set_mut().shard_mut(0).unwrap().take_changes();
    let seen: Vec<(ChangeKind, u32, u64)> = changes
        .iter()
        .map(|c| (c.kind, c.at_s, c.binding.id.0))
        .collect();
    let (k, g) = (kept.binding_id.0, gone.binding_id.0);
    assert_eq!(
        seen,
        vec![
            (ChangeKind::Created, T0, k),
            (ChangeKind::Updated, T0, k),
            (ChangeKind::Created, T0, g),
            (ChangeKind::Unbound, T0 + 5, g),
            (ChangeKind::Expired, T0 + 60, k),
        ]
    );
    assert_eq!(changes[0].binding.order.as_bytes(), b"o1");
    assert!(store
        .shard_set_mut()
        .shard_mut(0)
        .unwrap()
        .take_changes()
        .is_empty());
}
