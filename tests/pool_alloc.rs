//! Proves the pool and X-selection rules of step 8 on the pure core: pool
//! boundaries and ownership, exhaustion with and without fallback, conflicts,
//! max pairs per X, cool-off, stickiness, lazy expiry, checkpoints; and, with
//! proptest, that random sequences of choose/bind/release/expire make exactly
//! the choices a brute-force reference model makes.

use proptest::prelude::*;
use std::collections::BTreeMap;
use x700::number::Number;
use x700::pool::allocator::HEAVY_RESERVE_PERCENT;
use x700::pool::{
    x_number, x_value, AllocConfig, Allocator, AreaCode, Exhausted, Fallback, PoolError, PoolRange,
    Pools, Province,
};

/// The first X of the test pools.
const BASE: u64 = 700_123_400_000_000;

fn area(code: &str) -> AreaCode {
    AreaCode::parse(code).unwrap()
}

fn range(first: u64, last: u64, code: &str) -> PoolRange {
    PoolRange::new(first, last, area(code))
}

fn real(i: u64) -> Number {
    Number::from_digits(format!("138{:08}", i).as_bytes())
}

fn x(offset: u64) -> Number {
    x_number(BASE + offset)
}

fn config(max_pairs_per_x: u32, cool_off_s: u32) -> AllocConfig {
    AllocConfig {
        max_pairs_per_x,
        cool_off_s,
        ..AllocConfig::default()
    }
}

/// Tenant 1: Shenzhen (0755) X 0-9, Guangzhou (020) X 100-109, Beijing (010)
/// X 200-209. Tenant 2: Shenzhen X 10-19 (right beside tenant 1's).
fn sample_pools() -> Pools {
    let mut pools = Pools::new();
    pools.add(1, range(BASE, BASE + 9, "0755")).unwrap();
    pools.add(1, range(BASE + 100, BASE + 109, "020")).unwrap();
    pools.add(1, range(BASE + 200, BASE + 209, "010")).unwrap();
    pools.add(2, range(BASE + 10, BASE + 19, "0755")).unwrap();
    pools
}

#[test]
fn ranges_are_refused_when_they_overlap_any_tenant_or_break_a_limit() {
    let mut pools = sample_pools();
    let overlap = pools.add(3, range(BASE + 19, BASE + 30, "0755"));
    assert_eq!(
        overlap,
        Err(PoolError::Overlap {
            tenant: 2,
            first: BASE + 10,
            last: BASE + 19
        })
    );
    assert!(matches!(
        pools.add(1, range(BASE + 5, BASE + 5, "0755")),
        Err(PoolError::Overlap { tenant: 1, .. })
    ));
    assert!(matches!(
        pools.add(1, range(BASE + 50, BASE + 40, "0755")),
        Err(PoolError::Reversed { .. })
    ));
    assert!(matches!(
        pools.add(1, range(13_800_138_000, 13_800_138_009, "0755")),
        Err(PoolError::NotVirtual(_))
    ));
    assert!(matches!(
        pools.add(1, range(BASE + 1000, BASE + 1000 + 100_000_000, "0755")),
        Err(PoolError::TooLarge { .. })
    ));
    // 026 is no area in the default table: the operator must name a province.
    assert_eq!(
        pools.add(1, range(BASE + 300, BASE + 309, "026")),
        Err(PoolError::NoProvince(area("026")))
    );
    let mut named = range(BASE + 300, BASE + 309, "026");
    named.province = Province::Guangdong;
    assert_eq!(pools.add(1, named), Ok(()));
    // A 100M range is fine and costs one entry.
    assert_eq!(
        pools.add(4, range(BASE + 1_000_000, BASE + 100_999_999, "021")),
        Ok(())
    );
    assert_eq!(pools.len(), 6);
}

#[test]
fn owner_finds_the_range_at_its_boundaries_and_nothing_outside() {
    let pools = sample_pools();
    assert_eq!(
        pools.owner(x(0)).map(|(t, r)| (t, r.first)),
        Some((1, BASE))
    );
    assert_eq!(
        pools.owner(x(9)).map(|(t, r)| (t, r.first)),
        Some((1, BASE))
    );
    assert_eq!(
        pools.owner(x(10)).map(|(t, r)| (t, r.first)),
        Some((2, BASE + 10))
    );
    assert_eq!(pools.owner(x(20)).map(|(t, _)| t), None);
    assert_eq!(pools.owner(x_number(BASE - 1)).map(|(t, _)| t), None);
    assert_eq!(pools.owner(real(1)).map(|(t, _)| t), None);
    let areas: Vec<&str> = pools.ranges(1).map(|r| r.area.as_str()).collect();
    assert_eq!(areas, ["010", "020", "0755"]);
}

