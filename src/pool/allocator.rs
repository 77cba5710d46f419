//! Automatic X selection for AXB: online edge colouring.
//!
//! Real numbers are vertices, live AXB bindings are edges, each X is a
//! colour; within one X no real number may appear twice. For a pair (a, b)
//! [`Allocator::choose`] tries, in order, stopping at the first X that fits:
//!
//! 1. sticky: the X the pair last held, if it lies in the asked area;
//! 2. then for each step the request allows (the area; the other areas of
//!    its province; any other area of the tenant), in that order:
//!    - a: first-fit over the X already in use there, ascending: the lowest
//!      X with room (fewer than `max_pairs_per_x` pairs) where neither a nor
//!      b is live and neither is cooling off;
//!    - b: the lowest free X there (no live pair) that neither party is
//!      cooling off on;
//!    - c: only when stale edges exist (expired but not yet released): an
//!      X that is full or in use only because of them.
//!
//!    A light pair (neither party holds a binding) takes step a only below
//!    `max_pairs_per_x` less a reserve of `HEAVY_RESERVE_PERCENT`, then b,
//!    then a up to the full limit, then c. Light pairs fit on any X, while a
//!    courier with 50 live orders needs 50 X without it: plain first-fit let
//!    light pairs fill the low X to the brim and pushed busy couriers onto
//!    new X. The reserve keeps room for them (measured in the simulator:
//!    steady-state X in use over the lower bound 1.044 mean against 1.107
//!    for plain first-fit).
//!
//! "Fits" means: a and b not live on X (edges with `expires_at_s <= now_s`
//! count as gone), X below `max_pairs_per_x` live pairs, X not cooling for
//! a or b. First-fit over X in use keeps the X in use packed at the low end,
//! so the count stays near max(Delta, live pairs / max_pairs_per_x) (see
//! perf/alloc-sim.sh for the measured ratio).
//!
//! Cost: step a skips an X only if a or b is live or cooling on it, so it
//! visits at most deg(a) + deg(b) + cooling + 1 X per range; each visit is
//! a binary search in a's and b's sorted edge lists. Step b is one map step
//! per skip in [`Runs`]. So `choose` is O(r log n + (deg(a) + deg(b)) log
//! deg) where r is the ranges in scope, never a scan of the X in use. Step c
//! scans the stale edges and runs only on the way to exhaustion.
//!
//! Every decision reads ordered sets or exact map lookups: the result is a
//! function of the calls made so far, as the replicated apply path needs.

use super::area::{AreaCode, Fallback, Province};
use super::codec::{write_header, write_trailer, Corrupt, Reader};
use super::hash::FixedMap;
use super::pools::Pools;
use super::range::{x_number, x_value, PoolRange, X_VALUE_MAX, X_VALUE_MIN};
use super::recent::{Recent, Release};
use super::runs::Runs;
use crate::number::Number;
use std::collections::{BTreeMap, BTreeSet};

/// Percent of `max_pairs_per_x` on each X that pairs of two unbound
/// parties leave free for pairs with a party already bound (see the module
/// docs). Measured with `perf/alloc-sim.sh`: 5% beat 0%, 10% and 20%.
pub const HEAVY_RESERVE_PERCENT: u32 = 5;
/// Default most live pairs on one X.
pub const MAX_PAIRS_PER_X_DEFAULT: u32 = 200;
/// Highest `max_pairs_per_x` accepted.
pub const MAX_PAIRS_PER_X_LIMIT: u32 = 100_000;
/// Highest `cool_off_s` accepted (one hour).
pub const COOL_OFF_S_MAX: u32 = 3600;
/// Default number of releases remembered for stickiness.
pub const STICKY_PAIRS_DEFAULT: u32 = 65_536;
/// Highest `sticky_pairs_max` accepted.
pub const STICKY_PAIRS_LIMIT: u32 = 16 << 20;

/// Magic of the allocator checkpoint.
const MAGIC: &[u8; 4] = b"X7AL";
/// Version of the allocator checkpoint.
const VERSION: u16 = 1;
/// Bytes per edge in the checkpoint.
const EDGE_BYTES: usize = 36;
/// Bytes per release in the checkpoint.
const RELEASE_BYTES: usize = 28;

