//! Proves the node's own capture (`x700 serve --capture FILE.pcapng`): a real
//! node's file, parsed here block by block, holds every request and answer
//! of each connection byte for byte and in order (with a SYN handshake,
//! sequence numbers that advance by the bytes, and FINs), and UDP datagrams
//! both ways; rotation keeps at most N files of at most the size; the admin
//! switch turns it on and off at run time; a node with the capture off
//! writes nothing; and tshark, where installed, reads the files cleanly.

mod common;

use common::{ask, axb, hello_frame, http_get, x, Node, Raw, IO_TIMEOUT};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use x700::client::Client;
use x700::protocol::codec::{encode_bind, encode_lookup, BIND_BYTES, LOOKUP_BYTES};
use x700::protocol::frame::{next_frame, HEADER_BYTES};
use x700::protocol::{limits, opcode, status, Role, VERSION};

// ---- a minimal pcapng reader (Ethernet, IPv4/IPv6, TCP/UDP) ----

/// One packet of the capture, decoded.
#[derive(Debug, Clone)]
struct Packet {
    source: SocketAddr,
    destination: SocketAddr,
    /// `None` for UDP.
    tcp: Option<Tcp>,
    payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct Tcp {
    seq: u32,
    flags: u8,
}

const SYN: u8 = 0x02;
const FIN: u8 = 0x01;

fn le32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(bytes[at..at + 2].try_into().expect("2 bytes"))
}

/// Every packet of a pcapng file, checking the block structure on the
/// way: one section header first, one Ethernet interface, blocks whose
/// two lengths agree and are multiples of 4.
fn read_pcapng(path: &Path) -> Vec<Packet> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(bytes.len() >= 28, "{}: no section header", path.display());
    assert_eq!(le32(&bytes, 0), 0x0A0D_0D0A, "section header first");
    assert_eq!(
        le32(&bytes, 8),
        0x1A2B_3C4D,
        "little-endian byte-order magic"
    );
    let mut packets = Vec::new();
    let mut at = 0;
    let mut interfaces = 0;
    while at < bytes.len() {
        let kind = le32(&bytes, at);
        let length = le32(&bytes, at + 4) as usize;
        assert!(
            length >= 12 && length.is_multiple_of(4),
            "block length {length} at {at}"
        );
        assert!(
            at + length <= bytes.len(),
            "block at {at} runs past the end"
        );
        assert_eq!(
            le32(&bytes, at + length - 4) as usize,
            length,
            "trailing length"
        );
        let block = &bytes[at..at + length];
        match kind {
            1 => {
                interfaces += 1;
                assert_eq!(u16::from_le_bytes([block[8], block[9]]), 1, "Ethernet");
            }
            6 => {
                assert_eq!(interfaces, 1, "a packet before its interface");
                let captured = le32(block, 20) as usize;
                assert_eq!(captured, le32(block, 24) as usize, "nothing cut");
                packets.push(decode(&block[28..28 + captured]));
            }
            0x0A0D_0D0A => assert_eq!(at, 0, "one section per file"),
            other => panic!("unexpected block type {other:#x}"),
        }
        at += length;
    }
    packets
}

fn decode(packet: &[u8]) -> Packet {
    let ethertype = be16(packet, 12);
    let ip = &packet[14..];
    let (source_ip, destination_ip, protocol, segment): (IpAddr, IpAddr, u8, &[u8]) =
        match ethertype {
            0x0800 => {
                let total = usize::from(be16(ip, 2));
                let s: [u8; 4] = ip[12..16].try_into().expect("address");
                let d: [u8; 4] = ip[16..20].try_into().expect("address");
                (s.into(), d.into(), ip[9], &ip[20..total])
            }
            0x86DD => {
                let length = usize::from(be16(ip, 4));
                let s: [u8; 16] = ip[8..24].try_into().expect("address");
                let d: [u8; 16] = ip[24..40].try_into().expect("address");
                (s.into(), d.into(), ip[6], &ip[40..40 + length])
            }
            other => panic!("ethertype {other:#x}"),
        };
    let source = SocketAddr::new(source_ip, be16(segment, 0));
    let destination = SocketAddr::new(destination_ip, be16(segment, 2));
    match protocol {
        6 => {
            let offset = usize::from(segment[12] >> 4) * 4;
            Packet {
                source,
                destination,
                tcp: Some(Tcp {
                    seq: u32::from_be_bytes(segment[4..8].try_into().expect("seq")),
                    flags: segment[13],
                }),
                payload: segment[offset..].to_vec(),
            }
        }
        17 => {
            assert_eq!(usize::from(be16(segment, 4)), segment.len(), "UDP length");
            Packet {
                source,
                destination,
                tcp: None,
                payload: segment[8..].to_vec(),
            }
        }
        other => panic!("IP protocol {other}"),
    }
}

