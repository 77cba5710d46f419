//! Proves that both I/O backends of the event loops (`serve --io epoll`
//! and `--io uring`) serve what is hardest for io_uring's requests in
//! flight: a client whose small window makes the node's sends short, many
//! connections at once, full UDP datagrams, clients that close with
//! answers still coming, and a held read with more input behind it than a
//! hold keeps. Each test runs a real node per backend, side by side; the
//! node's STATS names its backend. Also: a kernel that refuses io_uring
//! (a seccomp filter here) fails `--io uring` at start, naming the cause;
//! `--event-loops` and its alias `--shards`.

mod common;

use common::{ask, axb, callee, frame, hello_frame, x, Node, Raw, IO_TIMEOUT};
use socket2::{Domain, Socket, Type};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};
use x700::client::Client;
use x700::protocol::codec;
use x700::protocol::frame::{next_frame, Header, HEADER_BYTES};
use x700::protocol::{opcode, status, Role, VERSION};

/// Both backends, in the order every test runs them.
const BACKENDS: [&str; 2] = ["epoll", "uring"];
const A: &str = "13800000001";
const B: &str = "13900000002";

/// A node on backend `io` with `loops` event loops, X `x(1)` bound A<->B.
fn node_with_a_binding(io: &str, loops: &str) -> Node {
    let node = Node::start(&["--io", io, "--event-loops", loops]);
    let mut admin = Client::connect(node.tcp, Role::Admin, "").expect("admin session");
    let reply = admin.bind(&axb(x(1), A, B, "io-1")).expect("bind");
    assert_eq!(reply.status, status::OK, "{reply:?}");
    let stats = stats(&mut admin);
    assert_eq!(stats["io"], io, "STATS names the backend: {stats}");
    node
}

fn stats(client: &mut Client) -> serde_json::Value {
    let (code, text) = client.stats().expect("STATS answered");
    assert_eq!(code, status::OK, "{text}");
    serde_json::from_str(&text).expect("STATS is JSON")
}

/// `count` LOOKUP frames of A calling `x(1)`, request ids from `first`.
fn lookups(first: u32, count: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for id in first..first + count {
        codec::encode_lookup(&mut out, id, &ask(A, x(1)), true);
    }
    out
}

/// Reads `count` answers and checks they are A's route to B, request ids
/// `first..first + count` in order.
fn expect_routes(raw: &mut Raw, first: u32, count: u32, io: &str) {
    for id in first..first + count {
        let (header, body) = raw.expect_frame();
        assert_eq!(
            (header.opcode, header.status, header.request_id),
            (opcode::LOOKUP, status::OK, id),
            "{io}: answer {id}"
        );
        let result = codec::decode_lookup_answer(&header, &body).expect("route");
        assert_eq!(callee(&result), B, "{io}: answer {id}");
    }
}

/// A session on a socket whose receive buffer is 4 KiB: the node's sends
/// to it come up short once the window closes.
fn small_window_session(to: SocketAddr) -> Raw {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(&to.into()).expect("connect");
    let mut raw = Raw::from_stream(TcpStream::from(socket));
    raw.send(&hello_frame(0, VERSION, Role::Switch, ""));
    assert_eq!(raw.expect_frame().0.status, status::OK);
    raw
}

/// 20,000 answers (about 900 KB) to a client that reads them slowly
/// through a 4 KiB window: every send after the first few is short, and
/// its rest must go, in order, without a byte lost or repeated.
#[test]
fn short_sends_are_finished_in_order() {
    const COUNT: u32 = 20_000;
    for io in BACKENDS {
        let node = node_with_a_binding(io, "1");
        let mut raw = small_window_session(node.tcp);
        let mut writer = raw.try_clone();
        let sending = std::thread::spawn(move || writer.send(&lookups(1, COUNT)));
        // Nothing read for a while: the node's output piles up behind the
        // closed window.
        std::thread::sleep(Duration::from_millis(300));
        expect_routes(&mut raw, 1, COUNT, io);
        sending.join().expect("writer");
        assert!(node.stop().success(), "{io}");
    }
}

