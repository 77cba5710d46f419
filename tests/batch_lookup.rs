//! Proves that the batch lookup (`Store::lookup_batch`, pipelined over
//! candidates found before their records are read) answers every query as
//! the one-at-a-time `Store::lookup` does, at a size where index tag
//! collisions are common (tens of thousands of keys, 8-bit tags): AXB hits
//! from A (X's representative) and from B, pools of several pairs on one X,
//! AXN owners and callers, AXE extensions, callers who are no party,
//! unknown X, expired bindings and one-way directions.

use std::sync::Arc;
use x700::binding::{BindRequest, Direction, LookupQuery, LookupResult, OrderRef, Parties, Reject};
use x700::number::Number;
use x700::store::clock::FakeClock;
use x700::store::Store;
use x700::synth::{splitmix64, Synthetic};

/// AXB bindings with an X each, and the pool bindings (3 pairs per X).
const SINGLE: u64 = 30_000;
const POOLED: u64 = 15_000;
/// AXN and AXE bindings, each on an X of its own.
const OTHERS: u64 = 3_000;

fn number(prefix: &str, value: u64, width: usize) -> Number {
    Number::from_digits(format!("{prefix}{value:0width$}").as_bytes())
}

fn request(x: Number, parties: Parties, ttl_s: u32, direction: Direction) -> BindRequest {
    BindRequest {
        x,
        parties,
        tenant: 1,
        order: OrderRef::new(b"batch-test").expect("order"),
        ttl_s,
        direction,
        recording: false,
    }
}

#[test]
fn batch_lookups_answer_as_single_lookups_do() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let clock = FakeClock::new(1_800_000_000);
    let mut store = Store::create(dir.path(), 2, Arc::new(clock.clone())).expect("store");
    let single = Synthetic { seed: 11 };
    let pooled = Synthetic { seed: 12 };
    let directions = [Direction::Both, Direction::AToB, Direction::BToA];
    for i in 0..SINGLE {
        let mut bind = single.request(i, 600 + u32::try_from(i % 3).expect("small") * 600);
        bind.direction = directions[usize::try_from(i % 3).expect("small")];
        store.bind(&bind).expect("bind AXB");
    }
    for i in 0..POOLED {
        store
            .bind(&pooled.pooled_request(i, 3_600, 3))
            .expect("bind pooled AXB");
    }
    for i in 0..OTHERS {
        let owner = number("139", i, 8);
        let axn_x = number("7009", i, 11);
        let default_callee = (i % 2 == 0).then(|| number("137", i, 8));
        store
            .bind(&request(
                axn_x,
                Parties::Axn {
                    a: owner,
                    default_callee,
                },
                900,
                Direction::Both,
            ))
            .expect("bind AXN");
        let axe_x = number("7008", i, 11);
        let extension =
            x700::number::parse_extension(&format!("{:04}", i % 10_000)).expect("extension");
        store
            .bind(&request(
                axe_x,
                Parties::Axe {
                    a: owner,
                    extension,
                },
                900,
                Direction::Both,
            ))
            .expect("bind AXE");
    }
    // A third of the single bindings (ttl 600 s) expire.
    clock.advance(601);

    let stranger = number("136", 4_242, 8);
    let mut state = 5;
    let mut queries = Vec::new();
    for _ in 0..60_000 {
        let r = splitmix64(&mut state);
        let i = r % SINGLE;
        queries.push(match (r >> 32) % 10 {
            0..=3 => single.hit(i, r >> 40),
            4 => LookupQuery {
                caller: stranger,
                ..single.hit(i, 0)
            },
            5 => {
                let pair = pooled.pooled(i % POOLED, 3);
                LookupQuery {
                    caller: if r & 1 == 0 { pair.a } else { pair.b },
                    x: pair.x,
                    extension: Number::NONE,
                }
            }
            6 => single.miss(i),
            7 => LookupQuery {
                caller: if r & 1 == 0 {
                    number("139", i % OTHERS, 8)
                } else {
                    stranger
                },
                x: number("7009", i % OTHERS, 11),
                extension: Number::NONE,
            },
            _ => LookupQuery {
                caller: if r & 1 == 0 {
                    number("139", i % OTHERS, 8)
                } else {
                    stranger
                },
                x: number("7008", i % OTHERS, 11),
                extension: x700::number::parse_extension(&format!(
                    "{:04}",
                    (i + (r >> 50) % 2) % OTHERS % 10_000
                ))
                .expect("extension"),
            },
        });
    }
    let mut answers = vec![LookupResult::Reject(Reject::BadNumber); queries.len()];
    for chunk in [1usize, 7, 64, 256] {
        for (queries, answers) in queries.chunks(chunk).zip(answers.chunks_mut(chunk)) {
            store.lookup_batch(queries, answers);
        }
        let mut routed = 0;
        for (query, answer) in queries.iter().zip(&answers) {
            assert_eq!(*answer, store.lookup(query), "batch of {chunk}: {query:?}");
            routed += usize::from(matches!(answer, LookupResult::Route(_)));
        }
        // The mix routes some and rejects some, for every reason above.
        assert!(
            routed > queries.len() / 4 && routed < queries.len(),
            "{routed}"
        );
    }
}