#[test]
fn removal_matches_exactly_and_is_refused_while_numbers_are_in_use_unless_forced() {
    let pools_before = sample_pools();
    let mut pools = pools_before.clone();
    let mut allocator = Allocator::new(AllocConfig::default());
    allocator.bound(x(3), real(1), real(2), 1, 1000);
    let in_use = |first, last| allocator.in_use(first, last);
    assert_eq!(
        pools.remove(1, BASE, BASE + 8, false, in_use),
        Err(PoolError::NotFound {
            first: BASE,
            last: BASE + 8
        })
    );
    assert!(matches!(
        pools.remove(2, BASE, BASE + 9, false, in_use),
        Err(PoolError::NotFound { .. })
    ));
    assert_eq!(
        pools.remove(1, BASE, BASE + 9, false, in_use),
        Err(PoolError::InUse { numbers_in_use: 1 })
    );
    assert_eq!(pools, pools_before);
    let outcome = pools.remove(1, BASE, BASE + 9, true, in_use).unwrap();
    assert_eq!((outcome.range.first, outcome.numbers_in_use), (BASE, 1));
    assert_eq!(pools.owner(x(3)), None);
    // Nothing is chosen from the removed range again.
    let chosen = allocator.choose(
        &pools,
        1,
        &area("0755"),
        Fallback::None,
        real(5),
        real(6),
        0,
    );
    assert_eq!(
        chosen,
        Err(Exhausted {
            area: area("0755"),
            fallback: Fallback::None
        })
    );
    assert_eq!(
        pools
            .remove(1, BASE + 100, BASE + 109, false, in_use)
            .map(|o| o.numbers_in_use),
        Ok(0)
    );
}

#[test]
fn choose_stays_in_the_area_then_falls_back_only_as_far_as_asked() {
    let pools = sample_pools();
    let mut allocator = Allocator::new(config(1, 0));
    let shenzhen = area("0755");
    // Fill Shenzhen: one pair per X.
    for i in 0..10 {
        let chosen = allocator
            .choose(
                &pools,
                1,
                &shenzhen,
                Fallback::None,
                real(2 * i),
                real(2 * i + 1),
                0,
            )
            .unwrap();
        assert_eq!(chosen, x(i), "first-fit takes the lowest free X");
        allocator.bound(chosen, real(2 * i), real(2 * i + 1), i, 1000);
    }
    let (a, b) = (real(900), real(901));
    let err = allocator
        .choose(&pools, 1, &shenzhen, Fallback::None, a, b, 0)
        .unwrap_err();
    assert_eq!(err.area, shenzhen);
    assert!(err.to_string().contains("0755"), "{err}");
    // Province: Guangzhou (020) is Guangdong too; Beijing is not.
    assert_eq!(
        allocator.choose(&pools, 1, &shenzhen, Fallback::Province, a, b, 0),
        Ok(x(100))
    );
    for i in 0..10 {
        allocator.bound(
            x(100 + i),
            real(500 + 2 * i),
            real(501 + 2 * i),
            100 + i,
            1000,
        );
    }
    assert!(allocator
        .choose(&pools, 1, &shenzhen, Fallback::Province, a, b, 0)
        .is_err());
    assert_eq!(
        allocator.choose(&pools, 1, &shenzhen, Fallback::Any, a, b, 0),
        Ok(x(200))
    );
    // Tenant 2's free Shenzhen X (10-19) were never offered to tenant 1, and
    // tenant 2 gets its own.
    assert_eq!(
        allocator.choose(&pools, 2, &shenzhen, Fallback::None, a, b, 0),
        Ok(x(10))
    );
    // A tenant with no range in the area is exhausted there.
    assert!(allocator
        .choose(&pools, 2, &area("010"), Fallback::Any, a, b, 0)
        .is_ok_and(|x| x_value(x).unwrap() < BASE + 20));
    assert!(allocator
        .choose(&pools, 3, &shenzhen, Fallback::Any, a, b, 0)
        .is_err());
}

