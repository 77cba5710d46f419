//! Proves, on real `x700 serve` processes, number pools and automatic X
//! selection (protocol version 2): ranges may not overlap between tenants;
//! a bind must name an X of its tenant's own pool; BIND_AXB_AUTO chooses an
//! X in the area asked, never one where either party already is, answers
//! a retry with the same binding, gives a pair that binds again its
//! previous X (sticky) unless a cool-off holds it, keeps at most
//! `max_pairs_per_x` pairs on an X, answers `pool_exhausted` naming the
//! area when nothing is free, and falls back to the province or to any
//! area only when the request allows it; quotas refuse binds beyond them;
//! a range in use is removed only by force; pools and live pairs survive a
//! restart (the allocator is rebuilt from the tables), and a new leader
//! after `kill -9` of the old one chooses X knowing every live pair.

mod common;

use common::cluster::{init_cluster, leader_seen_by, start_members};
use common::{real, Node};
use std::collections::BTreeSet;
use std::time::Duration;
use x700::binding::{Direction, LookupQuery, LookupResult, Mode, OrderRef};
use x700::client::{Client, ClusterClient};
use x700::number::Number;
use x700::protocol::codec::auto::{AutoBindBody, Reach};
use x700::protocol::codec::control::{ControlRequest, PutMode};
use x700::protocol::{status, BindBody, Role};

const FIRST: u64 = 700_123_400_000_000;

fn tenant(admin: &mut Client, id: u32, max_live: u32, binds_per_s: u32) {
    let (code, body) = admin
        .control(&ControlRequest::TenantPut {
            tenant: id,
            mode: PutMode::Add,
            max_live,
            binds_per_s,
            lookups_per_s: 0,
            x_lookups_per_s: 0,
            token: format!("tenant-token-{id:08}").as_bytes(),
            hashed: false,
        })
        .expect("TENANT_PUT answered");
    assert_eq!(code, status::OK, "{body}");
}

fn pool(admin: &mut Client, id: u32, first: u64, last: u64, area: &[u8; 4]) -> u8 {
    admin
        .control(&ControlRequest::PoolAdd {
            tenant: id,
            first,
            last,
            area: *area,
            province: 0,
        })
        .expect("POOL_ADD answered")
        .0
}

fn bind_body(tenant: u32, x: Number, a: &str, b: &str, order: &str) -> BindBody {
    BindBody {
        mode: Mode::Axb,
        x,
        a: real(a),
        b: real(b),
        tenant,
        ttl_s: 3600,
        direction: Direction::Both,
        recording: false,
        order: OrderRef::new(order.as_bytes()).expect("order"),
    }
}

fn auto(tenant: u32, a: &str, b: &str, order: &str, area: &[u8; 4], reach: Reach) -> AutoBindBody {
    AutoBindBody {
        bind: bind_body(tenant, Number::NONE, a, b, order),
        area: *area,
        reach,
    }
}

/// An automatic bind: (status, X chosen).
fn bind_auto(client: &mut Client, body: &AutoBindBody) -> (u8, Option<Number>) {
    let (reply, x) = client.bind_auto(body).expect("BIND_AXB_AUTO answered");
    (reply.status, x)
}

fn x_of(value: u64) -> Number {
    x700::pool::x_number(value)
}

fn routes(client: &mut Client, caller: &str, x: Number, to: &str) -> bool {
    let query = LookupQuery {
        caller: real(caller),
        x,
        extension: Number::NONE,
    };
    matches!(client.lookup(&query), Ok(LookupResult::Route(r)) if r.callee == real(to))
}

fn config_file(dir: &std::path::Path, text: &str) -> String {
    let path = dir.join("x700.toml");
    std::fs::write(&path, text).expect("config");
    path.to_string_lossy().into_owned()
}

