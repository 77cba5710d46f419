#!/usr/bin/env bash
# The DNS wire work of one ENUM query alone (decode the query, check the
# name, write a one-NAPTR answer), x700's own decoder and writer
# (src/frontend/enum_dns) against hickory-proto 0.26 (default features off,
# `std`: Message::from_vec, a response Message, to_vec), on the same 1024
# queries, interleaved, median of 5 runs, pinned to core 1. It decided the
# ENUM front-end's wire format: hickory's cost per query is a large share of
# the per-query budget the issue's target allows (2x Knot's 121,000 q/s
# per core is about 4 us per query, everything included).
#
# Builds a throwaway crate in a temporary directory (x700 by path, hickory
# from crates.io), so hickory never enters x700's own dependencies.
#
# Usage: perf/enum-wire-vs-hickory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
crate=$(mktemp -d)
trap 'rm -rf "$crate"' EXIT
mkdir "$crate/src"
cat >"$crate/Cargo.toml" <<TOML
[package]
name = "enum-wire-bench"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
x700 = { path = "$repo" }
hickory-proto = { version = "0.26", default-features = false, features = ["std"] }

[profile.release]
debug = 1
codegen-units = 4

[workspace]
TOML
cat >"$crate/src/main.rs" <<'RUST'
// Per-query cost of the DNS wire work alone: x700's own decoder and writer
// (src/frontend/enum_dns) against hickory-proto 0.26 (Message::from_vec, a
// response Message with one NAPTR record, to_vec), on the same query.
use hickory_proto::op::{Message, MessageType, OpCode};
use hickory_proto::rr::rdata::NAPTR;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::hint::black_box;
use std::time::Instant;
use x700::binding::{BindingId, LookupResult, Route};
use x700::frontend::enum_dns::{self, Ask, EnumSettings, Zone};
use x700::number::{Number, XPolicy};

fn query_bytes(i: u64) -> Vec<u8> {
    let digits = format!("{}", 700_100_000_000_000u64 + i);
    let mut name: String = digits.chars().rev().flat_map(|c| [c, '.']).collect();
    name.push_str("6.8.e164.arpa.");
    let mut q = vec![(i as u16).to_be_bytes()[0], 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    q.extend(enum_dns::settings::wire_name(&name).unwrap());
    q.extend_from_slice(&[0, 35, 0, 1]);
    q
}

fn route() -> Route {
    Route {
        callee: Number::from_digits(b"13800138000"),
        display: Number::from_digits(b"700123456789012"),
        recording: false,
        binding_id: BindingId(1),
        expires_in_s: 300,
    }
}

fn ours(zone: &Zone, queries: &[Vec<u8>], rounds: usize) -> (f64, usize) {
    let mut out = Vec::with_capacity(4096);
    let mut bytes = 0;
    let started = Instant::now();
    for _ in 0..rounds {
        for q in queries {
            let question = enum_dns::decode(black_box(q)).unwrap();
            let Ask::Number { empty_on_reject, .. } = zone.ask(&question) else { panic!() };
            let answer = Zone::answer_of(Ok(LookupResult::Route(route())), empty_on_reject);
            out.clear();
            zone.write_answer(&question, answer, 512, &mut out);
            bytes += black_box(&out).len();
        }
    }
    (started.elapsed().as_nanos() as f64 / (rounds * queries.len()) as f64, bytes)
}

fn hickory(suffix: &Name, queries: &[Vec<u8>], rounds: usize) -> (f64, usize) {
    let mut bytes = 0;
    let started = Instant::now();
    for _ in 0..rounds {
        for q in queries {
            let request = Message::from_vec(black_box(q)).unwrap();
            let query = &request.queries[0];
            assert!(suffix.zone_of(query.name()) && query.query_type() == RecordType::NAPTR);
            let digits: usize = query.name().iter().count() - 4;
            assert_eq!(digits, 15);
            let mut response = Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
            response.metadata.authoritative = true;
            response.metadata.recursion_desired = request.metadata.recursion_desired;
            response.queries = request.queries.clone();
            let regexp = format!("!^.*$!sip:{}@localhost!", route().callee.digits());
            response.answers.push(Record::from_rdata(
                query.name().clone(),
                0,
                RData::NAPTR(NAPTR::new(
                    100,
                    10,
                    b"u".to_vec().into_boxed_slice(),
                    b"E2U+sip".to_vec().into_boxed_slice(),
                    regexp.into_bytes().into_boxed_slice(),
                    Name::root(),
                )),
            ));
            let out = response.to_vec().unwrap();
            bytes += black_box(&out).len();
        }
    }
    (started.elapsed().as_nanos() as f64 / (rounds * queries.len()) as f64, bytes)
}

fn main() {
    let zone = EnumSettings::default().zone(XPolicy::default()).unwrap();
    let suffix = Name::from_ascii("6.8.e164.arpa.").unwrap();
    let queries: Vec<Vec<u8>> = (0..1024).map(query_bytes).collect();
    let rounds = 200;
    let (_, ours_bytes) = ours(&zone, &queries[..1], 1);
    let (_, hickory_bytes) = hickory(&suffix, &queries[..1], 1);
    println!("answer bytes: x700 {ours_bytes}, hickory {hickory_bytes}");
    let mut ours_ns = Vec::new();
    let mut hickory_ns = Vec::new();
    for _ in 0..5 {
        ours_ns.push(ours(&zone, &queries, rounds).0);
        hickory_ns.push(hickory(&suffix, &queries, rounds).0);
    }
    ours_ns.sort_by(f64::total_cmp);
    hickory_ns.sort_by(f64::total_cmp);
    let (o, h) = (ours_ns[2], hickory_ns[2]);
    println!("per query, decode + answer, median of 5 interleaved runs of {} queries:", rounds * queries.len());
    println!("  x700 enum_dns: {o:.0} ns");
    println!("  hickory-proto 0.26 (default features off, std): {h:.0} ns");
    println!("  ratio hickory/ours: {:.1}", h / o);
}
RUST
target_dir=${CARGO_TARGET_DIR:-$repo/target}
(cd "$crate" && CARGO_TARGET_DIR=$target_dir cargo build --release --quiet)
taskset -c 1 "$target_dir/release/enum-wire-bench"
