//! Proves the wire between nodes (docs/PROTOCOL.md part 2): every hex
//! example in the document is what the encoders produce; the decoders never
//! panic and accept only frames that re-encode to themselves (random bytes,
//! damaged examples, generated messages); oversized APPEND_ENTRIES requests
//! are split by the bound; and over real TCP a node refuses a peer of
//! another cluster, one claiming its own id and one without the secret,
//! while a peer with the secret completes the handshake and gets answers.

use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest, VoteResponse};
use openraft::{BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, Vote};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;
use x700::binding::BindingId;
use x700::protocol::codec::{encode_unbind, UnbindBody};
use x700::replication::peer::codec::{
    decode, encode, ErrorAnswer, ErrorCode, Hello, HelloAnswer, Message, NONCE_BYTES, PEER_VERSION,
};
use x700::replication::peer::frame::{next_frame, Kind, ENTRIES_PER_APPEND_MAX};
use x700::replication::peer::handshake::{prove, verify, Role, Transcript};
use x700::replication::{ClusterSecret, PeerConfig, Replica, ReplicaOptions, WriteBatch};

include!("../fuzz/check_peer.rs");

/// The document the examples must match.
const PROTOCOL_MD: &str = include_str!("../docs/PROTOCOL.md");
/// The secret of the examples.
const EXAMPLE_SECRET: &[u8] = b"an example cluster secret";
/// The cluster id of the examples.
const EXAMPLE_CLUSTER: u64 = 0x0700;

fn log_id(term: u64, leader: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, leader), index)
}

fn example_transcript() -> Transcript {
    Transcript {
        cluster_id: EXAMPLE_CLUSTER,
        connecting_id: 1,
        accepting_id: 2,
        connecting_nonce: [0x11; NONCE_BYTES],
        accepting_nonce: [0x22; NONCE_BYTES],
    }
}

fn example_membership() -> Membership<u64, BasicNode> {
    let nodes = BTreeMap::from([
        (1, BasicNode::new("10.0.0.1:7701|10.0.0.1:7700")),
        (2, BasicNode::new("10.0.0.2:7701|10.0.0.2:7700")),
        (3, BasicNode::new("10.0.0.3:7701")),
    ]);
    Membership::new(vec![BTreeSet::from([1, 2])], nodes)
}

fn example_batch() -> WriteBatch {
    let mut frame = Vec::new();
    encode_unbind(
        &mut frame,
        9,
        &UnbindBody::Id(BindingId(0x0001_0000_0100_002A)),
    );
    let mut batch = WriteBatch::new(1_800_000_000);
    assert!(batch.push(None, &frame));
    batch
}

fn frame(message: Message, request_id: u64) -> Vec<u8> {
    encode(&message, request_id).expect("example fits a frame")
}