/// One direction of one TCP connection, as the capture tells it.
#[derive(Debug, Default)]
struct Flow {
    syn: bool,
    fin: bool,
    bytes: Vec<u8>,
}

/// The TCP flows of `packets` by (source, destination), checking that
/// each data packet's sequence number continues its flow exactly (the
/// first one after a SYN is its sequence number plus one).
fn flows(packets: &[Packet]) -> BTreeMap<(SocketAddr, SocketAddr), Flow> {
    let mut flows: BTreeMap<(SocketAddr, SocketAddr), Flow> = BTreeMap::new();
    let mut next_seq: BTreeMap<(SocketAddr, SocketAddr), u32> = BTreeMap::new();
    for packet in packets {
        let Some(tcp) = packet.tcp else { continue };
        let key = (packet.source, packet.destination);
        let flow = flows.entry(key).or_default();
        if tcp.flags & SYN != 0 {
            flow.syn = true;
            next_seq.insert(key, tcp.seq.wrapping_add(1));
            continue;
        }
        if let Some(&expected) = next_seq.get(&key) {
            assert_eq!(tcp.seq, expected, "sequence number of {key:?}");
        }
        next_seq.insert(key, tcp.seq.wrapping_add(packet.payload.len() as u32));
        flow.bytes.extend_from_slice(&packet.payload);
        if tcp.flags & FIN != 0 {
            flow.fin = true;
        }
    }
    flows
}

// ---- helpers ----

/// `method path` on the admin endpoint: (status code, body).
fn http(admin: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(admin).expect("connect to admin");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {admin}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read answer");
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP head");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (code, body.to_string())
}

/// A raw session that keeps every byte it sent and received.
struct Recorded {
    raw: Raw,
    sent: Vec<u8>,
    received: Vec<u8>,
}

impl Recorded {
    fn open(node: &Node) -> Recorded {
        let mut session = Recorded {
            raw: Raw::connect(node.tcp),
            sent: Vec::new(),
            received: Vec::new(),
        };
        session.exchange(&hello_frame(0, VERSION, Role::Admin, ""), 1);
        session
    }

    /// Sends `bytes` (pipelined frames) and reads `answers` answers.
    fn exchange(&mut self, bytes: &[u8], answers: usize) -> Vec<(u8, u8)> {
        self.raw.send(bytes);
        self.sent.extend_from_slice(bytes);
        (0..answers)
            .map(|_| {
                let (header, body) = self.raw.expect_frame();
                let mut whole = Vec::new();
                x700::protocol::frame::push_frame(
                    &mut whole,
                    header.opcode,
                    header.status,
                    header.request_id,
                    &body,
                );
                self.received.extend_from_slice(&whole);
                (header.opcode, header.status)
            })
            .collect()
    }

    /// The client's port (its flow's key in the capture).
    fn address(&self) -> SocketAddr {
        self.raw.stream.local_addr().expect("local address")
    }
}

/// Binds `count` AXB bindings and looks each up from A, pipelined, on a
/// recorded session.
fn bind_and_look_up(session: &mut Recorded, first: u64, count: u64) {
    let mut binds = Vec::new();
    for n in 0..count {
        let body = axb(x(first + n), "13800000001", "13900000002", "order-capture");
        encode_bind(&mut binds, 100 + n as u32, &body);
    }
    let answers = session.exchange(&binds, count as usize);
    assert!(answers.iter().all(|&(_, s)| s == status::OK), "{answers:?}");
    let mut lookups = Vec::new();
    for n in 0..count {
        encode_lookup(
            &mut lookups,
            10_000 + n as u32,
            &ask("13800000001", x(first + n)),
            true,
        );
    }
    let answers = session.exchange(&lookups, count as usize);
    assert!(
        answers
            .iter()
            .all(|&(o, s)| o == opcode::LOOKUP && s == status::OK),
        "{answers:?}"
    );
}

/// Request bytes of `bind_and_look_up` with `count`.
fn round_bytes(count: usize) -> usize {
    count * (HEADER_BYTES + BIND_BYTES) + count * (HEADER_BYTES + LOOKUP_BYTES)
}

/// The files of `dir`, by name.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read the directory")
        .map(|entry| entry.expect("entry").path())
        .collect();
    files.sort();
    files
}

