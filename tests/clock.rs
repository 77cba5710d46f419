//! The applied clock (docs/STORAGE.md section 17) keeps time from going
//! backwards or jumping whatever the proposer's clock says: write batches
//! stamped behind, far ahead and in between are applied with `apply_batch`
//! on stores in temporary directories (no server, no real time), and the
//! tests check what was reclaimed, what stayed live, the clock each shard
//! reached, that two replays agree, and that the clock survives a
//! checkpoint.

mod common;

use common::{axb, real, x};
use std::sync::Arc;
use tempfile::TempDir;
use x700::binding::{BindingId, Update};
use x700::number::Number;
use x700::protocol::codec::{self, UnbindBody};
use x700::protocol::frame::{next_frame, Header, HEADER_BYTES};
use x700::protocol::status;
use x700::replication::WriteBatch;
use x700::server::apply::{apply_batch, PartialAnswers};
use x700::store::clock::{FakeClock, STEP_MAX_S};
use x700::store::Store;
use x700::table::hash::shard_of;

/// The leader's clock when the tests start.
const T: u32 = 1_800_000_000;
/// Shards in every store here.
const SHARDS: u16 = 2;

/// A store in a temporary directory whose local clock reads `local_s`
/// (which an apply must never consult) and the next log index to apply.
struct Member {
    dir: TempDir,
    store: Store,
    next_index: u64,
}

impl Member {
    fn new(local_s: u32) -> Member {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store =
            Store::create(dir.path(), SHARDS, Arc::new(FakeClock::new(local_s))).expect("store");
        Member {
            dir,
            store,
            next_index: 1,
        }
    }

    /// Applies `batch` as the next log entry; the answers, in order.
    fn apply(&mut self, batch: &WriteBatch) -> Vec<(Header, Vec<u8>)> {
        let mut part = PartialAnswers::default();
        apply_batch(
            self.store.shard_set_mut(),
            self.next_index,
            batch,
            &mut part,
        );
        self.next_index += 1;
        let mut answers = Vec::new();
        let mut rest = &part.frames[..];
        while let Some((header, frame)) = next_frame(rest, u32::MAX).expect("answer frame") {
            answers.push((header, frame[HEADER_BYTES..].to_vec()));
            rest = &rest[frame.len()..];
        }
        answers
    }

    /// The applied clock of every shard.
    fn clocks(&self) -> Vec<u32> {
        self.store
            .shard_set()
            .owned()
            .map(x700::table::Shard::applied_now_s)
            .collect()
    }

    /// Whether binding `id` is live at the applied clock.
    fn is_live(&self, id: BindingId) -> bool {
        let now_s = self.clocks()[0];
        self.store.shard_set().query(id, now_s).is_some()
    }

    fn live_bindings(&self) -> u32 {
        self.store
            .shard_stats()
            .iter()
            .map(|s| s.counters.live_bindings)
            .sum()
    }
}

/// The `n`-th X (from `from`) that lives on `shard`; bounded search.
fn x_on_shard(shard: u16, from: u64) -> Number {
    (from..from + 1000)
        .map(x)
        .find(|&candidate| shard_of(candidate, SHARDS) == shard)
        .expect("an X on every shard within 1000 numbers")
}

/// A batch stamped `now_s` binding AXB on `x` for `ttl_s`, request id `g`.
fn bind(now_s: u32, number: Number, g: u32, ttl_s: u32) -> WriteBatch {
    let mut body = axb(
        number,
        &format!("138{g:08}"),
        &format!("139{g:08}"),
        &format!("clock-{g}"),
    );
    body.ttl_s = ttl_s;
    let mut frame = Vec::new();
    codec::encode_bind(&mut frame, g, &body);
    let mut batch = WriteBatch::new(now_s);
    assert!(batch.push(None, &frame));
    batch
}

/// The binding id of a bind answer.
fn bound(answers: &[(Header, Vec<u8>)]) -> BindingId {
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].0.status, status::OK, "bind refused");
    codec::decode_bind_answer(&answers[0].1)
        .expect("bind answer")
        .0
}

/// A batch stamped `now_s` giving binding `id` a new lifetime.
fn extend(now_s: u32, id: BindingId, ttl_s: u32) -> WriteBatch {
    let update = Update {
        ttl_s: Some(ttl_s),
        ..Update::default()
    };
    let mut frame = Vec::new();
    codec::encode_update(&mut frame, 1, id, &update);
    let mut batch = WriteBatch::new(now_s);
    assert!(batch.push(None, &frame));
    batch
}

