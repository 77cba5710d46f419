//! Proves the binding rules of DESIGN.md on a real data directory: routing
//! in each mode, conflicts naming the clashing binding, idempotent retries,
//! direction control, expiry (never routed, reclaimed incrementally) and
//! ghosts keeping `not_a_party` exact.

use std::sync::Arc;
use x700::binding::{
    BindRequest, Direction, LookupQuery, LookupResult, OrderRef, Parties, Update, WriteError,
};
use x700::number::{parse_extension, parse_real, parse_virtual, Number, XPolicy};
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