#[test]
fn a_number_never_appears_twice_on_one_x_and_pairs_pack_onto_x_in_use() {
    let pools = sample_pools();
    let mut allocator = Allocator::new(AllocConfig::default());
    let shenzhen = area("0755");
    allocator.bound(x(0), real(1), real(2), 1, 1000);
    // real(1) is live on X 0, so (1, 3) goes elsewhere; (4, 5) packs onto X 0.
    let first = allocator
        .choose(&pools, 1, &shenzhen, Fallback::None, real(3), real(1), 0)
        .unwrap();
    assert_eq!(first, x(1));
    assert_eq!(
        allocator.choose(&pools, 1, &shenzhen, Fallback::None, real(4), real(5), 0),
        Ok(x(0))
    );
    allocator.bound(first, real(3), real(1), 2, 1000);
    // real(1) on 0 and 1, real(3) on 1: (3, 1) again needs X 2.
    assert_eq!(
        allocator.choose(&pools, 1, &shenzhen, Fallback::None, real(1), real(3), 0),
        Ok(x(2))
    );
    assert_eq!(allocator.delta(), 2);
    assert_eq!(allocator.x_in_use(), 2);
}

#[test]
fn at_most_max_pairs_per_x() {
    let pools = sample_pools();
    let mut allocator = Allocator::new(config(3, 0));
    let mut per_x = BTreeMap::new();
    for i in 0..9 {
        let chosen = allocator
            .choose(
                &pools,
                1,
                &area("0755"),
                Fallback::None,
                real(2 * i),
                real(2 * i + 1),
                0,
            )
            .unwrap();
        allocator.bound(chosen, real(2 * i), real(2 * i + 1), i, 1000);
        *per_x.entry(x_value(chosen).unwrap() - BASE).or_insert(0) += 1;
    }
    assert_eq!(per_x, BTreeMap::from([(0, 3), (1, 3), (2, 3)]));
    assert_eq!(allocator.pairs_on(x(0)), 3);
    // A release opens room on X 0 again, and first-fit takes it.
    allocator.released(1, 10, true);
    assert_eq!(
        allocator.choose(
            &pools,
            1,
            &area("0755"),
            Fallback::None,
            real(100),
            real(101),
            10
        ),
        Ok(x(0))
    );
}

/// Guards the reserve for busy parties: a pair of two unbound parties
/// leaves the last `HEAVY_RESERVE_PERCENT` of an X to pairs with a party
/// already bound (who cannot use just any X), and takes it only when no
/// free X is left.
#[test]
fn light_pairs_leave_a_reserve_that_busy_parties_may_use() {
    let pools = sample_pools();
    let mut allocator = Allocator::new(config(20, 0));
    let shenzhen = area("0755");
    let light_cap = 20 - 20 * HEAVY_RESERVE_PERCENT / 100;
    assert_eq!(light_cap, 19);
    for i in 0..u64::from(light_cap) {
        let chosen = allocator.choose(
            &pools,
            1,
            &shenzhen,
            Fallback::None,
            real(2 * i),
            real(2 * i + 1),
            0,
        );
        assert_eq!(chosen, Ok(x(0)));
        allocator.bound(x(0), real(2 * i), real(2 * i + 1), i, 1000);
    }
    // X 0 is at the light cap: a light pair opens X 1.
    let (p, q) = (real(100), real(101));
    assert_eq!(
        allocator.choose(&pools, 1, &shenzhen, Fallback::None, p, q, 0),
        Ok(x(1))
    );
    allocator.bound(x(1), p, q, 100, 1000);
    // p is bound (on X 1): its pair may take X 0's reserve.
    assert_eq!(
        allocator.choose(&pools, 1, &shenzhen, Fallback::None, p, real(102), 0),
        Ok(x(0))
    );
    // With no free X left, a light pair takes the reserve too.
    let mut one = Pools::new();
    one.add(1, range(BASE, BASE, "0755")).unwrap();
    assert_eq!(
        allocator.choose(&one, 1, &shenzhen, Fallback::None, real(200), real(201), 0),
        Ok(x(0))
    );
}

#[test]
fn a_released_x_waits_the_cool_off_for_that_pairs_numbers_only() {
    let pools = sample_pools();
    let mut allocator = Allocator::new(config(200, 60));
    let shenzhen = area("0755");
    let (a, b, c, d) = (real(1), real(2), real(3), real(4));
    allocator.bound(x(0), a, b, 1, 1000);
    allocator.released(1, 100, true);
    // a and b may not use X 0 before 160, with anyone.
    assert_eq!(
        allocator.choose(&pools, 1, &shenzhen, Fallback::None, a, c, 130),
        Ok(x(1))
    );
    assert_eq!(
        allocator.choose(&pools, 1, &shenzhen, Fallback::None, d, b, 159),
        Ok(x(1))
    );
    assert_eq!(
        allocator.choose(&pools, 1, &shenzhen, Fallback::None, c, d, 130),
        Ok(x(0))
    );
    assert_eq!(
        allocator.choose(&pools, 1, &shenzhen, Fallback::None, a, c, 160),
        Ok(x(0))
    );
    // A cooling X in use by others is skipped too.
    allocator.bound(x(0), c, d, 2, 1000);
    assert_eq!(
        allocator.choose(&pools, 1, &shenzhen, Fallback::None, a, real(9), 150),
        Ok(x(1))
    );
    assert_eq!(
        allocator.choose(&pools, 1, &shenzhen, Fallback::None, real(8), real(9), 150),
        Ok(x(0))
    );
}