/// Guards item 7 of step 6: a leader whose clock was an hour behind
/// applied its entries at its own time, so an UPDATE found an expired
/// binding live and gave it a new life.
#[test]
fn a_clock_an_hour_behind_neither_revives_bindings_nor_moves_time_back() {
    let mut member = Member::new(T);
    let on_0 = x_on_shard(0, 1);
    let on_1 = x_on_shard(1, 1);
    let id = bound(&member.apply(&bind(T, on_0, 1, 30)));
    // An entry for the other shard moves every shard's clock past the
    // binding's end without sweeping shard 0.
    bound(&member.apply(&bind(T + 40, on_1, 2, 600)));
    assert_eq!(member.clocks(), vec![T + 40; 2]);
    assert!(!member.is_live(id), "expired at T + 30");

    let behind_s = T + 40 - 3600;
    let answers = member.apply(&extend(behind_s, id, 7200));
    assert_ne!(
        answers[0].0.status,
        status::OK,
        "the expired binding was revived"
    );
    assert_eq!(member.clocks(), vec![T + 40; 2], "time went back");
    assert!(!member.is_live(id));
    // A new bind on the same X and parties is not stopped by the expired one.
    let again = bound(&member.apply(&bind(behind_s, on_0, 1, 30)));
    assert_ne!(again, id);
    let skew = member.store.shard_stats()[0].clock_skew;
    assert_eq!(skew.behind_s_max, 3600);
    assert_eq!(skew.entries_behind, 2);
    assert_eq!(skew.entries_clamped(), 2);
}

/// Guards item 7 of step 6: a leader whose clock jumped a day ahead made
/// its sweep entry reclaim every binding, live ones included, everywhere.
#[test]
fn a_clock_a_day_ahead_moves_time_one_step_and_spares_live_bindings() {
    let mut member = Member::new(T);
    let short = bound(&member.apply(&bind(T, x_on_shard(0, 1), 1, STEP_MAX_S / 2)));
    let long_0 = bound(&member.apply(&bind(T, x_on_shard(0, 100), 2, 2 * STEP_MAX_S)));
    let long_1 = bound(&member.apply(&bind(T, x_on_shard(1, 1), 3, 2 * STEP_MAX_S)));
    assert_eq!(member.live_bindings(), 3);

    // An empty batch is a sweep of every shard.
    member.apply(&WriteBatch::new(T + 86_400));
    assert_eq!(member.clocks(), vec![T + STEP_MAX_S; 2]);
    assert!(!member.is_live(short));
    assert!(member.is_live(long_0) && member.is_live(long_1));
    assert_eq!(
        member.live_bindings(),
        2,
        "only the binding past its end went"
    );
    // A bind from the same proposer gets its lifetime from the applied clock.
    let answers = member.apply(&bind(T + 86_400, x_on_shard(1, 100), 4, 600));
    let fresh = bound(&answers);
    let binding = member
        .store
        .shard_set()
        .query(fresh, T + 2 * STEP_MAX_S)
        .expect("live binding");
    assert_eq!(binding.expires_at_s, T + 2 * STEP_MAX_S + 600);
    let skew = member.store.shard_stats()[1].clock_skew;
    assert_eq!(skew.ahead_s_max, 86_400 - STEP_MAX_S);
    assert_eq!(skew.entries_ahead, 2);
    assert_eq!(skew.skew_s_max(), 86_400 - STEP_MAX_S);
}

/// Bytes 52..56 of shard 0's newest meta copy (STORAGE.md section 7).
fn meta_clock_bytes(dir: &std::path::Path) -> [u8; 4] {
    let meta = std::fs::read(dir.join("shard-000/meta")).expect("meta file");
    let sequence = |at: usize| u64::from_le_bytes(meta[at + 24..at + 32].try_into().unwrap());
    let newest = if sequence(4096) > sequence(0) {
        4096
    } else {
        0
    };
    meta[newest + 52..newest + 56].try_into().unwrap()
}

#[test]
fn the_meta_example_in_storage_md_holds() {
    let mut member = Member::new(T);
    member.apply(&WriteBatch::new(T));
    member.store.checkpoint().expect("checkpoint");
    assert_eq!(
        meta_clock_bytes(member.dir.path()),
        [0x00, 0xD2, 0x49, 0x6B]
    );
}

