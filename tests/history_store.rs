//! Proves that the traceability history answers `at` and `order` exactly as a brute-force model over every event does: for random event streams cut into random batches and small segments, after a reopen, after a torn tail, after a replay from `open(durable_index)`, after a retention purge and a lost index file; that unbind and expiry end lives at the right second; and that segments with bytes flipped, cut or appended are opened and queried without a panic (the fuzz target's check).

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use x700::history::{Event, EventKind, History, HistoryConfig, HistoryError, Life};
use x700::number::Number;

const T0: u32 = 1_800_000_000;

/// A small deterministic generator, so a proptest seed names a stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn x_pool(i: u64) -> Number {
    Number::from_digits(format!("70012345678901{i}").as_bytes())
}

fn party(i: u64) -> Number {
    Number::from_digits(format!("1380013800{i}").as_bytes())
}

fn order_ref(i: u64) -> Vec<u8> {
    format!("ORDER-2026-11-30-{i:04}").into_bytes()
}

/// A live binding while generating.
struct Live {
    id: u64,
    x: Number,
    created_s: u32,
    expires_at_s: u32,
    tenant: u32,
}

/// A random stream in log order: one log entry per step, each with the
/// expiries due then and one create, update or unbind. End and update
/// events carry X and `created_s`, as the apply path passes them.
fn stream(seed: u64, steps: usize) -> Vec<Event> {
    let mut rng = Rng(seed | 1);
    let (mut t, mut log_index, mut next_id) = (T0, 10u64, 1000u64);
    let mut live: Vec<Live> = Vec::new();
    let mut events = Vec::new();
    for _ in 0..steps {
        t += rng.below(40) as u32;
        log_index += 1 + rng.below(2);
        let mut due: Vec<usize> = (0..live.len())
            .filter(|&i| live[i].expires_at_s <= t)
            .collect();
        due.sort_by_key(|&i| live[i].expires_at_s);
        for &i in &due {
            let l = &live[i];
            let mut e = Event::new(EventKind::Expired, l.expires_at_s, log_index, l.id);
            (e.x, e.created_s, e.tenant) = (l.x, l.created_s, l.tenant);
            events.push(e);
        }
        live.retain(|l| l.expires_at_s > t);
        match rng.below(10) {
            0..=4 => {
                let mut e = Event::new(EventKind::Created, t, log_index, next_id);
                e.x = x_pool(rng.below(4));
                e.a = party(rng.below(6));
                e.b = party(rng.below(6));
                e.mode = rng.below(3) as u8;
                e.tenant = 1 + rng.below(2) as u32;
                e.order = order_ref(rng.below(6));
                e.expires_at_s = t + 1 + rng.below(400) as u32;
                e.credential = rng.below(3) as u32;
                live.push(Live {
                    id: next_id,
                    x: e.x,
                    created_s: t,
                    expires_at_s: e.expires_at_s,
                    tenant: e.tenant,
                });
                events.push(e);
                next_id += 1 + rng.below(1000);
            }
            5 | 6 if !live.is_empty() => {
                let i = rng.below(live.len() as u64) as usize;
                let l = &mut live[i];
                let mut e = Event::new(EventKind::Updated, t, log_index, l.id);
                (e.x, e.created_s, e.tenant) = (l.x, l.created_s, l.tenant);
                e.expires_at_s = t + 1 + rng.below(400) as u32;
                if rng.below(2) == 0 {
                    e.b = party(rng.below(6));
                }
                l.expires_at_s = e.expires_at_s;
                events.push(e);
            }
            7 | 8 if !live.is_empty() => {
                let l = live.swap_remove(rng.below(live.len() as u64) as usize);
                let mut e = Event::new(EventKind::Unbound, t, log_index, l.id);
                (e.x, e.created_s, e.tenant) = (l.x, l.created_s, l.tenant);
                events.push(e);
            }
            _ => {}
        }
    }
    events
}

/// The model: one binding's events folded by the rules, written out
/// separately from the store's own code.
fn model_life(events: &[&Event]) -> Option<Life> {
    let c = events.iter().find(|e| e.kind == EventKind::Created)?;
    let mut life = Life {
        binding_id: c.binding_id,
        tenant: c.tenant,
        mode: c.mode,
        x: c.x,
        a: c.a,
        b: c.b,
        order: c.order.clone(),
        credential: c.credential,
        created_s: c.at_s,
        ended_s: None,
        end: None,
        expires_at_s: c.expires_at_s,
    };
    for e in events {
        if life.end.is_some() {
            break;
        }
        match e.kind {
            EventKind::Updated => {
                life.expires_at_s = e.expires_at_s;
                if !e.b.is_none() {
                    life.b = e.b;
                }
                if !e.a.is_none() {
                    life.a = e.a;
                }
                if !e.order.is_empty() {
                    life.order.clone_from(&e.order);
                }
            }
            EventKind::Unbound | EventKind::Expired => {
                life.end = Some(e.kind);
                life.ended_s = Some(e.at_s);
            }
            EventKind::Created => {}
        }
    }
    Some(life)
}