#[test]
fn cool_off_counts_from_the_expiry_of_a_binding_released_late() {
    let pools = sample_pools();
    let mut allocator = Allocator::new(config(200, 60));
    allocator.bound(x(0), real(1), real(2), 1, 100);
    // Released at 150, but it was gone at 100: free for them from 160.
    allocator.released(1, 150, true);
    let shenzhen = area("0755");
    assert_eq!(
        allocator.choose(&pools, 1, &shenzhen, Fallback::None, real(1), real(3), 159),
        Ok(x(1))
    );
    assert_eq!(
        allocator.choose(&pools, 1, &shenzhen, Fallback::None, real(1), real(3), 160),
        Ok(x(0))
    );
}

#[test]
fn a_rollback_leaves_no_cool_off_and_no_sticky_memory() {
    let pools = sample_pools();
    let mut allocator = Allocator::new(config(200, 60));
    allocator.bound(x(4), real(1), real(2), 1, 1000);
    allocator.released(1, 100, false);
    assert_eq!(allocator.releases_remembered(), 0);
    assert_eq!(
        allocator.choose(
            &pools,
            1,
            &area("0755"),
            Fallback::None,
            real(1),
            real(2),
            100
        ),
        Ok(x(0))
    );
    // Idempotent: releasing again, or an unknown id, changes nothing.
    allocator.released(1, 100, true);
    allocator.released(77, 100, true);
    assert_eq!(allocator.releases_remembered(), 0);
}

/// Guards updates: the same binding id bound again replaces its edge, also
/// when it moves to a legacy X the allocator does not track (the old 700 X
/// must not stay counted).
#[test]
fn binding_the_same_id_again_replaces_its_edge() {
    let mut allocator = Allocator::new(AllocConfig::default());
    allocator.bound(x(1), real(1), real(2), 7, 1000);
    allocator.bound(x(2), real(1), real(2), 7, 2000);
    assert_eq!((allocator.pairs_on(x(1)), allocator.pairs_on(x(2))), (0, 1));
    assert_eq!((allocator.live_pairs(), allocator.delta()), (1, 1));
    allocator.bound(
        Number::from_digits(b"13900139000"),
        real(1),
        real(2),
        7,
        2000,
    );
    assert_eq!((allocator.live_pairs(), allocator.x_in_use()), (0, 0));
    assert_eq!(allocator.releases_remembered(), 0);
}

#[test]
fn a_pair_that_binds_again_gets_its_previous_x_within_bounded_memory() {
    let pools = sample_pools();
    let mut allocator = Allocator::new(AllocConfig {
        sticky_pairs_max: 2,
        ..AllocConfig::default()
    });
    let shenzhen = area("0755");
    allocator.bound(x(5), real(1), real(2), 1, 1000);
    allocator.released(1, 10, true);
    // Either order of the parties; another pair gets the lowest X.
    assert_eq!(
        allocator.choose(&pools, 1, &shenzhen, Fallback::None, real(2), real(1), 10),
        Ok(x(5))
    );
    assert_eq!(
        allocator.choose(&pools, 1, &shenzhen, Fallback::None, real(3), real(4), 10),
        Ok(x(0))
    );
    // Not when the previous X now conflicts: real(2) is live on X 5.
    allocator.bound(x(5), real(2), real(7), 2, 1000);
    assert_eq!(
        allocator.choose(&pools, 1, &shenzhen, Fallback::None, real(1), real(2), 10),
        Ok(x(0))
    );
    allocator.released(2, 11, false);
    // Not outside the asked area: Beijing asked, X 5 is Shenzhen's.
    assert_eq!(
        allocator.choose(
            &pools,
            1,
            &area("010"),
            Fallback::None,
            real(1),
            real(2),
            10
        ),
        Ok(x(200))
    );
    // Two more releases: with room for two, the pair's memory is gone.
    for id in [3, 4] {
        allocator.bound(x(7), real(10 + id), real(20 + id), id, 1000);
        allocator.released(id, 12, true);
    }
    assert_eq!(allocator.releases_remembered(), 2);
    assert_eq!(
        allocator.choose(&pools, 1, &shenzhen, Fallback::None, real(1), real(2), 12),
        Ok(x(0))
    );
}