/// Every example the document shows, by name, built with the codec.
fn examples() -> Vec<(&'static str, Vec<u8>)> {
    let secret = ClusterSecret::new(EXAMPLE_SECRET).unwrap();
    let transcript = example_transcript();
    vec![
        (
            "peer_hello",
            frame(
                Message::Hello(Hello {
                    version: PEER_VERSION,
                    cluster_id: EXAMPLE_CLUSTER,
                    node_id: 1,
                    target_id: 2,
                    nonce: [0x11; NONCE_BYTES],
                }),
                0,
            ),
        ),
        (
            "peer_hello_answer",
            frame(
                Message::HelloAnswer(HelloAnswer {
                    version: PEER_VERSION,
                    cluster_id: EXAMPLE_CLUSTER,
                    node_id: 2,
                    nonce: [0x22; NONCE_BYTES],
                }),
                0,
            ),
        ),
        (
            "peer_proof",
            frame(
                Message::Proof(prove(&secret, Role::Connecting, &transcript)),
                0,
            ),
        ),
        (
            "peer_welcome",
            frame(
                Message::Welcome(prove(&secret, Role::Accepting, &transcript)),
                0,
            ),
        ),
        (
            "peer_vote",
            frame(
                Message::Vote(VoteRequest {
                    vote: Vote::new(5, 1),
                    last_log_id: Some(log_id(4, 2, 100)),
                }),
                1,
            ),
        ),
        (
            "peer_vote_answer",
            frame(
                Message::VoteAnswer(VoteResponse {
                    vote: Vote::new(5, 1),
                    vote_granted: true,
                    last_log_id: Some(log_id(4, 2, 99)),
                }),
                1,
            ),
        ),
        (
            "peer_heartbeat",
            frame(
                Message::AppendEntries(AppendEntriesRequest {
                    vote: Vote::new_committed(5, 1),
                    prev_log_id: Some(log_id(5, 1, 101)),
                    leader_commit: Some(log_id(5, 1, 101)),
                    entries: Vec::new(),
                }),
                2,
            ),
        ),
        (
            "peer_append_entries",
            frame(
                Message::AppendEntries(AppendEntriesRequest {
                    vote: Vote::new_committed(5, 1),
                    prev_log_id: Some(log_id(5, 1, 101)),
                    leader_commit: Some(log_id(5, 1, 101)),
                    entries: vec![
                        Entry {
                            log_id: log_id(5, 1, 102),
                            payload: EntryPayload::Normal(example_batch()),
                        },
                        Entry {
                            log_id: log_id(5, 1, 103),
                            payload: EntryPayload::Blank,
                        },
                    ],
                }),
                3,
            ),
        ),
        (
            "peer_append_membership",
            frame(
                Message::AppendEntries(AppendEntriesRequest {
                    vote: Vote::new_committed(5, 1),
                    prev_log_id: Some(log_id(5, 1, 103)),
                    leader_commit: Some(log_id(5, 1, 103)),
                    entries: vec![Entry {
                        log_id: log_id(5, 1, 104),
                        payload: EntryPayload::Membership(example_membership()),
                    }],
                }),
                4,
            ),
        ),
        (
            "peer_append_answer",
            frame(
                Message::AppendEntriesAnswer(AppendEntriesResponse::Success),
                3,
            ),
        ),
        (
            "peer_append_answer_higher_vote",
            frame(
                Message::AppendEntriesAnswer(AppendEntriesResponse::HigherVote(Vote::new(6, 3))),
                3,
            ),
        ),
        (
            "peer_error",
            frame(
                Message::Error(ErrorAnswer {
                    code: ErrorCode::Refused,
                    message: "wrong cluster secret (node 3)".into(),
                }),
                0,
            ),
        ),
    ]
}

/// The bytes of `peer example NAME:` in the document: each line up to a
/// blank one, its text before the first double space, in hex.
fn documented(name: &str) -> Option<Vec<u8>> {
    let marker = format!("peer example {name}:");
    let mut lines = PROTOCOL_MD.lines().skip_while(|l| l.trim() != marker);
    lines.next()?;
    let mut bytes = Vec::new();
    for line in lines.take_while(|l| !l.trim().is_empty() && !l.starts_with("```")) {
        let hex = line.split("  ").next().unwrap_or("");
        for pair in hex.split_whitespace() {
            bytes.push(u8::from_str_radix(pair, 16).expect("hex byte"));
        }
    }
    Some(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x} ")).collect()
}

#[test]
fn every_peer_example_in_the_document_is_what_the_encoders_produce() {
    if std::env::var_os("X700_PRINT_PEER_EXAMPLES").is_some() {
        for (name, bytes) in examples() {
            println!("peer example {name}:");
            for row in bytes.chunks(16) {
                println!("{}", hex(row).trim_end());
            }
            println!();
        }
    }
    for (name, encoded) in examples() {
        let documented = documented(name)
            .unwrap_or_else(|| panic!("docs/PROTOCOL.md has no peer example {name}"));
        assert_eq!(
            hex(&documented),
            hex(&encoded),
            "peer example {name} differs"
        );
        assert_eq!(
            check_peer_frames(&encoded),
            1,
            "peer example {name} is refused"
        );
    }
    let checked: Vec<&str> = examples().iter().map(|(name, _)| *name).collect();
    for line in PROTOCOL_MD.lines() {
        if let Some(name) = line.trim().strip_prefix("peer example ") {
            assert!(
                checked.contains(&name.trim_end_matches(':')),
                "{name} is not checked"
            );
        }
    }
}

#[test]
fn the_example_proofs_verify_and_a_wrong_secret_does_not() {
    let secret = ClusterSecret::new(EXAMPLE_SECRET).unwrap();
    let wrong = ClusterSecret::new(b"another cluster secret").unwrap();
    let transcript = example_transcript();
    let proof = prove(&secret, Role::Connecting, &transcript);
    assert!(verify(&secret, Role::Connecting, &transcript, &proof));
    assert!(!verify(&wrong, Role::Connecting, &transcript, &proof));
}

