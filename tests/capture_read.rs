//! Proves that `x700::capture` reads x700 traffic back from captures:
//! crafted pcap and pcapng files, written byte by byte here, with every
//! link type tcpdump gives (Ethernet with and without VLAN, Linux cooked v1
//! and v2, BSD loopback, raw IP), IPv4 and IPv6, TCP segments reordered,
//! retransmitted, overlapping, split and coalesced, a capture that starts
//! mid-stream, a hole, UDP datagrams of many lookups, truncated and
//! garbage files; and, with tcpdump on `lo`, a real node's session decoded
//! by `x700 decode --json`.

mod common;

use common::tcpdump::{tools_ready, Tcpdump};
use etherparse::PacketBuilder;
use std::net::SocketAddr;
use std::process::Command;
use x700::binding::{BindingId, LookupQuery, LookupResult, Route};
use x700::capture::{read_capture, Capture, Options, Protocol, ServerChosenBy};
use x700::number::Number;
use x700::protocol::codec::{encode_hello, encode_lookup, encode_lookup_answer};
use x700::protocol::{opcode, push_frame, status, Role};

// ---- traffic ----

const CLIENT_PORT: u16 = 40_000;
const SERVER_PORT: u16 = 7700;

fn query(id: u32) -> LookupQuery {
    LookupQuery {
        caller: Number::from_digits(format!("1380013800{id}").as_bytes()),
        x: Number::from_digits(format!("7000000000000{id:02}").as_bytes()),
        extension: Number::NONE,
    }
}

fn route(id: u32) -> LookupResult {
    LookupResult::Route(Route {
        callee: Number::from_digits(format!("1390013900{id}").as_bytes()),
        display: Number::from_digits(format!("7000000000000{id:02}").as_bytes()),
        recording: false,
        binding_id: BindingId(u64::from(id) + 100),
        expires_in_s: 60,
    })
}

/// A session's two streams: HELLO (id 1), then LOOKUPs with ids 2..=`last`;
/// the answers in the same order.
fn session(last: u32) -> (Vec<u8>, Vec<u8>) {
    let mut requests = Vec::new();
    let mut answers = Vec::new();
    encode_hello(&mut requests, 1, 1, Role::Switch, b"");
    push_frame(&mut answers, opcode::HELLO, status::OK, 1, &[0; 16]);
    for id in 2..=last {
        encode_lookup(&mut requests, id, &query(id), true);
        encode_lookup_answer(&mut answers, id, &route(id));
    }
    (requests, answers)
}

// ---- packets ----

#[derive(Clone, Copy)]
struct Ends {
    v6: bool,
}

impl Ends {
    fn build(self, client_to_server: bool) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
        let (client4, server4) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        let mut client6 = [0u8; 16];
        client6[0] = 0xfd;
        client6[15] = 1;
        let mut server6 = client6;
        server6[15] = 2;
        match (self.v6, client_to_server) {
            (false, true) => PacketBuilder::ipv4(client4, server4, 64),
            (false, false) => PacketBuilder::ipv4(server4, client4, 64),
            (true, true) => PacketBuilder::ipv6(client6, server6, 64),
            (true, false) => PacketBuilder::ipv6(server6, client6, 64),
        }
    }

    fn ports(client_to_server: bool) -> (u16, u16) {
        if client_to_server {
            (CLIENT_PORT, SERVER_PORT)
        } else {
            (SERVER_PORT, CLIENT_PORT)
        }
    }

    /// A TCP segment as a raw IP packet.
    fn tcp(self, client_to_server: bool, seq: u32, flags: &str, payload: &[u8]) -> Vec<u8> {
        let (source, destination) = Ends::ports(client_to_server);
        let mut step = self
            .build(client_to_server)
            .tcp(source, destination, seq, 65_535);
        if flags.contains('S') {
            step = step.syn();
        }
        if flags.contains('A') {
            step = step.ack(1);
        }
        if flags.contains('F') {
            step = step.fin();
        }
        let mut out = Vec::new();
        step.write(&mut out, payload).expect("tcp packet");
        out
    }

    /// A UDP datagram as a raw IP packet.
    fn udp(self, client_to_server: bool, payload: &[u8]) -> Vec<u8> {
        let (source, destination) = Ends::ports(client_to_server);
        let mut out = Vec::new();
        self.build(client_to_server)
            .udp(source, destination)
            .write(&mut out, payload)
            .expect("udp packet");
        out
    }
}