/// tshark reads the file without an error, if tshark is installed.
fn tshark_reads(path: &Path) {
    let Ok(output) = Command::new("tshark").arg("-r").arg(path).output() else {
        eprintln!("tshark not installed: skipping its check");
        return;
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "tshark -r {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!stdout.is_empty(), "tshark shows no packets");
    assert!(!stdout.contains("Malformed"), "tshark: {stdout}");
}

// ---- tests ----

/// Every byte of a recorded session in both directions, in order, with
/// its handshake and FINs; a client-library session's frames all whole;
/// a UDP datagram of lookups and its answer datagram.
#[test]
fn the_capture_holds_every_byte_of_every_connection_in_order() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("node.pcapng");
    let node = Node::start(&["--capture", path.to_str().expect("utf-8 path")]);
    let mut session = Recorded::open(&node);
    bind_and_look_up(&mut session, 1, 200);
    let client_address = session.address();
    // A session through the client library, closed by the client.
    {
        let mut client = Client::connect(node.tcp, Role::Switch, "").expect("switch HELLO");
        for n in 1..=20 {
            client.lookup(&ask("13900000002", x(n))).expect("lookup");
        }
    }
    // A datagram of three lookups.
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp socket");
    udp.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let mut datagram = Vec::new();
    for n in 1..=3 {
        encode_lookup(&mut datagram, n as u32, &ask("13800000001", x(n)), true);
    }
    udp.send_to(&datagram, node.udp).expect("send datagram");
    let mut answer = [0u8; 2048];
    let (length, _) = udp.recv_from(&mut answer).expect("answer datagram");
    let answer = answer[..length].to_vec();
    let _ = session.raw.stream.shutdown(std::net::Shutdown::Both);
    let stopped = node.stop();
    assert!(stopped.success(), "the node stops cleanly");

    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&path).expect("metadata").permissions(),
    );
    assert_eq!(
        mode & 0o777,
        0o600,
        "the capture is private to the node's user"
    );
    let packets = read_pcapng(&path);
    let flows = flows(&packets);
    let node_address = packets
        .iter()
        .find(|p| p.source == client_address)
        .map(|p| p.destination)
        .expect("the recorded session is in the capture");
    let request = &flows[&(client_address, node_address)];
    let reply = &flows[&(node_address, client_address)];
    assert!(request.syn && reply.syn, "handshake at accept");
    assert!(request.fin && reply.fin, "FINs at close");
    assert_eq!(request.bytes, session.sent, "every request byte, in order");
    assert_eq!(reply.bytes, session.received, "every answer byte, in order");

    // The client library's connection: whole frames both ways, 21 of each
    // (HELLO and 20 lookups), every answer OK.
    let mut library_flows = 0;
    for ((source, destination), flow) in &flows {
        if *destination != node_address || *source == client_address {
            continue;
        }
        let answers = &flows[&(*destination, *source)];
        let count = |bytes: &[u8], frame_max: u32| {
            let mut at = 0;
            let mut frames = Vec::new();
            while at < bytes.len() {
                let (header, whole) = next_frame(&bytes[at..], frame_max)
                    .expect("a valid frame")
                    .expect("a whole frame");
                frames.push((header.opcode, header.status));
                at += whole.len();
                assert!(whole.len() >= HEADER_BYTES);
            }
            frames
        };
        let requests = count(&flow.bytes, limits::ANSWER_FRAME_BYTES_MAX);
        let answered = count(&answers.bytes, limits::ANSWER_FRAME_BYTES_MAX);
        assert_eq!(requests.len(), answered.len(), "one answer per request");
        assert!(
            answered.iter().all(|&(_, s)| s == status::OK),
            "{answered:?}"
        );
        if requests.len() == 21 {
            library_flows += 1;
        }
    }
    assert_eq!(library_flows, 1, "the client library's session is captured");

    let udp_address = udp.local_addr().expect("udp address");
    let datagrams: Vec<&Packet> = packets.iter().filter(|p| p.tcp.is_none()).collect();
    assert_eq!(datagrams.len(), 2, "one datagram in, one out");
    assert_eq!(datagrams[0].source, udp_address);
    assert_eq!(datagrams[0].payload, datagram);
    assert_eq!(datagrams[1].destination, udp_address);
    assert_eq!(datagrams[1].payload, answer);
    tshark_reads(&path);
}