#[test]
fn pools_bound_binds_and_x_is_chosen_without_conflicts() {
    let node = Node::start(&["--shards", "2"]);
    let mut admin = Client::connect(node.tcp, Role::Admin, "").expect("admin");
    tenant(&mut admin, 5, 0, 0);
    tenant(&mut admin, 6, 0, 0);
    assert_eq!(pool(&mut admin, 5, FIRST, FIRST + 9, b"0755"), status::OK);
    assert_eq!(
        pool(&mut admin, 5, FIRST + 10, FIRST + 19, b"020\0"),
        status::OK
    );
    assert_eq!(
        pool(&mut admin, 6, FIRST + 5, FIRST + 14, b"010\0"),
        status::CONFLICT,
        "another tenant's range may not overlap"
    );
    assert_eq!(
        pool(&mut admin, 6, FIRST + 100, FIRST + 100, b"010\0"),
        status::OK
    );

    // Named X: in the tenant's own pool only.
    let mut platform = Client::connect(node.tcp, Role::Platform, "").expect("platform");
    let inside = bind_body(5, x_of(FIRST + 9), "13800000001", "13900000001", "n1");
    assert_eq!(platform.bind(&inside).expect("bind").status, status::OK);
    for outside in [FIRST + 20, FIRST + 100, FIRST - 1] {
        let body = bind_body(5, x_of(outside), "13800000002", "13900000002", "n2");
        assert_eq!(
            platform.bind(&body).expect("bind").status,
            status::NOT_IN_POOL,
            "X {outside}"
        );
    }

    // Automatic X: a courier (B) with five customers gets five X, none
    // shared, all in 0755; every pair routes.
    let mut chosen = BTreeSet::new();
    let mut first_customer_x = None;
    for i in 1..=5 {
        let customer = format!("1370000000{i}");
        let body = auto(
            5,
            &customer,
            "13900000009",
            &format!("o{i}"),
            b"0755",
            Reach::Area,
        );
        let (code, x) = bind_auto(&mut platform, &body);
        assert_eq!(code, status::OK);
        let x = x.expect("the answer names X");
        let value = x700::pool::x_value(x).expect("a 700 number");
        assert!((FIRST..=FIRST + 9).contains(&value), "{value} in 0755");
        assert!(chosen.insert(value), "the courier is never twice on one X");
        first_customer_x.get_or_insert(value);
        let mut switch = Client::connect(node.tcp, Role::Switch, "").expect("switch");
        assert!(routes(&mut switch, &customer, x, "13900000009"));
        assert!(routes(&mut switch, "13900000009", x, &customer));
    }
    // A retry gets the same binding.
    let again = auto(5, "13700000001", "13900000009", "o1", b"0755", Reach::Area);
    let (reply, x) = platform.bind_auto(&again).expect("retry");
    assert_eq!(reply.status, status::OK);
    assert_eq!(reply.created, Some(false));
    assert_eq!(x700::pool::x_value(x.expect("X")), first_customer_x);

    // Exhaustion: 10 numbers in 0755, the courier holds... fill the area
    // with a second courier's pairs until no X is free for it.
    let mut filled = 0;
    let mut last_status = status::OK;
    for i in 0..12 {
        let body = auto(
            5,
            &format!("1360000000{i:02}"),
            "13900000008",
            &format!("f{i}"),
            b"0755",
            Reach::Area,
        );
        let (code, _) = bind_auto(&mut platform, &body);
        last_status = code;
        if code != status::OK {
            break;
        }
        filled += 1;
    }
    assert_eq!(filled, 10, "one pair of the courier per X of the area");
    assert_eq!(last_status, status::POOL_EXHAUSTED);
    let exhausted = auto(5, "13600000099", "13900000008", "f99", b"0755", Reach::Area);
    assert_eq!(
        bind_auto(&mut platform, &exhausted).0,
        status::POOL_EXHAUSTED
    );
    // The province fallback reaches 020 (Guangdong too); an area of
    // another province is not reached by it, only by `any`.
    let (code, x) = bind_auto(
        &mut platform,
        &auto(
            5,
            "13600000099",
            "13900000008",
            "f99",
            b"0755",
            Reach::Province,
        ),
    );
    assert_eq!(code, status::OK);
    let value = x700::pool::x_value(x.expect("X")).expect("700");
    assert!((FIRST + 10..=FIRST + 19).contains(&value), "{value} in 020");
    // An area the tenant has no range in: exhausted without fallback.
    assert_eq!(
        bind_auto(
            &mut platform,
            &auto(5, "13600000098", "13900000007", "g", b"0571", Reach::Area)
        )
        .0,
        status::POOL_EXHAUSTED
    );
    assert_eq!(
        bind_auto(
            &mut platform,
            &auto(5, "13600000098", "13900000007", "g", b"0571", Reach::Any)
        )
        .0,
        status::OK
    );
    // Never another tenant's X: tenant 6 has no range in 0755, and with
    // `any` it gets its own.
    let other = |reach| auto(6, "13600000097", "13900000006", "h", b"0755", reach);
    assert_eq!(
        bind_auto(&mut platform, &other(Reach::Province)).0,
        status::POOL_EXHAUSTED
    );
    assert_eq!(
        bind_auto(&mut platform, &other(Reach::Any)),
        (status::OK, Some(x_of(FIRST + 100)))
    );

    // Pool show and removal.
    let (code, shown) = admin.pool_show(5).expect("POOL_SHOW");
    assert_eq!(code, status::OK);
    let shown: serde_json::Value = serde_json::from_str(&shown).expect("JSON");
    assert_eq!(shown["ranges"].as_array().map(Vec::len), Some(2));
    let remove = |force| ControlRequest::PoolRemove {
        tenant: 5,
        first: FIRST,
        last: FIRST + 9,
        force,
    };
    assert_eq!(
        admin.control(&remove(false)).expect("remove").0,
        status::IN_USE
    );
    assert_eq!(admin.control(&remove(true)).expect("remove").0, status::OK);
    let body = bind_body(5, x_of(FIRST + 3), "13500000001", "13500000002", "late");
    assert_eq!(
        platform.bind(&body).expect("bind").status,
        status::NOT_IN_POOL
    );
}

