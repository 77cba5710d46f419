//! Proves, against a real `x700 serve` process with two platforms, an admin
//! and a switch, that an X with a live binding belongs to that binding's
//! tenant: another tenant's bind on it answers `unauthorised` whoever asks,
//! in one answer that does not depend on the request's numbers; no answer
//! carries another tenant's binding id; the owner goes on binding; and the
//! same holds after a restart replays the log.

mod common;

use common::{
    ask, axb, axe, axn, real, x, xs_over_loops, Node, Raw, ADMIN_TOKEN, CREDENTIALS, P1_TOKEN,
    P2_TOKEN, SWITCH_TOKEN,
};
use x700::binding::{BindingId, LookupResult, Reject, Update};
use x700::client::{Client, WriteReply};
use x700::number::Number;
use x700::protocol::codec::{self, BindBody, UnbindBody};
use x700::protocol::frame::Header;
use x700::protocol::{status, Role};

fn start(data: &std::path::Path) -> Node {
    let mut args = CREDENTIALS.to_vec();
    args.extend(["--shards", "2"]);
    Node::start_on(data, &args)
}

fn for_tenant(body: BindBody, tenant: u32) -> BindBody {
    BindBody { tenant, ..body }
}

/// Sends one bind on a raw session and returns the whole answer.
fn bind_raw(raw: &mut Raw, body: &BindBody) -> (Header, Vec<u8>) {
    let mut frame = Vec::new();
    codec::encode_bind(&mut frame, 9, body);
    raw.send(&frame);
    raw.expect_frame()
}

fn bind_ok(client: &mut Client, body: &BindBody) -> BindingId {
    let reply = client.bind(body).expect("bind answered");
    assert_eq!(status::name(reply.status), "ok", "{body:?}: {reply:?}");
    reply.binding_id.expect("id")
}

fn bind_status(client: &mut Client, body: &BindBody) -> WriteReply {
    client.bind(body).expect("bind answered")
}

fn callee(switch: &mut Client, caller: &str, xn: Number) -> String {
    match switch.lookup(&ask(caller, xn)).expect("lookup answered") {
        LookupResult::Route(route) => route.callee.digits(),
        LookupResult::Reject(reject) => format!("reject:{}", reject.as_str()),
    }
}

/// Guards step 5 item 7: tenant 2 could bind on an X that tenant 1 was
/// using, and a switch routed it, so tenant 2 could call people showing
/// tenant 1's number. Now every such bind (any mode, numbers that collide
/// with tenant 1's or not, from the platform or from the admin) gets the
/// same empty `unauthorised` answer, until tenant 1's bindings are gone;
/// a restart (log replay) keeps the same state.
#[test]
fn a_tenant_binds_only_on_its_own_x() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start(dir.path());
    let connect = |role, token| Client::connect(node.tcp, role, token).expect("session");
    let mut admin = connect(Role::Admin, ADMIN_TOKEN);
    let mut switch = connect(Role::Switch, SWITCH_TOKEN);
    let mut p1 = connect(Role::Platform, P1_TOKEN);
    let mut p2 = Raw::session(node.tcp, Role::Platform, P2_TOKEN);
    let mut p2_client = connect(Role::Platform, P2_TOKEN);
    let xs = xs_over_loops(&node, 1, 21_000);
    for (i, &xn) in xs.iter().enumerate() {
        let mine = axb(xn, "13800000001", "13900000002", &format!("p1-{i}"));
        let id_mine = bind_ok(&mut p1, &mine);

        let tries = [
            axb(xn, "13600000001", "13600000002", "p2"),
            axb(xn, "13800000001", "13600000002", "p2"),
            axb(xn, "13600000001", "13900000002", "p2"),
            axb(xn, "13900000002", "13800000001", "p2"),
        ];
        let answers: Vec<_> = tries
            .iter()
            .map(|body| bind_raw(&mut p2, &for_tenant(*body, 2)))
            .collect();
        for (body, (header, answer)) in tries.iter().zip(&answers) {
            assert_eq!(
                (status::name(header.status), answer.as_slice()),
                ("unauthorised", &[][..]),
                "{body:?}"
            );
            assert_eq!(*header, answers[0].0, "answers differ by the numbers asked");
        }
        for body in [
            axn(xn, "13600000001", None, "p2"),
            axn(xn, "13600000001", Some("13800000001"), "p2"),
            axe(xn, "13600000001", "12", "p2"),
        ] {
            let (header, answer) = bind_raw(&mut p2, &for_tenant(body, 2));
            assert_eq!((header.status, answer.len()), (status::UNAUTHORISED, 0));
        }
        // The admin is held to the same rule, for tenant 2's sake...
        let reply = bind_status(
            &mut admin,
            &for_tenant(axb(xn, "13600000001", "13600000002", "adm"), 2),
        );
        assert_eq!(
            (reply.status, reply.binding_id),
            (status::UNAUTHORISED, None)
        );
        // ...and may bind for the owner, as the owner may.
        let id_admin = bind_ok(
            &mut admin,
            &axb(xn, "13700000001", "13700000002", &format!("adm-{i}")),
        );
        assert_eq!(callee(&mut switch, "13800000001", xn), "13900000002");
        assert_eq!(callee(&mut switch, "13600000001", xn), "reject:not_a_party");

        // Once tenant 1's bindings are gone, X is free; then it is tenant 2's.
        for id in [id_mine, id_admin] {
            p1.unbind(&UnbindBody::Id(id))
                .expect("unbind answered")
                .expect("unbound");
        }
        bind_ok(&mut p2_client, &for_tenant(tries[1], 2));
        let reply = bind_status(&mut p1, &mine);
        assert_eq!(
            (reply.status, reply.binding_id),
            (status::UNAUTHORISED, None)
        );
    }
    drop((admin, switch, p1, p2, p2_client));
    assert!(node.stop().success());

    // The log replay reaches the same state.
    let node = start(dir.path());
    let mut switch = Client::connect(node.tcp, Role::Switch, SWITCH_TOKEN).expect("switch");
    let mut p1 = Client::connect(node.tcp, Role::Platform, P1_TOKEN).expect("p1");
    for (i, &xn) in xs.iter().enumerate() {
        assert_eq!(callee(&mut switch, "13800000001", xn), "13600000002");
        let mine = axb(xn, "13500000001", "13500000002", &format!("again-{i}"));
        assert_eq!(bind_status(&mut p1, &mine).status, status::UNAUTHORISED);
    }
    drop((switch, p1));
    assert!(node.stop().success());
}