/// The allocator's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocConfig {
    /// Most live pairs on one X (default 200, 1..=`MAX_PAIRS_PER_X_LIMIT`).
    pub max_pairs_per_x: u32,
    /// Seconds an X released by a pair waits before that pair's numbers use
    /// it again (default 0, at most `COOL_OFF_S_MAX`).
    pub cool_off_s: u32,
    /// Releases remembered for stickiness (default 65,536; entries still
    /// cooling off are kept beyond it).
    pub sticky_pairs_max: u32,
}

impl Default for AllocConfig {
    fn default() -> Self {
        AllocConfig {
            max_pairs_per_x: MAX_PAIRS_PER_X_DEFAULT,
            cool_off_s: 0,
            sticky_pairs_max: STICKY_PAIRS_DEFAULT,
        }
    }
}

impl AllocConfig {
    /// Checks every limit; the reason names the field.
    pub fn check(&self) -> Result<(), &'static str> {
        if !(1..=MAX_PAIRS_PER_X_LIMIT).contains(&self.max_pairs_per_x) {
            return Err("max_pairs_per_x must be 1 to 100000");
        }
        if self.cool_off_s > COOL_OFF_S_MAX {
            return Err("cool_off_s must be at most 3600");
        }
        if self.sticky_pairs_max > STICKY_PAIRS_LIMIT {
            return Err("sticky_pairs_max must be at most 16777216");
        }
        Ok(())
    }

    /// The config with every field brought within its limits.
    fn clamped(self) -> AllocConfig {
        AllocConfig {
            max_pairs_per_x: self.max_pairs_per_x.clamp(1, MAX_PAIRS_PER_X_LIMIT),
            cool_off_s: self.cool_off_s.min(COOL_OFF_S_MAX),
            sticky_pairs_max: self.sticky_pairs_max.min(STICKY_PAIRS_LIMIT),
        }
    }
}

/// No X fits the pair in what the request allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("pool exhausted in area {area} (fallback {})", fallback.name())]
pub struct Exhausted {
    /// The area the request asked for.
    pub area: AreaCode,
    /// The fallback the request allowed (every step of it was tried).
    pub fallback: Fallback,
}

/// Why an allocator checkpoint could not be decoded.
pub type DecodeError = Corrupt;

/// One live binding as the allocator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Edge {
    x: u64,
    a: Number,
    b: Number,
    expires_at_s: u32,
}

/// One entry of a real number's edge list (kept sorted by X, then id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Adjacent {
    x: u64,
    binding_id: u64,
    expires_at_s: u32,
}

/// Per-area figures for `pool show` (see [`Allocator::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AreaStats {
    /// The area.
    pub area: AreaCode,
    /// The province of its ranges (the first range's, if they differ).
    pub province: Province,
    /// Numbers in the tenant's ranges of this area.
    pub numbers: u64,
    /// Of those, X holding at least one live pair.
    pub numbers_in_use: u64,
    /// `numbers - numbers_in_use`.
    pub numbers_free: u64,
    /// Live pairs on those X.
    pub live_pairs: u64,
    /// The most live bindings one real number holds on those X (Delta).
    pub delta: u32,
}

/// The X selection state (see the module docs). Holds only what is in use
/// or recently released: a pool range costs nothing here until used.
///
/// Memory (measured by `benches/pool.rs` with `heap_bytes` at 1M live
/// pairs, couriers with about 5 live pairs each, fresh customers): about
/// 210 bytes per live binding (its edge, one 24-byte entry in each party's
/// list, the parties' map slots, the expiry index), rising to about 290
/// with 65,536 releases remembered and maps grown by churn; about 40 bytes
/// per X in use (pair count, the two open sets; the in-use runs are nearly
/// free while X are packed); about 100 bytes per remembered release.
#[derive(Debug, Clone)]
pub struct Allocator {
    config: AllocConfig,
    /// Live bindings by id.
    edges: FixedMap<u64, Edge>,
    /// Each real number's live bindings, sorted by (X, id).
    adjacent: FixedMap<Number, Vec<Adjacent>>,
    /// Live pairs per X in use (absent = 0).
    pairs: FixedMap<u64, u32>,
    /// X with at least one live pair.
    in_use: Runs,
    /// X in use with room: 0 < pairs < max_pairs_per_x.
    open: BTreeSet<u64>,
    /// X in use with room below the reserve: 0 < pairs < `light_cap()`.
    roomy: BTreeSet<u64>,
    /// Live bindings by expiry.
    expiry: BTreeSet<(u32, u64)>,
    /// How many real numbers hold exactly d live bindings, by d.
    degrees: Vec<u64>,
    /// The most live bindings one real number holds (Delta).
    delta: u32,
    /// Released pairs: cool-off and stickiness.
    recent: Recent,
}