#[test]
fn max_pairs_cool_off_stickiness_and_quotas() {
    let dir = tempfile::tempdir().expect("dir");
    let config = config_file(
        dir.path(),
        "[pools]\nmax_pairs_per_x = 2\ncool_off_s = 3600\n",
    );
    let node = Node::start(&["--config", &config]);
    let mut admin = Client::connect(node.tcp, Role::Admin, "").expect("admin");
    tenant(&mut admin, 5, 0, 0);
    tenant(&mut admin, 7, 3, 0);
    assert_eq!(pool(&mut admin, 5, FIRST, FIRST + 99, b"010\0"), status::OK);
    assert_eq!(
        pool(&mut admin, 7, FIRST + 200, FIRST + 299, b"010\0"),
        status::OK
    );
    let mut platform = Client::connect(node.tcp, Role::Platform, "").expect("platform");

    // Three unrelated pairs: at most two on one X.
    let xs: Vec<u64> = (0..3)
        .map(|i| {
            let body = auto(
                5,
                &format!("1380000000{i}"),
                &format!("1390000000{i}"),
                "p",
                b"010\0",
                Reach::Area,
            );
            let (code, x) = bind_auto(&mut platform, &body);
            assert_eq!(code, status::OK);
            x700::pool::x_value(x.expect("X")).expect("700")
        })
        .collect();
    assert_eq!(xs[0], xs[1], "pairs share an X: few X in use");
    assert_ne!(xs[2], xs[0], "max_pairs_per_x = 2");

    // Unbind a pair and bind it again: the cool-off keeps it off its X
    // for an hour.
    let (code, x) = bind_auto(
        &mut platform,
        &auto(5, "13700000001", "13700000002", "s", b"010\0", Reach::Area),
    );
    assert_eq!(code, status::OK);
    let first_x = x.expect("X");
    let unbind = x700::protocol::UnbindBody::Party {
        x: first_x,
        party: real("13700000001"),
    };
    assert!(platform.unbind(&unbind).expect("unbind").is_ok());
    let (code, x) = bind_auto(
        &mut platform,
        &auto(5, "13700000001", "13700000002", "s2", b"010\0", Reach::Area),
    );
    assert_eq!(code, status::OK);
    assert_ne!(x, Some(first_x), "cool-off: not the X just released");

    // Quota: tenant 7 holds at most 3 live bindings.
    for i in 0..3 {
        let body = auto(
            7,
            &format!("1360000000{i}"),
            &format!("1350000000{i}"),
            "q",
            b"010\0",
            Reach::Area,
        );
        assert_eq!(bind_auto(&mut platform, &body).0, status::OK);
    }
    let over = auto(7, "13600000009", "13500000009", "q", b"010\0", Reach::Area);
    assert_eq!(bind_auto(&mut platform, &over).0, status::QUOTA_EXCEEDED);
    let named = bind_body(7, x_of(FIRST + 250), "13600000008", "13500000008", "q");
    assert_eq!(
        platform.bind(&named).expect("bind").status,
        status::QUOTA_EXCEEDED
    );
}

