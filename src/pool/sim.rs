//! The allocation simulator: a simulated day (or more) of delivery and
//! ride-hailing binds through one [`Allocator`], recording X in use
//! against Delta and the lower bound max(Delta, ceil(live pairs /
//! max_pairs_per_x)) per area over time. `examples/alloc_sim.rs` runs it and
//! writes the CSV time series and the JSON summary; `perf/alloc-sim.sh`
//! records a run in `perf/results/`.
//!
//! Shapes, per area (all seeded, so a run is reproducible):
//! - couriers with a heavy-tailed capacity (Pareto, alpha 1.1, clipped to
//!   1-50 live orders); an order goes to a courier picked in proportion to
//!   capacity (a busy courier gets more), retried if full, dropped after 8
//!   tries; the customer is one of many, holding at most 2 live orders;
//!   delivery lives 15-60 minutes;
//! - ride-hailing: a driver (at most 1 live ride, 2 for one in five drivers,
//!   who take the next ride before the last ends) and a passenger, 5-30
//!   minutes;
//! - demand by hour: quiet nights, meal bursts at 11:00-13:00 and
//!   17:00-19:30 for deliveries, commute peaks for rides;
//! - 85% of bindings are unbound when the order ends (cool-off applies),
//!   15% are left to expire and reclaimed by [`Allocator::expire`].

use super::allocator::{AllocConfig, Allocator};
use super::area::{AreaCode, Fallback};
use super::pools::Pools;
use super::range::PoolRange;
use crate::number::Number;
use crate::synth::splitmix64;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// Seconds in a day.
const DAY_S: u32 = 86_400;
/// First X of area i's range: BASE + i * AREA_STRIDE.
const BASE: u64 = 700_100_000_000_000;
/// Distance between area ranges.
const AREA_STRIDE: u64 = 1_000_000;
/// Tries to find a courier, customer, driver or passenger with room.
const TRIES: usize = 8;
/// Most releases and expiries per simulated second (a bound on each loop).
const EXPIRE_PER_S_MAX: usize = 100_000;

/// One area's demand.
#[derive(Debug, Clone)]
pub struct AreaShape {
    /// The area code (a city).
    pub code: &'static str,
    /// Numbers in the area's pool range.
    pub range_numbers: u64,
    /// Couriers in the area.
    pub couriers: u32,
    /// Customers in the area.
    pub customers: u32,
    /// Delivery orders per hour at the meal peak.
    pub orders_per_hour_peak: u32,
    /// Drivers in the area.
    pub drivers: u32,
    /// Passengers in the area.
    pub passengers: u32,
    /// Rides per hour at the commute peak.
    pub rides_per_hour_peak: u32,
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seed of every random draw.
    pub seed: u64,
    /// Simulated days (from midnight).
    pub days: u32,
    /// Seconds between samples.
    pub sample_every_s: u32,
    /// Samples before this second are warm-up, not steady state.
    pub warmup_s: u32,
    /// Samples of an area with fewer live pairs are not steady state (the
    /// ratio of two small numbers is noise: 2 X for Delta 1 is 2.0).
    pub steady_pairs_min: u64,
    /// Hours of the day (from, to) where demand is flat: the middle of the
    /// meal bursts, half an hour after each begins. X in use lags Delta when
    /// demand falls (a live binding never moves to another X, and `choose`
    /// is not told when the new one will end), so ramps down are reported
    /// apart, in the `day_*` figures.
    pub steady_windows_h: Vec<(f64, f64)>,
    /// The allocator's settings.
    pub alloc: AllocConfig,
    /// The areas, each with its own range of the one tenant's pool.
    pub areas: Vec<AreaShape>,
}

impl SimConfig {
    /// Four cities of different sizes, two in one province (Guangdong:
    /// Shenzhen and Guangzhou), one simulated day after a day of warm-up.
    pub fn realistic() -> SimConfig {
        let area = |code, couriers: u32, drivers: u32| AreaShape {
            code,
            range_numbers: 100_000,
            couriers,
            customers: couriers * 60,
            orders_per_hour_peak: couriers * 6,
            drivers,
            passengers: drivers * 40,
            rides_per_hour_peak: drivers * 2,
        };
        SimConfig {
            seed: 0x0700_5133,
            days: 2,
            sample_every_s: 300,
            warmup_s: DAY_S,
            steady_pairs_min: 200,
            steady_windows_h: vec![(11.5, 13.0), (17.5, 19.5)],
            alloc: AllocConfig::default(),
            areas: vec![
                area("0755", 4000, 6000),
                area("020", 3000, 5000),
                area("010", 1500, 3000),
                area("0571", 300, 400),
            ],
        }
    }
}

