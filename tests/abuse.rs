//! Proves that a running `x700 serve` withstands cheap abuse from the
//! network (step 5's attack review): sockets that never say HELLO, silent
//! sessions, one source hogging connections, a second process on the
//! node's port, clients that pin answer memory, and UDP floods. Every test
//! runs against a real process; memory is read from its `/proc` entry.

mod common;

use common::{ask, axb, hello_frame, serve_expecting_exit, x_on_loop, Node, Raw};
use socket2::{Domain, Socket, Type};
use std::io::Read;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};
use x700::binding::LookupResult;
use x700::protocol::codec;
use x700::protocol::{opcode, status, Role, VERSION};

/// A TCP connection to `to` from loopback address `from` (any of
/// 127.0.0.0/8), so one test can play many sources.
fn connect_from(from: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((from, 0)).into())?;
    socket.connect(&to.into())?;
    Ok(socket.into())
}

/// HELLO and a PING on a fresh connection: the time it took, or why not.
fn serve_a_switch(to: SocketAddr) -> Result<Duration, String> {
    let started = Instant::now();
    let mut raw = Raw::connect(to);
    raw.try_send(&hello_frame(1, VERSION, Role::Switch, ""))
        .map_err(|e| e.to_string())?;
    raw.try_send(&common::frame(opcode::PING, 2, &[]))
        .map_err(|e| e.to_string())?;
    for expected in [1, 2] {
        match raw.read_frame() {
            Ok(Some((header, _))) if header.request_id == expected && header.status == 0 => {}
            other => return Err(format!("answer {expected}: {other:?}")),
        }
    }
    Ok(started.elapsed())
}

/// True once the node has closed `stream` (EOF or reset) within `wait`.
fn closed_by_node(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).expect("timeout");
    let mut byte = [0u8; 64];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Guards the lock-out where sockets that never send HELLO stayed open
/// forever: the node full of them refused every new switch. Now they are
/// closed at the HELLO deadline and the switch gets in.
#[test]
fn sockets_that_never_say_hello_are_closed_at_the_deadline() {
    let node = Node::start(&[
        "--shards",
        "2",
        "--max-connections",
        "300",
        "--hello-deadline-ms",
        "400",
        "--max-connections-per-source",
        "1000",
    ]);
    // The smoke check's connection may still be counted for a moment.
    std::thread::sleep(Duration::from_millis(100));
    let mut idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(node.tcp).expect("connect"))
        .collect();
    // The node is full: until the deadline passes, a switch may be turned
    // away; within a few deadlines it must be served.
    let deadline = Instant::now() + Duration::from_secs(5);
    let served = loop {
        match serve_a_switch(node.tcp) {
            Ok(_) => break true,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(_) => break false,
        }
    };
    assert!(served, "a switch never got in past 300 silent sockets");
    for stream in idle.iter_mut().take(20) {
        assert!(
            closed_by_node(stream, Duration::from_secs(3)),
            "a socket silent past the HELLO deadline is still open"
        );
    }
    assert!(node.stop().success());
}

/// With 5,000 idle sockets open (from several sources, none over its
/// per-source cap), a new switch connects, says HELLO and is served at
/// once; a source over its cap is refused while others are not.
#[test]
fn a_switch_is_served_beside_5000_idle_sockets() {
    let node = Node::start(&["--shards", "2", "--max-connections-per-source", "1000"]);
    std::thread::sleep(Duration::from_millis(100));
    let mut idle = Vec::new();
    for source in 2..=6u8 {
        for _ in 0..1000 {
            idle.push(connect_from([127, 0, 0, source], node.tcp).expect("connect"));
        }
    }
    // Let the node accept them all.
    std::thread::sleep(Duration::from_millis(500));
    let took = serve_a_switch(node.tcp).expect("a switch beside 5,000 idle sockets");
    eprintln!("a switch was served in {took:?} beside 5,000 idle sockets");
    assert!(
        took < Duration::from_secs(3),
        "a switch waited {took:?} beside 5,000 idle sockets"
    );
    // 127.0.0.2 holds 1,000: its next connection is closed at once.
    let mut over = connect_from([127, 0, 0, 2], node.tcp).expect("connect");
    assert!(
        closed_by_node(&mut over, Duration::from_secs(3)),
        "a source over connections_per_source_max was served"
    );
    drop(idle);
    assert!(node.stop().success());
}

