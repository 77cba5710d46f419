//! In-test fake servers for `x700 bench`'s own tests, on loopback
//! ephemeral ports, each bounded in time: a fake x700 node that speaks just
//! HELLO and LOOKUP (every lookup is a miss) and delays answers in a known
//! way, and a fake Redis that keeps GET/SET/MSET/DEL/HGET/HSET/HDEL in a
//! map (optionally losing writes, to prove the benchmark notices).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use x700::protocol::codec::hello_answer_body;
use x700::protocol::frame::{next_frame, push_frame};
use x700::protocol::{opcode, status};

/// A fake server stops by itself after this long, whatever the test does.
const LIFETIME: Duration = Duration::from_secs(60);
/// Reads wake this often to check whether to stop.
const READ_TICK: Duration = Duration::from_millis(20);

/// When the fake node answers.
#[derive(Clone, Copy, Debug)]
pub enum Timing {
    /// Every answer this long after its request arrived.
    Delay(Duration),
    /// At once, except requests arriving in one window (starting `after`
    /// the first lookup, lasting `stall`): those wait until it ends.
    StallOnce {
        /// From the first lookup to the stall.
        after: Duration,
        /// Length of the stall.
        stall: Duration,
    },
}

/// A running fake server; stops when dropped.
pub struct Fake {
    /// Where it listens.
    pub address: SocketAddr,
    /// Requests (lookups or commands) it has received.
    pub requests: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn listen(
    serve: impl Fn(TcpStream, Arc<AtomicBool>, Arc<AtomicU64>) + Send + Sync + 'static,
) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let address = listener.local_addr().expect("local address");
    let stop = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicU64::new(0));
    let serve = Arc::new(serve);
    let (stop_flag, counter) = (Arc::clone(&stop), Arc::clone(&requests));
    std::thread::spawn(move || {
        let started = Instant::now();
        while !stop_flag.load(Ordering::SeqCst) && started.elapsed() < LIFETIME {
            match listener.accept() {
                Ok((stream, _)) => {
                    let (serve, stop, counter) = (
                        Arc::clone(&serve),
                        Arc::clone(&stop_flag),
                        Arc::clone(&counter),
                    );
                    std::thread::spawn(move || serve(stream, stop, counter));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => break,
            }
        }
        stop_flag.store(true, Ordering::SeqCst);
    });
    Fake {
        address,
        requests,
        stop,
    }
}

/// Reads what is there (waiting at most `READ_TICK`); false once the peer
/// closed, the fake is stopping, or its lifetime is over.
fn read_some(
    stream: &mut TcpStream,
    input: &mut Vec<u8>,
    stop: &AtomicBool,
    born: Instant,
) -> bool {
    let mut chunk = [0u8; 64 * 1024];
    loop {
        if stop.load(Ordering::SeqCst) || born.elapsed() > LIFETIME {
            return false;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => {
                input.extend_from_slice(&chunk[..n]);
                return true;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return false,
        }
    }
}

/// A fake x700 node: HELLO is accepted, every LOOKUP answered `NOT_BOUND`
/// (the benchmark must run with `--hit-ratio 0`), anything else
/// `UNKNOWN_OPCODE`; answers leave when `timing` says.
pub fn fake_node(timing: Timing) -> Fake {
    // The stall window is shared by all connections, set at the first lookup.
    let stall_start: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    listen(move |mut stream, stop, counter| {
        let born = Instant::now();
        stream.set_nodelay(true).ok();
        stream.set_read_timeout(Some(READ_TICK)).ok();
        let Ok(mut writer) = stream.try_clone() else {
            return;
        };
        // Answers go to a writer thread with their due time; it writes
        // each batch when due (answers are due in arrival order).
        let (to_writer, from_reader) = mpsc::channel::<(Instant, Vec<u8>)>();
        std::thread::spawn(move || {
            while let Ok((due, bytes)) = from_reader.recv() {
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                if writer.write_all(&bytes).is_err() {
                    return;
                }
            }
        });
        let mut input = Vec::new();
        while read_some(&mut stream, &mut input, &stop, born) {
            let arrived = Instant::now();
            let mut answers = Vec::new();
            let mut used = 0;
            while let Ok(Some((header, frame))) = next_frame(&input[used..], 1024) {
                used += frame.len();
                match header.opcode {
                    opcode::HELLO => push_frame(
                        &mut answers,
                        opcode::HELLO,
                        status::OK,
                        header.request_id,
                        &hello_answer_body(x700::protocol::VERSION, 1, 1, 0),
                    ),
                    opcode::LOOKUP => {
                        counter.fetch_add(1, Ordering::Relaxed);
                        push_frame(
                            &mut answers,
                            opcode::LOOKUP,
                            status::NOT_BOUND,
                            header.request_id,
                            &[],
                        );
                    }
                    other => push_frame(
                        &mut answers,
                        other,
                        status::UNKNOWN_OPCODE,
                        header.request_id,
                        &[],
                    ),
                }
            }
            input.drain(..used);
            if answers.is_empty() {
                continue;
            }
            let due = match timing {
                Timing::Delay(delay) => arrived + delay,
                Timing::StallOnce { after, stall } => {
                    let mut start = stall_start.lock().expect("stall lock");
                    let begins = *start.get_or_insert(arrived + after);
                    if arrived >= begins && arrived < begins + stall {
                        begins + stall
                    } else {
                        arrived
                    }
                }
            };
            if to_writer.send((due, answers)).is_err() {
                return;
            }
        }
    })
}

/// How the fake Redis treats writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// Keeps every write.
    Faithful,
    /// Keeps only the first key or field of each MSET or HSET.
    LosesSecondEntry,
}