/// With no cool-off, a pair that binds again gets its previous X back.
#[test]
fn a_pair_that_binds_again_gets_its_x_back() {
    let node = Node::start(&[]);
    let mut admin = Client::connect(node.tcp, Role::Admin, "").expect("admin");
    tenant(&mut admin, 5, 0, 0);
    assert_eq!(pool(&mut admin, 5, FIRST, FIRST + 99, b"010\0"), status::OK);
    let mut platform = Client::connect(node.tcp, Role::Platform, "").expect("platform");
    // Other pairs first, so the lowest X is not the obvious answer.
    for i in 0..5 {
        let body = auto(
            5,
            &format!("1380000001{i}"),
            "13900000001",
            "o",
            b"010\0",
            Reach::Area,
        );
        assert_eq!(bind_auto(&mut platform, &body).0, status::OK);
    }
    let pair = auto(5, "13700000001", "13700000002", "s1", b"010\0", Reach::Area);
    let (_, x) = bind_auto(&mut platform, &pair);
    let x = x.expect("X");
    let unbind = x700::protocol::UnbindBody::Party {
        x,
        party: real("13700000001"),
    };
    assert!(platform.unbind(&unbind).expect("unbind").is_ok());
    let again = auto(5, "13700000001", "13700000002", "s2", b"010\0", Reach::Area);
    assert_eq!(bind_auto(&mut platform, &again), (status::OK, Some(x)));
}

/// After a restart the allocator is rebuilt from the tables: a new pair
/// for a courier who already holds X never lands on those X.
#[test]
fn after_a_restart_live_pairs_are_known() {
    let dir = tempfile::tempdir().expect("dir");
    let node = Node::start_on(dir.path(), &[]);
    let mut admin = Client::connect(node.tcp, Role::Admin, "").expect("admin");
    tenant(&mut admin, 5, 0, 0);
    assert_eq!(pool(&mut admin, 5, FIRST, FIRST + 9, b"010\0"), status::OK);
    let mut platform = Client::connect(node.tcp, Role::Platform, "").expect("platform");
    let mut held = BTreeSet::new();
    for i in 0..5 {
        let body = auto(
            5,
            &format!("1380000000{i}"),
            "13900000001",
            "o",
            b"010\0",
            Reach::Area,
        );
        held.insert(bind_auto(&mut platform, &body).1.expect("X"));
    }
    drop((admin, platform));
    node.kill();
    let node = Node::start_on(dir.path(), &[]);
    let mut platform = Client::connect(node.tcp, Role::Platform, "").expect("platform");
    for i in 5..10 {
        let body = auto(
            5,
            &format!("1380000000{i}"),
            "13900000001",
            "o",
            b"010\0",
            Reach::Area,
        );
        let (code, x) = bind_auto(&mut platform, &body);
        assert_eq!(code, status::OK);
        assert!(held.insert(x.expect("X")), "a fresh X for the courier");
    }
    let body = auto(5, "13800000010", "13900000001", "o", b"010\0", Reach::Area);
    assert_eq!(bind_auto(&mut platform, &body).0, status::POOL_EXHAUSTED);
}

/// Pools reach every member; after `kill -9` of the leader, the new one
/// chooses X knowing the pairs the old one made.
#[test]
fn a_new_leader_knows_the_live_pairs() {
    let (_dirs, mut nodes, rafts) = start_members(3);
    let (leader_id, leader) = init_cluster(&nodes, &rafts);
    let mut admin = Client::connect(leader, Role::Admin, "").expect("admin");
    tenant(&mut admin, 5, 0, 0);
    assert_eq!(pool(&mut admin, 5, FIRST, FIRST + 9, b"010\0"), status::OK);
    let addresses: Vec<String> = nodes.values().map(|n| n.tcp.to_string()).collect();
    let names: Vec<&str> = addresses.iter().map(String::as_str).collect();
    let mut platform = ClusterClient::connect(&names, Role::Platform, "").expect("cluster client");
    let mut held = BTreeSet::new();
    for i in 0..5 {
        let body = auto(
            5,
            &format!("1380000000{i}"),
            "13900000001",
            "o",
            b"010\0",
            Reach::Area,
        );
        let (reply, x) = platform.bind_auto(&body).expect("bind");
        assert_eq!(reply.status, status::OK);
        held.insert(x.expect("X"));
    }
    drop(admin);
    nodes.remove(&leader_id).expect("the leader").kill();
    let survivor = nodes.values().next().expect("a survivor").tcp;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let seen = leader_seen_by(survivor, Duration::from_secs(1)).map(|(id, _)| id);
        if seen.is_some_and(|id| id != leader_id) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no new leader within 15 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for i in 5..10 {
        let body = auto(
            5,
            &format!("1380000000{i}"),
            "13900000001",
            "o",
            b"010\0",
            Reach::Area,
        );
        let (reply, x) = platform.bind_auto(&body).expect("bind after failover");
        assert_eq!(reply.status, status::OK);
        assert!(held.insert(x.expect("X")), "a fresh X for the courier");
    }
}
