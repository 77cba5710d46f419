//! Proves, on real `x700 serve` processes, the tenant registry of protocol
//! version 2: a tenant added over the wire gets a credential that opens a
//! platform session for it alone; suspending it makes the very next lookup
//! of its bindings answer `tenant_suspended` (and its binds too) and
//! resuming restores them; caller blocklists (a tenant's and the global
//! one) answer `blocked`; once tenants exist, binds for unknown tenants are
//! refused; a version 1 session does not know the new opcodes; the
//! registry survives `kill -9` (replayed from the log) and a clean restart
//! (checkpointed), and reaches every member of a 3-node cluster, whose
//! followers screen lookups alike.

mod common;

use common::cluster::{init_cluster, start_members};
use common::{ask, axb, real, x, Node, Raw};
use x700::binding::{LookupResult, Reject};
use x700::client::Client;
use x700::protocol::codec::control::{ControlRequest, PutMode};
use x700::protocol::frame::push_frame;
use x700::protocol::{opcode, status, Role};

const TOKEN_5: &str = "tenant-five-token-0123";

/// Adds a tenant, and a pool for it holding X 1 to 99 (`common::x`).
fn add_tenant(admin: &mut Client, tenant: u32, token: &str) -> (u8, String) {
    let added = admin
        .control(&ControlRequest::TenantPut {
            tenant,
            mode: PutMode::Add,
            max_live: 0,
            binds_per_s: 0,
            lookups_per_s: 0,
            x_lookups_per_s: 0,
            token: token.as_bytes(),
            hashed: false,
        })
        .expect("TENANT_PUT answered");
    if added.0 == status::OK {
        add_pool(admin, tenant);
    }
    added
}

/// Gives `tenant` the range of X 1 to 99 (`common::x`), area 010.
fn add_pool(admin: &mut Client, tenant: u32) {
    let (code, body) = admin
        .control(&ControlRequest::PoolAdd {
            tenant,
            first: 700_000_000_000_001,
            last: 700_000_000_000_099,
            area: *b"010\0",
            province: 0,
        })
        .expect("POOL_ADD answered");
    assert_eq!(code, status::OK, "{body}");
}

fn set_suspended(admin: &mut Client, tenant: u32, suspended: bool) -> u8 {
    admin
        .control(&ControlRequest::TenantStatus { tenant, suspended })
        .expect("TENANT_STATUS answered")
        .0
}

fn block(admin: &mut Client, tenant: Option<u32>, caller: &str, add: bool) -> u8 {
    admin
        .control(&ControlRequest::Block {
            tenant,
            caller: real(caller),
            add,
        })
        .expect("BLOCK answered")
        .0
}

fn lookup(client: &mut Client, caller: &str, x_number: u64) -> LookupResult {
    client
        .lookup(&ask(caller, x(x_number)))
        .expect("lookup answered")
}

fn routed(result: &LookupResult) -> bool {
    matches!(result, LookupResult::Route(_))
}