fn groups(events: &[Event]) -> BTreeMap<u64, Vec<&Event>> {
    let mut g: BTreeMap<u64, Vec<&Event>> = BTreeMap::new();
    for e in events {
        g.entry(e.binding_id).or_default().push(e);
    }
    g
}

fn sorted(mut lives: Vec<Life>) -> Vec<Life> {
    lives.sort_by_key(|l| (l.created_s, l.binding_id));
    lives
}

fn model_at(events: &[Event], x: Number, t: u32, caller: Option<Number>) -> Vec<Life> {
    let lives = groups(events).into_values().filter_map(|evs| {
        let life = model_life(&evs)?;
        if life.x != x || life.created_s > t || life.ended_s.is_some_and(|e| e <= t) {
            return None;
        }
        // The expiry in force at t: the last one set at or before t.
        let expiry = evs
            .iter()
            .rfind(|e| e.at_s <= t && matches!(e.kind, EventKind::Created | EventKind::Updated))?
            .expires_at_s;
        let concerns = caller.is_none_or(|c| life.mode != 0 || life.a == c || life.b == c);
        (expiry > t && concerns).then_some(life)
    });
    sorted(lives.collect())
}

fn model_order(events: &[Event], tenant: u32, order: &[u8]) -> Vec<Life> {
    let lives = groups(events).into_values().filter_map(|evs| {
        let named = evs.iter().any(|e| {
            matches!(e.kind, EventKind::Created | EventKind::Updated)
                && e.tenant == tenant
                && e.order == order
        });
        if named {
            model_life(&evs)
        } else {
            None
        }
    });
    sorted(lives.collect())
}

/// Compares every X at many seconds (with and without callers) and every
/// order against the model.
fn check(history: &History, events: &[Event], seed: u64) {
    let mut rng = Rng(seed ^ 0x9E37_79B9);
    let end = events.iter().map(|e| e.at_s).max().unwrap_or(T0);
    for i in 0..4 {
        let x = x_pool(i);
        for _ in 0..30 {
            let t = T0 - 5 + rng.below(u64::from(end - T0) + 20) as u32;
            let caller = (rng.below(2) == 0).then(|| party(rng.below(7)));
            let got = history.at(x, t, caller).unwrap();
            assert_eq!(
                got,
                model_at(events, x, t, caller),
                "at x={x} t={t} caller={caller:?}"
            );
            // At a life's own creation and end seconds.
            if let Some(life) = got.first() {
                let t = life.created_s;
                assert_eq!(
                    history.at(x, t, None).unwrap(),
                    model_at(events, x, t, None)
                );
                if let Some(t) = life.ended_s {
                    assert_eq!(
                        history.at(x, t, None).unwrap(),
                        model_at(events, x, t, None)
                    );
                }
            }
        }
    }
    for tenant in 1..=3 {
        for i in 0..7 {
            let order = order_ref(i);
            let got = history.order(tenant, &order).unwrap();
            assert_eq!(
                got,
                model_order(events, tenant, &order),
                "order {tenant} {i}"
            );
        }
    }
}

fn config(segment_records_max: u64) -> HistoryConfig {
    HistoryConfig {
        segment_records_max,
        ..HistoryConfig::default()
    }
}

/// Appends in batches of random size.
fn append_batched(history: &mut History, events: &[Event], rng: &mut Rng) {
    let mut at = 0;
    while at < events.len() {
        let n = (1 + rng.below(20) as usize).min(events.len() - at);
        history.append(&events[at..at + n]).unwrap();
        at += n;
    }
}