#[test]
fn an_expired_binding_counts_as_gone_before_it_is_released() {
    let mut pools = Pools::new();
    pools.add(1, range(BASE, BASE, "0755")).unwrap();
    let mut allocator = Allocator::new(config(1, 0));
    let shenzhen = area("0755");
    allocator.bound(x(0), real(1), real(2), 1, 100);
    // The one X is full until 100, then free: for the same numbers too.
    assert!(allocator
        .choose(&pools, 1, &shenzhen, Fallback::None, real(3), real(4), 99)
        .is_err());
    assert_eq!(
        allocator.choose(&pools, 1, &shenzhen, Fallback::None, real(3), real(4), 100),
        Ok(x(0))
    );
    assert_eq!(
        allocator.choose(&pools, 1, &shenzhen, Fallback::None, real(1), real(4), 100),
        Ok(x(0))
    );
    // Taking it while the stale edge is still there, then reclaiming it.
    allocator.bound(x(0), real(1), real(4), 2, 200);
    assert_eq!(allocator.pairs_on(x(0)), 2);
    assert_eq!(allocator.expire(150, 10), 1);
    assert_eq!(allocator.pairs_on(x(0)), 1);
    assert_eq!(allocator.live_pairs(), 1);
}

#[test]
fn stats_count_numbers_in_use_free_pairs_and_delta_per_area() {
    let pools = sample_pools();
    let mut allocator = Allocator::new(AllocConfig::default());
    allocator.bound(x(0), real(1), real(2), 1, 1000);
    allocator.bound(x(1), real(1), real(3), 2, 1000);
    allocator.bound(x(1), real(4), real(5), 3, 1000);
    allocator.bound(x(100), real(1), real(6), 4, 1000);
    allocator.bound(x(10), real(1), real(7), 5, 1000);
    let stats = allocator.stats(&pools, 1);
    let line: Vec<(&str, u64, u64, u64, u64, u32)> = stats
        .iter()
        .map(|s| {
            (
                s.area.as_str(),
                s.numbers,
                s.numbers_in_use,
                s.numbers_free,
                s.live_pairs,
                s.delta,
            )
        })
        .collect();
    assert_eq!(
        line,
        [
            ("010", 10, 0, 10, 0, 0),
            ("020", 10, 1, 9, 1, 1),
            ("0755", 10, 2, 8, 3, 2)
        ]
    );
    assert_eq!(stats[2].province, Province::Guangdong);
    assert_eq!(allocator.delta(), 4);
}

#[test]
fn memory_follows_numbers_in_use_not_the_size_of_the_range() {
    let mut small = Pools::new();
    small.add(1, range(BASE, BASE + 999, "0755")).unwrap();
    let mut huge = Pools::new();
    huge.add(1, range(BASE, BASE + 99_999_999, "0755")).unwrap();
    let (mut small_bytes, mut huge_bytes) = (Vec::new(), Vec::new());
    small.encode(&mut small_bytes);
    huge.encode(&mut huge_bytes);
    assert_eq!(small_bytes.len(), huge_bytes.len());
    let mut on_small = Allocator::new(AllocConfig::default());
    let mut on_huge = Allocator::new(AllocConfig::default());
    for i in 0..500 {
        for (allocator, pools) in [(&mut on_small, &small), (&mut on_huge, &huge)] {
            let chosen = allocator
                .choose(
                    pools,
                    1,
                    &area("0755"),
                    Fallback::None,
                    real(i),
                    real(10_000 + i),
                    0,
                )
                .unwrap();
            allocator.bound(chosen, real(i), real(10_000 + i), i, 1000);
        }
    }
    assert_eq!(on_small.heap_bytes(), on_huge.heap_bytes());
    // Even one bit per number of the huge range would be 12.5 MB.
    assert!(on_huge.heap_bytes() < 1 << 20, "{}", on_huge.heap_bytes());
}

/// Flips and truncations of a valid checkpoint must decode to an error (or,
/// for the few flips the checksum cannot see, to something), never panic.
fn assert_robust<T, E>(bytes: &[u8], decode: impl Fn(&[u8]) -> Result<T, E>) {
    for cut in 0..bytes.len() {
        assert!(decode(&bytes[..cut]).is_err(), "truncated at {cut}");
    }
    for i in 0..bytes.len() {
        let mut flipped = bytes.to_vec();
        flipped[i] ^= 0x40;
        assert!(decode(&flipped).is_err(), "flip at {i}");
    }
}