/// The checks for one pair at one moment.
/// Each party's edges and cooling entries are looked up once per `choose`,
/// not once per candidate X.
struct Probe<'a> {
    /// a's and b's edge lists (sorted by X; empty if unbound).
    edges: [&'a [Adjacent]; 2],
    /// a's and b's cooling entries.
    cooling: [&'a [(u64, u32)]; 2],
    now_s: u32,
}

impl Probe<'_> {
    /// True if the pair may go on `x`, given room on it.
    fn allowed(&self, x: u64) -> bool {
        let now_s = self.now_s;
        self.edges.iter().all(|list| !live_on(list, x, now_s))
            && self
                .cooling
                .iter()
                .all(|list| !list.iter().any(|&(cx, until_s)| cx == x && until_s > now_s))
    }

    /// True if neither party holds a binding (stale ones included).
    fn light(&self) -> bool {
        self.edges.iter().all(|list| list.is_empty())
    }
}

/// True if a sorted edge list holds a binding on `x` that has not expired.
fn live_on(list: &[Adjacent], x: u64, now_s: u32) -> bool {
    let start = list.partition_point(|entry| entry.x < x);
    list[start..]
        .iter()
        .take_while(|entry| entry.x == x)
        .any(|entry| entry.expires_at_s > now_s)
}

impl Allocator {
    /// An empty allocator. Out-of-range config fields are brought within
    /// their limits ([`AllocConfig::check`] says which).
    pub fn new(config: AllocConfig) -> Allocator {
        Allocator {
            config: config.clamped(),
            edges: FixedMap::default(),
            adjacent: FixedMap::default(),
            pairs: FixedMap::default(),
            in_use: Runs::default(),
            open: BTreeSet::new(),
            roomy: BTreeSet::new(),
            expiry: BTreeSet::new(),
            degrees: vec![0],
            delta: 0,
            recent: Recent::default(),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> AllocConfig {
        self.config
    }

    /// Chooses X for the pair (a, b) of `tenant` in `area`, then as
    /// `fallback` allows in the same province, then in any of the tenant's
    /// areas (see the module docs for the order). Never outside the
    /// tenant's pool. Pure: call [`Allocator::bound`] to take it.
    #[allow(clippy::too_many_arguments)] // The lead's API: each is one fact of the request.
    pub fn choose(
        &self,
        pools: &Pools,
        tenant: u32,
        area: &AreaCode,
        fallback: Fallback,
        a: Number,
        b: Number,
        now_s: u32,
    ) -> Result<Number, Exhausted> {
        let edges = |number| self.adjacent.get(&number).map_or(&[][..], Vec::as_slice);
        let probe = Probe {
            edges: [edges(a), edges(b)],
            cooling: [self.recent.cooling_list(a), self.recent.cooling_list(b)],
            now_s,
        };
        let area = *area;
        if let Some(x) = self.recent.sticky(a, b) {
            let in_area = pools
                .owner_of_value(x)
                .is_some_and(|(owner, range)| owner == tenant && range.area == area);
            if in_area
                && self.pairs.get(&x).copied().unwrap_or(0) < self.config.max_pairs_per_x
                && probe.allowed(x)
            {
                return Ok(x_number(x));
            }
        }
        // The province fallback compares: the asked area's ranges carry it
        // (an operator may have overridden the default table). Only the
        // fallback steps read it.
        let province = if fallback == Fallback::None {
            area.province()
        } else {
            pools
                .area_ranges(tenant, area)
                .next()
                .map_or_else(|| area.province(), |range| range.province)
        };
        let steps: &[u8] = match fallback {
            Fallback::None => &[0],
            Fallback::Province => &[0, 1],
            Fallback::Any => &[0, 1, 2],
        };
        for &step in steps {
            let found = if step == 0 {
                self.in_step(pools.area_ranges(tenant, area), &probe)
            } else {
                let in_step = move |range: &&PoolRange| {
                    range.area != area && (range.province == province) == (step == 1)
                };
                self.in_step(pools.ranges(tenant).filter(in_step), &probe)
            };
            if let Some(x) = found {
                return Ok(x_number(x));
            }
        }
        Err(Exhausted { area, fallback })
    }

    /// Steps a, b and c over one step's ranges (a light pair: a within the
    /// reserve, b, a beyond it, c).
    fn in_step<'p>(
        &self,
        ranges: impl Iterator<Item = &'p PoolRange> + Clone,
        probe: &Probe<'_>,
    ) -> Option<u64> {
        // A light pair (neither party bound) fits anywhere, so it leaves
        // the reserve to pairs that need X without their parties.
        if probe.light() {
            return self
                .first_fit(&self.roomy, ranges.clone(), probe)
                .or_else(|| self.lowest_free(ranges.clone(), probe))
                .or_else(|| self.first_fit(&self.open, ranges.clone(), probe))
                .or_else(|| self.reclaim_stale(ranges, probe));
        }
        self.first_fit(&self.open, ranges.clone(), probe)
            .or_else(|| self.lowest_free(ranges.clone(), probe))
            .or_else(|| self.reclaim_stale(ranges, probe))
    }

    /// Step a: the lowest X in use with room that the pair may go on.
    fn first_fit<'p>(
        &self,
        open: &BTreeSet<u64>,
        ranges: impl Iterator<Item = &'p PoolRange>,
        probe: &Probe<'_>,
    ) -> Option<u64> {
        for range in ranges {
            if let Some(&x) = open
                .range(range.first..=range.last)
                .find(|&&x| probe.allowed(x))
            {
                return Some(x);
            }
        }
        None
    }