/// One sample of one area (or `all`, the sums over areas).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sample {
    /// Simulated second since the first midnight.
    pub t_s: u32,
    /// Area code, or `all`.
    pub area: String,
    /// Live AXB pairs.
    pub live_pairs: u64,
    /// Distinct X holding a live pair.
    pub x_in_use: u64,
    /// The most live bindings one real number holds (for `all`: the
    /// largest area Delta).
    pub delta: u32,
    /// max(Delta, ceil(live pairs / max_pairs_per_x)) (for `all`: the sum
    /// of the areas' bounds, since each area has its own X).
    pub lower_bound: u64,
}

impl Sample {
    fn over(numerator: u64, denominator: u64) -> f64 {
        numerator as f64 / denominator.max(1) as f64
    }
}

/// Figures of one area (or `all`) over the run after warm-up.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AreaSummary {
    /// Area code, or `all`.
    pub area: String,
    /// Steady-state samples: inside the steady windows (flat demand), with
    /// at least `steady_pairs_min` live pairs.
    pub steady_samples: usize,
    /// Max and mean X in use / Delta over the steady samples (for `all`,
    /// Delta is the largest area's: read the lower-bound figures instead).
    pub steady_x_over_delta_max: f64,
    /// See `steady_x_over_delta_max`.
    pub steady_x_over_delta_mean: f64,
    /// Max and mean X in use / lower bound over the steady samples.
    pub steady_x_over_lower_max: f64,
    /// See `steady_x_over_lower_max`.
    pub steady_x_over_lower_mean: f64,
    /// Samples at any hour with at least `steady_pairs_min` live pairs
    /// (ramps and troughs included).
    pub day_samples: usize,
    /// Mean, 95th percentile and max of X in use / lower bound over them.
    pub day_x_over_lower_mean: f64,
    /// See `day_x_over_lower_mean`.
    pub day_x_over_lower_p95: f64,
    /// See `day_x_over_lower_mean`.
    pub day_x_over_lower_max: f64,
    /// Peaks over the whole run.
    pub peak_live_pairs: u64,
    /// See `peak_live_pairs`.
    pub peak_x_in_use: u64,
    /// See `peak_live_pairs`.
    pub peak_delta: u32,
    /// See `peak_live_pairs`.
    pub peak_lower_bound: u64,
}

/// What a run produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SimReport {
    /// Delivery orders bound.
    pub orders: u64,
    /// Rides bound.
    pub rides: u64,
    /// Demands dropped because no courier/driver or customer had room
    /// (a shape limit, not an allocator one).
    pub dropped: u64,
    /// Binds refused with `Exhausted` (should be 0: the ranges are large).
    pub exhausted: u64,
    /// Bindings left to expire and reclaimed by `expire`.
    pub expired: u64,
    /// Releases remembered at the end (cool-off and stickiness).
    pub releases_remembered: usize,
    /// Allocator heap bytes per live pair at the sample with the most live
    /// pairs (release memory included).
    pub heap_bytes_per_pair: f64,
    /// Per area, then `all`.
    pub summaries: Vec<AreaSummary>,
    /// The time series.
    #[serde(skip)]
    pub samples: Vec<Sample>,
}

impl SimReport {
    /// The time series as CSV with a header line.
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "t_s,hour,area,live_pairs,x_in_use,delta,lower_bound,x_over_delta,x_over_lower\n",
        );
        for s in &self.samples {
            out.push_str(&format!(
                "{},{:.2},{},{},{},{},{},{:.4},{:.4}\n",
                s.t_s,
                f64::from(s.t_s % DAY_S) / 3600.0,
                s.area,
                s.live_pairs,
                s.x_in_use,
                s.delta,
                s.lower_bound,
                Sample::over(s.x_in_use, u64::from(s.delta)),
                Sample::over(s.x_in_use, s.lower_bound),
            ));
        }
        out
    }
}

/// Demand factor for deliveries at an hour of the day (1.0 = the peak).
fn delivery_factor(hour: f64) -> f64 {
    match hour {
        h if h < 6.0 => 0.04,
        h if h < 10.0 => 0.04 + (h - 6.0) * 0.1,
        h if h < 11.0 => 0.5,
        h if h < 13.0 => 1.0,
        h if h < 17.0 => 0.4,
        h if h < 19.5 => 0.9,
        h if h < 22.0 => 0.4,
        _ => 0.12,
    }
}

