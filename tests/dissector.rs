//! The Wireshark dissector (`tools/wireshark/x700.lua`) decodes a real
//! node's traffic: tcpdump records loopback while a platform binds and
//! queries and a switch looks up over TCP (pipelined frames sharing a
//! segment, and one frame split into two writes) and over UDP (several
//! lookups in one datagram); then `tshark -X lua_script:...` must show every
//! frame sent and every answer with its opcode, status, request id and
//! numbers as the client sent or received them, each answer linked to the
//! packet of its request.
//!
//! Needs tshark and tcpdump (tools/test.sh installs both); the test installs
//! them with apt-get when missing and skips, saying so, only when it cannot.

mod common;

use common::tcpdump::{tools_ready, Tcpdump};
use common::{ask, axb, axn, Node, CREDENTIALS, P1_TOKEN, SWITCH_TOKEN};
use std::collections::HashMap;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use x700::client::Client;
use x700::protocol::codec::{encode_bind, encode_lookup, encode_query};
use x700::protocol::frame::{Header, HEADER_BYTES};
use x700::protocol::{opcode, status, Role};

/// Longest wait for a UDP answer.
const WAIT: Duration = Duration::from_secs(10);

/// What the test expects tshark to show of one frame.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Expected {
    x: Option<String>,
    caller: Option<String>,
    callee: Option<String>,
}

/// One frame the client sent or received: direction, opcode, status,
/// request id, and its numbers.
#[derive(Clone, Debug)]
struct Sent {
    answer: bool,
    opcode: u8,
    status: u8,
    request_id: u32,
    numbers: Expected,
}

/// One x700 frame as tshark shows it: the TCP payload of its packet, its
/// opcode and request id.
#[derive(Debug)]
struct Shown {
    tcp_len: Option<usize>,
    opcode: u8,
    request_id: u32,
}

/// Reads every answer frame until `count` have come.
fn read_answers(client: &mut Client, count: usize) -> Vec<(Header, Vec<u8>)> {
    (0..count)
        .map(|_| client.read_frame().expect("an answer"))
        .collect()
}

fn digits_at(body: &[u8], offset: usize) -> String {
    let mut number = [0u8; 8];
    number.copy_from_slice(&body[offset..offset + 8]);
    x700::number::Number(number).digits()
}