fn data_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "hlog"))
        .collect();
    files.sort();
    files
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Answers equal the model while appending (open and sealing segments)
    /// and after a reopen (sealed index files).
    #[test]
    fn answers_match_the_model_before_and_after_reopen(
        seed in any::<u64>(), steps in 20usize..300, segment in 1u64..40, strip in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut events = stream(seed, steps);
        if strip {
            // Every other update or end without X and creation time: the
            // store fills or stores them and answers alike.
            for e in events.iter_mut().filter(|e| e.kind != EventKind::Created).step_by(2) {
                (e.x, e.created_s) = (Number::NONE, 0);
            }
        }
        let full = stream(seed, steps);
        let mut rng = Rng(seed ^ 7);
        let mut history = History::open(dir.path(), config(segment), u64::MAX).unwrap();
        append_batched(&mut history, &events, &mut rng);
        check(&history, &full, seed);
        history.sync(u64::MAX).unwrap();
        drop(history);
        let history = History::open(dir.path(), config(segment), u64::MAX).unwrap();
        prop_assert_eq!(history.stats().records, events.len() as u64);
        check(&history, &full, seed);
    }

    /// After `open(durable_index)` the events from `durable_index` on are
    /// gone, and replaying the whole stream (from before, as a log replay
    /// from an older checkpoint would) appends each event exactly once.
    #[test]
    fn replay_after_open_durable_index_is_idempotent(
        seed in any::<u64>(), steps in 20usize..300, segment in 1u64..40, cut in 0.0f64..1.0,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let events = stream(seed, steps);
        let mut rng = Rng(seed ^ 11);
        let mut history = History::open(dir.path(), config(segment), u64::MAX).unwrap();
        append_batched(&mut history, &events, &mut rng);
        drop(history);
        let durable = events[((events.len() - 1) as f64 * cut) as usize].log_index;
        let mut history = History::open(dir.path(), config(segment), durable).unwrap();
        let kept = events.iter().filter(|e| e.log_index < durable).count() as u64;
        prop_assert_eq!(history.stats().records, kept);
        append_batched(&mut history, &events, &mut rng);
        prop_assert_eq!(history.stats().records, events.len() as u64);
        check(&history, &events, seed);
    }

    /// A torn tail (the last record cut short, or garbage after it) is cut
    /// off on open; replay from the last entry restores every answer.
    #[test]
    fn a_torn_tail_is_cut_and_replay_restores_it(
        seed in any::<u64>(), steps in 20usize..200, segment in 5u64..400, garbage in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let events = stream(seed, steps);
        let mut history = History::open(dir.path(), config(segment), u64::MAX).unwrap();
        history.append(&events).unwrap();
        drop(history);
        let last = data_files(dir.path()).pop().unwrap();
        let len = std::fs::metadata(&last).unwrap().len();
        if garbage {
            let mut bytes = std::fs::read(&last).unwrap();
            bytes.extend_from_slice(&[0x40, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
            std::fs::write(&last, bytes).unwrap();
        } else {
            std::fs::OpenOptions::new().write(true).open(&last).unwrap().set_len(len - 3).unwrap();
        }
        let history = History::open(dir.path(), config(segment), u64::MAX).unwrap();
        prop_assert!(history.stats().torn_bytes > 0);
        let kept = if garbage { events.len() } else { events.len() - 1 };
        prop_assert_eq!(history.stats().records, kept as u64);
        check(&history, &events[..kept], seed);
        drop(history);
        // The log's durable point is before the last entry: it replays it.
        let durable = events.last().unwrap().log_index;
        let mut history = History::open(dir.path(), config(segment), durable).unwrap();
        history.append(&events).unwrap();
        prop_assert_eq!(history.stats().records, events.len() as u64);
        check(&history, &events, seed);
    }

    /// Purge drops whole segments older than the retention and nothing
    /// newer; what is kept answers as the model over the kept events (a
    /// life whose creation was purged is no longer answered).
    #[test]
    fn purge_drops_whole_old_segments_only(
        seed in any::<u64>(), steps in 50usize..300, segment in 1u64..10,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let events = stream(seed, steps);
        let end = events.iter().map(|e| e.at_s).max().unwrap();
        let retention_s = (end - T0) / 2;
        let config = HistoryConfig { retention_s, segment_records_max: segment };
        let mut history = History::open(dir.path(), config, u64::MAX).unwrap();
        history.append(&events).unwrap();
        let before = history.stats();
        let report = history.purge(end).unwrap();
        let after = history.stats();
        prop_assert_eq!(after.records, before.records - report.records);
        prop_assert_eq!(after.segments, before.segments - report.segments);
        prop_assert_eq!(data_files(dir.path()).len() as u64, after.segments);
        let kept = &events[events.len() - after.records as usize..];
        // Every dropped record was older than the cutoff.
        let cutoff = end - retention_s;
        prop_assert!(events[..events.len() - kept.len()].iter().all(|e| e.at_s < cutoff));
        check(&history, kept, seed);
        drop(history);
        // After a reopen no seal is in flight: a second purge drops what
        // the first left because it was still being sealed, and at least
        // the oldest segment is gone by now.
        let mut history = History::open(dir.path(), config, u64::MAX).unwrap();
        check(&history, kept, seed);
        let again = history.purge(end).unwrap();
        prop_assert!(report.segments + again.segments > 0);
        let kept = &events[events.len() - history.stats().records as usize..];
        prop_assert!(events[..events.len() - kept.len()].iter().all(|e| e.at_s < cutoff));
        check(&history, kept, seed);
    }
}

fn created(id: u64, x: Number, at_s: u32, log_index: u64, expires_at_s: u32) -> Event {
    let mut e = Event::new(EventKind::Created, at_s, log_index, id);
    e.x = x;
    e.a = party(1);
    e.b = party(2);
    e.tenant = 5;
    e.order = b"ORD-1".to_vec();
    e.expires_at_s = expires_at_s;
    e
}

fn ended(kind: EventKind, id: u64, x: Number, at_s: u32, log_index: u64, created_s: u32) -> Event {
    let mut e = Event::new(kind, at_s, log_index, id);
    e.x = x;
    e.created_s = created_s;
    e
}

/// Unbind ends a life at its second, expiry at the expiry second, and a
/// life that began long before T (many segments of other traffic ago) is
/// still found.
#[test]
fn unbind_and_expiry_end_lives_and_old_lives_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let x = x_pool(1);
    let mut history = History::open(dir.path(), config(8), u64::MAX).unwrap();
    let mut events = vec![
        created(1, x, T0 + 100, 1, T0 + 500),
        created(2, x, T0 + 110, 2, T0 + 300),
        created(3, x, T0 + 120, 3, T0 + 90_000),
    ];
    // A day of traffic on other numbers: hundreds of segments.
    for i in 0..2000u64 {
        let t = T0 + 200 + i as u32 * 40;
        events.push(created(100 + i, x_pool(2), t, 10 + i, t + 30));
    }
    events.push(ended(EventKind::Unbound, 1, x, T0 + 200, 5000, T0 + 100));
    events.push(ended(EventKind::Expired, 2, x, T0 + 300, 5001, T0 + 110));
    history.append(&events).unwrap();
    let ids = |lives: Vec<Life>| lives.iter().map(|l| l.binding_id).collect::<Vec<_>>();
    assert_eq!(ids(history.at(x, T0 + 150, None).unwrap()), [1, 2, 3]);
    assert_eq!(ids(history.at(x, T0 + 200, None).unwrap()), [2, 3]);
    assert_eq!(ids(history.at(x, T0 + 299, None).unwrap()), [2, 3]);
    assert_eq!(ids(history.at(x, T0 + 300, None).unwrap()), [3]);
    assert_eq!(ids(history.at(x, T0 + 80_000, None).unwrap()), [3]);
    assert_eq!(
        ids(history.at(x, T0 + 90_000, None).unwrap()),
        Vec::<u64>::new()
    );
    let lives = history.order(5, b"ORD-1").unwrap();
    let ends: Vec<_> = lives
        .iter()
        .take(3)
        .map(|l| (l.binding_id, l.end, l.ended_s))
        .collect();
    assert_eq!(
        ends,
        [
            (1, Some(EventKind::Unbound), Some(T0 + 200)),
            (2, Some(EventKind::Expired), Some(T0 + 300)),
            (3, None, None)
        ]
    );
    assert!(history.stats().segments > 200);
}

