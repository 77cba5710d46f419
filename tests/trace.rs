//! Proves, on real `x700 serve` processes, the traceability history: every
//! binding's life (made, unbound, expired) is answered by TRACE_X ("which
//! binding routed X at second T", with and without the caller) and
//! TRACE_ORDER (an order's bindings); a platform sees only its own tenant's
//! lives; the history survives `kill -9` (replayed from the log) and a
//! failover (every member keeps it); and `x700 trace` answers the same
//! offline from the data directory.

mod common;

use common::cluster::{init_cluster, leader_seen_by, start_members};
use common::{real, Node};
use std::time::{Duration, Instant};
use x700::binding::{Direction, Mode, OrderRef};
use x700::client::Client;
use x700::number::Number;
use x700::protocol::codec::control::{ControlRequest, PutMode, TraceRequest};
use x700::protocol::{status, BindBody, Role, UnbindBody};

const FIRST: u64 = 700_123_400_000_000;

fn setup(admin: &mut Client, tenant: u32, first: u64) {
    let token = format!("tenant-token-{tenant:08}");
    let put = ControlRequest::TenantPut {
        tenant,
        mode: PutMode::Add,
        max_live: 0,
        binds_per_s: 0,
        lookups_per_s: 0,
        x_lookups_per_s: 0,
        token: token.as_bytes(),
        hashed: false,
    };
    assert_eq!(admin.control(&put).expect("TENANT_PUT").0, status::OK);
    let pool = ControlRequest::PoolAdd {
        tenant,
        first,
        last: first + 99,
        area: *b"010\0",
        province: 0,
    };
    assert_eq!(admin.control(&pool).expect("POOL_ADD").0, status::OK);
}

fn bind(
    client: &mut Client,
    tenant: u32,
    x: u64,
    a: &str,
    b: &str,
    order: &str,
    ttl_s: u32,
) -> u64 {
    let body = BindBody {
        mode: Mode::Axb,
        x: x700::pool::x_number(x),
        a: real(a),
        b: real(b),
        tenant,
        ttl_s,
        direction: Direction::Both,
        recording: false,
        order: OrderRef::new(order.as_bytes()).expect("order"),
    };
    let reply = client.bind(&body).expect("bind");
    assert_eq!(reply.status, status::OK);
    reply.binding_id.expect("id").0
}

fn now_s() -> u32 {
    u32::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs(),
    )
    .expect("u32 time")
}

/// The bindings a trace answered: (binding id, order, end).
fn lives(client: &mut Client, request: &TraceRequest<'_>) -> Vec<(u64, String, String)> {
    let (code, body) = client.trace(request).expect("TRACE answered");
    assert_eq!(code, status::OK, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    json["bindings"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|life| {
            (
                life["binding_id"].as_u64().expect("id"),
                life["order"].as_str().unwrap_or_default().to_string(),
                life["end"].as_str().unwrap_or("live").to_string(),
            )
        })
        .collect()
}

fn at(x: u64, at_s: u32, caller: Option<&str>) -> TraceRequest<'static> {
    TraceRequest::AtX {
        x: x700::pool::x_number(x),
        at_s,
        caller: caller.map_or(Number::NONE, real),
    }
}