#[test]
fn tshark_decodes_a_real_nodes_traffic_with_the_lua_dissector() {
    if !tools_ready(&["tshark", "tcpdump"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let capture_file = dir.path().join("x700.pcap");
    let node = Node::start(&CREDENTIALS);
    let ports = [node.tcp.port(), node.udp.port()];
    let capture = Tcpdump::start(&capture_file, &ports, node.tcp).expect("tcpdump on lo");
    let mut sent: Vec<Sent> = Vec::new();

    // A platform: three binds pipelined in one write (one segment), then a
    // fourth split into two writes with a pause, then a QUERY.
    let mut platform = Client::connect(node.tcp, Role::Platform, P1_TOKEN).expect("platform");
    let x1 = common::x(1_001);
    let x2 = common::x(1_002);
    let x3 = common::x(1_003);
    let binds = [
        (101, axb(x1, "13800138001", "13900139001", "order-101")),
        (102, axb(x2, "13800138002", "13900139002", "order-102")),
        (103, axn(x3, "13800138003", None, "order-103")),
    ];
    let mut out = Vec::new();
    for (request_id, bind) in &binds {
        let start = out.len();
        encode_bind(&mut out, *request_id, bind);
        sent.push(Sent {
            answer: false,
            // The header's opcode byte, as the codec chose it for the mode.
            opcode: out[start + 4],
            status: 0,
            request_id: *request_id,
            numbers: Expected {
                x: Some(bind.x.digits()),
                ..Expected::default()
            },
        });
    }
    platform.send_raw(&out).expect("send the binds");
    let mut first_binding = None;
    for (header, body) in read_answers(&mut platform, binds.len()) {
        assert_eq!(header.status, status::OK, "bind {}", header.request_id);
        if header.request_id == 101 {
            first_binding = Some(u64::from_le_bytes(body[0..8].try_into().expect("8 bytes")));
        }
        sent.push(Sent {
            answer: true,
            opcode: header.opcode,
            status: header.status,
            request_id: header.request_id,
            numbers: Expected::default(),
        });
    }
    let x4 = common::x(1_004);
    let split = axb(x4, "13800138004", "13900139004", "order-104");
    out.clear();
    encode_bind(&mut out, 104, &split);
    platform.send_raw(&out[..20]).expect("first part");
    std::thread::sleep(Duration::from_millis(200));
    platform.send_raw(&out[20..]).expect("second part");
    sent.push(Sent {
        answer: false,
        opcode: opcode::BIND_AXB,
        status: 0,
        request_id: 104,
        numbers: Expected {
            x: Some(x4.digits()),
            ..Expected::default()
        },
    });
    for (header, _) in read_answers(&mut platform, 1) {
        assert_eq!((header.request_id, header.status), (104, status::OK));
        sent.push(Sent {
            answer: true,
            opcode: header.opcode,
            status: header.status,
            request_id: 104,
            numbers: Expected::default(),
        });
    }
    out.clear();
    encode_query(
        &mut out,
        105,
        x700::binding::BindingId(first_binding.expect("bind 101 answered")),
    );
    platform.send_raw(&out).expect("send the query");
    sent.push(Sent {
        answer: false,
        opcode: opcode::QUERY,
        status: 0,
        request_id: 105,
        numbers: Expected::default(),
    });
    for (header, body) in read_answers(&mut platform, 1) {
        assert_eq!((header.request_id, header.status), (105, status::OK));
        sent.push(Sent {
            answer: true,
            opcode: header.opcode,
            status: header.status,
            request_id: 105,
            numbers: Expected {
                x: Some(digits_at(&body, 16)),
                ..Expected::default()
            },
        });
    }

    // A switch: routes and rejects, pipelined in one write.
    let mut switch = Client::connect(node.tcp, Role::Switch, SWITCH_TOKEN).expect("switch");
    let lookups = [
        (201, ask("13800138001", x1)),
        (202, ask("13900139002", x2)),
        (203, ask("13700137000", x1)),
        (204, ask("13800138001", common::x(1_999))),
        (205, ask("13900139004", x4)),
    ];
    out.clear();
    for (request_id, query) in &lookups {
        encode_lookup(&mut out, *request_id, query, true);
        sent.push(Sent {
            answer: false,
            opcode: opcode::LOOKUP,
            status: 0,
            request_id: *request_id,
            numbers: Expected {
                x: Some(query.x.digits()),
                caller: Some(query.caller.digits()),
                callee: None,
            },
        });
    }
    switch.send_raw(&out).expect("send the lookups");
    let mut statuses = HashMap::new();
    for (header, body) in read_answers(&mut switch, lookups.len()) {
        let callee = (header.status == status::OK).then(|| digits_at(&body, 0));
        statuses.insert(header.request_id, header.status);
        sent.push(Sent {
            answer: true,
            opcode: header.opcode,
            status: header.status,
            request_id: header.request_id,
            numbers: Expected {
                callee,
                ..Expected::default()
            },
        });
    }
    // The node answered as the bindings say, so the capture holds routes
    // and rejects of several kinds.
    assert_eq!(statuses[&201], status::OK);
    assert_eq!(statuses[&202], status::OK);
    assert_eq!(statuses[&203], status::NOT_A_PARTY);
    assert_eq!(statuses[&204], status::NOT_BOUND);
    assert_eq!(statuses[&205], status::OK);

    // UDP: one datagram with three lookups, one answer datagram.
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
    udp.set_read_timeout(Some(WAIT)).expect("timeout");
    let udp_lookups = [
        (301, ask("13800138002", x2)),
        (302, ask("13900139001", x1)),
        (303, ask("13800138009", x2)),
    ];
    out.clear();
    for (request_id, query) in &udp_lookups {
        encode_lookup(&mut out, *request_id, query, true);
        sent.push(Sent {
            answer: false,
            opcode: opcode::LOOKUP,
            status: 0,
            request_id: *request_id,
            numbers: Expected {
                x: Some(query.x.digits()),
                caller: Some(query.caller.digits()),
                callee: None,
            },
        });
    }
    udp.send_to(&out, node.udp).expect("send the datagram");
    let mut datagram = [0u8; 2048];
    let (size, _) = udp.recv_from(&mut datagram).expect("the answer datagram");
    let mut offset = 0;
    while offset + HEADER_BYTES <= size {
        let (header, frame) = x700::protocol::frame::next_frame(&datagram[offset..size], 1024)
            .expect("a well-formed answer")
            .expect("a whole frame");
        let length = frame.len();
        let body = &frame[HEADER_BYTES..];
        let callee = (header.status == status::OK).then(|| digits_at(body, 0));
        sent.push(Sent {
            answer: true,
            opcode: header.opcode,
            status: header.status,
            request_id: header.request_id,
            numbers: Expected {
                callee,
                ..Expected::default()
            },
        });
        offset += length;
    }
    assert_eq!(offset, size, "the answer datagram holds whole frames");
    drop(platform);
    drop(switch);
    capture.stop();

    // ---- what tshark shows ----
    let stdout = tshark(
        &capture_file,
        &node,
        &[
            "frame.number",
            "tcp.len",
            "x700.answer",
            "x700.opcode",
            "x700.status",
            "x700.request_id",
            "x700.x",
            "x700.caller",
            "x700.callee",
            "x700.request_in",
            "x700.response_in",
            "_ws.expert",
        ],
    );

    // Index what the client sent and received by (answer, request id).
    let mut by_key: HashMap<(bool, u32), Sent> = HashMap::new();
    for frame in &sent {
        let old = by_key.insert((frame.answer, frame.request_id), frame.clone());
        assert!(old.is_none(), "request ids are unique in this test");
    }
    let mut shown: Vec<Shown> = Vec::new();
    // Packet of each request and each answer, for the links.
    let mut packet_of: HashMap<(bool, u32), u64> = HashMap::new();
    let mut links: Vec<(bool, u32, Option<u64>)> = Vec::new();
    let mut frames_per_packet = Vec::new();
    for line in stdout.lines().filter(|line| !line.is_empty()) {
        let columns: Vec<&str> = line.split('|').collect();
        assert_eq!(columns.len(), 12, "tshark line {line:?}");
        let list = |i: usize| -> Vec<&str> {
            if columns[i].is_empty() {
                Vec::new()
            } else {
                columns[i].split(';').collect()
            }
        };
        let packet: u64 = columns[0].parse().expect("frame number");
        let tcp_len = columns[1].parse().ok();
        let answers = list(2);
        let opcodes = list(3);
        let statuses = list(4);
        let request_ids = list(5);
        assert!(
            !request_ids.is_empty()
                && opcodes.len() == request_ids.len()
                && statuses.len() == request_ids.len()
                && answers.len() == request_ids.len(),
            "every x700 frame shows an opcode, status and request id: {line:?}"
        );
        frames_per_packet.push(request_ids.len());
        let mut wanted_x = Vec::new();
        let mut wanted_caller = Vec::new();
        let mut wanted_callee = Vec::new();
        for i in 0..request_ids.len() {
            let answer = answers[i] == "1" || answers[i] == "True";
            let opcode = parse_number(opcodes[i]);
            let status = u8::try_from(parse_number(statuses[i])).expect("u8 status");
            let request_id: u32 = request_ids[i].parse().expect("request id");
            let Some(frame) = by_key.get(&(answer, request_id)) else {
                // HELLO and its answer (request id 1 from the client).
                assert_eq!(
                    opcode,
                    u64::from(opcode::HELLO),
                    "unexpected frame {line:?}"
                );
                continue;
            };
            assert_eq!(
                (u64::from(frame.opcode), frame.status),
                (opcode, status),
                "frame {request_id} (answer: {answer}) in packet {packet}"
            );
            packet_of.insert((answer, request_id), packet);
            wanted_x.extend(frame.numbers.x.clone());
            wanted_caller.extend(frame.numbers.caller.clone());
            wanted_callee.extend(frame.numbers.callee.clone());
            shown.push(Shown {
                tcp_len,
                opcode: frame.opcode,
                request_id,
            });
        }
        let expected = Expected {
            x: Some(wanted_x.join(";")),
            caller: Some(wanted_caller.join(";")),
            callee: Some(wanted_callee.join(";")),
        };
        let got = Expected {
            x: Some(columns[6].to_owned()),
            caller: Some(columns[7].to_owned()),
            callee: Some(columns[8].to_owned()),
        };
        assert_eq!(got, expected, "numbers of packet {packet}: {line:?}");
        // Answers link back to their request's packet, requests forward.
        let request_in = list(9);
        let response_in = list(10);
        let mut request_in = request_in.iter();
        let mut response_in = response_in.iter();
        for i in 0..request_ids.len() {
            let answer = answers[i] == "1" || answers[i] == "True";
            let request_id: u32 = request_ids[i].parse().expect("request id");
            let linked = if answer {
                request_in.next()
            } else {
                response_in.next()
            };
            links.push((
                answer,
                request_id,
                linked.map(|number| number.parse().expect("frame number")),
            ));
        }
        assert!(
            !columns[11].contains("Malformed") && !columns[11].contains("Undecodable"),
            "expert info on packet {packet}: {}",
            columns[11]
        );
    }

    // Every frame the client sent or received is shown, once.
    for key in by_key.keys() {
        assert!(
            packet_of.contains_key(key),
            "frame {key:?} (answer, request id) not shown by the dissector:\n{stdout}"
        );
    }
    assert_eq!(
        shown.len(),
        by_key.len(),
        "each frame shown exactly once: {shown:?}"
    );
    for (answer, request_id, linked) in links {
        if by_key.contains_key(&(answer, request_id)) {
            let other = packet_of[&(!answer, request_id)];
            assert_eq!(
                linked,
                Some(other),
                "link of frame {request_id} (answer: {answer})"
            );
        }
    }
    // Pipelining put several frames in one packet (the three binds, the
    // lookups, the UDP datagram), and the split bind was reassembled: its
    // packet carries only the 60 bytes of the second write.
    assert_eq!(packet_of[&(false, 101)], packet_of[&(false, 103)]);
    assert_eq!(packet_of[&(false, 201)], packet_of[&(false, 205)]);
    assert_eq!(packet_of[&(false, 301)], packet_of[&(false, 303)]);
    assert_eq!(packet_of[&(true, 301)], packet_of[&(true, 303)]);
    assert!(frames_per_packet.iter().any(|&count| count >= 3));
    let split_frame = shown
        .iter()
        .find(|frame| frame.request_id == 104 && frame.opcode == opcode::BIND_AXB)
        .expect("the split bind");
    assert_eq!(
        split_frame.tcp_len,
        Some(60),
        "the split bind's last segment"
    );
    node.stop();
}

/// Runs tshark with the dissector on `capture` (two passes, so requests
/// link forward to their answers), showing only x700 packets with the
/// node's ports bound to x700, and returns its `-T fields` output: one line
/// a packet, columns separated by `|`, the values of a field in one packet
/// (one per x700 frame) separated by `;`. Panics if tshark fails or the
/// dissector raised a Lua error.
fn tshark(capture: &Path, node: &Node, fields: &[&str]) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/wireshark/x700.lua");
    let mut command = Command::new("tshark");
    command
        .arg("-X")
        .arg(format!("lua_script:{}", script.display()))
        .arg("-r")
        .arg(capture)
        .args(["-2", "-Y", "x700", "-n"])
        .arg("-d")
        .arg(format!("tcp.port=={},x700", node.tcp.port()))
        .arg("-d")
        .arg(format!("udp.port=={},x700", node.udp.port()))
        .args(["-T", "fields", "-E", "separator=|", "-E", "occurrence=a"])
        .args(["-E", "aggregator=;"]);
    for field in fields {
        command.arg("-e").arg(field);
    }
    let output = command.output().expect("run tshark");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "tshark failed: {stderr}\n{stdout}");
    assert!(
        !stderr.contains("Lua") && !stdout.contains("Lua"),
        "the dissector raised a Lua error: {stderr}\n{stdout}"
    );
    stdout
}