#[test]
fn suspension_blocklists_and_tenant_credentials() {
    let node = Node::start(&["--shards", "2"]);
    let mut admin = Client::connect(node.tcp, Role::Admin, "").expect("admin");
    let (code, body) = add_tenant(&mut admin, 5, TOKEN_5);
    assert_eq!(code, status::OK, "{body}");
    let shown: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(shown["state"], "active");
    assert!(
        !body.contains(TOKEN_5),
        "the credential never comes back: {body}"
    );
    assert_eq!(
        add_tenant(&mut admin, 5, "another-token-012345").0,
        status::TENANT_EXISTS
    );
    assert_eq!(
        add_tenant(&mut admin, 6, TOKEN_5).0,
        status::CONFLICT,
        "one credential, one tenant"
    );

    // The tenant's credential opens a platform session for tenant 5 only.
    let mut platform = Client::connect(node.tcp, Role::Platform, TOKEN_5).expect("platform");
    let mut bind = axb(x(1), "13800000001", "13900000001", "order-1");
    bind.tenant = 5;
    assert_eq!(platform.bind(&bind).expect("bind").status, status::OK);
    let mut other = axb(x(2), "13800000002", "13900000002", "order-2");
    other.tenant = 6;
    assert_eq!(
        platform.bind(&other).expect("bind").status,
        status::UNAUTHORISED,
        "a tenant's credential acts for that tenant alone"
    );
    assert!(Client::connect(node.tcp, Role::Admin, TOKEN_5).is_err());
    assert_eq!(
        admin.bind(&other).expect("bind").status,
        status::UNKNOWN_TENANT,
        "once tenants exist, a bind names a registered one"
    );

    let mut switch = Client::connect(node.tcp, Role::Switch, "").expect("switch");
    assert!(routed(&lookup(&mut switch, "13800000001", 1)));

    // Suspension: the very next lookup, on any connection.
    assert_eq!(set_suspended(&mut admin, 5, true), status::OK);
    for caller in ["13800000001", "13900000001"] {
        assert_eq!(
            lookup(&mut switch, caller, 1),
            LookupResult::Reject(Reject::TenantSuspended)
        );
    }
    let mut again = axb(x(3), "13800000003", "13900000003", "order-3");
    again.tenant = 5;
    assert_eq!(
        platform.bind(&again).expect("bind").status,
        status::TENANT_SUSPENDED
    );
    assert_eq!(set_suspended(&mut admin, 5, false), status::OK);
    assert!(routed(&lookup(&mut switch, "13800000001", 1)));
    assert_eq!(set_suspended(&mut admin, 77, true), status::UNKNOWN_TENANT);

    // Blocklists: the tenant's, then the global one.
    assert_eq!(block(&mut admin, Some(5), "13800000001", true), status::OK);
    assert_eq!(
        lookup(&mut switch, "13800000001", 1),
        LookupResult::Reject(Reject::Blocked)
    );
    assert!(routed(&lookup(&mut switch, "13900000001", 1)));
    assert_eq!(block(&mut admin, Some(5), "13800000001", false), status::OK);
    assert_eq!(block(&mut admin, None, "13900000001", true), status::OK);
    assert_eq!(
        lookup(&mut switch, "13900000001", 1),
        LookupResult::Reject(Reject::Blocked)
    );
    assert!(routed(&lookup(&mut switch, "13800000001", 1)));
    assert_eq!(
        block(&mut admin, Some(99), "13900000001", true),
        status::UNKNOWN_TENANT
    );

    // A platform may see its own tenant, not another's nor the list.
    assert_eq!(platform.tenant_show(Some(5)).expect("show").0, status::OK);
    assert_eq!(
        platform.tenant_show(None).expect("list").0,
        status::UNAUTHORISED
    );
    // Only an admin changes the registry.
    assert_eq!(set_suspended(&mut platform, 5, true), status::UNAUTHORISED);
}

/// A session that said version 1 in HELLO hears `unknown_opcode` for the
/// opcodes of version 2, as a version 1 server would answer.
#[test]
fn a_version_1_session_does_not_know_tenants() {
    let node = Node::start(&[]);
    let mut raw = Raw::connect(node.tcp);
    raw.send(&common::hello_frame(1, 1, Role::Admin, ""));
    let (header, body) = raw.expect_frame();
    assert_eq!(header.status, status::OK);
    assert_eq!(
        u16::from_le_bytes([body[0], body[1]]),
        1,
        "the session speaks 1"
    );
    assert_eq!(
        u16::from_le_bytes([body[14], body[15]]),
        2,
        "the server up to 2"
    );
    let mut frame = Vec::new();
    push_frame(
        &mut frame,
        opcode::TENANT_SHOW,
        0,
        2,
        &u32::MAX.to_le_bytes(),
    );
    raw.send(&frame);
    let (header, _) = raw.expect_frame();
    assert_eq!(header.status, status::UNKNOWN_OPCODE);
}