/// 300 connections over two loops, each with its requests pipelined
/// behind its HELLO, each gets exactly its own answers.
#[test]
fn many_connections_each_get_their_own_answers() {
    const CONNECTIONS: u32 = 300;
    const PER_CONNECTION: u32 = 8;
    for io in BACKENDS {
        let node = node_with_a_binding(io, "2");
        let mut raws: Vec<Raw> = (0..CONNECTIONS).map(|_| Raw::connect(node.tcp)).collect();
        for (i, raw) in (0..).zip(raws.iter_mut()) {
            let mut bytes = hello_frame(0, VERSION, Role::Switch, "");
            bytes.extend(lookups(1 + i * 100, PER_CONNECTION));
            raw.send(&bytes);
        }
        for (i, raw) in (0..).zip(raws.iter_mut()) {
            assert_eq!(raw.expect_frame().0.status, status::OK, "{io}: HELLO {i}");
            expect_routes(raw, 1 + i * 100, PER_CONNECTION, io);
        }
        drop(raws);
        assert!(node.stop().success(), "{io}");
    }
}

/// Full datagrams (1,024 lookups, about 40 KB) from several sockets at
/// once: each answered whole, in order, to its own source.
#[test]
fn full_datagrams_are_answered_whole() {
    const LOOKUPS: u32 = 1024;
    const SOCKETS: u32 = 8;
    for io in BACKENDS {
        let node = node_with_a_binding(io, "2");
        let sockets: Vec<UdpSocket> = (0..SOCKETS)
            .map(|_| {
                let socket = UdpSocket::bind("127.0.0.1:0").expect("udp socket");
                socket.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
                socket
            })
            .collect();
        for (i, socket) in (0..).zip(&sockets) {
            socket
                .send_to(&lookups(i * 10_000, LOOKUPS), node.udp)
                .expect("send datagram");
        }
        let mut buffer = vec![0u8; 65_536];
        for (i, socket) in (0..).zip(&sockets) {
            let (length, from) = socket.recv_from(&mut buffer).expect("answer datagram");
            assert_eq!(from, node.udp, "{io}");
            let mut rest = &buffer[..length];
            let mut answers: Vec<(Header, Vec<u8>)> = Vec::new();
            while let Ok(Some((header, bytes))) = next_frame(rest, 65_536) {
                answers.push((header, bytes[HEADER_BYTES..].to_vec()));
                rest = &rest[bytes.len()..];
            }
            assert_eq!(answers.len(), LOOKUPS as usize, "{io}: datagram {i}");
            for (id, (header, body)) in (i * 10_000..).zip(&answers) {
                assert_eq!((header.request_id, header.status), (id, status::OK), "{io}");
                let result = codec::decode_lookup_answer(header, body).expect("route");
                assert_eq!(callee(&result), B, "{io}");
            }
        }
        assert!(node.stop().success(), "{io}");
    }
}

/// Fifty clients that send 5,000 lookups, read a few answers and close
/// (with answers still coming and requests unread): the node closes each
/// (STATS counts only the admin session after), and a new client is
/// served as if nothing happened.
#[test]
fn clients_closing_mid_answer_leave_the_node_serving() {
    for io in BACKENDS {
        // One loop: 5,000 lookups for another loop's X would pass the
        // in-flight limit.
        let node = node_with_a_binding(io, "1");
        for round in 0..50 {
            let mut raw = Raw::connect(node.tcp);
            let mut bytes = hello_frame(0, VERSION, Role::Switch, "");
            bytes.extend(lookups(1, 5_000));
            raw.send(&bytes);
            assert_eq!(raw.expect_frame().0.status, status::OK, "{io}: {round}");
            expect_routes(&mut raw, 1, 3, io);
            drop(raw);
        }
        let mut admin = Client::connect(node.tcp, Role::Admin, "").expect("admin");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let open = stats(&mut admin)["connections"].as_u64();
            if open == Some(1) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{io}: {open:?} connections open, 1 expected"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut raw = Raw::session(node.tcp, Role::Switch, "");
        raw.send(&lookups(7, 100));
        expect_routes(&mut raw, 7, 100, io);
        assert!(node.stop().success(), "{io}");
    }
}

