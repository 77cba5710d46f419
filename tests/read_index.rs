//! Proves WAIT_INDEX (PROTOCOL.md 7.10, step 6 item 11) with real
//! processes: a platform that binds at the leader and learns the index
//! there reads its bind at a follower with a LOOKUP pipelined behind a
//! WAIT_INDEX; a WAIT_INDEX behind pending writes covers them; an index far
//! ahead ends BEHIND with the node's applied index (and the frames behind
//! it are then served); `ClusterClient` does the same; a wait past the
//! limit is refused; on a one-member
//! node it answers at once; and write answers are byte for byte those of
//! version 1.

mod common;

use common::cluster::{init_cluster, start_members};
use common::{ask, axb, x, Node, Raw};
use x700::binding::LookupResult;
use x700::client::{Client, ClusterClient};
use x700::protocol::codec::{
    decode_bind_answer, decode_wait_index_answer, encode_bind, encode_lookup, encode_wait_index,
    BIND_ANSWER_BYTES,
};
use x700::protocol::frame::HEADER_BYTES;
use x700::protocol::limits::WAIT_INDEX_TIMEOUT_MS_MAX;
use x700::protocol::{opcode, status, Role};

/// The longest wait a test asks for: nothing is asserted on time, a
/// loaded machine only makes it wait longer.
const WAIT_MS: u32 = WAIT_INDEX_TIMEOUT_MS_MAX;

#[test]
fn a_follower_serves_a_lookup_behind_wait_index_with_the_leaders_bind() {
    // The directories live as long as the test.
    let (_dirs, nodes, rafts) = start_members(3);
    let (leader_id, leader) = init_cluster(&nodes, &rafts);
    let followers: Vec<&Node> = nodes
        .iter()
        .filter(|(id, _)| **id != leader_id)
        .map(|(_, node)| node)
        .collect();

    // A bind and a WAIT_INDEX 0 pipelined in one send at the leader: the
    // WAIT_INDEX waits behind the bind, so its index covers it.
    let mut platform = Raw::session(leader, Role::Admin, "");
    let mut out = Vec::new();
    encode_bind(&mut out, 1, &axb(x(1), "13800000001", "13900000002", "rix"));
    encode_wait_index(&mut out, 2, 0, 0);
    platform.send(&out);
    let (bind, bind_body) = platform.expect_frame();
    assert_eq!((bind.request_id, bind.status), (1, status::OK));
    let (binding_id, _, created) = decode_bind_answer(&bind_body).expect("bind answer");
    assert!(created);
    let (waited, waited_body) = platform.expect_frame();
    assert_eq!(
        (waited.opcode, waited.status, waited.request_id),
        (opcode::WAIT_INDEX, status::OK, 2)
    );
    let index = decode_wait_index_answer(&waited_body).expect("an index");
    assert!(index > 0);

    // The same through `ClusterClient`: bind (at the leader, wherever the
    // client starts), learn the index, look up at a follower behind it.
    let follower_address = followers[0].tcp.to_string();
    let mut cluster = ClusterClient::connect(&[follower_address.as_str()], Role::Admin, "")
        .expect("cluster client");
    let reply = cluster
        .bind(&axb(x(3), "13800000001", "13900000002", "rix"))
        .expect("bind answered");
    assert_eq!(status::name(reply.status), "ok");
    let cluster_index = cluster.read_index().expect("an index");
    let (waited, lookup) = cluster
        .lookup_after(cluster_index, WAIT_MS, &ask("13800000001", x(3)))
        .expect("answered");
    assert_eq!(status::name(waited.status), "ok");
    assert!(
        matches!(lookup, LookupResult::Route(route) if Some(route.binding_id) == reply.binding_id)
    );
    assert_eq!(
        cluster.reader_addr(),
        follower_address,
        "read at the follower"
    );

    for follower in followers {
        let mut switch = Client::connect(follower.tcp, Role::Switch, "").expect("follower");
        let (reply, lookup) = switch
            .lookup_after(index, WAIT_MS, &ask("13800000001", x(1)))
            .expect("answered");
        assert_eq!(status::name(reply.status), "ok", "follower caught up");
        assert!(reply.applied_index >= index);
        match lookup {
            LookupResult::Route(route) => assert_eq!(route.binding_id, binding_id),
            other => panic!("the follower missed the bind behind WAIT_INDEX: {other:?}"),
        }

        // An index far ahead: BEHIND once the wait is over, with the
        // index the node has applied; the LOOKUP behind it is served then.
        let far = index + 1_000_000;
        let (reply, lookup) = switch
            .lookup_after(far, 200, &ask("13800000001", x(1)))
            .expect("answered");
        assert_eq!(status::name(reply.status), "behind");
        assert!((index..far).contains(&reply.applied_index));
        assert!(matches!(lookup, LookupResult::Route(_)));
        // Without a wait it answers at once.
        let reply = switch.wait_index(far, 0).expect("answered");
        assert_eq!(status::name(reply.status), "behind");
        // A wait past the limit is refused, the connection goes on.
        let reply = switch
            .wait_index(1, WAIT_INDEX_TIMEOUT_MS_MAX + 1)
            .expect("answered");
        assert_eq!(status::name(reply.status), "bad_request");
        assert_eq!(switch.ping().expect("ping"), status::OK);
    }
}

#[test]
fn write_answers_are_unchanged_and_a_lone_node_answers_wait_index_at_once() {
    let node = Node::start(&[]);
    let mut raw = Raw::session(node.tcp, Role::Admin, "");
    let mut out = Vec::new();
    encode_bind(&mut out, 7, &axb(x(2), "13800000001", "13900000002", "v1"));
    raw.send(&out);
    let (header, body) = raw.expect_frame();
    // Version 1's BIND answer: header and the 16-byte body, nothing more.
    assert_eq!(
        (header.length as usize, header.status, body.len()),
        (
            HEADER_BYTES + BIND_ANSWER_BYTES,
            status::OK,
            BIND_ANSWER_BYTES
        )
    );

    let mut client = Client::connect(node.tcp, Role::Switch, "").expect("connect");
    let index = client.read_index().expect("an index");
    assert!(index > 0, "the bind is applied at some index");
    // An index already applied is OK without any wait.
    let reply = client.wait_index(index, 0).expect("answered");
    assert_eq!(status::name(reply.status), "ok");
    assert!(reply.applied_index >= index);

    // A LOOKUP behind a WAIT_INDEX that holds the connection is answered
    // after it, never before.
    let mut raw = Raw::session(node.tcp, Role::Switch, "");
    let mut out = Vec::new();
    encode_wait_index(&mut out, 1, index + 1_000_000, 100);
    encode_lookup(&mut out, 2, &ask("13800000001", x(2)), true);
    raw.send(&out);
    let (first, _) = raw.expect_frame();
    let (second, _) = raw.expect_frame();
    assert_eq!(
        (first.request_id, first.status, second.request_id),
        (1, status::BEHIND, 2)
    );
}