/// A number tshark prints in decimal or as `0x..` hex.
fn parse_number(text: &str) -> u64 {
    text.strip_prefix("0x").map_or_else(
        || text.parse().expect("decimal"),
        |hex| u64::from_str_radix(hex, 16).expect("hex"),
    )
}

/// Malformed traffic is flagged with expert info, never a Lua error: a
/// LOOKUP whose body is a byte short, an unknown opcode, a number that is no
/// BCD, an impossible length that ends the stream's framing, and a UDP
/// datagram that ends inside its second frame.
#[test]
fn malformed_frames_are_flagged_by_the_dissector() {
    if !tools_ready(&["tshark", "tcpdump"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let capture_file = dir.path().join("malformed.pcap");
    let node = Node::start(&CREDENTIALS);
    let ports = [node.tcp.port(), node.udp.port()];
    let capture = Tcpdump::start(&capture_file, &ports, node.tcp).expect("tcpdump on lo");

    let mut switch = Client::connect(node.tcp, Role::Switch, SWITCH_TOKEN).expect("switch");
    let mut good = Vec::new();
    encode_lookup(&mut good, 401, &ask("13800138001", common::x(1)), true);
    let mut out = common::frame(opcode::LOOKUP, 402, &good[HEADER_BYTES..good.len() - 1]);
    out.extend(common::frame(0x7F, 403, &[]));
    let mut garbage = good[HEADER_BYTES..].to_vec();
    garbage[0..8].copy_from_slice(&common::GARBAGE_NUMBER.0);
    out.extend(common::frame(opcode::LOOKUP, 404, &garbage));
    switch.send_raw(&out).expect("send");
    let statuses: HashMap<u32, u8> = read_answers(&mut switch, 3)
        .into_iter()
        .map(|(header, _)| (header.request_id, header.status))
        .collect();
    assert_eq!(statuses[&402], status::BAD_FRAME);
    assert_eq!(statuses[&403], status::UNKNOWN_OPCODE);
    assert_eq!(statuses[&404], status::BAD_NUMBER);
    // Length 5: the node closes the connection without an answer.
    let mut impossible = common::frame(opcode::PING, 405, &[]);
    impossible[0..4].copy_from_slice(&5u32.to_le_bytes());
    switch.send_raw(&impossible).expect("send");
    assert!(
        switch.read_frame().is_err(),
        "the node closes the connection"
    );

    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
    udp.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut datagram = good.clone();
    datagram[8..12].copy_from_slice(&406u32.to_le_bytes());
    datagram.extend_from_slice(&good[..20]);
    udp.send_to(&datagram, node.udp).expect("send the datagram");
    let mut answer = [0u8; 2048];
    let (size, _) = udp.recv_from(&mut answer).expect("the answer datagram");
    assert_eq!(size, HEADER_BYTES, "one answer, for the whole first frame");
    drop(switch);
    capture.stop();

    let stdout = tshark(
        &capture_file,
        &node,
        &["frame.number", "x700.request_id", "_ws.expert.message"],
    );
    let mut messages: HashMap<String, String> = HashMap::new();
    for line in stdout.lines().filter(|line| !line.is_empty()) {
        let columns: Vec<&str> = line.split('|').collect();
        assert_eq!(columns.len(), 3, "tshark line {line:?}");
        for request_id in columns[1].split(';') {
            messages
                .entry(request_id.to_owned())
                .or_default()
                .push_str(columns[2]);
        }
        if columns[1].is_empty() {
            messages
                .entry(String::new())
                .or_default()
                .push_str(columns[2]);
        }
    }
    let flagged = |request_id: &str, text: &str| {
        let said = messages.get(request_id).map_or("", String::as_str);
        assert!(
            said.contains(text),
            "frame {request_id:?} is not flagged {text:?}: {said:?}\n{stdout}"
        );
    };
    flagged("402", "Body of 19 bytes does not fit LOOKUP");
    flagged("403", "Unknown opcode");
    flagged("404", "Not a well-formed BCD number");
    flagged("", "framing is lost");
    flagged("406", "Datagram ends inside a frame");
    node.stop();
}