#[test]
fn checkpoints_round_trip_and_refuse_corruption() {
    let pools = sample_pools();
    let mut bytes = Vec::new();
    pools.encode(&mut bytes);
    assert_eq!(bytes.len(), 4 + 2 + 4 + 4 * 26 + 4);
    assert_eq!(Pools::decode(&bytes), Ok(pools.clone()));
    assert_robust(&bytes, Pools::decode);

    let mut allocator = Allocator::new(config(2, 30));
    for i in 0..6 {
        let chosen = allocator
            .choose(
                &pools,
                1,
                &area("0755"),
                Fallback::Any,
                real(i),
                real(i + 1),
                5,
            )
            .unwrap();
        allocator.bound(chosen, real(i), real(i + 1), 40 - i, 100 + i as u32);
    }
    allocator.released(38, 20, true);
    let mut bytes = Vec::new();
    allocator.encode(&mut bytes);
    let decoded = Allocator::decode(&bytes).unwrap();
    let mut again = Vec::new();
    decoded.encode(&mut again);
    assert_eq!(again, bytes);
    for now_s in [21, 60, 104] {
        let asked = |alloc: &Allocator| {
            alloc.choose(
                &pools,
                1,
                &area("0755"),
                Fallback::Any,
                real(2),
                real(3),
                now_s,
            )
        };
        assert_eq!(asked(&decoded), asked(&allocator));
    }
    assert_eq!(
        (decoded.delta(), decoded.x_in_use()),
        (allocator.delta(), allocator.x_in_use())
    );
    assert_robust(&bytes, Allocator::decode);
}

// ---- The reference model ----------------------------------------------------

/// The model's pools: tenant 1 holds Shenzhen X 0-2 and 10-11, Guangzhou
/// X 20-21, Beijing X 30-31; tenant 2 holds Shenzhen X 3-4 (adjacent to
/// tenant 1's, so any leak shows).
fn model_pools() -> Pools {
    let mut pools = Pools::new();
    for (tenant, first, last, code) in [
        (1, 0, 2, "0755"),
        (1, 10, 11, "0755"),
        (1, 20, 21, "020"),
        (1, 30, 31, "010"),
        (2, 3, 4, "0755"),
    ] {
        pools
            .add(tenant, range(BASE + first, BASE + last, code))
            .unwrap();
    }
    pools
}

/// A binding the model knows: never forgotten until released.
#[derive(Clone, Copy, Debug)]
struct ModelEdge {
    id: u64,
    x: u64,
    a: Number,
    b: Number,
    expires_at_s: u32,
}

/// Brute force over the whole (tiny) pool: every rule written the plainest
/// way, with unbounded memory.
struct Model {
    max_pairs_per_x: u32,
    cool_off_s: u32,
    edges: Vec<ModelEdge>,
    /// Every release with cool-off: (a, b, x, gone_at_s).
    releases: Vec<(Number, Number, u64, u32)>,
}

impl Model {
    fn pairs(&self, x: u64) -> u32 {
        self.edges.iter().filter(|e| e.x == x).count() as u32
    }

    fn stale(&self, x: u64, now_s: u32) -> u32 {
        self.edges
            .iter()
            .filter(|e| e.x == x && e.expires_at_s <= now_s)
            .count() as u32
    }

    fn allowed(&self, x: u64, a: Number, b: Number, now_s: u32) -> bool {
        let live = self.edges.iter().any(|e| {
            e.x == x && e.expires_at_s > now_s && [e.a, e.b].iter().any(|n| *n == a || *n == b)
        });
        let cooling = self.releases.iter().any(|&(ra, rb, rx, gone)| {
            rx == x && gone + self.cool_off_s > now_s && [ra, rb].iter().any(|n| *n == a || *n == b)
        });
        !live && !cooling
    }