/// An end event without X is filled from a binding created in the open
/// segment; one whose binding is only in a sealed segment is stored without
/// X and still ends its life in every answer, before and after a reopen.
#[test]
fn ends_without_x_are_filled_or_stored_and_still_end_their_life() {
    let dir = tempfile::tempdir().unwrap();
    let x = x_pool(3);
    let mut history = History::open(dir.path(), config(2), u64::MAX).unwrap();
    history.append(&[created(1, x, T0, 1, T0 + 100)]).unwrap();
    history
        .append(&[Event::new(EventKind::Unbound, T0 + 50, 2, 1)])
        .unwrap();
    assert_eq!(history.at(x, T0 + 10, None).unwrap().len(), 1);
    assert_eq!(history.at(x, T0 + 50, None).unwrap(), Vec::new());
    assert_eq!(
        history.order(5, b"ORD-1").unwrap()[0].ended_s,
        Some(T0 + 50)
    );
    history
        .append(&[created(2, x, T0 + 60, 3, T0 + 100)])
        .unwrap();
    for i in 0..6 {
        history
            .append(&[created(10 + i, x_pool(0), T0 + 61, 4 + i, T0 + 70)])
            .unwrap();
    }
    // Binding 2 is in a sealed segment now: nothing in memory knows it.
    history
        .append(&[Event::new(EventKind::Expired, T0 + 80, 20, 2)])
        .unwrap();
    for reopen in [false, true] {
        if reopen {
            drop(history);
            history = History::open(dir.path(), config(2), u64::MAX).unwrap();
        }
        assert_eq!(history.at(x, T0 + 79, None).unwrap().len(), 1);
        assert_eq!(history.at(x, T0 + 80, None).unwrap(), Vec::new());
        let lives = history.order(5, b"ORD-1").unwrap();
        let ends: Vec<_> = lives
            .iter()
            .map(|l| (l.binding_id, l.end, l.ended_s))
            .collect();
        assert_eq!(
            &ends[..2],
            [
                (1, Some(EventKind::Unbound), Some(T0 + 50)),
                (2, Some(EventKind::Expired), Some(T0 + 80))
            ]
        );
        assert_eq!(history.stats().span_max_s, u32::MAX);
    }
}