/// The registry after `kill -9` comes from the log; after a clean stop,
/// from the checkpoint file; both hold every acknowledged change.
#[test]
fn the_registry_survives_kill_and_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let node = Node::start_on(dir.path(), &[]);
    let mut admin = Client::connect(node.tcp, Role::Admin, "").expect("admin");
    assert_eq!(add_tenant(&mut admin, 5, TOKEN_5).0, status::OK);
    let mut bind = axb(x(1), "13800000001", "13900000001", "order-1");
    bind.tenant = 5;
    assert_eq!(admin.bind(&bind).expect("bind").status, status::OK);
    assert_eq!(set_suspended(&mut admin, 5, true), status::OK);
    drop(admin);
    node.kill();

    let node = Node::start_on(dir.path(), &[]);
    let mut switch = Client::connect(node.tcp, Role::Switch, "").expect("switch");
    assert_eq!(
        lookup(&mut switch, "13800000001", 1),
        LookupResult::Reject(Reject::TenantSuspended)
    );
    let mut admin = Client::connect(node.tcp, Role::Admin, "").expect("admin");
    assert_eq!(set_suspended(&mut admin, 5, false), status::OK);
    drop(admin);
    node.stop();

    let node = Node::start_on(dir.path(), &[]);
    let mut switch = Client::connect(node.tcp, Role::Switch, "").expect("switch");
    assert!(routed(&lookup(&mut switch, "13800000001", 1)));
    assert!(Client::connect(node.tcp, Role::Platform, TOKEN_5).is_ok());
}

/// A suspension made at the leader reaches the followers through the log:
/// a lookup at each follower, once it has applied the suspension, answers
/// `tenant_suspended`.
#[test]
fn the_registry_is_replicated() {
    let (_dirs, nodes, rafts) = start_members(3);
    let (_, leader) = init_cluster(&nodes, &rafts);
    let mut admin = Client::connect(leader, Role::Admin, "").expect("admin");
    assert_eq!(add_tenant(&mut admin, 5, TOKEN_5).0, status::OK);
    let mut bind = axb(x(1), "13800000001", "13900000001", "order-1");
    bind.tenant = 5;
    assert_eq!(admin.bind(&bind).expect("bind").status, status::OK);
    assert_eq!(set_suspended(&mut admin, 5, true), status::OK);
    let index = admin.read_index().expect("the leader's applied index");
    for node in nodes.values() {
        let mut switch = Client::connect(node.tcp, Role::Switch, "").expect("switch");
        let reply = switch.wait_index(index, 10_000).expect("WAIT_INDEX");
        assert_eq!(reply.status, status::OK, "member caught up");
        assert_eq!(
            lookup(&mut switch, "13800000001", 1),
            LookupResult::Reject(Reject::TenantSuspended)
        );
        let mut platform =
            Client::connect(node.tcp, Role::Platform, TOKEN_5).expect("the credential works here");
        assert_eq!(platform.ping().expect("ping"), status::OK);
    }
}

/// A tenant's per-X lookup limit refuses lookups beyond it within a second
/// (`rate_limited`), and every refusal of the registry is counted in
/// `/metrics` by status and tenant.
#[test]
fn lookup_rate_limits_refuse_and_are_counted() {
    let node = Node::start(&["--shards", "1"]);
    let mut admin = Client::connect(node.tcp, Role::Admin, "").expect("admin");
    let (code, body) = admin
        .control(&ControlRequest::TenantPut {
            tenant: 5,
            mode: PutMode::Add,
            max_live: 0,
            binds_per_s: 0,
            lookups_per_s: 0,
            x_lookups_per_s: 5,
            token: TOKEN_5.as_bytes(),
            hashed: false,
        })
        .expect("TENANT_PUT answered");
    assert_eq!(code, status::OK, "{body}");
    add_pool(&mut admin, 5);
    let mut bind = axb(x(1), "13800000001", "13900000001", "order-1");
    bind.tenant = 5;
    assert_eq!(admin.bind(&bind).expect("bind").status, status::OK);
    let mut switch = Client::connect(node.tcp, Role::Switch, "").expect("switch");
    let answers: Vec<LookupResult> = (0..20)
        .map(|_| lookup(&mut switch, "13800000001", 1))
        .collect();
    let routed_count = answers.iter().filter(|a| routed(a)).count();
    let limited = answers
        .iter()
        .filter(|a| **a == LookupResult::Reject(Reject::RateLimited))
        .count();
    assert!(routed(&answers[0]), "the first lookup of a second passes");
    // 20 lookups span at most a few seconds here; 5 pass in each.
    assert!((5..=15).contains(&routed_count), "{answers:?}");
    assert_eq!(routed_count + limited, 20, "{answers:?}");
    let (code, metrics) = common::http_get(node.admin, "/metrics");
    assert_eq!(code, 200);
    let line =
        format!("x700_lookups_screened_total{{status=\"rate_limited\",tenant=\"5\"}} {limited}");
    assert!(metrics.contains(&line), "{line} not in:\n{metrics}");
}