/// With a small size and three files, a capture of a few megabytes leaves
/// exactly three files, none past the size, each a whole pcapng file.
#[test]
fn rotation_keeps_at_most_the_files_at_most_the_size() {
    const MAX_BYTES: u64 = 256 * 1024;
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("rot.pcapng");
    let node = Node::start(&[
        "--capture",
        path.to_str().expect("utf-8 path"),
        "--capture-max-bytes",
        "262144",
        "--capture-files",
        "3",
    ]);
    let mut session = Recorded::open(&node);
    // 50 rounds of 200 lookups: about 1.6 MB of requests and answers.
    bind_and_look_up(&mut session, 1, 200);
    for _ in 0..50 {
        let mut lookups = Vec::new();
        for n in 0..200u64 {
            encode_lookup(&mut lookups, n as u32, &ask("13800000001", x(1 + n)), true);
        }
        session.exchange(&lookups, 200);
    }
    // The capture's writer thread rotates behind the loop: on a busy
    // machine its count may come a moment after the last answer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, metrics) = http_get(node.admin, "/metrics");
        if !metrics.contains("x700_capture_rotations_total 0\n") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rotations are counted: {metrics}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(node.stop().success());
    let files = files_in(dir.path());
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["rot.1.pcapng", "rot.2.pcapng", "rot.pcapng"],
        "three files kept"
    );
    for file in &files {
        let size = std::fs::metadata(file).expect("metadata").len();
        assert!(size <= MAX_BYTES, "{} is {size} bytes", file.display());
        assert!(
            !read_pcapng(file).is_empty(),
            "{} holds packets",
            file.display()
        );
    }
    // The newest file continues the stream without a new handshake, its
    // sequence numbers still consistent.
    flows(&read_pcapng(&path));
}

/// Off at start (`--capture-off`): nothing is written; `POST
/// /capture/start` captures the traffic from then on; `POST
/// /capture/stop` closes a whole file and later traffic is not in it.
#[test]
fn the_admin_port_switches_the_capture_on_and_off() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("switch.pcapng");
    let node = Node::start(&[
        "--capture",
        path.to_str().expect("utf-8 path"),
        "--capture-off",
    ]);
    let mut before = Recorded::open(&node);
    bind_and_look_up(&mut before, 1, 10);
    assert_eq!(http_get(node.admin, "/capture"), (200, "off\n".into()));
    assert!(files_in(dir.path()).is_empty(), "off: no file");
    assert_eq!(
        http(node.admin, "GET", "/capture/start").0,
        405,
        "a GET never switches the capture"
    );

    assert_eq!(
        http(node.admin, "POST", "/capture/start"),
        (200, "on\n".into())
    );
    let mut during = Recorded::open(&node);
    bind_and_look_up(&mut during, 100, 10);
    // The session opened before the start is captured from mid-stream.
    bind_and_look_up(&mut before, 200, 5);
    assert_eq!(
        http(node.admin, "POST", "/capture/stop"),
        (200, "off\n".into())
    );
    let size = std::fs::metadata(&path).expect("the capture file").len();
    bind_and_look_up(&mut during, 300, 10);
    let (_, metrics) = http_get(node.admin, "/metrics");
    assert!(
        metrics.contains("x700_capture_dropped_total 0"),
        "the drop counter is published: {metrics}"
    );
    assert!(node.stop().success());
    assert_eq!(
        std::fs::metadata(&path).expect("the capture file").len(),
        size,
        "nothing written after the stop"
    );
    let packets = read_pcapng(&path);
    let flows = flows(&packets);
    let during_address = during.address();
    let during_requests = flows
        .iter()
        .find(|((source, _), _)| *source == during_address)
        .map(|(_, flow)| flow)
        .expect("the session opened during the capture");
    assert!(during_requests.syn);
    // Its HELLO and the first round, not the round after the stop.
    let first_round = during.sent.len() - round_bytes(10);
    assert_eq!(during_requests.bytes, during.sent[..first_round]);
    let before_address = before.address();
    let before_requests = flows
        .iter()
        .find(|((source, _), _)| *source == before_address)
        .map(|(_, flow)| flow)
        .expect("the session opened before the capture");
    assert!(!before_requests.syn, "joined mid-stream");
    assert_eq!(
        before_requests.bytes,
        before.sent[before.sent.len() - round_bytes(5)..]
    );
    tshark_reads(&path);
}

/// Without `--capture` the switch is refused (409) and no capture file
/// appears in the data directory.
#[test]
fn without_a_capture_file_the_switch_is_refused() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let node = Node::start_on(&dir.path().join("data"), &[]);
    let (code, body) = http(node.admin, "POST", "/capture/start");
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("--capture"), "{body}");
    assert_eq!(http_get(node.admin, "/capture"), (200, "off\n".into()));
    let data = node.data.clone();
    assert!(node.stop().success());
    let pcapng = files_in(&data)
        .into_iter()
        .chain(files_in(dir.path()))
        .filter(|f| f.extension().is_some_and(|e| e == "pcapng"))
        .count();
    assert_eq!(pcapng, 0);
}