/// Demand factor for rides at an hour of the day.
fn ride_factor(hour: f64) -> f64 {
    match hour {
        h if h < 6.0 => 0.1,
        h if h < 7.0 => 0.4,
        h if h < 9.5 => 1.0,
        h if h < 17.5 => 0.5,
        h if h < 19.5 => 1.0,
        h if h < 23.0 => 0.45,
        _ => 0.2,
    }
}

/// Seeded draws.
struct Draw {
    state: u64,
}

impl Draw {
    fn below(&mut self, n: u64) -> u64 {
        splitmix64(&mut self.state) % n.max(1)
    }

    fn unit(&mut self) -> f64 {
        (splitmix64(&mut self.state) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `rate` events on average: its floor, plus one with the fraction's
    /// probability.
    fn count(&mut self, rate: f64) -> u64 {
        let whole = rate.floor();
        whole as u64 + u64::from(self.unit() < rate - whole)
    }
}

/// A real number: `1`, area, role, eight digits (11 digits, unique per
/// area, role and index).
fn real(area: usize, role: u8, index: u32) -> Number {
    Number::from_digits(format!("1{}{}{:08}", area % 10, role, index).as_bytes())
}

/// Who a live binding holds, for the load bookkeeping when it ends.
#[derive(Clone, Copy)]
enum Party {
    Delivery { courier: u32, customer: u32 },
    Ride { driver: u32, passenger: u32 },
}

/// One area's live state.
struct AreaState {
    code: AreaCode,
    capacity: Vec<u8>,
    /// Cumulative courier capacity, for picks in proportion to it.
    capacity_sum: Vec<u64>,
    courier_load: Vec<u8>,
    customer_load: Vec<u8>,
    driver_capacity: Vec<u8>,
    driver_load: Vec<u8>,
    passenger_load: Vec<u8>,
}

/// Runs the simulation (see the module docs).
pub fn simulate(config: &SimConfig) -> SimReport {
    let mut draw = Draw { state: config.seed };
    let mut pools = Pools::new();
    let mut areas = Vec::new();
    for (i, shape) in config.areas.iter().enumerate() {
        let code = AreaCode::parse(shape.code).expect("SimConfig: a valid area code");
        let first = BASE + i as u64 * AREA_STRIDE;
        pools
            .add(
                1,
                PoolRange::new(first, first + shape.range_numbers - 1, code),
            )
            .expect("SimConfig: a valid, non-overlapping range");
        let capacity: Vec<u8> = (0..shape.couriers)
            .map(|_| {
                let pareto = 1.0 / (1.0 - draw.unit()).powf(1.0 / 1.1);
                pareto.floor().clamp(1.0, 50.0) as u8
            })
            .collect();
        let capacity_sum = capacity
            .iter()
            .scan(0u64, |sum, &c| {
                *sum += u64::from(c);
                Some(*sum)
            })
            .collect();
        let driver_capacity = (0..shape.drivers)
            .map(|_| if draw.below(5) == 0 { 2 } else { 1 })
            .collect();
        areas.push(AreaState {
            code,
            capacity,
            capacity_sum,
            courier_load: vec![0; shape.couriers as usize],
            customer_load: vec![0; shape.customers as usize],
            driver_capacity,
            driver_load: vec![0; shape.drivers as usize],
            passenger_load: vec![0; shape.passengers as usize],
        });
    }
    let mut allocator = Allocator::new(config.alloc);
    let mut report = SimReport {
        orders: 0,
        rides: 0,
        dropped: 0,
        exhausted: 0,
        expired: 0,
        releases_remembered: 0,
        heap_bytes_per_pair: 0.0,
        summaries: Vec::new(),
        samples: Vec::new(),
    };
    // (end second, binding id), earliest first; what each id holds.
    let mut ends: BinaryHeap<Reverse<(u32, u64)>> = BinaryHeap::new();
    let mut live: HashMap<u64, (usize, Party, bool)> = HashMap::new();
    let mut next_id = 1u64;
    let mut peak_pairs = 0;
    // Time 0 is midnight; the allocator sees a plausible Unix second.
    let epoch_s = 1_800_000_000u32 - 1_800_000_000 % DAY_S;
    for t in 0..config.days * DAY_S {
        let now_s = epoch_s + t;
        // Ends first: unbinds are released, expiring bindings are left to
        // `expire` (they count as gone for `choose` from their expiry on).
        while let Some(&Reverse((end, id))) = ends.peek() {
            if end > t {
                break;
            }
            ends.pop();
            if let Some((i, party, unbind)) = live.remove(&id) {
                let area = &mut areas[i];
                match party {
                    Party::Delivery { courier, customer } => {
                        area.courier_load[courier as usize] -= 1;
                        area.customer_load[customer as usize] -= 1;
                    }
                    Party::Ride { driver, passenger } => {
                        area.driver_load[driver as usize] -= 1;
                        area.passenger_load[passenger as usize] -= 1;
                    }
                }
                if unbind {
                    allocator.released(id, now_s, true);
                }
            }
        }
        report.expired += allocator.expire(now_s, EXPIRE_PER_S_MAX) as u64;
        let hour = f64::from(t % DAY_S) / 3600.0;
        for (i, shape) in config.areas.iter().enumerate() {
            let orders =
                draw.count(f64::from(shape.orders_per_hour_peak) / 3600.0 * delivery_factor(hour));
            let rides =
                draw.count(f64::from(shape.rides_per_hour_peak) / 3600.0 * ride_factor(hour));
            for kind in (0..orders).map(|_| true).chain((0..rides).map(|_| false)) {
                let area = &mut areas[i];
                let party = if kind {
                    pick_delivery(area, &mut draw)
                } else {
                    pick_ride(area, &mut draw)
                };
                let Some(party) = party else {
                    report.dropped += 1;
                    continue;
                };
                let (a, b, life_s) = match party {
                    Party::Delivery { courier, customer } => (
                        real(i, 1, customer),
                        real(i, 2, courier),
                        15 * 60 + draw.below(45 * 60) as u32,
                    ),
                    Party::Ride { driver, passenger } => (
                        real(i, 3, passenger),
                        real(i, 4, driver),
                        5 * 60 + draw.below(25 * 60) as u32,
                    ),
                };
                let chosen =
                    allocator.choose(&pools, 1, &area.code, Fallback::Province, a, b, now_s);
                let Ok(x) = chosen else {
                    report.exhausted += 1;
                    continue;
                };
                let unbind = draw.below(100) < 85;
                let expires_at_s = now_s + life_s + if unbind { 1800 } else { 0 };
                let id = next_id;
                next_id += 1;
                allocator.bound(x, a, b, id, expires_at_s);
                match party {
                    Party::Delivery { courier, customer } => {
                        area.courier_load[courier as usize] += 1;
                        area.customer_load[customer as usize] += 1;
                        report.orders += 1;
                    }
                    Party::Ride { driver, passenger } => {
                        area.driver_load[driver as usize] += 1;
                        area.passenger_load[passenger as usize] += 1;
                        report.rides += 1;
                    }
                }
                live.insert(id, (i, party, unbind));
                ends.push(Reverse((t + life_s, id)));
            }
        }
        if t % config.sample_every_s.max(1) == 0 {
            sample(&mut report, &allocator, &pools, t);
            if allocator.live_pairs() > peak_pairs {
                peak_pairs = allocator.live_pairs();
                report.heap_bytes_per_pair = allocator.heap_bytes() as f64 / peak_pairs as f64;
            }
        }
    }
    report.releases_remembered = allocator.releases_remembered();
    report.summaries = summarise(&report.samples, config);
    report
}

/// A courier with room (picked in proportion to capacity) and a customer
/// with fewer than two live orders.
fn pick_delivery(area: &AreaState, draw: &mut Draw) -> Option<Party> {
    let total = *area.capacity_sum.last()?;
    let courier = (0..TRIES).find_map(|_| {
        let ticket = draw.below(total);
        let c = area.capacity_sum.partition_point(|&sum| sum <= ticket);
        (area.courier_load[c] < area.capacity[c]).then_some(c as u32)
    })?;
    let customer = (0..TRIES).find_map(|_| {
        let c = draw.below(area.customer_load.len() as u64) as usize;
        (area.customer_load[c] < 2).then_some(c as u32)
    })?;
    Some(Party::Delivery { courier, customer })
}

/// A driver with room and a passenger without a live ride.
fn pick_ride(area: &AreaState, draw: &mut Draw) -> Option<Party> {
    let driver = (0..TRIES).find_map(|_| {
        let d = draw.below(area.driver_load.len() as u64) as usize;
        (area.driver_load[d] < area.driver_capacity[d]).then_some(d as u32)
    })?;
    let passenger = (0..TRIES).find_map(|_| {
        let p = draw.below(area.passenger_load.len() as u64) as usize;
        (area.passenger_load[p] == 0).then_some(p as u32)
    })?;
    Some(Party::Ride { driver, passenger })
}

/// Records one sample per area and the `all` row.
fn sample(report: &mut SimReport, allocator: &Allocator, pools: &Pools, t_s: u32) {
    let max_pairs = u64::from(allocator.config().max_pairs_per_x);
    let mut all = Sample {
        t_s,
        area: "all".into(),
        live_pairs: 0,
        x_in_use: 0,
        delta: 0,
        lower_bound: 0,
    };
    for stats in allocator.stats(pools, 1) {
        let lower_bound = u64::from(stats.delta).max(stats.live_pairs.div_ceil(max_pairs));
        all.live_pairs += stats.live_pairs;
        all.x_in_use += stats.numbers_in_use;
        all.delta = all.delta.max(stats.delta);
        all.lower_bound += lower_bound;
        report.samples.push(Sample {
            t_s,
            area: stats.area.to_string(),
            live_pairs: stats.live_pairs,
            x_in_use: stats.numbers_in_use,
            delta: stats.delta,
            lower_bound,
        });
    }
    report.samples.push(all);
}

/// Max and mean of some values (0 for none).
fn max_mean(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let max = values.iter().copied().fold(0.0, f64::max);
    let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
    (max, mean)
}

/// Figures per area and for `all` (see [`AreaSummary`]).
fn summarise(samples: &[Sample], config: &SimConfig) -> Vec<AreaSummary> {
    let mut names: Vec<String> = config.areas.iter().map(|a| a.code.to_string()).collect();
    names.push("all".into());
    let in_window = |t_s: u32| {
        let hour = f64::from(t_s % DAY_S) / 3600.0;
        config
            .steady_windows_h
            .iter()
            .any(|&(from, to)| (from..to).contains(&hour))
    };
    names
        .into_iter()
        .map(|name| {
            let mine: Vec<&Sample> = samples.iter().filter(|s| s.area == name).collect();
            let day: Vec<&Sample> = mine
                .iter()
                .copied()
                .filter(|s| s.t_s >= config.warmup_s && s.live_pairs >= config.steady_pairs_min)
                .collect();
            let steady: Vec<&Sample> = day.iter().copied().filter(|s| in_window(s.t_s)).collect();
            let over_delta = |s: &&Sample| Sample::over(s.x_in_use, u64::from(s.delta));
            let over_lower = |s: &&Sample| Sample::over(s.x_in_use, s.lower_bound);
            let (steady_x_over_delta_max, steady_x_over_delta_mean) =
                max_mean(&steady.iter().map(over_delta).collect::<Vec<_>>());
            let (steady_x_over_lower_max, steady_x_over_lower_mean) =
                max_mean(&steady.iter().map(over_lower).collect::<Vec<_>>());
            let mut day_ratios: Vec<f64> = day.iter().map(over_lower).collect();
            day_ratios.sort_by(f64::total_cmp);
            let (day_x_over_lower_max, day_x_over_lower_mean) = max_mean(&day_ratios);
            let p95 = day_ratios
                .get((day_ratios.len() * 95 / 100).min(day_ratios.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0.0);
            AreaSummary {
                area: name,
                steady_samples: steady.len(),
                steady_x_over_delta_max,
                steady_x_over_delta_mean,
                steady_x_over_lower_max,
                steady_x_over_lower_mean,
                day_samples: day.len(),
                day_x_over_lower_mean,
                day_x_over_lower_p95: p95,
                day_x_over_lower_max,
                peak_live_pairs: mine.iter().map(|s| s.live_pairs).max().unwrap_or(0),
                peak_x_in_use: mine.iter().map(|s| s.x_in_use).max().unwrap_or(0),
                peak_delta: mine.iter().map(|s| s.delta).max().unwrap_or(0),
                peak_lower_bound: mine.iter().map(|s| s.lower_bound).max().unwrap_or(0),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small run completes, binds, never exhausts its large ranges, and
    /// is reproducible from its seed.
    #[test]
    fn a_small_run_is_reproducible() {
        let mut config = SimConfig::realistic();
        config.days = 1;
        config.warmup_s = 0;
        config.sample_every_s = 3600;
        config.areas.truncate(1);
        config.areas[0].couriers = 40;
        config.areas[0].customers = 2000;
        config.areas[0].orders_per_hour_peak = 200;
        config.areas[0].drivers = 20;
        config.areas[0].passengers = 500;
        config.areas[0].rides_per_hour_peak = 40;
        let one = simulate(&config);
        let two = simulate(&config);
        assert!(
            one.orders > 1000 && one.rides > 100,
            "{} {}",
            one.orders,
            one.rides
        );
        assert_eq!(one.exhausted, 0);
        assert_eq!(one.csv(), two.csv());
        assert_eq!(one.samples.len(), 2 * 24);
        assert!(one.samples.iter().all(|s| s.x_in_use >= s.lower_bound));
    }
}