/// Guards step 5 item 2: a platform that updated its own B to a number
/// another tenant held on the same X got `conflict` with that tenant's
/// binding id. The situation cannot arise any more (its bind on that X is
/// refused, with no id), and a conflict between a tenant's own bindings
/// still names the clashing one.
#[test]
fn no_answer_carries_another_tenants_binding_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start(dir.path());
    let connect = |role, token| Client::connect(node.tcp, role, token).expect("session");
    let mut p1 = connect(Role::Platform, P1_TOKEN);
    let mut p2 = connect(Role::Platform, P2_TOKEN);
    let xs = xs_over_loops(&node, 1, 22_000);
    for (i, &xn) in xs.iter().enumerate() {
        let theirs = bind_ok(&mut p1, &axb(xn, "13800000001", "13900000001", "p1"));
        let second = bind_ok(&mut p1, &axb(xn, "13800000002", "13900000002", "p1"));
        // The sequence: tenant 2 binds on X, then moves its B onto
        // tenant 1's A. The bind is refused and names nothing.
        let reply = bind_status(
            &mut p2,
            &for_tenant(axb(xn, "13700000001", "13700000002", "p2"), 2),
        );
        assert_eq!(
            (reply.status, reply.binding_id),
            (status::UNAUTHORISED, None)
        );
        // On its own X tenant 2 may bind and take tenant 1's numbers: they
        // are another X's business.
        let own_x = x(23_000 + i as u64);
        let mine = bind_ok(
            &mut p2,
            &for_tenant(axb(own_x, "13700000001", "13700000002", "p2"), 2),
        );
        let moved = p2
            .update(
                mine,
                &Update {
                    b: Some(real("13800000001")),
                    ..Update::default()
                },
            )
            .expect("update answered");
        assert!(moved.is_ok(), "{moved:?}");
        // Tenant 1 clashing with itself learns its own binding's id.
        let clash = p1
            .update(
                second,
                &Update {
                    b: Some(real("13800000001")),
                    ..Update::default()
                },
            )
            .expect("update answered");
        assert_eq!(
            clash.err().map(|reply| (reply.status, reply.binding_id)),
            Some((status::CONFLICT, Some(theirs)))
        );
        let mut admin = connect(Role::Admin, ADMIN_TOKEN);
        match admin.lookup(&ask("13700000001", xn)).expect("lookup") {
            LookupResult::Reject(Reject::NotAParty) => {}
            other => panic!("tenant 2's pair routes on tenant 1's X: {other:?}"),
        }
    }
    drop((p1, p2));
    assert!(node.stop().success());
}