#[test]
fn lives_are_traced_through_unbind_expiry_and_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let node = Node::start_on(dir.path(), &[]);
    let mut admin = Client::connect(node.tcp, Role::Admin, "").expect("admin");
    setup(&mut admin, 5, FIRST);
    setup(&mut admin, 6, FIRST + 1000);
    let before = now_s();
    let gone = bind(
        &mut admin,
        5,
        FIRST,
        "13800000001",
        "13900000001",
        "order-gone",
        3600,
    );
    let kept = bind(
        &mut admin,
        5,
        FIRST,
        "13800000002",
        "13900000002",
        "order-kept",
        3600,
    );
    let brief = bind(
        &mut admin,
        5,
        FIRST + 1,
        "13800000003",
        "13900000003",
        "order-brief",
        1,
    );
    std::thread::sleep(Duration::from_millis(1100));
    let during = now_s();
    std::thread::sleep(Duration::from_millis(1100));
    let unbind = UnbindBody::Id(x700::binding::BindingId(gone));
    assert!(admin.unbind(&unbind).expect("unbind").is_ok());
    // The brief binding expires; the sweep reclaims it within seconds.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let found = lives(
            &mut admin,
            &TraceRequest::Order {
                tenant: 5,
                order: b"order-brief",
            },
        );
        if found
            .iter()
            .any(|(id, _, end)| *id == brief && end == "expired")
        {
            break;
        }
        assert!(Instant::now() < deadline, "the expiry is traced: {found:?}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // X held two pairs while `gone` lived: both answer; the caller picks one.
    let mut both = lives(&mut admin, &at(FIRST, during, None));
    both.sort();
    assert_eq!(both.len(), 2, "{both:?}");
    assert_eq!(
        lives(&mut admin, &at(FIRST, during, Some("13900000001"))),
        vec![(gone, "order-gone".to_string(), "unbound".to_string())]
    );
    // After the unbind, only `kept` held X.
    assert_eq!(
        lives(&mut admin, &at(FIRST, now_s() + 1, None)),
        vec![(kept, "order-kept".to_string(), "live".to_string())]
    );
    // Before anything was bound, nothing.
    assert!(lives(&mut admin, &at(FIRST, before.saturating_sub(10), None)).is_empty());

    // A platform sees its own tenant's lives only.
    let mut six =
        Client::connect(node.tcp, Role::Platform, "tenant-token-00000006").expect("platform 6");
    assert!(lives(&mut six, &at(FIRST, during, None)).is_empty());
    assert!(lives(
        &mut six,
        &TraceRequest::Order {
            tenant: 5,
            order: b"order-kept"
        }
    )
    .is_empty());
    let mut five =
        Client::connect(node.tcp, Role::Platform, "tenant-token-00000005").expect("platform 5");
    assert_eq!(lives(&mut five, &at(FIRST, during, None)).len(), 2);

    // kill -9: the history comes back from its files and the log.
    drop((admin, six, five));
    node.kill();
    let node = Node::start_on(dir.path(), &[]);
    let mut admin = Client::connect(node.tcp, Role::Admin, "").expect("admin");
    assert_eq!(
        lives(&mut admin, &at(FIRST, during, Some("13800000001"))),
        vec![(gone, "order-gone".to_string(), "unbound".to_string())]
    );
    drop(admin);
    node.stop();

    // Offline, from the directory.
    let output = std::process::Command::new(common::binary())
        .args([
            "trace",
            "--tenant",
            "5",
            "--order",
            "order-kept",
            "--json",
            "--data",
        ])
        .arg(dir.path())
        .output()
        .expect("x700 trace");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(
        json["bindings"][0]["binding_id"].as_u64(),
        Some(kept),
        "{json}"
    );
}

#[test]
fn every_member_keeps_the_history_through_a_failover() {
    let (_dirs, mut nodes, rafts) = start_members(3);
    let (leader_id, leader) = init_cluster(&nodes, &rafts);
    let mut admin = Client::connect(leader, Role::Admin, "").expect("admin");
    setup(&mut admin, 5, FIRST);
    let id = bind(
        &mut admin,
        5,
        FIRST,
        "13800000001",
        "13900000001",
        "order-1",
        3600,
    );
    let index = admin.read_index().expect("index");
    drop(admin);
    nodes.remove(&leader_id).expect("leader").kill();
    let survivor = nodes.values().next().expect("survivor").tcp;
    let deadline = Instant::now() + Duration::from_secs(15);
    while leader_seen_by(survivor, Duration::from_secs(1)).map(|(l, _)| l) == Some(leader_id)
        || leader_seen_by(survivor, Duration::from_secs(1)).is_none()
    {
        assert!(Instant::now() < deadline, "a new leader");
        std::thread::sleep(Duration::from_millis(100));
    }
    for node in nodes.values() {
        let mut admin = Client::connect(node.tcp, Role::Admin, "").expect("admin");
        assert_eq!(
            admin.wait_index(index, 10_000).expect("wait").status,
            status::OK
        );
        assert_eq!(
            lives(
                &mut admin,
                &TraceRequest::Order {
                    tenant: 5,
                    order: b"order-1"
                }
            ),
            vec![(id, "order-1".to_string(), "live".to_string())]
        );
    }
}
