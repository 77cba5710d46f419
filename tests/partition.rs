//! Proves, with three real `x700 serve --raft` processes whose every peer
//! link runs through a fault-injecting proxy in this test, that a leader cut
//! off from both peers acknowledges no write sent after the cut, that the
//! majority elects a leader and goes on taking writes, and that after the
//! links heal there is one history: every acknowledged bind (from before the
//! cut, and from the majority) routes on every member, no write the old
//! leader took after the cut exists anywhere, the members name one leader,
//! and `x700 cluster verify` finds their tables equal. First, that the
//! proxy itself cuts what it is told to and nothing else.

mod common;

use common::cluster::{
    agreed_leader, bind_many, cluster_command, init_cluster, leader_seen_by, routes_all,
    start_members,
};
use common::proxy::Proxies;
use common::{ask, axb, x, Raw};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use x700::binding::{BindingId, LookupResult, Reject};
use x700::client::Client;
use x700::number::Number;
use x700::protocol::codec::{decode_bind_answer, encode_bind};
use x700::protocol::{status, Role};

/// Writes one load keeps in flight at once.
const WINDOW: u64 = 16;
/// The same once the link is cut: a cut-off leader may never answer the
/// writes it holds (PROTOCOL.md section 8), and the load must go on.
const WINDOW_AFTER_CUT: u64 = 2_000;
/// Writes one load sends at most.
const WRITES_MAX: u64 = 20_000;
/// Pause between two writes once the link is cut: the old leader answers
/// at once (BUSY) or not at all, and a test must not spin a core.
const PACE_AFTER_CUT: Duration = Duration::from_millis(5);
/// How long the old leader stays cut off at least.
const ISOLATION_MIN: Duration = Duration::from_secs(3);

/// One write a load sent: its X and whether the cut had been made when it
/// left.
#[derive(Clone, Copy)]
struct Sent {
    n: u64,
    after_cut: bool,
}

/// What a load saw: every write it sent (by request id) and every answer.
#[derive(Default)]
struct Record {
    sent: Vec<Sent>,
    /// (request id, status, binding id of an OK).
    answers: Vec<(u32, u8, Option<BindingId>)>,
    /// Answers that came after the load was told to stop (the heal).
    answered_after_stop: u64,
}

/// Pipelined binds on one session at `address`, X numbers from `first` on,
/// until `stop`; each write is tagged with `cut` as it leaves, and `oks`
/// counts the OK answers. Once
/// stopped, the reader waits for outstanding answers until 5 s pass without
/// one (a deposed leader may never answer some).
fn write_load(
    address: SocketAddr,
    first: u64,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    oks: Arc<AtomicU64>,
) -> JoinHandle<Record> {
    std::thread::spawn(move || {
        let mut sender = Raw::session(address, Role::Admin, "");
        let mut reader = sender.try_clone();
        let record = Arc::new(Mutex::new(Record::default()));
        let answered = Arc::new(AtomicU64::new(0));
        let reading = {
            let record = Arc::clone(&record);
            let answered = Arc::clone(&answered);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let hard_end = Instant::now() + Duration::from_secs(120);
                while Instant::now() < hard_end {
                    match reader.read_frame() {
                        Ok(Some((header, body))) => {
                            let id = (header.status == status::OK)
                                .then(|| decode_bind_answer(&body).map(|(id, _, _)| id))
                                .flatten();
                            let mut record = record.lock().expect("record");
                            record.answers.push((header.request_id, header.status, id));
                            if stop.load(Ordering::SeqCst) {
                                record.answered_after_stop += 1;
                            }
                            answered.fetch_add(1, Ordering::SeqCst);
                            if id.is_some() {
                                oks.fetch_add(1, Ordering::SeqCst);
                            }
                            let all = record.answers.len() == record.sent.len();
                            if all && stop.load(Ordering::SeqCst) {
                                return;
                            }
                        }
                        Ok(None) => return,
                        Err(error)
                            if matches!(
                                error.kind(),
                                ErrorKind::WouldBlock | ErrorKind::TimedOut
                            ) =>
                        {
                            if stop.load(Ordering::SeqCst) {
                                return;
                            }
                        }
                        Err(_) => return,
                    }
                }
            })
        };
        let mut request = Vec::new();
        for i in 0..WRITES_MAX {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            // Bounded wait for room in the window.
            let room_by = Instant::now() + Duration::from_secs(30);
            // The window widens at the cut, also for a write already
            // waiting for room.
            let window = || {
                if cut.load(Ordering::SeqCst) {
                    WINDOW_AFTER_CUT
                } else {
                    WINDOW
                }
            };
            while i.saturating_sub(answered.load(Ordering::SeqCst)) >= window()
                && !stop.load(Ordering::SeqCst)
                && Instant::now() < room_by
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let after_cut = cut.load(Ordering::SeqCst);
            if after_cut {
                std::thread::sleep(PACE_AFTER_CUT);
            }
            let n = first + i;
            request.clear();
            let request_id = u32::try_from(i).expect("small");
            encode_bind(
                &mut request,
                request_id,
                &axb(x(n), "13800000001", "13900000002", "partition"),
            );
            record
                .lock()
                .expect("record")
                .sent
                .push(Sent { n, after_cut });
            if sender.try_send(&request).is_err() {
                break;
            }
        }
        let _ = reading.join();
        let mut record = record.lock().expect("record");
        std::mem::take(&mut *record)
    })
}