#[test]
fn an_append_over_the_entry_bound_is_split_not_sent() {
    let entries = (0..=ENTRIES_PER_APPEND_MAX as u64)
        .map(|i| Entry {
            log_id: log_id(1, 1, i + 1),
            payload: EntryPayload::Blank,
        })
        .collect();
    let request = AppendEntriesRequest {
        vote: Vote::new_committed(1, 1),
        prev_log_id: None,
        leader_commit: None,
        entries,
    };
    let too_large = encode(&Message::AppendEntries(request), 1).unwrap_err();
    assert_eq!(too_large.entries_fit, ENTRIES_PER_APPEND_MAX as u64);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check_peer_frames(&bytes);
    }

    #[test]
    fn damaged_examples_never_panic(
        which in 0usize..12,
        flips in proptest::collection::vec((any::<usize>(), 1u8..=255), 1..4),
        cut in any::<usize>(),
    ) {
        let all = examples();
        let mut bytes = all[which % all.len()].1.clone();
        for (at, mask) in flips {
            // Mostly the body: flipping the length field only makes the
            // frame incomplete.
            let at = 4 + at % (bytes.len() - 4);
            bytes[at] ^= mask;
        }
        check_peer_frames(&bytes);
        check_peer_frames(&bytes[..cut % (bytes.len() + 1)]);
    }

    #[test]
    fn generated_messages_round_trip(
        term in any::<u64>(),
        node in any::<u64>(),
        committed in any::<bool>(),
        last in proptest::option::of((any::<u64>(), any::<u64>(), any::<u64>())),
        voters in proptest::collection::btree_set(any::<u64>(), 0..5),
        learners in proptest::collection::btree_map(any::<u64>(), "[a-z0-9.:|]{0,20}", 0..3),
        blanks in 0usize..4,
    ) {
        let vote = if committed { Vote::new_committed(term, node) } else { Vote::new(term, node) };
        let last = last.map(|(t, l, i)| log_id(t, l, i));
        let mut nodes: BTreeMap<u64, BasicNode> = learners
            .into_iter()
            .map(|(id, addr)| (id, BasicNode::new(addr)))
            .collect();
        for id in &voters {
            nodes.insert(*id, BasicNode::new(format!("10.0.0.{}:7701|x", id % 250)));
        }
        let membership = Membership::new(vec![voters], nodes);
        let mut entries: Vec<Entry<x700::replication::types::TypeConfig>> = (0..blanks)
            .map(|i| Entry { log_id: log_id(term, node, i as u64), payload: EntryPayload::Blank })
            .collect();
        entries.push(Entry { log_id: log_id(term, node, 9), payload: EntryPayload::Membership(membership) });
        entries.push(Entry { log_id: log_id(term, node, 10), payload: EntryPayload::Normal(example_batch()) });
        let mut stream = Vec::new();
        for message in [
            Message::Vote(VoteRequest { vote, last_log_id: last }),
            Message::VoteAnswer(VoteResponse { vote, vote_granted: committed, last_log_id: last }),
            Message::AppendEntries(AppendEntriesRequest { vote, prev_log_id: last, leader_commit: None, entries }),
            Message::AppendEntriesAnswer(AppendEntriesResponse::PartialSuccess(last)),
            Message::AppendEntriesAnswer(AppendEntriesResponse::Conflict),
        ] {
            stream.extend(encode(&message, term).expect("fits"));
        }
        prop_assert_eq!(check_peer_frames(&stream), 5);
    }
}

/// A replica with peers, alone (never initialised), for the handshake tests.
struct Lone {
    replica: Replica,
    _dir: tempfile::TempDir,
}

fn lone(id: u64, secret: &[u8]) -> Lone {
    use x700::server::apply::LocalApplier;
    use x700::store::clock::FakeClock;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(1_800_000_000));
    let mut store = x700::store::Store::create(dir.path(), 1, clock.clone()).unwrap();
    let (log, recovered) = x700::server::apply::recover(&mut store).unwrap();
    let applier = Arc::new(LocalApplier::new(store.split(1).pop().unwrap()));
    let options = ReplicaOptions {
        node_id: id,
        peers: Some(PeerConfig {
            cluster_id: EXAMPLE_CLUSTER,
            secret: ClusterSecret::new(secret).unwrap(),
            listen: "127.0.0.1:0".parse().unwrap(),
        }),
        ..ReplicaOptions::default()
    };
    let replica = Replica::start(dir.path(), log, applier, &recovered, options, clock).unwrap();
    Lone { replica, _dir: dir }
}

fn read_message(stream: &mut TcpStream) -> Option<Message> {
    let mut head = [0u8; 16];
    stream.read_exact(&mut head).ok()?;
    let length = u32::from_le_bytes(head[..4].try_into().unwrap()) as usize;
    let mut frame = head.to_vec();
    frame.resize(length, 0);
    stream.read_exact(&mut frame[16..]).ok()?;
    let (header, body) = next_frame(&frame).unwrap().unwrap();
    Some(decode(&header, body).unwrap())
}