    #[allow(clippy::too_many_arguments)]
    fn choose(
        &self,
        pools: &Pools,
        tenant: u32,
        asked: AreaCode,
        fallback: Fallback,
        a: Number,
        b: Number,
        now_s: u32,
    ) -> Option<u64> {
        let ranges: Vec<PoolRange> = pools.ranges(tenant).copied().collect();
        let key = if a <= b { (a, b) } else { (b, a) };
        let sticky = self
            .releases
            .iter()
            .rev()
            .find(|r| (if r.0 <= r.1 { (r.0, r.1) } else { (r.1, r.0) }) == key);
        if let Some(&(_, _, sx, _)) = sticky {
            let in_area = ranges.iter().any(|r| r.area == asked && r.contains(sx));
            if in_area && self.pairs(sx) < self.max_pairs_per_x && self.allowed(sx, a, b, now_s) {
                return Some(sx);
            }
        }
        let province = ranges
            .iter()
            .find(|r| r.area == asked)
            .map_or(asked.province(), |r| r.province);
        let steps = match fallback {
            Fallback::None => 1,
            Fallback::Province => 2,
            Fallback::Any => 3,
        };
        for step in 0..steps {
            let mut in_step: Vec<PoolRange> = ranges
                .iter()
                .copied()
                .filter(|r| match step {
                    0 => r.area == asked,
                    1 => r.area != asked && r.province == province,
                    _ => r.area != asked && r.province != province,
                })
                .collect();
            in_step.sort_by_key(|r| (r.area, r.first));
            let xs: Vec<u64> = in_step.iter().flat_map(|r| r.first..=r.last).collect();
            let fits = |x: &&u64| self.allowed(**x, a, b, now_s);
            // A light pair (neither party bound) first leaves a reserve on
            // each X, then tries a free X, and only then takes the reserve.
            let light = !self
                .edges
                .iter()
                .any(|e| [e.a, e.b].iter().any(|n| *n == a || *n == b));
            let light_cap =
                self.max_pairs_per_x - self.max_pairs_per_x * HEAVY_RESERVE_PERCENT / 100;
            if light {
                if let Some(&x) = xs
                    .iter()
                    .filter(|&&x| (1..light_cap).contains(&self.pairs(x)))
                    .find(fits)
                {
                    return Some(x);
                }
                if let Some(&x) = xs.iter().filter(|&&x| self.pairs(x) == 0).find(fits) {
                    return Some(x);
                }
            }
            if let Some(&x) = xs
                .iter()
                .filter(|&&x| (1..self.max_pairs_per_x).contains(&self.pairs(x)))
                .find(fits)
            {
                return Some(x);
            }
            if let Some(&x) = xs.iter().filter(|&&x| self.pairs(x) == 0).find(fits) {
                return Some(x);
            }
            let mut sorted = xs.clone();
            sorted.sort_unstable();
            if let Some(&x) = sorted
                .iter()
                .filter(|&&x| {
                    self.stale(x, now_s) > 0
                        && self.pairs(x) - self.stale(x, now_s) < self.max_pairs_per_x
                })
                .find(fits)
            {
                return Some(x);
            }
        }
        None
    }

    fn release(&mut self, id: u64, now_s: u32, cool_off: bool) {
        if let Some(i) = self.edges.iter().position(|e| e.id == id) {
            let edge = self.edges.remove(i);
            if cool_off {
                self.releases
                    .push((edge.a, edge.b, edge.x, now_s.min(edge.expires_at_s)));
            }
        }
    }