/// A silent session is closed after `idle_timeout_s`; one that PINGs stays.
#[test]
fn silent_sessions_are_closed_and_pings_keep_them() {
    let node = Node::start(&["--shards", "1", "--idle-timeout-s", "1"]);
    let mut silent = Raw::session(node.tcp, Role::Switch, "");
    let mut pinging = Raw::session(node.tcp, Role::Switch, "");
    let started = Instant::now();
    let mut request_id = 10;
    while started.elapsed() < Duration::from_millis(2600) {
        pinging.send(&common::frame(opcode::PING, request_id, &[]));
        assert_eq!(pinging.expect_frame().0.request_id, request_id);
        request_id += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
    let (frames, ending) = silent.until_end();
    assert!(frames.is_empty());
    assert_ne!(
        ending,
        common::Ending::StillOpen,
        "a session silent for 2.6 s with idle_timeout_s = 1 is still open"
    );
    pinging.send(&common::frame(opcode::PING, 99, &[]));
    assert_eq!(pinging.expect_frame().0.request_id, 99, "the pinging one");
    assert!(node.stop().success());
}

/// Guards listeners with `SO_REUSEPORT`: a second process on the node's
/// TCP or UDP address started without error and answered a share of the
/// lookups. Now it fails to start, and the node keeps all its traffic.
#[test]
fn a_second_process_cannot_share_the_nodes_addresses() {
    let node = Node::start(&["--shards", "2"]);
    let tcp = node.tcp.to_string();
    let udp = node.udp.to_string();
    let (code, stderr) = serve_expecting_exit(&["--listen", &tcp]);
    assert_eq!(code, Some(1), "a second node on {tcp}: {stderr}");
    assert!(stderr.to_lowercase().contains("in use"), "{stderr}");
    let (code, stderr) = serve_expecting_exit(&["--listen", "127.0.0.1:0", "--udp", &udp]);
    assert_eq!(code, Some(1), "a second node on udp {udp}: {stderr}");
    assert!(stderr.to_lowercase().contains("in use"), "{stderr}");

    // Every lookup over new connections reaches the node that holds X.
    let xn = x_on_loop(&node, 0, 130_000);
    let mut admin = Raw::session(node.tcp, Role::Admin, "");
    let mut out = Vec::new();
    codec::encode_bind(&mut out, 1, &axb(xn, "13800000001", "13900000002", "mine"));
    admin.send(&out);
    assert_eq!(admin.expect_frame().0.status, status::OK);
    for round in 0..40 {
        let mut switch = Raw::session(node.tcp, Role::Switch, "");
        out.clear();
        codec::encode_lookup(&mut out, round, &ask("13800000001", xn), true);
        switch.send(&out);
        let (header, body) = switch.expect_frame();
        assert!(
            matches!(
                codec::decode_lookup_answer(&header, &body),
                Ok(LookupResult::Route(_))
            ),
            "lookup {round} was not answered by the node"
        );
    }
    assert!(node.stop().success());
}

/// The node's resident memory, from `/proc`.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// Guards output buffers that never shrank: 40 connections that pipelined
/// about 3.8 MiB of answers each left about 120 MiB held after they had
/// read everything. Now the memory goes back once the answers are read.
#[test]
fn answer_memory_is_given_back_after_a_burst() {
    // One event loop: every lookup is answered in place, none waits on
    // another core (whose in-flight limit would answer BUSY).
    let node = Node::start(&["--shards", "1", "--max-output-bytes", "16777216"]);
    let xn = x_on_loop(&node, 0, 140_000);
    let mut admin = Raw::session(node.tcp, Role::Admin, "");
    let mut out = Vec::new();
    codec::encode_bind(&mut out, 1, &axb(xn, "13800000001", "13900000002", "mem"));
    admin.send(&out);
    assert_eq!(admin.expect_frame().0.status, status::OK);
    // 90,000 routed lookups: 2.9 MiB of requests, 3.8 MiB of answers.
    const LOOKUPS: u32 = 90_000;
    out.clear();
    for id in 0..LOOKUPS {
        codec::encode_lookup(&mut out, id, &ask("13800000001", xn), true);
    }
    let before = rss_bytes(node.pid());
    let mut clients: Vec<Raw> = (0..40)
        .map(|_| Raw::session(node.tcp, Role::Switch, ""))
        .collect();
    // Each client sends everything before reading anything (a writer
    // thread per client: the node stops reading a client whose answers
    // fill the socket, so a single thread would deadlock).
    let writers: Vec<_> = clients
        .iter()
        .map(|client| {
            let mut writer = client.try_clone();
            let bytes = out.clone();
            std::thread::spawn(move || writer.send(&bytes))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let peak = rss_bytes(node.pid());
    for client in &mut clients {
        let mut got = 0;
        while got < LOOKUPS {
            let (header, _) = client.expect_frame();
            assert_eq!(header.status, status::OK);
            got += 1;
        }
    }
    for writer in writers {
        writer.join().expect("writer");
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_bytes(node.pid());
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    eprintln!(
        "node RSS: {:.1} MiB before, {:.1} MiB with 40 x 3.8 MiB of answers unread, {:.1} MiB after",
        mib(before),
        mib(peak),
        mib(after)
    );
    assert!(
        after < before + (32 << 20),
        "the node still holds {:.1} MiB more after every answer was read",
        mib(after - before)
    );
    drop(clients);
    assert!(node.stop().success());
}

/// Past `output_bytes_total_max` of unsent answers, node-wide, new requests
/// are answered BUSY (on every connection) until clients read.
#[test]
fn unsent_output_is_bounded_node_wide() {
    let node = Node::start(&[
        "--shards",
        "1",
        "--max-output-bytes",
        "16777216",
        "--max-output-bytes-total",
        "1048576",
    ]);
    let xn = x_on_loop(&node, 0, 150_000);
    let mut admin = Raw::session(node.tcp, Role::Admin, "");
    let mut out = Vec::new();
    codec::encode_bind(&mut out, 1, &axb(xn, "13800000001", "13900000002", "full"));
    admin.send(&out);
    assert_eq!(admin.expect_frame().0.status, status::OK);
    // A client that pipelines 200,000 lookups and reads nothing: its
    // 8.4 MiB of answers fill the sockets' buffers and then the node's.
    let mut hog = Raw::session(node.tcp, Role::Switch, "");
    out.clear();
    for id in 0..200_000 {
        codec::encode_lookup(&mut out, id, &ask("13800000001", xn), true);
    }
    let mut writer = hog.try_clone();
    let bytes = out.clone();
    let flood = std::thread::spawn(move || writer.try_send(&bytes).is_ok());
    // Meanwhile another client is told BUSY.
    let mut switch = Raw::session(node.tcp, Role::Switch, "");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut busy = false;
    let mut request_id = 1_000_000;
    while !busy && Instant::now() < deadline {
        out.clear();
        codec::encode_lookup(&mut out, request_id, &ask("13800000001", xn), true);
        switch.send(&out);
        busy = switch.expect_frame().0.status == status::BUSY;
        request_id += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        busy,
        "no BUSY while a client held megabytes of unread answers"
    );
    // The hog reads everything: the node serves again.
    let mut read = 0u32;
    while read < 200_000 {
        let (header, _) = hog.expect_frame();
        assert!(header.status == status::OK || header.status == status::BUSY);
        read += 1;
    }
    assert!(flood.join().expect("flood"));
    out.clear();
    codec::encode_lookup(&mut out, 7, &ask("13800000001", xn), true);
    switch.send(&out);
    assert_eq!(switch.expect_frame().0.status, status::OK, "served again");
    assert!(node.stop().success());
}

/// UDP lookups beyond `udp_lookups_per_source_per_s` are dropped without
/// an answer and counted in /metrics.
#[test]
fn udp_lookups_are_rate_limited_per_source() {
    let node = Node::start(&["--shards", "1", "--udp-lookups-per-source-per-s", "50"]);
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let xn = x_on_loop(&node, 0, 160_000);
    let mut answered = 0;
    // 200 datagrams of one lookup each, well within one second.
    for id in 0..200 {
        let mut datagram = Vec::new();
        codec::encode_lookup(&mut datagram, id, &ask("13800000001", xn), true);
        socket.send_to(&datagram, node.udp).expect("send");
    }
    let mut buffer = [0u8; 2048];
    while socket.recv_from(&mut buffer).is_ok() {
        answered += 1;
    }
    assert!(
        (50..=100).contains(&answered),
        "{answered} of 200 lookups answered with a limit of 50 a second"
    );
    let (_, metrics) = common::http_get(node.admin, "/metrics");
    let dropped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("x700_udp_lookups_rate_limited_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("x700_udp_lookups_rate_limited_total in /metrics");
    assert_eq!(dropped + answered, 200, "every lookup answered or counted");
    assert!(node.stop().success());
}
