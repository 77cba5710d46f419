//! Binds per second with automatic X selection (BIND_AXB_AUTO) against a
//! running node, beside plain BIND_AXB with X named, in the same run and
//! the same shape: CONNS connections, DEPTH binds in flight on each,
//! couriers with heavy-tailed loads and fresh customers, all in one area of
//! one tenant's pool. Prints one JSON object (rates, ratio, client CPU).
//!
//! `cargo run --release --example auto_bind_bench -- ADDR BINDS CONNS DEPTH`
//! (perf/auto-bind.sh starts the node and runs it).

use std::time::Instant;
use x700::binding::{Direction, Mode, OrderRef};
use x700::client::Client;
use x700::number::Number;
use x700::protocol::codec::auto::{encode_auto_bind, AutoBindBody, Reach};
use x700::protocol::codec::control::{ControlRequest, PutMode};
use x700::protocol::codec::encode_bind;
use x700::protocol::{status, BindBody, Role};

const TENANT: u32 = 77;
const FIRST: u64 = 700_555_000_000_000;
const NUMBERS: u64 = 10_000_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let address = args
        .get(1)
        .map_or("127.0.0.1:7700", String::as_str)
        .to_string();
    let binds: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let conns: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(4);
    let depth: u64 = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(64);
    let mut admin = Client::connect(address.as_str(), Role::Admin, "").expect("admin session");
    let put = ControlRequest::TenantPut {
        tenant: TENANT,
        mode: PutMode::Upsert,
        max_live: 0,
        binds_per_s: 0,
        lookups_per_s: 0,
        x_lookups_per_s: 0,
        token: b"",
        hashed: false,
    };
    assert_eq!(admin.control(&put).expect("tenant").0, status::OK);
    let pool = ControlRequest::PoolAdd {
        tenant: TENANT,
        first: FIRST,
        last: FIRST + NUMBERS - 1,
        area: *b"0571",
        province: 0,
    };
    let _ = admin.control(&pool).expect("pool");
    let auto = run(&address, binds, conns, depth, true, 0);
    let named = run(&address, binds, conns, depth, false, binds);
    let ratio = auto.0 / named.0;
    println!(
        "{}",
        serde_json::json!({
            "binds": binds, "connections": conns, "depth": depth,
            "auto_binds_per_s": auto.0.round(), "auto_refused": auto.1,
            "named_binds_per_s": named.0.round(), "named_refused": named.1,
            "auto_over_named": (ratio * 1000.0).round() / 1000.0,
            "client_cpu_s": client_cpu_s(),
        })
    );
}

/// Runs `binds` binds: (binds per second, refused).
fn run(address: &str, binds: u64, conns: u64, depth: u64, auto: bool, offset: u64) -> (f64, u64) {
    let started = Instant::now();
    let refused: u64 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..conns)
            .map(|c| {
                scope.spawn(move || {
                    let mut client = Client::connect(address, Role::Platform, "").expect("session");
                    let mut refused = 0;
                    let mine: Vec<u64> = (0..binds).filter(|i| i % conns == c).collect();
                    for chunk in mine.chunks(usize::try_from(depth).unwrap_or(64)) {
                        let mut out = Vec::new();
                        for &i in chunk {
                            let i = i + offset;
                            let body = bind_body(i, binds + offset, auto);
                            let id = u32::try_from(i % u64::from(u32::MAX)).unwrap_or(0);
                            if auto {
                                let request = AutoBindBody {
                                    bind: body,
                                    area: *b"0571",
                                    reach: Reach::Area,
                                };
                                encode_auto_bind(&mut out, id, &request);
                            } else {
                                encode_bind(&mut out, id, &body);
                            }
                        }
                        client.send_raw(&out).expect("send");
                        for _ in chunk {
                            let (header, _) = client.read_frame().expect("answer");
                            if header.status != status::OK {
                                refused += 1;
                            }
                        }
                    }
                    refused
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).sum()
    });
    #[allow(clippy::cast_precision_loss)]
    let rate = binds as f64 / started.elapsed().as_secs_f64();
    (rate, refused)
}

/// Couriers: one for every `ORDERS_PER_COURIER` binds of a run, so a
/// courier holds 1 to about 50 live orders (heavy-tailed), as the issue's
/// shape says.
const ORDERS_PER_COURIER: u64 = 10;

/// Bind `i` of a run of `binds`: a courier (heavy-tailed), a fresh
/// customer, a 10-minute order.
fn bind_body(i: u64, binds: u64, auto: bool) -> BindBody {
    let couriers = (binds / ORDERS_PER_COURIER).max(1);
    let courier = heavy_tailed(i, couriers);
    let customer = 13_000_000_000 + i;
    let x = if auto {
        Number::NONE
    } else {
        x700::pool::x_number(FIRST + (i % NUMBERS))
    };
    BindBody {
        mode: Mode::Axb,
        x,
        a: Number::from_digits(customer.to_string().as_bytes()),
        b: Number::from_digits((15_000_000_000 + courier).to_string().as_bytes()),
        tenant: TENANT,
        ttl_s: 600,
        direction: Direction::Both,
        recording: false,
        order: OrderRef::new(format!("o{i}").as_bytes()).expect("order"),
    }
}

/// A courier index in 0..n: a mix of uniform picks and a Pareto-like tail
/// towards the first couriers, so most hold a few orders and some up to
/// about five times the mean.
fn heavy_tailed(i: u64, n: u64) -> u64 {
    let mut h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^= h >> 29;
    let busy = (n / 10).max(1);
    if h.is_multiple_of(2) {
        (h >> 8) % n
    } else {
        (h >> 8) % busy
    }
}

fn client_cpu_s() -> f64 {
    let (user_us, system_us) = x700::sys::process_cpu_us();
    #[allow(clippy::cast_precision_loss)]
    let seconds = (user_us + system_us) as f64 / 1e6;
    (seconds * 100.0).round() / 100.0
}