#[test]
fn a_leader_cut_off_from_both_peers_acknowledges_nothing_and_one_history_remains() {
    let (_dirs, nodes, real_rafts) = start_members(3);
    let targets: Vec<(u64, SocketAddr)> = (1..=3u64)
        .zip(&real_rafts)
        .map(|(id, raft)| (id, raft.parse().expect("raft address")))
        .collect();
    let proxies = Proxies::start(&targets);
    let rafts: Vec<String> = (1..=3).map(|id| proxies.address(id).to_string()).collect();
    let (old_leader_id, old_leader) = init_cluster(&nodes, &rafts);
    let clients: Vec<SocketAddr> = nodes.values().map(|node| node.tcp).collect();

    // Pipelined binds at the leader; wait for some acknowledgements, so
    // that writes are in flight when the cut comes.
    let cut = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let oks = Arc::new(AtomicU64::new(0));
    let load = write_load(
        old_leader,
        100_000,
        Arc::clone(&cut),
        Arc::clone(&stop),
        Arc::clone(&oks),
    );
    let warm_by = Instant::now() + Duration::from_secs(30);
    while oks.load(Ordering::SeqCst) < 200 && Instant::now() < warm_by {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        oks.load(Ordering::SeqCst) >= 200,
        "the leader acknowledged too few writes"
    );
    assert!(proxies.piped() >= 2, "peer links do not pass the proxies");

    // Cut the leader off from both peers.
    proxies.isolate(old_leader_id);
    cut.store(true, Ordering::SeqCst);
    let cut_at = Instant::now();

    // The majority elects a new leader and takes writes.
    let majority: Vec<SocketAddr> = nodes
        .iter()
        .filter(|(id, _)| **id != old_leader_id)
        .map(|(_, node)| node.tcp)
        .collect();
    let (new_leader_id, new_leader) = loop {
        if let Some((id, address)) = leader_seen_by(majority[0], Duration::from_millis(200)) {
            if id != old_leader_id {
                break (id, address);
            }
        }
        assert!(
            cut_at.elapsed() < Duration::from_secs(30),
            "the majority elected no leader within 30 s of the cut"
        );
    };
    eprintln!(
        "majority leader {new_leader_id} {:?} after the cut",
        cut_at.elapsed()
    );
    let majority_acked = bind_many(new_leader, 300_000, 100);
    let seen = common::cluster::status_json(old_leader);
    eprintln!(
        "the cut-off node says: leader {} term {}",
        seen.as_ref()
            .map_or("?".into(), |s| s["leader_id"].to_string()),
        seen.as_ref().map_or("?".into(), |s| s["term"].to_string()),
    );
    if let Some(left) = ISOLATION_MIN.checked_sub(cut_at.elapsed()) {
        std::thread::sleep(left);
    }
    assert!(
        proxies.refused() > 0,
        "no peer connection was refused: the cut did nothing"
    );

    // Heal; the old leader's load stops and collects its last answers.
    proxies.heal_all();
    stop.store(true, Ordering::SeqCst);
    let record = load.join().expect("the load thread");
    let mut acked: Vec<(Number, BindingId)> = majority_acked;
    let mut after_cut = Vec::new();
    let mut statuses = std::collections::BTreeMap::<&str, u64>::new();
    for &(request_id, code, id) in &record.answers {
        let sent = record.sent[usize::try_from(request_id).expect("small")];
        if sent.after_cut {
            *statuses.entry(status::name(code)).or_default() += 1;
            assert_ne!(
                code,
                status::OK,
                "the cut-off leader acknowledged write {} sent after the cut",
                sent.n
            );
        } else if code == status::OK {
            acked.push((x(sent.n), id.expect("an OK bind names its id")));
        }
    }
    after_cut.extend(record.sent.iter().filter(|s| s.after_cut).map(|s| s.n));
    eprintln!(
        "old leader: {} writes sent, {} before the cut acknowledged, {} after the cut \
         answered {statuses:?}, {} answers after the heal",
        record.sent.len(),
        acked.len() - 100,
        after_cut.len(),
        record.answered_after_stop
    );
    assert!(
        after_cut.len() >= 20,
        "only {} writes reached the old leader after the cut",
        after_cut.len()
    );

    // Once healed, the members name one leader, every acknowledged bind
    // routes on each, and nothing the old leader took after the cut exists.
    let leader_id = agreed_leader(&clients, Duration::from_secs(30))
        .expect("the healed members name one leader within 30 s");
    for (id, node) in &nodes {
        assert!(
            routes_all(node.tcp, &acked, Duration::from_secs(30)),
            "member {id} misses acknowledged binds after the heal"
        );
        let mut client = Client::connect(node.tcp, Role::Switch, "").expect("connect");
        for &n in &after_cut {
            let answer = client
                .lookup(&ask("13800000001", x(n)))
                .expect("lookup answered");
            assert_eq!(
                answer,
                LookupResult::Reject(Reject::NotBound),
                "member {id} holds write {n}, taken by the cut-off leader"
            );
        }
    }
    let leader = nodes[&leader_id].tcp.to_string();
    let (code, verified) = cluster_command(&["verify", "--server", &leader]);
    assert_eq!(code, 0, "cluster verify: {verified}");
    assert_eq!(verified["agree"], true, "{verified}");
    assert_eq!(verified["members"].as_array().map(Vec::len), Some(3));
    let (code, status) = cluster_command(&["status", "--server", &leader]);
    assert_eq!(code, 0, "cluster status: {status}");
    let leaders = status["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter(|m| m["role"] == "leader")
        .count();
    assert_eq!(leaders, 1, "{status}");
    for node in nodes.into_values() {
        assert!(node.stop().success());
    }
    drop(proxies);
}

/// A stand-in for a member's raft port: echoes every connection's bytes,
/// one thread per connection, until `stop`.
fn echo_server(stop: Arc<AtomicBool>) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let address = listener.local_addr().expect("address");
    let handle = std::thread::spawn(move || {
        let mut echoes = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let Ok((mut stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let stop = Arc::clone(&stop);
            echoes.push(std::thread::spawn(move || {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
                let mut buffer = [0u8; 1024];
                while !stop.load(Ordering::SeqCst) {
                    match stream.read(&mut buffer) {
                        Ok(0) => return,
                        Ok(n) => {
                            if stream.write_all(&buffer[..n]).is_err() {
                                return;
                            }
                        }
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(_) => return,
                    }
                }
            }));
        }
        for echo in echoes {
            let _ = echo.join();
        }
    });
    (address, handle)
}

/// A connection through `proxies` to member `to`, opened by member `from`
/// with a peer HELLO (PROTOCOL.md P3: length 80, kind 0x01, the two ids at
/// offsets 32 and 40).
fn peer_connection(proxies: &Proxies, from: u64, to: u64) -> TcpStream {
    let mut stream = TcpStream::connect(proxies.address(to)).expect("connect to the proxy");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut hello = [0u8; 80];
    hello[0..4].copy_from_slice(&80u32.to_le_bytes());
    hello[4] = 0x01;
    hello[32..40].copy_from_slice(&from.to_le_bytes());
    hello[40..48].copy_from_slice(&to.to_le_bytes());
    stream.write_all(&hello).expect("send HELLO");
    stream
}

/// True if `stream` carries bytes to the echo server and back (the HELLO
/// first, then `ping`).
fn carries(stream: &mut TcpStream) -> bool {
    let mut hello = [0u8; 80];
    if stream.read_exact(&mut hello).is_err() || stream.write_all(b"ping").is_err() {
        return false;
    }
    let mut answer = [0u8; 4];
    stream.read_exact(&mut answer).is_ok() && &answer == b"ping"
}

#[test]
fn the_proxy_cuts_one_link_both_ways_and_heals() {
    let stop = Arc::new(AtomicBool::new(false));
    let servers: Vec<(u64, (SocketAddr, JoinHandle<()>))> = (1..=3u64)
        .map(|id| (id, echo_server(Arc::clone(&stop))))
        .collect();
    let targets: Vec<(u64, SocketAddr)> = servers.iter().map(|(id, (a, _))| (*id, *a)).collect();
    let proxies = Proxies::start(&targets);
    let mut one_to_two = peer_connection(&proxies, 1, 2);
    let mut two_to_one = peer_connection(&proxies, 2, 1);
    let mut three_to_two = peer_connection(&proxies, 3, 2);
    for stream in [&mut one_to_two, &mut two_to_one, &mut three_to_two] {
        assert!(carries(stream), "a link does not carry bytes");
    }

    // Cut 1-2: its connections end both ways, new ones are refused, and
    // 3-2 goes on.
    proxies.cut(1, 2);
    for stream in [&mut one_to_two, &mut two_to_one] {
        let mut byte = [0u8; 1];
        let ended = match stream.read(&mut byte) {
            Ok(n) => n == 0,
            Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        };
        assert!(ended, "a connection of the cut link is still open");
    }
    assert!(!carries(&mut peer_connection(&proxies, 1, 2)));
    assert!(!carries(&mut peer_connection(&proxies, 2, 1)));
    let _ = three_to_two.write_all(b"ping");
    let mut answer = [0u8; 4];
    three_to_two
        .read_exact(&mut answer)
        .expect("3-2 still carries");
    assert!(proxies.refused() >= 2);

    proxies.heal_all();
    assert!(carries(&mut peer_connection(&proxies, 1, 2)), "not healed");
    drop(proxies);
    stop.store(true, Ordering::SeqCst);
    for (_, (_, server)) in servers {
        server.join().expect("echo server");
    }
}