    /// Step b: the lowest X with no live pair that neither party is cooling
    /// off on (a party cannot be live on an X with no pair).
    fn lowest_free<'p>(
        &self,
        ranges: impl Iterator<Item = &'p PoolRange>,
        probe: &Probe<'_>,
    ) -> Option<u64> {
        for range in ranges {
            let mut from = range.first;
            while let Some(x) = self.in_use.next_free(from, range.last) {
                if probe.allowed(x) {
                    return Some(x);
                }
                from = x + 1;
            }
        }
        None
    }

    /// Step c: an X full or in use only because of edges that expired but
    /// were not released yet. Runs only when such edges exist, and scans
    /// them: it is the path to exhaustion, not the common one.
    fn reclaim_stale<'p>(
        &self,
        ranges: impl Iterator<Item = &'p PoolRange>,
        probe: &Probe<'_>,
    ) -> Option<u64> {
        let now_s = probe.now_s;
        let stale = self.expiry.range(..=(now_s, u64::MAX));
        // Nothing stale: nothing to reclaim.
        stale.clone().next()?;
        let ranges: Vec<&PoolRange> = ranges.collect();
        let mut stale_on: BTreeMap<u64, u32> = BTreeMap::new();
        for &(_, binding_id) in stale {
            if let Some(edge) = self.edges.get(&binding_id) {
                if ranges.iter().any(|range| range.contains(edge.x)) {
                    *stale_on.entry(edge.x).or_default() += 1;
                }
            }
        }
        stale_on.into_iter().find_map(|(x, stale)| {
            let live = self.pairs.get(&x).copied().unwrap_or(0) - stale;
            (live < self.config.max_pairs_per_x && probe.allowed(x)).then_some(x)
        })
    }

    /// A live AXB binding (chosen or named explicitly) now holds (a, b) on
    /// `x` until `expires_at_s`. A known `binding_id` is replaced (an
    /// update): its old edge goes without cool-off. An X outside the 700
    /// range (a legacy X) is not tracked: pools hold only 700 numbers.
    pub fn bound(&mut self, x: Number, a: Number, b: Number, binding_id: u64, expires_at_s: u32) {
        // The old edge goes first, whatever the new X: an update onto a
        // legacy X must not leave the binding's old 700 X counted.
        self.forget(binding_id);
        let Some(x) = x_value(x) else {
            return;
        };
        self.edges.insert(
            binding_id,
            Edge {
                x,
                a,
                b,
                expires_at_s,
            },
        );
        let entry = Adjacent {
            x,
            binding_id,
            expires_at_s,
        };
        for number in [a, b] {
            // Most real numbers (customers, passengers) hold one binding:
            // room for one, not the four a first push would reserve.
            let list = self
                .adjacent
                .entry(number)
                .or_insert_with(|| Vec::with_capacity(1));
            let at = list.partition_point(|e| (e.x, e.binding_id) < (x, binding_id));
            list.insert(at, entry);
            let degree = list.len();
            self.move_degree(degree - 1, degree);
        }
        let pairs = self.pairs.entry(x).or_insert(0);
        *pairs += 1;
        let pairs = *pairs;
        if pairs == 1 {
            self.in_use.insert(x);
        }
        self.file(x, pairs);
        self.expiry.insert((expires_at_s, binding_id));
    }

    /// The binding is gone at `now_s` (unbind, expiry, replaced).
    /// Idempotent: an unknown id is ignored. `cool_off` false is for a
    /// rollback (a tentative bind the table refused): no cool-off and no
    /// sticky memory. A binding that had already expired went at its
    /// expiry, and its cool-off counts from then.
    pub fn released(&mut self, binding_id: u64, now_s: u32, cool_off: bool) {
        let Some(edge) = self.forget(binding_id) else {
            return;
        };
        if cool_off {
            self.recent.push(
                Release {
                    a: edge.a,
                    b: edge.b,
                    x: edge.x,
                    gone_at_s: now_s.min(edge.expires_at_s),
                },
                self.config.cool_off_s,
            );
        }
        self.recent.trim(
            self.config.sticky_pairs_max as usize,
            self.config.cool_off_s,
            now_s,
        );
    }

    /// Releases (with cool-off) up to `limit` bindings whose
    /// `expires_at_s <= now_s`, earliest first; returns how many. `choose`
    /// already treats them as gone; this reclaims their memory.
    pub fn expire(&mut self, now_s: u32, limit: usize) -> usize {
        let mut done = 0;
        while done < limit {
            let Some(&(expires_at_s, binding_id)) = self.expiry.first() else {
                break;
            };
            if expires_at_s > now_s {
                break;
            }
            self.released(binding_id, now_s, true);
            done += 1;
        }
        done
    }

    /// Removes a binding from every structure; returns its edge.
    fn forget(&mut self, binding_id: u64) -> Option<Edge> {
        let edge = self.edges.remove(&binding_id)?;
        for number in [edge.a, edge.b] {
            let Some(list) = self.adjacent.get_mut(&number) else {
                continue;
            };
            let Some(at) = list.iter().position(|e| e.binding_id == binding_id) else {
                continue;
            };
            list.remove(at);
            let degree = list.len();
            if degree == 0 {
                self.adjacent.remove(&number);
            }
            self.move_degree(degree + 1, degree);
        }
        let pairs = self
            .pairs
            .get_mut(&edge.x)
            .expect("an edge's X has a pair count");
        *pairs -= 1;
        let pairs = *pairs;
        if pairs == 0 {
            self.pairs.remove(&edge.x);
            self.in_use.remove(edge.x);
        }
        self.file(edge.x, pairs);
        self.expiry.remove(&(edge.expires_at_s, binding_id));
        Some(edge)
    }

    /// Files `x`, now holding `pairs`, in the open sets.
    fn file(&mut self, x: u64, pairs: u32) {
        if pairs > 0 && pairs < self.config.max_pairs_per_x {
            self.open.insert(x);
        } else {
            self.open.remove(&x);
        }
        if pairs > 0 && pairs < self.light_cap() {
            self.roomy.insert(x);
        } else {
            self.roomy.remove(&x);
        }
    }

    /// Pairs a light pair (both parties unbound) may fill an X up to.
    fn light_cap(&self) -> u32 {
        let max = self.config.max_pairs_per_x;
        max - max * HEAVY_RESERVE_PERCENT / 100
    }

    /// One real number went from `from` to `to` live bindings.
    fn move_degree(&mut self, from: usize, to: usize) {
        if from > 0 {
            self.degrees[from] -= 1;
        }
        if to >= self.degrees.len() {
            self.degrees.resize(to + 1, 0);
        }
        if to > 0 {
            self.degrees[to] += 1;
        }
        let delta = self.delta as usize;
        if to > delta {
            // Degrees are bounded by live bindings, far below u32::MAX.
            self.delta = to as u32;
        } else if from == delta && self.degrees[delta] == 0 {
            self.delta = (0..delta)
                .rev()
                .find(|&d| d == 0 || self.degrees[d] > 0)
                .unwrap_or(0) as u32;
        }
    }

    /// Numbers of `first..=last` holding at least one live pair (for
    /// [`Pools::remove`]).
    pub fn in_use(&self, first: u64, last: u64) -> u64 {
        self.in_use.count_in(first, last)
    }

    /// Distinct X holding at least one live pair.
    pub fn x_in_use(&self) -> u64 {
        self.in_use.count()
    }

    /// Live bindings tracked (released or replaced ones excluded; expired
    /// ones count until released or expired by [`Allocator::expire`]).
    pub fn live_pairs(&self) -> u64 {
        self.edges.len() as u64
    }

    /// The most live bindings held by one real number (Delta), over all X.
    pub fn delta(&self) -> u32 {
        self.delta
    }

    /// Releases remembered for cool-off and stickiness.
    pub fn releases_remembered(&self) -> usize {
        self.recent.len()
    }

    /// The X on which `a` and `b` are already a live pair, if any: a
    /// retried automatic bind gets the binding it made (the tables answer
    /// it as a retry) instead of a second X.
    pub fn x_of_pair(&self, a: Number, b: Number, now_s: u32) -> Option<Number> {
        let of = |n: Number| self.adjacent.get(&n).map_or(&[][..], Vec::as_slice);
        let b_list = of(b);
        // One binding: a and b on one X may also be two pairs (a, c) and
        // (b, d); then they share no binding id.
        of(a)
            .iter()
            .filter(|entry| entry.expires_at_s > now_s)
            .find(|entry| {
                b_list
                    .iter()
                    .any(|other| other.binding_id == entry.binding_id)
            })
            .map(|entry| x_number(entry.x))
    }

    /// Live pairs on `x`.
    pub fn pairs_on(&self, x: Number) -> u32 {
        x_value(x)
            .and_then(|x| self.pairs.get(&x).copied())
            .unwrap_or(0)
    }

    /// Per area of `tenant`: numbers, in use, free, live pairs, Delta. An
    /// admin call, not a hot one: O(X in use + live bindings x log ranges).
    pub fn stats(&self, pools: &Pools, tenant: u32) -> Vec<AreaStats> {
        let mut by_area: BTreeMap<AreaCode, AreaStats> = BTreeMap::new();
        for range in pools.ranges(tenant) {
            let stats = by_area.entry(range.area).or_insert(AreaStats {
                area: range.area,
                province: range.province,
                numbers: 0,
                numbers_in_use: 0,
                numbers_free: 0,
                live_pairs: 0,
                delta: 0,
            });
            let in_use = self.in_use.count_in(range.first, range.last);
            stats.numbers += range.numbers();
            stats.numbers_in_use += in_use;
            stats.numbers_free += range.numbers() - in_use;
            stats.live_pairs += self
                .in_use
                .values_in(range.first, range.last)
                .map(|x| u64::from(self.pairs.get(&x).copied().unwrap_or(0)))
                .sum::<u64>();
        }
        let mut degree: BTreeMap<AreaCode, u32> = BTreeMap::new();
        for list in self.adjacent.values() {
            degree.clear();
            for entry in list {
                if let Some((owner, range)) = pools.owner_of_value(entry.x) {
                    if owner == tenant {
                        *degree.entry(range.area).or_default() += 1;
                    }
                }
            }
            for (area, &d) in &degree {
                if let Some(stats) = by_area.get_mut(area) {
                    stats.delta = stats.delta.max(d);
                }
            }
        }
        by_area.into_values().collect()
    }

    /// An estimate of the heap bytes held (capacities times entry sizes,
    /// one control byte per hash slot, about 1.3x entry size for B-tree
    /// nodes).
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let slot = |entry: usize| entry + 1;
        let tree = |entry: usize| entry * 13 / 10;
        let lists: usize = self
            .adjacent
            .values()
            .map(|list| list.capacity() * size_of::<Adjacent>())
            .sum();
        self.edges.capacity() * slot(size_of::<(u64, Edge)>())
            + self.adjacent.capacity() * slot(size_of::<(Number, Vec<Adjacent>)>())
            + lists
            + self.pairs.capacity() * slot(size_of::<(u64, u32)>())
            + self.in_use.run_count() * tree(16)
            + (self.open.len() + self.roomy.len()) * tree(8)
            + self.expiry.len() * tree(16)
            + self.recent.heap_bytes()
    }

    /// Appends the checkpoint encoding, all fields little-endian: `"X7AL"`,
    /// version u16 (1); config: max_pairs_per_x u32, cool_off_s u32,
    /// sticky_pairs_max u32; live edge count u64, then per edge in
    /// ascending binding id: binding id u64, X u64, A 8 bytes, B 8 bytes
    /// (BCD as in PROTOCOL.md), expires_at_s u32 (36 bytes); the release
    /// sequence of the first remembered release u64, their count u64, then
    /// per release oldest first: A 8, B 8, X u64, gone_at_s u32 (28 bytes);
    /// then the CRC32C of everything before it, u32. Everything else is
    /// derived from these on decode.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = write_header(out, MAGIC, VERSION);
        out.extend_from_slice(&self.config.max_pairs_per_x.to_le_bytes());
        out.extend_from_slice(&self.config.cool_off_s.to_le_bytes());
        out.extend_from_slice(&self.config.sticky_pairs_max.to_le_bytes());
        let mut ids: Vec<u64> = self.edges.keys().copied().collect();
        ids.sort_unstable();
        out.extend_from_slice(&(ids.len() as u64).to_le_bytes());
        for id in ids {
            let edge = &self.edges[&id];
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&edge.x.to_le_bytes());
            out.extend_from_slice(&edge.a.0);
            out.extend_from_slice(&edge.b.0);
            out.extend_from_slice(&edge.expires_at_s.to_le_bytes());
        }
        let (popped, releases) = self.recent.releases();
        out.extend_from_slice(&popped.to_le_bytes());
        out.extend_from_slice(&(self.recent.len() as u64).to_le_bytes());
        for release in releases {
            out.extend_from_slice(&release.a.0);
            out.extend_from_slice(&release.b.0);
            out.extend_from_slice(&release.x.to_le_bytes());
            out.extend_from_slice(&release.gone_at_s.to_le_bytes());
        }
        write_trailer(out, start);
    }

    /// Decodes [`Allocator::encode`]; corrupt input is an error, never a
    /// panic.
    pub fn decode(bytes: &[u8]) -> Result<Allocator, DecodeError> {
        let mut reader = Reader::open(bytes, MAGIC, VERSION)?;
        let config = AllocConfig {
            max_pairs_per_x: reader.u32()?,
            cool_off_s: reader.u32()?,
            sticky_pairs_max: reader.u32()?,
        };
        config
            .check()
            .map_err(|_| Corrupt("config out of its limits"))?;
        let mut allocator = Allocator::new(config);
        let edges = reader.u64()?;
        if edges > (reader.remaining() / EDGE_BYTES) as u64 {
            return Err(Corrupt("edge count beyond the bytes"));
        }
        for _ in 0..edges {
            let id = reader.u64()?;
            let x = reader.u64()?;
            let a = party(reader.take()?)?;
            let b = party(reader.take()?)?;
            let expires_at_s = reader.u32()?;
            if !(X_VALUE_MIN..=X_VALUE_MAX).contains(&x) {
                return Err(Corrupt("edge X outside the 700 range"));
            }
            if allocator.edges.contains_key(&id) {
                return Err(Corrupt("binding id twice"));
            }
            allocator.bound(x_number(x), a, b, id, expires_at_s);
        }
        let popped = reader.u64()?;
        let releases = reader.u64()?;
        if releases > (reader.remaining() / RELEASE_BYTES) as u64 {
            return Err(Corrupt("release count beyond the bytes"));
        }
        allocator.recent.set_popped(popped);
        for _ in 0..releases {
            let a = party(reader.take()?)?;
            let b = party(reader.take()?)?;
            let x = reader.u64()?;
            let gone_at_s = reader.u32()?;
            if !(X_VALUE_MIN..=X_VALUE_MAX).contains(&x) {
                return Err(Corrupt("release X outside the 700 range"));
            }
            allocator
                .recent
                .push(Release { a, b, x, gone_at_s }, config.cool_off_s);
        }
        if reader.remaining() != 0 {
            return Err(Corrupt("trailing bytes"));
        }
        Ok(allocator)
    }
}

/// A real party read from a checkpoint: a well-formed number, not NONE.
fn party(bytes: [u8; 8]) -> Result<Number, Corrupt> {
    let number = Number(bytes);
    if number.is_none() || !number.is_well_formed() {
        return Err(Corrupt("malformed party number"));
    }
    Ok(number)
}