    fn delta(&self) -> u32 {
        let mut degree: BTreeMap<Number, u32> = BTreeMap::new();
        for e in &self.edges {
            *degree.entry(e.a).or_default() += 1;
            *degree.entry(e.b).or_default() += 1;
        }
        degree.values().copied().max().unwrap_or(0)
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// Choose for (a, b) and, if one was found, bind it with this TTL.
    Choose {
        tenant: u32,
        area: u8,
        fallback: u8,
        a: u8,
        b: u8,
        ttl_s: u32,
    },
    /// Bind explicitly on pool X `offset` (the table has checked nothing
    /// here: the allocator must cope with whatever it is told).
    Named {
        offset: u8,
        a: u8,
        b: u8,
        ttl_s: u32,
    },
    /// Release the k-th live binding (modulo), with or without cool-off.
    Release { k: u8, cool_off: bool },
    /// Reclaim expired bindings.
    Expire { limit: u8 },
    /// Let time pass.
    Wait { s: u32 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1..=2u32, 0..3u8, 0..3u8, 0..40u8, 0..40u8, 1..40u32).prop_map(|(tenant, area, fallback, a, b, ttl_s)| Op::Choose { tenant, area, fallback, a, b, ttl_s }),
        1 => (0..32u8, 0..8u8, 0..8u8, 1..40u32).prop_map(|(offset, a, b, ttl_s)| Op::Named { offset, a, b, ttl_s }),
        3 => (any::<u8>(), any::<bool>()).prop_map(|(k, cool_off)| Op::Release { k, cool_off }),
        1 => (0..4u8).prop_map(|limit| Op::Expire { limit }),
        2 => (0..15u32).prop_map(|s| Op::Wait { s }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Every choice equals the model's; X in use, per-range use and Delta
    /// agree after every step; a chosen X is always valid.
    #[test]
    fn choices_match_the_reference_model(
        max_pairs_per_x in prop_oneof![1..4u32, 20..22u32],
        cool_off_s in prop_oneof![Just(0u32), 1..30u32],
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let pools = model_pools();
        let areas = [area("0755"), area("020"), area("010")];
        let fallbacks = [Fallback::None, Fallback::Province, Fallback::Any];
        let mut allocator = Allocator::new(AllocConfig { max_pairs_per_x, cool_off_s, sticky_pairs_max: 10_000 });
        let mut model = Model { max_pairs_per_x, cool_off_s, edges: Vec::new(), releases: Vec::new() };
        let mut now_s = 1_000u32;
        let mut next_id = 1u64;
        for op in ops {
            match op {
                Op::Choose { tenant, area, fallback, a, b, ttl_s } => {
                    let (a, b) = (real(u64::from(a)), real(u64::from(b) + 40));
                    let (asked, fallback) = (areas[usize::from(area)], fallbacks[usize::from(fallback)]);
                    let got = allocator.choose(&pools, tenant, &asked, fallback, a, b, now_s);
                    let expected = model.choose(&pools, tenant, asked, fallback, a, b, now_s);
                    prop_assert_eq!(got.ok().and_then(x_value), expected);
                    if let Ok(chosen) = got {
                        prop_assert_eq!(pools.owner(chosen).map(|(t, _)| t), Some(tenant));
                        let id = next_id;
                        next_id += 1;
                        allocator.bound(chosen, a, b, id, now_s + ttl_s);
                        model.edges.push(ModelEdge { id, x: x_value(chosen).unwrap(), a, b, expires_at_s: now_s + ttl_s });
                    } else {
                        prop_assert_eq!(got.unwrap_err().area, asked);
                    }
                }
                Op::Named { offset, a, b, ttl_s } => {
                    let (a, b) = (real(u64::from(a)), real(u64::from(b) + 8));
                    let id = next_id;
                    next_id += 1;
                    allocator.bound(x(u64::from(offset)), a, b, id, now_s + ttl_s);
                    model.edges.push(ModelEdge { id, x: BASE + u64::from(offset), a, b, expires_at_s: now_s + ttl_s });
                }
                Op::Release { k, cool_off } => {
                    if !model.edges.is_empty() {
                        let id = model.edges[usize::from(k) % model.edges.len()].id;
                        allocator.released(id, now_s, cool_off);
                        model.release(id, now_s, cool_off);
                    }
                }
                Op::Expire { limit } => {
                    let done = allocator.expire(now_s, usize::from(limit));
                    let mut due: Vec<(u32, u64)> = model.edges.iter().filter(|e| e.expires_at_s <= now_s).map(|e| (e.expires_at_s, e.id)).collect();
                    due.sort_unstable();
                    due.truncate(usize::from(limit));
                    prop_assert_eq!(done, due.len());
                    for (_, id) in due {
                        model.release(id, now_s, true);
                    }
                }
                Op::Wait { s } => now_s += s,
            }
            let in_use: std::collections::BTreeSet<u64> = model.edges.iter().map(|e| e.x).collect();
            prop_assert_eq!(allocator.x_in_use(), in_use.len() as u64);
            prop_assert_eq!(allocator.in_use(BASE, BASE + 2), in_use.range(BASE..=BASE + 2).count() as u64);
            prop_assert_eq!(allocator.delta(), model.delta());
            prop_assert_eq!(allocator.live_pairs(), model.edges.len() as u64);
        }
    }

    /// Two allocators fed the same calls hold byte-identical checkpoints:
    /// nothing depends on a per-process hash seed or iteration order.
    #[test]
    fn the_same_calls_give_the_same_state(ops in proptest::collection::vec(op(), 1..60)) {
        let pools = model_pools();
        let mut one = Allocator::new(AllocConfig { cool_off_s: 5, ..AllocConfig::default() });
        let mut two = Allocator::new(AllocConfig { cool_off_s: 5, ..AllocConfig::default() });
        let mut now_s = 0;
        for (id, op) in ops.into_iter().enumerate() {
            for allocator in [&mut one, &mut two] {
                match op {
                    Op::Choose { a, b, ttl_s, .. } => {
                        if let Ok(chosen) = allocator.choose(&pools, 1, &area("0755"), Fallback::Any, real(u64::from(a)), real(u64::from(b) + 8), now_s) {
                            allocator.bound(chosen, real(u64::from(a)), real(u64::from(b) + 8), id as u64, now_s + ttl_s);
                        }
                    }
                    Op::Release { k, cool_off } => allocator.released(u64::from(k) % 60, now_s, cool_off),
                    Op::Expire { limit } => { allocator.expire(now_s, usize::from(limit)); }
                    Op::Named { .. } | Op::Wait { .. } => {}
                }
            }
            if let Op::Wait { s } = op { now_s += s; }
        }
        let (mut bytes_one, mut bytes_two) = (Vec::new(), Vec::new());
        one.encode(&mut bytes_one);
        two.encode(&mut bytes_two);
        prop_assert_eq!(bytes_one, bytes_two);
    }
}