const LINK_NULL: u32 = 0;
const LINK_ETHERNET: u32 = 1;
const LINK_RAW_DLT: u32 = 12;
const LINK_RAW: u32 = 101;
const LINK_SLL: u32 = 113;
const LINK_SLL2: u32 = 276;
/// Ethernet with an 802.1Q tag (still link type 1).
const ETHERNET_VLAN: u32 = 0x1_0001;

/// An IP packet behind the link-layer header of `link`.
fn link(link: u32, ip: &[u8]) -> Vec<u8> {
    let ether_type: u16 = if ip[0] >> 4 == 6 { 0x86DD } else { 0x0800 };
    let mut out = Vec::new();
    match link {
        LINK_ETHERNET | ETHERNET_VLAN => {
            out.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
            if link == ETHERNET_VLAN {
                out.extend_from_slice(&0x8100u16.to_be_bytes());
                out.extend_from_slice(&42u16.to_be_bytes());
            }
            out.extend_from_slice(&ether_type.to_be_bytes());
        }
        LINK_SLL => {
            out.extend_from_slice(&[0, 0, 3, 4, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
            out.extend_from_slice(&ether_type.to_be_bytes());
        }
        LINK_SLL2 => {
            out.extend_from_slice(&ether_type.to_be_bytes());
            out.extend_from_slice(&[0, 0, 0, 0, 0, 1, 3, 4, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
        }
        LINK_NULL => {
            let family: u32 = if ether_type == 0x86DD { 30 } else { 2 };
            out.extend_from_slice(&family.to_le_bytes());
        }
        _ => {}
    }
    out.extend_from_slice(ip);
    out
}

// ---- files ----

/// A pcap file, packets 1 ms apart from 1,000 s.
fn pcap(link_type: u32, nanoseconds: bool, big_endian: bool, packets: &[Vec<u8>]) -> Vec<u8> {
    let u32_bytes = |value: u32| {
        if big_endian {
            value.to_be_bytes()
        } else {
            value.to_le_bytes()
        }
    };
    let u16_bytes = |value: u16| {
        if big_endian {
            value.to_be_bytes()
        } else {
            value.to_le_bytes()
        }
    };
    let mut out = Vec::new();
    out.extend_from_slice(&u32_bytes(if nanoseconds {
        0xa1b2_3c4d
    } else {
        0xa1b2_c3d4
    }));
    out.extend_from_slice(&u16_bytes(2));
    out.extend_from_slice(&u16_bytes(4));
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&u32_bytes(262_144));
    out.extend_from_slice(&u32_bytes(link_type & 0xFFFF));
    for (index, packet) in packets.iter().enumerate() {
        let ms = index as u32;
        let fraction = if nanoseconds {
            ms * 1_000_000
        } else {
            ms * 1_000
        };
        out.extend_from_slice(&u32_bytes(1_000));
        out.extend_from_slice(&u32_bytes(fraction));
        out.extend_from_slice(&u32_bytes(packet.len() as u32));
        out.extend_from_slice(&u32_bytes(packet.len() as u32));
        out.extend_from_slice(packet);
    }
    out
}

fn block(out: &mut Vec<u8>, block_type: u32, body: &[u8]) {
    let mut padded = body.to_vec();
    padded.resize(body.len().div_ceil(4) * 4, 0);
    let length = (padded.len() + 12) as u32;
    out.extend_from_slice(&block_type.to_le_bytes());
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&padded);
    out.extend_from_slice(&length.to_le_bytes());
}

/// A little-endian pcapng file: one section, the interfaces given by link
/// type (the second, if any, with nanosecond timestamps), then enhanced
/// packet blocks (interface, time in that interface's units, bytes), and a
/// simple packet block for each `None` interface.
fn pcapng(interfaces: &[u32], packets: &[(Option<u32>, u64, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut section = Vec::new();
    section.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
    section.extend_from_slice(&1u16.to_le_bytes());
    section.extend_from_slice(&0u16.to_le_bytes());
    section.extend_from_slice(&(-1i64).to_le_bytes());
    block(&mut out, 0x0A0D_0D0A, &section);
    for (index, &link_type) in interfaces.iter().enumerate() {
        let mut body = Vec::new();
        body.extend_from_slice(&(link_type as u16).to_le_bytes());
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&262_144u32.to_le_bytes());
        if index == 1 {
            // if_tsresol = 9: nanoseconds; then the end of options.
            body.extend_from_slice(&[9, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0]);
        }
        block(&mut out, 1, &body);
    }
    for (interface, time, bytes) in packets {
        let mut body = Vec::new();
        match interface {
            Some(interface) => {
                body.extend_from_slice(&interface.to_le_bytes());
                body.extend_from_slice(&((time >> 32) as u32).to_le_bytes());
                body.extend_from_slice(&(*time as u32).to_le_bytes());
                body.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                body.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                body.extend_from_slice(bytes);
                block(&mut out, 6, &body);
            }
            None => {
                body.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                body.extend_from_slice(bytes);
                block(&mut out, 3, &body);
            }
        }
    }
    out
}

fn read(file: &[u8]) -> Capture {
    read_capture(file, &Options::default())
}

/// A TCP session from its SYNs: the client's requests in segments of
/// `chunk` bytes, the answers in one segment.
fn tcp_session(ends: Ends, last: u32, chunk: usize) -> Vec<Vec<u8>> {
    let (requests, answers) = session(last);
    let (client_isn, server_isn) = (1_000u32, 9_000u32);
    let mut packets = vec![
        ends.tcp(true, client_isn, "S", b""),
        ends.tcp(false, server_isn, "SA", b""),
    ];
    for (index, piece) in requests.chunks(chunk).enumerate() {
        let seq = client_isn + 1 + (index * chunk) as u32;
        packets.push(ends.tcp(true, seq, "A", piece));
    }
    packets.push(ends.tcp(false, server_isn + 1, "A", &answers));
    packets
}

/// Checks the one connection of `capture`: requests with ids `ids`, each
/// paired with its answer, LOOKUP numbers intact.
fn assert_session(capture: &Capture, ids: &[u32]) {
    assert_eq!(capture.error, None);
    assert_eq!(capture.connections.len(), 1, "{:?}", capture.summary);
    let connection = &capture.connections[0];
    assert_eq!(connection.server.port(), SERVER_PORT);
    assert_eq!(connection.client.port(), CLIENT_PORT);
    let request_ids: Vec<u32> = connection
        .requests
        .iter()
        .map(|frame| frame.header.request_id)
        .collect();
    assert_eq!(request_ids, ids);
    for request in &connection.requests {
        let answer = &connection.answers[request.pair.expect("every request answered")];
        assert_eq!(answer.header.request_id, request.header.request_id);
        assert_eq!(answer.header.opcode, request.header.opcode);
        if request.header.opcode == opcode::LOOKUP {
            let mut expected = Vec::new();
            encode_lookup(
                &mut expected,
                request.header.request_id,
                &query(request.header.request_id),
                true,
            );
            assert_eq!(request.bytes, expected);
        }
    }
}

// ---- tests ----

#[test]
fn every_link_type_and_both_ip_versions_read_the_same_session() {
    for v6 in [false, true] {
        for link_type in [
            LINK_ETHERNET,
            ETHERNET_VLAN,
            LINK_SLL,
            LINK_SLL2,
            LINK_NULL,
            LINK_RAW,
            LINK_RAW_DLT,
        ] {
            let packets: Vec<Vec<u8>> = tcp_session(Ends { v6 }, 4, 1_000)
                .iter()
                .map(|ip| link(link_type, ip))
                .collect();
            let capture = read(&pcap(link_type, false, false, &packets));
            assert_eq!(capture.summary.packets, 4, "link {link_type:#x} v6 {v6}");
            assert_session(&capture, &[1, 2, 3, 4]);
            let connection = &capture.connections[0];
            assert!(connection.from_start);
            assert_eq!(connection.client.is_ipv6(), v6);
        }
    }
}

#[test]
fn reordered_retransmitted_overlapping_and_split_segments_reassemble() {
    let ends = Ends { v6: false };
    // Requests in 7-byte segments (frames split across segments), answers
    // all in one (frames coalesced).
    let mut packets = tcp_session(ends, 6, 7);
    let answers = packets.pop().expect("answer segment");
    // Swap neighbours: every pair arrives out of order.
    for pair in packets[2..].chunks_mut(2) {
        pair.reverse();
    }
    // Retransmit a segment, and one that overlaps two others.
    packets.push(packets[4].clone());
    let (requests, _) = session(6);
    packets.push(ends.tcp(true, 1_000 + 1 + 10, "A", &requests[10..30]));
    packets.push(answers);
    let capture = read(&pcap(
        LINK_ETHERNET,
        false,
        false,
        &packets
            .iter()
            .map(|ip| link(LINK_ETHERNET, ip))
            .collect::<Vec<_>>(),
    ));
    assert_session(&capture, &[1, 2, 3, 4, 5, 6]);
    assert!(
        capture.summary.repeated_bytes >= 7 + 20,
        "{:?}",
        capture.summary
    );
    assert_eq!(capture.summary.gaps, 0);
}

#[test]
fn a_capture_that_starts_mid_stream_finds_the_frames() {
    let ends = Ends { v6: false };
    let (requests, answers) = session(5);
    // No SYN: the capture starts 5 bytes into the first LOOKUP (the HELLO
    // is 16 bytes) and 3 bytes into its answer (the HELLO answer is 28).
    let packets = vec![
        ends.tcp(true, 77_000, "A", &requests[16 + 5..]),
        ends.tcp(false, 5_000, "A", &answers[28 + 3..]),
    ];
    let capture = read(&pcap(LINK_RAW, false, false, &packets));
    let connection = &capture.connections[0];
    assert!(!connection.from_start);
    assert_eq!(connection.server_chosen_by, ServerChosenBy::Port);
    let ids: Vec<u32> = connection
        .requests
        .iter()
        .map(|f| f.header.request_id)
        .collect();
    assert_eq!(ids, [3, 4, 5]);
    let answered: Vec<u32> = connection
        .answers
        .iter()
        .map(|f| f.header.request_id)
        .collect();
    assert_eq!(answered, [3, 4, 5]);
    assert!(connection.requests.iter().all(|frame| frame.pair.is_some()));
}

#[test]
fn a_hole_in_the_stream_loses_only_the_frames_it_cuts() {
    let ends = Ends { v6: true };
    // 32-byte LOOKUP frames after a 16-byte HELLO, in 16-byte segments:
    // dropping segment 4 (bytes 48..64, inside LOOKUP 3) loses LOOKUP 3.
    let mut packets = tcp_session(ends, 6, 16);
    packets.remove(2 + 3);
    let capture = read(&pcap(LINK_RAW, false, false, &packets));
    let connection = &capture.connections[0];
    let ids: Vec<u32> = connection
        .requests
        .iter()
        .map(|f| f.header.request_id)
        .collect();
    assert_eq!(ids, [1, 2, 4, 5, 6]);
    assert_eq!(connection.gaps, 1);
    assert_eq!(capture.summary.gaps, 1);
    assert_eq!(connection.answers.len(), 6);
    assert_eq!(
        connection
            .answers
            .iter()
            .filter(|a| a.pair.is_none())
            .count(),
        1
    );
}

#[test]
fn udp_datagrams_of_many_lookups_pair_with_their_answers() {
    let ends = Ends { v6: false };
    let mut request = Vec::new();
    let mut answer = Vec::new();
    for id in 10..13 {
        encode_lookup(&mut request, id, &query(id), true);
        encode_lookup_answer(&mut answer, id, &route(id));
    }
    // An answer first (from the server port), then the request datagram.
    let packets = vec![
        link(LINK_SLL2, &ends.udp(true, &request)),
        link(LINK_SLL2, &ends.udp(false, &answer)),
    ];
    let capture = read(&pcap(LINK_SLL2, false, false, &packets));
    assert_session(&capture, &[10, 11, 12]);
    assert_eq!(capture.connections[0].protocol, Protocol::Udp);
}

#[test]
fn pcap_byte_orders_resolutions_and_pcapng_interfaces_give_the_same_frames() {
    let ends = Ends { v6: false };
    let packets = tcp_session(ends, 3, 10);
    for (nanoseconds, big_endian) in [(false, true), (true, false), (true, true)] {
        let capture = read(&pcap(LINK_RAW, nanoseconds, big_endian, &packets));
        assert_session(&capture, &[1, 2, 3]);
        let first = &capture.connections[0].requests[0];
        // The HELLO ends in the second request segment: packet 4, 3 ms in.
        assert_eq!(
            first.time_ns, 1_000_003_000_000,
            "ns {nanoseconds} be {big_endian}"
        );
    }
    // pcapng: interface 0 Ethernet (microseconds), interface 1 raw IP
    // (nanoseconds); the answers come as a simple packet block.
    let mut blocks = Vec::new();
    for (index, ip) in packets.iter().enumerate() {
        let entry = if index == packets.len() - 1 {
            (None, 0, link(LINK_ETHERNET, ip))
        } else if index % 2 == 0 {
            (
                Some(0),
                2_000_000_000 + index as u64,
                link(LINK_ETHERNET, ip),
            )
        } else {
            (Some(1), (2_000_000_000 + index as u64) * 1_000, ip.clone())
        };
        blocks.push(entry);
    }
    let capture = read(&pcapng(&[LINK_ETHERNET, LINK_RAW], &blocks));
    assert_eq!(capture.summary.packets, packets.len() as u64);
    assert_session(&capture, &[1, 2, 3]);
    // LOOKUP 2 ends in packet 6 (interface 0, microseconds), LOOKUP 3 in
    // packet 9 (interface 1, nanoseconds).
    let requests = &capture.connections[0].requests;
    assert_eq!(requests[1].time_ns, 2_000_000_006_000);
    assert_eq!(requests[2].time_ns, 2_000_000_009_000);
}

#[test]
fn a_truncated_capture_names_the_packet_and_keeps_what_came_before() {
    let ends = Ends { v6: false };
    let (requests, answers) = session(3);
    let packets = vec![
        ends.tcp(true, 1, "S", b""),
        ends.tcp(true, 2, "A", &requests),
        ends.tcp(false, 50, "A", &answers),
    ];
    let file = pcap(LINK_RAW, false, false, &packets);
    let capture = read(&file[..file.len() - 10]);
    let error = capture.error.clone().expect("truncation reported");
    assert_eq!(error.packet, 3, "{error}");
    assert!(error.to_string().contains("packet 3"));
    assert_eq!(capture.summary.packets, 2);
    assert_eq!(capture.connections[0].requests.len(), 3);
    assert!(capture.connections[0].answers.is_empty());

    let blocks: Vec<_> = packets.iter().map(|ip| (Some(0), 0, ip.clone())).collect();
    let file = pcapng(&[LINK_RAW], &blocks);
    let capture = read(&file[..file.len() - 3]);
    assert_eq!(capture.error.map(|error| error.packet), Some(3));
    assert_eq!(capture.connections[0].requests.len(), 3);

    let garbage = read(b"this is not a capture file at all, not even close");
    assert_eq!(garbage.error.map(|error| error.packet), Some(1));
    assert!(read(b"").error.is_some());
}

#[test]
fn unknown_link_types_and_other_protocols_are_skipped_and_counted() {
    let ends = Ends { v6: false };
    let mut arp = vec![0u8; 12];
    arp.extend_from_slice(&0x0806u16.to_be_bytes());
    arp.extend_from_slice(&[0; 28]);
    let capture = read(&pcap(LINK_ETHERNET, false, false, &[arp]));
    assert_eq!(capture.summary.skipped_protocol, 1);
    let capture = read(&pcap(147, false, false, &[ends.tcp(true, 1, "S", b"")]));
    assert_eq!(capture.summary.skipped_link_type, 1);
    assert!(capture.error.is_none() && capture.connections.is_empty());
}

include!("../fuzz/check_capture.rs");

/// The fuzz target's check on crafted captures cut and corrupted at many
/// places (a small deterministic stand-in for `cargo fuzz run capture`).
#[test]
fn cut_and_corrupted_captures_never_panic_and_keep_their_frames_whole() {
    let packets = tcp_session(Ends { v6: true }, 5, 9);
    let files = [
        pcap(
            LINK_SLL,
            true,
            true,
            &packets
                .iter()
                .map(|ip| link(LINK_SLL, ip))
                .collect::<Vec<_>>(),
        ),
        pcapng(
            &[LINK_RAW],
            &packets
                .iter()
                .map(|ip| (Some(0), 7, ip.clone()))
                .collect::<Vec<_>>(),
        ),
    ];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut frames = 0;
    for file in &files {
        frames += check_capture(file);
        for _ in 0..300 {
            let mut bytes = file.clone();
            for _ in 0..1 + random() % 4 {
                let at = (random() % bytes.len() as u64) as usize;
                bytes[at] = random() as u8;
            }
            let cut = (random() % (bytes.len() as u64 + 1)) as usize;
            check_capture(&bytes[..cut]);
            check_capture(&bytes);
        }
    }
    // The uncorrupted files did give their frames (the check ran on
    // something).
    assert!(frames >= 2 * 10, "{frames}");
}

// ---- the command and a real capture ----

fn decode_json(file: &std::path::Path) -> (Vec<serde_json::Value>, bool) {
    let output = Command::new(common::binary())
        .args(["decode", "--json"])
        .arg(file)
        .output()
        .expect("run x700 decode");
    let lines = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    (lines, output.status.success())
}

#[test]
fn decode_prints_one_json_object_per_frame_and_a_summary() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("session.pcap");
    let packets = tcp_session(Ends { v6: false }, 3, 1_000);
    std::fs::write(&file, pcap(LINK_RAW, false, false, &packets)).expect("write capture");
    let (lines, success) = decode_json(&file);
    assert!(success);
    assert_eq!(lines.len(), 7, "{lines:?}");
    assert_eq!(lines[1]["opcode"], "lookup");
    assert_eq!(lines[1]["direction"], "request");
    assert_eq!(lines[1]["request_id"], 2);
    assert_eq!(lines[1]["caller"], "13800138002");
    assert_eq!(lines[1]["source"], "10.0.0.1:40000");
    assert_eq!(lines[4]["direction"], "answer");
    assert_eq!(lines[4]["status"], "ok");
    assert_eq!(lines[4]["callee"], "13900139002");
    assert_eq!(lines[6]["summary"]["requests"], 3);

    std::fs::write(&file, &pcap(LINK_RAW, false, false, &packets)[..200]).expect("write");
    let (lines, success) = decode_json(&file);
    assert!(!success);
    assert!(lines.last().expect("summary")["summary"]["error_packet"]
        .as_u64()
        .is_some());
}

#[test]
fn a_real_session_captured_by_tcpdump_decodes() {
    if !tools_ready(&["tcpdump"]) {
        return;
    }
    let node = common::Node::start(&[]);
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("real.pcap");
    let port = node.tcp.port();
    // Knocks carry no frames, so decode lists nothing for them.
    let capture = match Tcpdump::start(&file, &[port], node.tcp) {
        Ok(capture) => capture,
        Err(error) => {
            eprintln!("SKIPPED: {error}");
            return;
        }
    };
    let address: SocketAddr = node.tcp;
    let mut client = x700::client::Client::connect(address, Role::Admin, "").expect("admin HELLO");
    let x = common::x(4242);
    let bind = common::axb(x, "13800000001", "13900000002", "capture-1");
    client.bind(&bind).expect("bind");
    client
        .lookup(&common::ask("13800000001", x))
        .expect("lookup");
    client
        .lookup(&common::ask("13700000009", x))
        .expect("lookup");
    drop(client);
    capture.stop();
    let output = Command::new(common::binary())
        .args(["decode", "--json", "--port", &port.to_string()])
        .arg(&file)
        .output()
        .expect("run x700 decode");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect();
    let requests: Vec<_> = lines
        .iter()
        .filter(|l| l["direction"] == "request")
        .collect();
    let opcodes: Vec<&str> = requests
        .iter()
        .map(|l| l["opcode"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        opcodes,
        ["hello", "bind_axb", "lookup", "lookup"],
        "{lines:?}"
    );
    let ids: Vec<u64> = requests
        .iter()
        .map(|l| l["request_id"].as_u64().unwrap_or(0))
        .collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(unique.len(), 4);
    assert_eq!(requests[1]["x"], x.digits());
    assert_eq!(requests[1]["a"], "13800000001");
    assert_eq!(requests[2]["caller"], "13800000001");
    let answers: Vec<_> = lines
        .iter()
        .filter(|l| l["direction"] == "answer")
        .collect();
    assert_eq!(answers.len(), 4);
    assert!(answers.iter().all(|a| a["paired"] == true));
    assert_eq!(answers[2]["callee"], "13900000002");
    assert_eq!(answers[3]["status"], "not_a_party");
    let _ = node.stop();
}
