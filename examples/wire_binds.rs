//! A small bind load for the durable write path, side by side with Redis:
//! CONNECTIONS connections, DEPTH binds in flight on each (closed loop), or
//! RATE binds per second over all connections (open loop: each request has
//! an intended send time on a fixed schedule and its latency counts from
//! then, so a stall shows in the tail). Every bind is a fresh synthetic AXB
//! binding (never a conflict); against Redis each bind is one `SET` of the
//! same key and value a Redis-based platform would store. Prints one JSON
//! line: binds/s, ok and failed counts, latency percentiles in
//! microseconds.
//!
//! ```text
//! wire_binds x700  ADDR CONNECTIONS DEPTH SECONDS [RATE] [FIRST]
//! wire_binds redis ADDR CONNECTIONS DEPTH SECONDS [RATE] [FIRST]
//! ```

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use x700::binding::{Direction, Mode, OrderRef};
use x700::client::Client;
use x700::number::{parse_real, parse_virtual, XPolicy};
use x700::protocol::codec::{self, BindBody};
use x700::protocol::{status, Role};

fn body(g: u64) -> BindBody {
    BindBody {
        mode: Mode::Axb,
        x: parse_virtual(
            &format!("700{:012}", g % 1_000_000_000_000),
            XPolicy::default(),
        )
        .expect("x"),
        a: parse_real(&format!("138{:08}", g % 100_000_000)).expect("a"),
        b: parse_real(&format!("139{:08}", g % 100_000_000)).expect("b"),
        tenant: 1,
        order: OrderRef::new(b"bench").expect("order"),
        ttl_s: 3600,
        direction: Direction::Both,
        recording: false,
    }
}

/// The Redis command for bind `g`: one key per (X, A) holding B and the
/// binding's fields, as a Redis-based platform stores it.
fn redis_set(out: &mut Vec<u8>, g: u64) {
    let key = format!(
        "x700:700{:012}:138{:08}",
        g % 1_000_000_000_000,
        g % 100_000_000
    );
    let value = format!("139{:08}|1|bench|3600|both|0", g % 100_000_000);
    let _ = write!(
        out,
        "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
        key.len(),
        value.len()
    );
}

struct Outcome {
    ok: u64,
    failed: u64,
    latencies_us: Vec<u64>,
    behind: u64,
}

enum Link {
    X700(Client),
    Redis(BufReader<TcpStream>, TcpStream),
}

impl Link {
    fn send(&mut self, g: u64, request_id: u32, out: &mut Vec<u8>) {
        match self {
            Link::X700(_) => codec::encode_bind(out, request_id, &body(g)),
            Link::Redis(..) => redis_set(out, g),
        }
    }

    fn flush(&mut self, out: &[u8]) {
        match self {
            Link::X700(client) => client.send_raw(out).expect("send"),
            Link::Redis(_, stream) => stream.write_all(out).expect("send"),
        }
    }

    /// The next answer: (request id, or None for Redis's in-order answers; ok).
    fn answer(&mut self) -> (Option<u32>, bool) {
        match self {
            Link::X700(client) => {
                let (header, _) = client.read_frame().expect("answer");
                (Some(header.request_id), header.status == status::OK)
            }
            Link::Redis(reader, _) => {
                let mut line = String::new();
                reader.read_line(&mut line).expect("answer");
                (None, line.starts_with("+OK"))
            }
        }
    }
}

fn connect(target: &str, address: &str) -> Link {
    if target == "redis" {
        let stream = TcpStream::connect(address).expect("connect to redis");
        stream.set_nodelay(true).expect("nodelay");
        Link::Redis(BufReader::new(stream.try_clone().expect("clone")), stream)
    } else {
        Link::X700(Client::connect(address, Role::Platform, "").expect("connect to x700"))
    }
}

fn run(
    target: &str,
    address: &str,
    first: u64,
    depth: u32,
    interval: Option<Duration>,
    deadline: Instant,
) -> Outcome {
    let mut link = connect(target, address);
    let mut out = Vec::with_capacity(1 << 16);
    let mut sent_at = std::collections::VecDeque::new();
    let mut by_id = std::collections::HashMap::new();
    let mut outcome = Outcome {
        ok: 0,
        failed: 0,
        latencies_us: Vec::new(),
        behind: 0,
    };
    let started = Instant::now();
    let mut next = 0u64;
    let mut in_flight = 0u32;
    loop {
        out.clear();
        let now = Instant::now();
        while in_flight < depth && now < deadline {
            // Open loop: the request's intended time on the schedule.
            let intended = match interval {
                Some(step) => {
                    let at = started + step * u32::try_from(next).unwrap_or(u32::MAX);
                    if at > now {
                        break;
                    }
                    at
                }
                None => now,
            };
            next += 1;
            let request_id = u32::try_from(next % u64::from(u32::MAX)).unwrap_or(1);
            link.send(first + next, request_id, &mut out);
            match link {
                Link::X700(_) => {
                    by_id.insert(request_id, intended);
                }
                Link::Redis(..) => sent_at.push_back(intended),
            }
            in_flight += 1;
        }
        if interval.is_some() && in_flight >= depth {
            outcome.behind += 1;
        }
        if !out.is_empty() {
            link.flush(&out);
        }
        if in_flight == 0 {
            if Instant::now() >= deadline {
                break;
            }
            if let Some(step) = interval {
                std::thread::sleep(step.min(Duration::from_micros(200)));
            }
            continue;
        }
        let (id, ok) = link.answer();
        in_flight -= 1;
        let intended = match id {
            Some(id) => by_id.remove(&id),
            None => sent_at.pop_front(),
        };
        if let Some(at) = intended {
            outcome
                .latencies_us
                .push(u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX));
        }
        if ok {
            outcome.ok += 1;
        } else {
            outcome.failed += 1;
        }
    }
    outcome
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let target = args.get(1).cloned().unwrap_or_else(|| "x700".into());
    let address = args.get(2).expect("ADDR").clone();
    let connections: u64 = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(4);
    let depth: u32 = args.get(4).and_then(|v| v.parse().ok()).unwrap_or(64);
    let seconds: u64 = args.get(5).and_then(|v| v.parse().ok()).unwrap_or(5);
    let rate: u64 = args.get(6).and_then(|v| v.parse().ok()).unwrap_or(0);
    let first: u64 = args.get(7).and_then(|v| v.parse().ok()).unwrap_or(1);
    let interval = (rate > 0).then(|| Duration::from_secs_f64(connections as f64 / rate as f64));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let threads: Vec<_> = (0..connections)
        .map(|c| {
            let (target, address) = (target.clone(), address.clone());
            std::thread::spawn(move || {
                run(
                    &target,
                    &address,
                    first + c * 1_000_000_000,
                    depth,
                    interval,
                    deadline,
                )
            })
        })
        .collect();
    let (mut ok, mut failed, mut behind) = (0, 0, 0);
    let mut all = Vec::new();
    for thread in threads {
        let outcome = thread.join().expect("load thread");
        ok += outcome.ok;
        failed += outcome.failed;
        behind += outcome.behind;
        all.extend(outcome.latencies_us);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "{{\"target\":\"{target}\",\"connections\":{connections},\"depth\":{depth},\"rate_target_per_s\":{rate},\"binds_per_s\":{:.0},\"ok\":{ok},\"failed\":{failed},\"window_full_events\":{behind},\"latency_us\":{{\"p50\":{},\"p99\":{},\"p999\":{},\"max\":{}}}}}",
        ok as f64 / elapsed,
        pct(0.5),
        pct(0.99),
        pct(0.999),
        all.last().copied().unwrap_or(0)
    );
}