/// A log whose clocks wander (behind, ahead, a day ahead, back), with
/// binds of short lives, updates, unbinds and sweeps.
fn wandering_log() -> Vec<WriteBatch> {
    let offsets: [i64; 12] = [0, 1, 2, -3600, 5, 86_400, 86_401, 30, -10, 40, 50, 400];
    let mut log = Vec::new();
    let mut g = 0u32;
    for (round, &offset) in (0u32..).zip(offsets.iter().cycle().take(48)) {
        let now_s = u32::try_from(i64::from(T) + offset + i64::from(round) * 7).expect("in range");
        let mut batch = WriteBatch::new(now_s);
        if round % 5 != 4 {
            for _ in 0..3 {
                g += 1;
                let mut body = axb(
                    x(u64::from(g % 17)),
                    &format!("138{g:08}"),
                    &format!("139{g:08}"),
                    &format!("w-{g}"),
                );
                body.ttl_s = 20 + (g * 37) % 150;
                let mut frame = Vec::new();
                codec::encode_bind(&mut frame, g, &body);
                assert!(batch.push(None, &frame));
            }
            let mut frame = Vec::new();
            codec::encode_unbind(
                &mut frame,
                g + 1_000_000,
                &UnbindBody::Party {
                    x: x(u64::from(g % 17)),
                    party: real(&format!("138{:08}", g - 1)),
                },
            );
            assert!(batch.push(None, &frame));
        }
        log.push(batch);
    }
    log
}

/// The answers of a whole log, and the clocks and counters at its end.
fn replay(member: &mut Member, log: &[WriteBatch]) -> Vec<Vec<(Header, Vec<u8>)>> {
    log.iter().map(|batch| member.apply(batch)).collect()
}

#[test]
fn replaying_one_log_on_two_fresh_stores_gives_one_clock_and_one_set_of_ids() {
    let log = wandering_log();
    // Local clocks a day apart: an apply that read one would diverge.
    let mut first = Member::new(T);
    let mut second = Member::new(T + 86_400);
    let answers_first = replay(&mut first, &log);
    let answers_second = replay(&mut second, &log);
    assert_eq!(
        answers_first, answers_second,
        "answers (binding ids) differ"
    );
    assert_eq!(first.clocks(), second.clocks());
    let counters = |m: &Member| {
        m.store
            .shard_stats()
            .iter()
            .map(|s| s.counters)
            .collect::<Vec<_>>()
    };
    assert_eq!(counters(&first), counters(&second));
    // The clock went up by steps of at most STEP_MAX_S from T.
    let clock = first.clocks()[0];
    assert!((T + 47 * 7..=T + 48 * STEP_MAX_S).contains(&clock));
    let created = answers_first
        .iter()
        .flatten()
        .filter(|(h, _)| h.opcode == x700::protocol::opcode::BIND_AXB && h.status == status::OK)
        .count();
    assert!(created > 20, "the log binds something: {created}");
}

/// Guards the persistence half of item 7: without the clock in the shard
/// meta, a restart forgot the time reached and let the next entry (an hour
/// behind) set it back.
#[test]
fn the_applied_clock_survives_a_checkpoint_and_a_reopen() {
    let log = wandering_log();
    let (head, tail) = log.split_at(20);
    let mut whole = Member::new(T);
    let whole_answers = replay(&mut whole, &log);

    let mut member = Member::new(T);
    let mut answers = replay(&mut member, head);
    let clock = member.clocks();
    assert!(clock[0] > T);
    member.store.checkpoint().expect("checkpoint");
    let Member {
        dir,
        store,
        next_index,
    } = member;
    store.close().expect("close");
    assert_eq!(meta_clock_bytes(dir.path()), clock[0].to_le_bytes());

    let store = Store::open(dir.path(), Arc::new(FakeClock::new(T + 999_999))).expect("reopen");
    let mut member = Member {
        dir,
        store,
        next_index,
    };
    assert_eq!(member.clocks(), clock, "the clock was lost");
    member.apply(&WriteBatch::new(clock[0] - 3600));
    assert_eq!(member.clocks(), clock, "time went back after a reopen");
    // Take the extra sweep out of the comparison: replay the tail on a
    // second reopened copy instead.
    drop(member);

    let mut resumed = Member::new(T);
    answers.clear();
    answers.extend(replay(&mut resumed, head));
    resumed.store.checkpoint().expect("checkpoint");
    let Member {
        dir,
        store,
        next_index,
    } = resumed;
    store.close().expect("close");
    let store = Store::open(dir.path(), Arc::new(FakeClock::new(1))).expect("reopen");
    let mut resumed = Member {
        dir,
        store,
        next_index,
    };
    answers.extend(replay(&mut resumed, tail));
    assert_eq!(answers, whole_answers, "a reopen changed what the log does");
    assert_eq!(resumed.clocks(), whole.clocks());
}
