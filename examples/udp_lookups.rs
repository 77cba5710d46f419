//! Closed-loop UDP lookup load, for `perf/io-backends.sh` (`x700 bench`
//! speaks TCP only). SOCKETS sockets, each with one datagram of
//! IN_FLIGHT lookups in flight at a time (the UDP image of TCP's
//! "connections x in flight"): a socket sends its next datagram when the
//! answer to the last one is in, or after 200 ms (counted lost). Lookups
//! ask for bindings 0..BINDINGS of `x700 bench --preload` (seed 1, AXB),
//! uniformly. One thread; prints one JSON line.
//!
//! Usage: cargo run --release --example udp_lookups -- ADDR SOCKETS
//!        IN_FLIGHT BINDINGS DURATION_S [WARMUP_S]

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use std::time::{Duration, Instant};
use x700::bench::params::ModeMix;
use x700::bench::workload::Catalog;
use x700::protocol::codec;
use x700::protocol::frame::next_frame;
use x700::protocol::status;

/// An unanswered datagram is given up after this long.
const LOST_AFTER: Duration = Duration::from_millis(200);

struct Flow {
    socket: UdpSocket,
    sent_at: Instant,
}

fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime, fields 14 and 15 of the stat line; 100 ticks a second.
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 5 {
        eprintln!("usage: udp_lookups ADDR SOCKETS IN_FLIGHT BINDINGS DURATION_S [WARMUP_S]");
        std::process::exit(2);
    }
    let number = |i: usize| -> u64 { args[i].parse().expect("a number") };
    let server: std::net::SocketAddr = args[0].parse().expect("ADDR");
    let (sockets, in_flight, bindings) = (number(1), number(2), number(3).max(1));
    let duration = Duration::from_secs(number(4));
    let warmup = Duration::from_secs(args.get(5).map_or(1, |w| w.parse().expect("WARMUP_S")));
    let catalog = Catalog::new(1, ModeMix::AXB, 0);
    let mut poll = Poll::new().expect("poll");
    let mut flows: Vec<Flow> = Vec::new();
    for i in 0..sockets {
        let mut socket = UdpSocket::bind("127.0.0.1:0".parse().expect("address")).expect("bind");
        socket.connect(server).expect("connect");
        poll.registry()
            .register(&mut socket, Token(i as usize), Interest::READABLE)
            .expect("register");
        flows.push(Flow {
            socket,
            sent_at: Instant::now(),
        });
    }
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut datagram = Vec::new();
    let mut send = |flow: &mut Flow, datagram: &mut Vec<u8>| {
        datagram.clear();
        for id in 0..in_flight {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let binding = catalog.loaded(state % bindings);
            let (query, _) = catalog.hit(&binding, state >> 32);
            codec::encode_lookup(datagram, u32::try_from(id).unwrap_or(0), &query, true);
        }
        let _ = flow.socket.send(datagram);
        flow.sent_at = Instant::now();
    };
    for flow in &mut flows {
        send(flow, &mut datagram);
    }
    let started = Instant::now();
    let (mut measuring, mut measure_start, mut cpu_start) = (false, started, 0.0);
    let (mut lookups, mut ok, mut datagrams, mut lost) = (0u64, 0u64, 0u64, 0u64);
    let mut events = Events::with_capacity(1024);
    let mut buffer = vec![0u8; 65_536];
    loop {
        let now = Instant::now();
        if !measuring && now >= started + warmup {
            measuring = true;
            measure_start = now;
            cpu_start = cpu_s();
            (lookups, ok, datagrams, lost) = (0, 0, 0, 0);
        }
        if measuring && now >= measure_start + duration {
            break;
        }
        let _ = poll.poll(&mut events, Some(Duration::from_millis(10)));
        for event in &events {
            let flow = &mut flows[event.token().0];
            while let Ok(length) = flow.socket.recv(&mut buffer) {
                let mut rest = &buffer[..length];
                while let Ok(Some((header, bytes))) = next_frame(rest, 65_536) {
                    lookups += 1;
                    ok += u64::from(header.status == status::OK);
                    rest = &rest[bytes.len()..];
                }
                datagrams += 1;
                send(flow, &mut datagram);
            }
        }
        let now = Instant::now();
        for flow in &mut flows {
            if now.duration_since(flow.sent_at) > LOST_AFTER {
                lost += 1;
                send(flow, &mut datagram);
            }
        }
    }
    let seconds = measure_start.elapsed().as_secs_f64();
    let cpu = cpu_s() - cpu_start;
    println!(
        "{{\"lookups_per_s\":{:.0},\"datagrams_per_s\":{:.0},\"ok_share\":{:.4},\"lost_datagrams\":{lost},\"client_cpu_cores\":{:.3}}}",
        lookups as f64 / seconds,
        datagrams as f64 / seconds,
        ok as f64 / lookups.max(1) as f64,
        cpu / seconds
    );
}