/// Splits one RESP command (an array of bulk strings) off the front.
fn command(input: &[u8]) -> Option<(usize, Vec<Vec<u8>>)> {
    fn line(input: &[u8], at: usize) -> Option<(usize, &[u8])> {
        let end = input[at..].windows(2).position(|w| w == b"\r\n")? + at;
        Some((end + 2, &input[at..end]))
    }
    let (mut at, head) = line(input, 0)?;
    assert_eq!(head.first(), Some(&b'*'), "the client sends arrays");
    let count: usize = std::str::from_utf8(&head[1..]).ok()?.parse().ok()?;
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        let (next, length) = line(input, at)?;
        assert_eq!(length.first(), Some(&b'$'), "arguments are bulk strings");
        let length: usize = std::str::from_utf8(&length[1..]).ok()?.parse().ok()?;
        if input.len() < next + length + 2 {
            return None;
        }
        args.push(input[next..next + length].to_vec());
        at = next + length + 2;
    }
    Some((at, args))
}

fn bulk(out: &mut Vec<u8>, value: Option<&Vec<u8>>) {
    match value {
        Some(value) => {
            out.extend_from_slice(format!("${}\r\n", value.len()).as_bytes());
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        None => out.extend_from_slice(b"$-1\r\n"),
    }
}

/// A fake Redis over a shared map (hash fields are stored as
/// `key \0 field`). Counts every command.
pub fn fake_redis(storage: Storage) -> Fake {
    let map: Arc<Mutex<HashMap<Vec<u8>, Vec<u8>>>> = Arc::new(Mutex::new(HashMap::new()));
    listen(move |mut stream, stop, counter| {
        let born = Instant::now();
        stream.set_nodelay(true).ok();
        stream.set_read_timeout(Some(READ_TICK)).ok();
        let mut input = Vec::new();
        while read_some(&mut stream, &mut input, &stop, born) {
            let mut out = Vec::new();
            let mut used = 0;
            while let Some((length, args)) = command(&input[used..]) {
                used += length;
                counter.fetch_add(1, Ordering::Relaxed);
                let mut map = map.lock().expect("map lock");
                let field = |key: &[u8], field: &[u8]| [key, b"\0", field].concat();
                match args[0].as_slice() {
                    b"GET" => bulk(&mut out, map.get(&args[1])),
                    b"HGET" => bulk(&mut out, map.get(&field(&args[1], &args[2]))),
                    b"SET" | b"MSET" => {
                        for (n, pair) in args[1..].chunks(2).enumerate() {
                            if n == 0 || storage == Storage::Faithful {
                                map.insert(pair[0].clone(), pair[1].clone());
                            }
                        }
                        out.extend_from_slice(b"+OK\r\n");
                    }
                    b"HSET" => {
                        let mut added = 0;
                        for (n, pair) in args[2..].chunks(2).enumerate() {
                            if n == 0 || storage == Storage::Faithful {
                                added += u32::from(
                                    map.insert(field(&args[1], &pair[0]), pair[1].clone())
                                        .is_none(),
                                );
                            }
                        }
                        out.extend_from_slice(format!(":{added}\r\n").as_bytes());
                    }
                    b"DEL" => {
                        let removed = args[1..]
                            .iter()
                            .filter(|k| map.remove(*k).is_some())
                            .count();
                        out.extend_from_slice(format!(":{removed}\r\n").as_bytes());
                    }
                    b"HDEL" => {
                        let removed = args[2..]
                            .iter()
                            .filter(|f| map.remove(&field(&args[1], f)).is_some())
                            .count();
                        out.extend_from_slice(format!(":{removed}\r\n").as_bytes());
                    }
                    _ => out.extend_from_slice(b"-ERR unknown command\r\n"),
                }
            }
            input.drain(..used);
            if !out.is_empty() && stream.write_all(&out).is_err() {
                return;
            }
        }
    })
}