/// Connects to `node` as node `from` of cluster `cluster`, sends HELLO and
/// returns the stream and the answer.
fn hello(node: &Lone, from: u64, cluster: u64) -> (TcpStream, Option<Message>, [u8; NONCE_BYTES]) {
    let mut stream = TcpStream::connect(node.replica.raft_addr().unwrap()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let nonce = [0x33; NONCE_BYTES];
    let hello = Message::Hello(Hello {
        version: PEER_VERSION,
        cluster_id: cluster,
        node_id: from,
        target_id: node.replica.node_id(),
        nonce,
    });
    stream.write_all(&encode(&hello, 0).unwrap()).unwrap();
    let answer = read_message(&mut stream);
    (stream, answer, nonce)
}

fn refused(answer: Option<Message>) -> bool {
    matches!(
        answer,
        Some(Message::Error(ErrorAnswer {
            code: ErrorCode::Refused,
            ..
        }))
    )
}

fn refusals(node: &Lone) -> u64 {
    node.replica
        .peer_stats()
        .refused_in
        .load(std::sync::atomic::Ordering::Relaxed)
}

#[test]
fn over_tcp_a_node_refuses_strangers_and_serves_members() {
    let node = lone(2, EXAMPLE_SECRET);
    // Another cluster.
    let (_, answer, _) = hello(&node, 1, EXAMPLE_CLUSTER + 1);
    assert!(refused(answer));
    assert_eq!(refusals(&node), 1);
    // Our own node id: a node never talks to itself.
    let (_, answer, _) = hello(&node, 2, EXAMPLE_CLUSTER);
    assert!(refused(answer));
    assert_eq!(refusals(&node), 2);
    // Without the secret: the proof does not verify.
    let (mut stream, answer, nonce) = hello(&node, 1, EXAMPLE_CLUSTER);
    let Some(Message::HelloAnswer(answer)) = answer else {
        panic!("no HELLO answer");
    };
    let transcript = Transcript {
        cluster_id: EXAMPLE_CLUSTER,
        connecting_id: 1,
        accepting_id: 2,
        connecting_nonce: nonce,
        accepting_nonce: answer.nonce,
    };
    let wrong = ClusterSecret::new(b"not the example secret").unwrap();
    let proof = Message::Proof(prove(&wrong, Role::Connecting, &transcript));
    stream.write_all(&encode(&proof, 0).unwrap()).unwrap();
    assert!(refused(read_message(&mut stream)));
    assert_eq!(refusals(&node), 3);
    assert!(
        read_message(&mut stream).is_none(),
        "the connection stays open"
    );
    // With the secret: WELCOME carries the node's own proof, then requests
    // are answered.
    let secret = ClusterSecret::new(EXAMPLE_SECRET).unwrap();
    let (mut stream, answer, nonce) = hello(&node, 1, EXAMPLE_CLUSTER);
    let Some(Message::HelloAnswer(answer)) = answer else {
        panic!("no HELLO answer");
    };
    let transcript = Transcript {
        accepting_nonce: answer.nonce,
        connecting_nonce: nonce,
        ..transcript
    };
    let proof = Message::Proof(prove(&secret, Role::Connecting, &transcript));
    stream.write_all(&encode(&proof, 0).unwrap()).unwrap();
    let Some(Message::Welcome(their_proof)) = read_message(&mut stream) else {
        panic!("no WELCOME");
    };
    assert!(verify(&secret, Role::Accepting, &transcript, &their_proof));
    let vote = Message::Vote(VoteRequest {
        vote: Vote::new(1, 1),
        last_log_id: None,
    });
    stream.write_all(&encode(&vote, 41).unwrap()).unwrap();
    let mut head = [0u8; 16];
    stream.peek(&mut head).unwrap();
    assert_eq!(head[4], Kind::VoteAnswer as u8);
    assert_eq!(u64::from_le_bytes(head[8..].try_into().unwrap()), 41);
    assert!(matches!(
        read_message(&mut stream),
        Some(Message::VoteAnswer(_))
    ));
    assert_eq!(refusals(&node), 3);
    // A frame the codec refuses closes the connection after an ERROR.
    let mut junk = encode(&vote, 42).unwrap();
    junk[16 + 16] = 7; // committed flag 7
    stream.write_all(&junk).unwrap();
    assert!(matches!(
        read_message(&mut stream),
        Some(Message::Error(ErrorAnswer {
            code: ErrorCode::Malformed,
            ..
        }))
    ));
    assert!(read_message(&mut stream).is_none());
    node.replica.shutdown(false).unwrap();
}