/// A BIND followed at once by 4,000 lookups of the X it binds (160 KB,
/// more than a hold keeps before it stops receiving): the lookups wait
/// for the bind (read-your-writes), then every one routes, in order.
#[test]
fn a_held_read_with_a_long_pipeline_behind_it_is_served_in_order() {
    const COUNT: u32 = 4_000;
    for io in BACKENDS {
        let node = Node::start(&["--io", io, "--event-loops", "1"]);
        let mut raw = Raw::session(node.tcp, Role::Admin, "");
        let mut bytes = Vec::new();
        codec::encode_bind(&mut bytes, 1, &axb(x(1), A, B, "held-1"));
        bytes.extend(lookups(2, COUNT));
        let mut writer = raw.try_clone();
        let sending = std::thread::spawn(move || writer.send(&bytes));
        let (header, _) = raw.expect_frame();
        assert_eq!(
            (header.opcode, header.status, header.request_id),
            (opcode::BIND_AXB, status::OK, 1),
            "{io}"
        );
        expect_routes(&mut raw, 2, COUNT, io);
        sending.join().expect("writer");
        // The connection carries on after the hold.
        raw.send(&frame(opcode::PING, 9, &[]));
        assert_eq!(raw.expect_frame().0.request_id, 9, "{io}");
        assert!(node.stop().success(), "{io}");
    }
}

/// `--event-loops` sets the event loops; `--shards`, its older name, is
/// still accepted.
#[test]
fn event_loops_has_the_alias_shards() {
    let node = Node::start(&["--event-loops", "3"]);
    assert_eq!(node.event_loops, 3);
    assert!(node.stop().success());
    let node = Node::start(&["--shards", "2"]);
    assert_eq!(node.event_loops, 2);
    assert!(node.stop().success());
}

/// In the child, before `exec`: a seccomp filter that answers
/// `io_uring_setup` with EPERM, as Docker's default profile or
/// `kernel.io_uring_disabled` would, and lets every other call through.
fn refuse_io_uring() -> std::io::Result<()> {
    let statement = |code: u32, k: u32| libc::sock_filter {
        code: u16::try_from(code).expect("BPF code"),
        jt: 0,
        jf: 0,
        k,
    };
    let setup = u32::try_from(libc::SYS_io_uring_setup).expect("syscall number");
    let mut filter = [
        // The system call's number (`seccomp_data.nr`, offset 0).
        statement(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        libc::sock_filter {
            code: u16::try_from(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K).expect("BPF code"),
            jt: 0,
            jf: 1,
            k: setup,
        },
        statement(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | u32::try_from(libc::EPERM).expect("errno"),
        ),
        statement(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let program = libc::sock_fprog {
        len: u16::try_from(filter.len()).expect("filter length"),
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: plain prctl calls on this (forked, single-threaded) process;
    // `program` and `filter` outlive them, and the kernel copies the filter.
    let installed = unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
            && libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &raw const program,
                0,
                0,
            ) == 0
    };
    if installed {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `--io uring` on a kernel that refuses io_uring: the start fails (exit
/// status 1) with a message naming io_uring, the refused call and its
/// error, and the way out (`--io epoll`), before the data directory is
/// created.
#[test]
fn a_kernel_refusing_io_uring_fails_the_start_naming_the_cause() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let mut command = std::process::Command::new(common::binary());
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--io",
            "uring",
            "--no-pin",
        ])
        .arg("--data")
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: the closure only makes two prctl calls, which are
    // async-signal-safe, between fork and exec.
    unsafe { command.pre_exec(refuse_io_uring) };
    let mut child = command.spawn().expect("spawn x700 serve");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{stderr}");
    assert!(
        !data.exists(),
        "the refused start created {}",
        data.display()
    );
    for words in [
        "io_uring",
        "io_uring_setup",
        "Operation not permitted",
        "--io epoll",
    ] {
        assert!(stderr.contains(words), "no {words:?} in {stderr:?}");
    }
}
