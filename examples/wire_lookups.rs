//! A simple pipelined load client for the Step-2 wire benchmark: the same
//! synthetic lookups against x700 (binary protocol) or Redis (RESP GET of
//! one plain key per (X, caller)), with the same connections and pipeline
//! depth, so the two servers answer the very same questions.
//!
//! ```text
//! wire_lookups x700  ADDR N CONNECTIONS DEPTH SECONDS
//! wire_lookups redis ADDR N CONNECTIONS DEPTH SECONDS
//! wire_lookups redis-load ADDR N          (two keys per binding: x700:X:A -> B, x700:X:B -> A)
//! ```
//! Prints one JSON line. N is the number of bindings loaded with seed 1
//! (`x700 load --bindings N`). Every answer is checked: a miss counts as a
//! failure, so a figure never hides wrong answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use x700::binding::{LookupQuery, LookupResult};
use x700::client::Client;
use x700::protocol::Role;
use x700::synth::{splitmix64, Synthetic};

/// Queries each connection cycles through (precomputed).
const QUERIES_PER_CONNECTION: usize = 1 << 18;

fn queries(n: u64, seed: u64) -> Vec<LookupQuery> {
    let synthetic = Synthetic { seed: 1 };
    let mut state = seed;
    (0..QUERIES_PER_CONNECTION)
        .map(|_| {
            let r = splitmix64(&mut state);
            synthetic.hit(r % n, r >> 63)
        })
        .collect()
}

/// Process CPU seconds (user + system) from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn key(query: &LookupQuery) -> String {
    format!("x700:{}:{}", query.x.digits(), query.caller.digits())
}

/// One x700 connection: pipelined lookups for `seconds`; (ok, failed).
fn run_x700(address: &str, queries: &[LookupQuery], depth: usize, deadline: Instant) -> (u64, u64) {
    let mut client = Client::connect(address, Role::Switch, "").expect("connect to x700");
    let mut answers = Vec::new();
    let (mut ok, mut failed) = (0, 0);
    let chunk = (depth * 16).min(queries.len());
    let mut offset = 0;
    while Instant::now() < deadline {
        let batch = &queries[offset..offset + chunk];
        offset = (offset + chunk) % (queries.len() - chunk + 1);
        client
            .lookup_pipelined(batch, depth, &mut answers)
            .expect("lookups");
        for answer in &answers {
            if matches!(answer, Ok(LookupResult::Route(_))) {
                ok += 1;
            } else {
                failed += 1;
            }
        }
    }
    (ok, failed)
}

/// One Redis connection: pipelined GETs, `depth` in flight; (ok, failed).
fn run_redis(
    address: &str,
    queries: &[LookupQuery],
    depth: usize,
    deadline: Instant,
) -> (u64, u64) {
    let stream = TcpStream::connect(address).expect("connect to redis");
    stream.set_nodelay(true).expect("nodelay");
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::with_capacity(1 << 16, stream);
    let commands: Vec<Vec<u8>> = queries
        .iter()
        .map(|q| {
            let key = key(q);
            format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).into_bytes()
        })
        .collect();
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut next = 0;
    let mut out = Vec::with_capacity(depth * 64);
    let mut line = Vec::new();
    while Instant::now() < deadline {
        out.clear();
        for _ in 0..depth {
            out.extend_from_slice(&commands[next]);
            next = (next + 1) % commands.len();
        }
        writer.write_all(&out).expect("write");
        for _ in 0..depth {
            line.clear();
            reader.read_until(b'\n', &mut line).expect("read");
            if line.first() == Some(&b'$') && line.get(1) != Some(&b'-') {
                let length: usize = std::str::from_utf8(&line[1..line.len() - 2])
                    .unwrap_or("0")
                    .parse()
                    .unwrap_or(0);
                let mut value = vec![0u8; length + 2];
                reader.read_exact(&mut value).expect("read value");
                ok += 1;
            } else {
                failed += 1;
            }
        }
    }
    (ok, failed)
}

/// Loads the same bindings into Redis as two plain keys each.
fn redis_load(address: &str, n: u64) {
    let stream = TcpStream::connect(address).expect("connect to redis");
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::with_capacity(1 << 16, stream);
    let synthetic = Synthetic { seed: 1 };
    let mut out = Vec::with_capacity(1 << 20);
    let mut pending = 0usize;
    let mut line = Vec::new();
    let set = |out: &mut Vec<u8>, key: String, value: String| {
        out.extend_from_slice(
            format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
                key.len(),
                value.len()
            )
            .as_bytes(),
        );
    };
    for i in 0..n {
        let b = synthetic.binding(i);
        set(
            &mut out,
            format!("x700:{}:{}", b.x.digits(), b.a.digits()),
            b.b.digits(),
        );
        set(
            &mut out,
            format!("x700:{}:{}", b.x.digits(), b.b.digits()),
            b.a.digits(),
        );
        pending += 2;
        if pending >= 2000 || i + 1 == n {
            writer.write_all(&out).expect("write");
            out.clear();
            for _ in 0..pending {
                line.clear();
                reader.read_until(b'\n', &mut line).expect("read");
            }
            pending = 0;
        }
        if i % 1_000_000 == 0 {
            eprintln!("redis-load: {i}/{n}");
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map_or("x700", String::as_str).to_string();
    let address = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:7700".into());
    let n: u64 = args
        .get(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    if mode == "redis-load" {
        redis_load(&address, n);
        return;
    }
    let connections: usize = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(4);
    let depth: usize = args.get(4).and_then(|v| v.parse().ok()).unwrap_or(64);
    let seconds: u64 = args.get(5).and_then(|v| v.parse().ok()).unwrap_or(10);
    let started = Instant::now();
    let cpu_started = cpu_seconds();
    let deadline = started + Duration::from_secs(seconds);
    let handles: Vec<_> = (0..connections)
        .map(|c| {
            let address = address.clone();
            let mode = mode.clone();
            std::thread::spawn(move || {
                let queries = queries(n, 7 + c as u64);
                if mode == "redis" {
                    run_redis(&address, &queries, depth, deadline)
                } else {
                    run_x700(&address, &queries, depth, deadline)
                }
            })
        })
        .collect();
    let (mut ok, mut failed) = (0, 0);
    for handle in handles {
        let (o, f) = handle.join().expect("connection thread");
        ok += o;
        failed += f;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_started;
    println!(
        "{{\"target\":\"{mode}\",\"bindings\":{n},\"connections\":{connections},\"depth\":{depth},\"seconds\":{elapsed:.2},\"ok\":{ok},\"failed\":{failed},\"lookups_per_s\":{:.0},\"client_cpu_s\":{cpu:.2}}}",
        (ok + failed) as f64 / elapsed
    );
}