/// A batch that breaks the contract (an order over 32 bytes, log indexes
/// going down) is refused whole: nothing of it is appended.
#[test]
fn a_bad_batch_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut history = History::open(dir.path(), config(100), u64::MAX).unwrap();
    history
        .append(&[created(1, x_pool(1), T0, 5, T0 + 100)])
        .unwrap();
    let mut long = created(3, x_pool(1), T0, 7, T0 + 100);
    long.order = vec![b'o'; 33];
    let batch = [created(2, x_pool(1), T0, 6, T0 + 100), long];
    assert!(matches!(
        history.append(&batch),
        Err(HistoryError::Invalid { binding_id: 3, .. })
    ));
    let batch = [
        created(2, x_pool(1), T0, 6, T0 + 100),
        created(3, x_pool(1), T0, 4, T0 + 100),
    ];
    assert!(matches!(
        history.append(&batch),
        Err(HistoryError::Invalid { binding_id: 3, .. })
    ));
    assert_eq!(history.stats().records, 1);
}

/// A sealed segment whose index file was lost (a crash mid-seal) gets it
/// rebuilt on open; a damaged index group is an error, never a panic or a
/// wrong answer.
#[test]
fn a_lost_index_is_rebuilt_and_a_damaged_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let events = stream(42, 300);
    let mut history = History::open(dir.path(), config(10), u64::MAX).unwrap();
    history.append(&events).unwrap();
    drop(history);
    let index = data_files(dir.path())[2].with_extension("hidx");
    std::fs::remove_file(&index).unwrap();
    let history = History::open(dir.path(), config(10), u64::MAX).unwrap();
    assert!(index.exists());
    check(&history, &events, 42);
    drop(history);
    // Flip one byte inside the first index group of every segment.
    for data in data_files(dir.path()) {
        let index = data.with_extension("hidx");
        if let Ok(mut bytes) = std::fs::read(&index) {
            bytes[64 + 8] ^= 0x55;
            std::fs::write(&index, bytes).unwrap();
        }
    }
    let history = History::open(dir.path(), config(10), u64::MAX).unwrap();
    let errors = (0..4)
        .map(|i| history.at(x_pool(i), T0 + 100, None))
        .filter(|r| matches!(r, Err(HistoryError::Corrupt { .. })))
        .count();
    assert!(errors > 0);
}

include!("../fuzz/check_history.rs");

/// The history fuzz target's check, on real segments with bytes flipped,
/// cut and appended: opening and querying never panic.
#[test]
fn mutated_segments_never_panic() {
    let dir = tempfile::tempdir().expect("dir");
    let mut history = History::open(dir.path(), config(u64::MAX), 0).expect("open");
    let events = stream(11, 300);
    history.append(&events).expect("append");
    history.sync(u64::MAX).expect("sync");
    drop(history);
    let segment = std::fs::read(&data_files(dir.path())[0]).expect("segment");
    check_history(&segment);
    check_history(&[]);
    let mut rng = Rng(7);
    for _ in 0..200 {
        let mut bytes = segment.clone();
        match rng.below(3) {
            0 => {
                let at = usize::try_from(rng.below(bytes.len() as u64)).expect("small");
                bytes[at] ^= 1 << rng.below(8);
            }
            1 => bytes.truncate(usize::try_from(rng.below(bytes.len() as u64)).expect("small")),
            _ => bytes
                .extend((0..rng.below(64)).map(|_| u8::try_from(rng.below(256)).expect("byte"))),
        }
        check_history(&bytes);
    }
}
