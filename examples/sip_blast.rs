//! A SIP redirect load generator for perf/sip-vs-kamailio.sh, for when
//! sipp (whose clock ticks in milliseconds and which schedules its calls
//! one tick at a time) is the bottleneck: one UDP socket, at most WINDOW
//! calls open, each INVITE -> 302 -> ACK, its INVITE-to-answer time taken
//! with a microsecond clock. No retransmissions: a call unanswered after
//! 500 ms is counted lost and its slot reused.
//!
//! Usage: sip_blast TARGET CALLS_CSV WINDOW DURATION_S [RATE]
//! (CALLS_CSV: sipp's injection file, `caller;x` lines after a header;
//! RATE: calls started per second at most, evenly; none: as fast as
//! answers come back, WINDOW open.)
//! Prints one line: `calls_per_s answered_302 other_status lost p50_us
//! p99_us`.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// A call unanswered this long is lost.
const LOST_AFTER: Duration = Duration::from_millis(500);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 && args.len() != 6 {
        eprintln!("usage: sip_blast TARGET CALLS_CSV WINDOW DURATION_S [RATE]");
        std::process::exit(2);
    }
    let target: SocketAddr = args[1].parse().expect("TARGET is IP:PORT");
    let calls: Vec<(String, String)> = std::fs::read_to_string(&args[2])
        .expect("read CALLS_CSV")
        .lines()
        .skip(1)
        .filter_map(|line| {
            let (caller, x) = line.split_once(';')?;
            Some((caller.to_string(), x.to_string()))
        })
        .collect();
    assert!(!calls.is_empty(), "no calls in {}", args[2]);
    let window: usize = args[3].parse().expect("WINDOW");
    let duration = Duration::from_secs(args[4].parse().expect("DURATION_S"));
    let rate: Option<f64> = args.get(5).map(|r| r.parse().expect("RATE"));

    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).expect("socket");
    let _ = socket.set_recv_buffer_size(8 << 20);
    let _ = socket.set_send_buffer_size(8 << 20);
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().expect("address").into())
        .expect("bind");
    let socket: UdpSocket = socket.into();
    socket.set_nonblocking(true).expect("nonblocking");
    socket.connect(target).expect("connect");
    let local = socket.local_addr().expect("local address");

    // Slot s holds the call whose number is s modulo the window; its
    // send time, or None when free.
    let mut open: Vec<Option<(u64, Instant)>> = vec![None; window];
    let mut free: Vec<usize> = (0..window).rev().collect();
    let mut next_call: u64 = 0;
    let (mut ok, mut other, mut lost) = (0u64, 0u64, 0u64);
    let mut latencies_us: Vec<u32> = Vec::with_capacity(1 << 20);
    let mut message = Vec::with_capacity(1024);
    let mut buffer = [0u8; 4096];
    let started = Instant::now();
    let mut last_sweep = started;
    while started.elapsed() < duration {
        let due = rate.map(|r| r * started.elapsed().as_secs_f64());
        while let Some(slot) = free.pop() {
            if due.is_some_and(|due| next_call as f64 >= due) {
                free.push(slot);
                break;
            }
            let call = next_call;
            next_call += 1;
            // Call numbers are spread so that each maps to its slot.
            let id = call * window as u64 + slot as u64;
            let (caller, x) = &calls[(call as usize * 7919 + slot) % calls.len()];
            write_request(&mut message, "INVITE", x, caller, id, local);
            if socket.send(&message).is_err() {
                free.push(slot);
                break;
            }
            open[slot] = Some((id, Instant::now()));
        }
        while let Ok(n) = socket.recv(&mut buffer) {
            let answer = &buffer[..n];
            let Some(id) = call_id(answer) else { continue };
            let slot = (id % window as u64) as usize;
            let Some((open_id, sent)) = open[slot] else {
                continue;
            };
            if open_id != id {
                continue;
            }
            let elapsed = sent.elapsed();
            latencies_us.push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX));
            if answer.starts_with(b"SIP/2.0 302 ") {
                ok += 1;
            } else {
                other += 1;
            }
            let (caller, x) = &calls[((id / window as u64) as usize * 7919 + slot) % calls.len()];
            write_request(&mut message, "ACK", x, caller, id, local);
            let _ = socket.send(&message);
            open[slot] = None;
            free.push(slot);
        }
        if last_sweep.elapsed() > Duration::from_millis(100) {
            last_sweep = Instant::now();
            for (slot, entry) in open.iter_mut().enumerate() {
                if entry.is_some_and(|(_, sent)| sent.elapsed() > LOST_AFTER) {
                    *entry = None;
                    free.push(slot);
                    lost += 1;
                }
            }
        }
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    latencies_us.sort_unstable();
    let pick = |q: f64| {
        latencies_us
            .get(
                ((latencies_us.len() as f64 * q) as usize)
                    .min(latencies_us.len().saturating_sub(1)),
            )
            .copied()
            .unwrap_or(0)
    };
    println!(
        "{:.0} {ok} {other} {lost} {} {}",
        (ok + other) as f64 / elapsed_s,
        pick(0.5),
        pick(0.99)
    );
}

/// Writes an INVITE or its ACK (same branch, CSeq 1).
fn write_request(
    out: &mut Vec<u8>,
    method: &str,
    x: &str,
    caller: &str,
    id: u64,
    local: SocketAddr,
) {
    use std::io::Write;
    out.clear();
    let _ = write!(
        out,
        "{method} sip:{x}@x700.example SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{id}\r\n\
         From: <sip:{caller}@{local}>;tag=t{id}\r\nTo: <sip:{x}@x700.example>\r\nCall-ID: {id}\r\n\
         CSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
}

/// The numeric Call-ID of an answer.
fn call_id(answer: &[u8]) -> Option<u64> {
    let at = answer.windows(11).position(|w| w == b"\r\nCall-ID: ")? + 11;
    let digits = answer[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&answer[at..at + digits])
        .ok()?
        .parse()
        .ok()
}
