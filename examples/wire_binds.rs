//! A small closed-loop bind load for checking the durable write path by
//! hand: CONNECTIONS connections, DEPTH binds in flight on each, fresh
//! synthetic AXB bindings (never conflicting) for SECONDS; prints one JSON
//! line with binds/s and latency percentiles (microseconds, from send to
//! answer). `x700 bench` is the tool for recorded figures.
//!
//! ```text
//! wire_binds ADDR CONNECTIONS DEPTH SECONDS [FIRST]
//! ```

use std::time::{Duration, Instant};
use x700::binding::{Direction, Mode, OrderRef};
use x700::client::Client;
use x700::number::{parse_real, parse_virtual, XPolicy};
use x700::protocol::codec::{self, BindBody};
use x700::protocol::{status, Role};

fn body(g: u64) -> BindBody {
    BindBody {
        mode: Mode::Axb,
        x: parse_virtual(&format!("700{g:012}"), XPolicy::default()).expect("x"),
        a: parse_real(&format!("138{:08}", g % 100_000_000)).expect("a"),
        b: parse_real(&format!("139{:08}", g % 100_000_000)).expect("b"),
        tenant: 1,
        order: OrderRef::new(b"bench").expect("order"),
        ttl_s: 3600,
        direction: Direction::Both,
        recording: false,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let address = args.get(1).expect("ADDR").clone();
    let connections: u64 = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(4);
    let depth: u32 = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(64);
    let seconds: u64 = args.get(4).and_then(|v| v.parse().ok()).unwrap_or(5);
    let first: u64 = args.get(5).and_then(|v| v.parse().ok()).unwrap_or(1);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let threads: Vec<_> = (0..connections)
        .map(|c| {
            let address = address.clone();
            std::thread::spawn(move || {
                let mut client =
                    Client::connect(address.as_str(), Role::Platform, "").expect("connect");
                let base = first + c * 1_000_000_000;
                let mut sent_at = vec![Instant::now(); depth as usize + 1];
                let mut latencies = Vec::new();
                let (mut ok, mut failed, mut next) = (0u64, 0u64, 0u32);
                let mut out = Vec::new();
                let mut in_flight = 0u32;
                let mut slot_of = std::collections::HashMap::new();
                loop {
                    out.clear();
                    while in_flight < depth && Instant::now() < deadline {
                        next += 1;
                        let slot = (next % (depth + 1)) as usize;
                        sent_at[slot] = Instant::now();
                        slot_of.insert(next, slot);
                        codec::encode_bind(&mut out, next, &body(base + u64::from(next)));
                        in_flight += 1;
                    }
                    if !out.is_empty() {
                        client.send_raw(&out).expect("send");
                    }
                    if in_flight == 0 {
                        break;
                    }
                    let (header, _) = client.read_frame().expect("answer");
                    in_flight -= 1;
                    let slot = slot_of.remove(&header.request_id).unwrap_or(0);
                    latencies.push(sent_at[slot].elapsed().as_micros() as u64);
                    if header.status == status::OK {
                        ok += 1;
                    } else {
                        failed += 1;
                    }
                }
                (ok, failed, latencies)
            })
        })
        .collect();
    let mut all = Vec::new();
    let (mut ok, mut failed) = (0, 0);
    for t in threads {
        let (o, f, l) = t.join().expect("thread");
        ok += o;
        failed += f;
        all.extend(l);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "{{\"binds_per_s\":{:.0},\"ok\":{ok},\"failed\":{failed},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{}}}",
        ok as f64 / elapsed,
        pct(0.5),
        pct(0.99),
        pct(0.999),
        all.last().copied().unwrap_or(0)
    );
}
