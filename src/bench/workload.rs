//! What each request asks: the synthetic bindings (the `x700 load` scheme
//! of `synth`, extended to AXN and AXE) and the per-connection generator
//! that draws lookups (hit or miss, uniform or zipfian keys), binds of
//! fresh bindings and unbinds of bindings this run bound. Pure and
//! deterministic: the same seed asks the same questions of every target.

use super::params::{KeyChoice, Mix, ModeMix};
use super::zipf::{unit, Zipf};
use crate::binding::{Direction, LookupQuery, Mode, OrderRef};
use crate::number::Number;
use crate::synth::{draws, splitmix64};
use std::collections::VecDeque;

/// AXE bindings share an X in groups of this many extensions.
pub const EXTENSIONS_PER_X: u64 = 100;
/// Bindings a connection remembers for later unbinds; older ones stay bound.
pub const UNBIND_QUEUE_MAX: usize = 1 << 16;
/// Fresh bindings of one phase of one run (binds never reuse an index).
const FRESH_PER_PHASE: u64 = 1 << 40;
/// Tenant of every synthetic binding (as `x700 load`).
pub const TENANT: u32 = 1;
/// Salts that give AXE's shared X numbers, misses and fresh bindings their
/// own streams.
const AXE_SALT: u64 = 0xA3E0_5A17_0000_0001;
const FRESH_SALT: u64 = 0xF2E5_4000_0000_0002;

/// One synthetic binding, whatever its mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynthBinding {
    /// Its index in its stream.
    pub index: u64,
    /// True for a fresh binding (bound by the run), false for a loaded one.
    pub fresh: bool,
    /// AXB, AXN or AXE.
    pub mode: Mode,
    /// The virtual number.
    pub x: Number,
    /// A (the owner for AXN and AXE).
    pub a: Number,
    /// AXB: B. AXN: `Number::NONE` (no default callee). AXE: the extension key.
    pub b: Number,
    /// A caller that is not a party (AXN, AXE lookups come from it).
    pub stranger: Number,
}

impl SynthBinding {
    /// The order reference: `load-<index>` (as `x700 load`), or
    /// `bench-<index>` for fresh bindings. No allocation.
    pub fn order(&self) -> OrderRef {
        let mut text = [0u8; 32];
        let prefix: &[u8] = if self.fresh { b"bench-" } else { b"load-" };
        text[..prefix.len()].copy_from_slice(prefix);
        let digits = decimal(self.index, &mut text[prefix.len()..]);
        // At most 6 + 20 bytes: within the 32-byte limit, never empty.
        OrderRef::new(&text[..prefix.len() + digits]).unwrap_or_else(|_| unreachable!())
    }
}

/// Writes `value` in decimal at the front of `out`; returns the digits
/// written (`out` holds at least 20 bytes).
pub fn decimal(mut value: u64, out: &mut [u8]) -> usize {
    let mut reversed = [0u8; 20];
    let mut count = 0;
    loop {
        // value % 10 < 10: fits u8.
        #[allow(clippy::cast_possible_truncation)]
        let digit = (value % 10) as u8;
        reversed[count] = b'0' + digit;
        count += 1;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    for (slot, digit) in out.iter_mut().zip(reversed[..count].iter().rev()) {
        *slot = *digit;
    }
    count
}

/// The bindings a run knows: loaded ones (0..N of the seed) and fresh ones.
#[derive(Clone, Copy, Debug)]
pub struct Catalog {
    /// Seed of the loaded bindings (`x700 load --seed`).
    pub seed: u64,
    /// Modes of the loaded bindings.
    pub modes: ModeMix,
    /// Seed of the fresh bindings of this run.
    pub fresh_seed: u64,
    /// AXB pairs sharing each X among the loaded bindings (`--pairs-per-x`;
    /// 1: every binding its own X).
    pub pairs_per_x: u64,
}

impl Catalog {
    /// The catalog of a run: `nonce` keeps fresh bindings of different runs
    /// apart, so a bind is never an idempotent repeat of an earlier run's.
    pub fn new(seed: u64, modes: ModeMix, nonce: u64) -> Catalog {
        Catalog {
            seed,
            modes,
            fresh_seed: seed ^ FRESH_SALT ^ nonce.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            pairs_per_x: 1,
        }
    }

    /// The same catalog with `pairs_per_x` AXB pairs on each X of the
    /// loaded bindings (`synth::draws`); AXN and AXE bindings keep their
    /// own X numbers.
    #[must_use]
    pub fn with_pairs_per_x(self, pairs_per_x: u64) -> Catalog {
        Catalog {
            pairs_per_x: pairs_per_x.max(1),
            ..self
        }
    }

    /// The mode of loaded binding `index`: a fixed draw by the mode mix.
    pub fn mode_of(&self, index: u64) -> Mode {
        if self.modes.axb >= 1.0 {
            return Mode::Axb;
        }
        let mut state = self.seed ^ index.wrapping_mul(0xA24B_AED4_963E_E407) ^ 0x5EED;
        let u = unit(splitmix64(&mut state));
        if u < self.modes.axb {
            Mode::Axb
        } else if u < self.modes.axb + self.modes.axn {
            Mode::Axn
        } else {
            Mode::Axe
        }
    }

    /// Loaded binding `index`. With AXB only this is exactly binding
    /// `index` of `x700 load --seed SEED --pairs-per-x N`.
    pub fn loaded(&self, index: u64) -> SynthBinding {
        let mode = self.mode_of(index);
        if mode == Mode::Axb && self.pairs_per_x > 1 {
            let (x, a, b) = pooled_parties(self.seed, index, self.pairs_per_x);
            // AXB lookups come from A or B: no stranger needed.
            return SynthBinding {
                index,
                fresh: false,
                mode,
                x,
                a,
                b,
                stranger: Number::NONE,
            };
        }
        let (parties_x, parties_a, parties_b) = parties(self.seed, index);
        let (x, b) = match mode {
            Mode::Axb => (parties_x, parties_b),
            Mode::Axn => (parties_x, Number::NONE),
            Mode::Axe => {
                let group = index / EXTENSIONS_PER_X;
                let (shared_x, _, _) = parties(self.seed ^ AXE_SALT, group);
                let mut digits = [0u8; 4];
                let mut extension = index % EXTENSIONS_PER_X;
                for slot in digits.iter_mut().rev() {
                    // extension % 10 < 10: fits u8.
                    #[allow(clippy::cast_possible_truncation)]
                    let digit = (extension % 10) as u8;
                    *slot = b'0' + digit;
                    extension /= 10;
                }
                (shared_x, Number::extension_key(&digits))
            }
        };
        SynthBinding {
            index,
            fresh: false,
            mode,
            x,
            a: parties_a,
            b,
            stranger: parties_b,
        }
    }

    /// Fresh binding `index` of this run: always AXB, never loaded.
    pub fn fresh(&self, index: u64) -> SynthBinding {
        let (x, a, b) = parties(self.fresh_seed, index);
        SynthBinding {
            index,
            fresh: true,
            mode: Mode::Axb,
            x,
            a,
            b,
            stranger: Number::NONE,
        }
    }

    /// A lookup that hits `binding` and the callee it must route to;
    /// AXB asks from A or B by the low bit of `salt`.
    pub fn hit(&self, binding: &SynthBinding, salt: u64) -> (LookupQuery, Number) {
        match binding.mode {
            Mode::Axb if salt & 1 == 0 => (query(binding.a, binding.x), binding.b),
            Mode::Axb => (query(binding.b, binding.x), binding.a),
            Mode::Axn => (query(binding.stranger, binding.x), binding.a),
            Mode::Axe => (
                LookupQuery {
                    caller: binding.stranger,
                    x: binding.x,
                    extension: binding.b,
                },
                binding.a,
            ),
        }
    }

    /// A lookup for an X that (almost surely) holds no binding: the answer
    /// must be a reject.
    pub fn miss(&self, index: u64) -> LookupQuery {
        let (x, a, _) = parties(!self.seed, index);
        query(a, x)
    }
}

/// A number of `prefix` digits then `value` as exactly `width` digits,
/// packed straight into BCD (as `Number::from_digits` of the same text).
fn packed(prefix: &[u8], mut value: u64, width: usize) -> Number {
    let mut nibbles = [0xFu8; 16];
    nibbles[..prefix.len()].copy_from_slice(prefix);
    for slot in nibbles[prefix.len()..prefix.len() + width].iter_mut().rev() {
        // value % 10 < 10: fits u8.
        #[allow(clippy::cast_possible_truncation)]
        let digit = (value % 10) as u8;
        *slot = digit;
        value /= 10;
    }
    let mut bytes = [0u8; 8];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = (nibbles[2 * i] << 4) | nibbles[2 * i + 1];
    }
    Number(bytes)
}

/// Binding `index` of `synth::Synthetic { seed }` (X, A, B), computed
/// without the text round trip: the benchmark makes millions per second.
/// A unit test checks it against `Synthetic::binding`.
fn parties(seed: u64, index: u64) -> (Number, Number, Number) {
    pooled_parties(seed, index, 1)
}

/// Binding `index` of `synth::Synthetic { seed }.pooled(index,
/// pairs_per_x)`, packed straight into BCD.
fn pooled_parties(seed: u64, index: u64, pairs_per_x: u64) -> (Number, Number, Number) {
    let (x, a, b) = draws(seed, index, pairs_per_x);
    (
        packed(&[7, 0, 0], x, 12),
        packed(&[1, 3], a, 9),
        packed(&[1, 5], b, 9),
    )
}

fn query(caller: Number, x: Number) -> LookupQuery {
    LookupQuery {
        caller,
        x,
        extension: Number::NONE,
    }
}

/// A draw in 0..n, without modulo bias worth speaking of.
fn below(random: u64, n: u64) -> u64 {
    // The product's high half is below n: fits u64.
    #[allow(clippy::cast_possible_truncation)]
    let index = ((u128::from(random) * u128::from(n)) >> 64) as u64;
    index
}

/// What one request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A lookup; `callee` is the route it must get, `None` a reject.
    Lookup {
        /// The question.
        query: LookupQuery,
        /// The expected callee.
        callee: Option<Number>,
    },
    /// Bind this binding.
    Bind(SynthBinding),
    /// Unbind this binding (by X and A).
    Unbind(SynthBinding),
}

/// The three kinds of request, as an index for per-kind figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// LOOKUP / GET / HGET.
    Lookup = 0,
    /// BIND / MSET / HSET.
    Bind = 1,
    /// UNBIND / DEL / HDEL.
    Unbind = 2,
}

impl OpKind {
    /// Every kind, in index order.
    pub const ALL: [OpKind; 3] = [OpKind::Lookup, OpKind::Bind, OpKind::Unbind];

    /// Name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Lookup => "lookup",
            OpKind::Bind => "bind",
            OpKind::Unbind => "unbind",
        }
    }
}

impl Op {
    /// Its kind.
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Lookup { .. } => OpKind::Lookup,
            Op::Bind(_) => OpKind::Bind,
            Op::Unbind(_) => OpKind::Unbind,
        }
    }
}

/// How lookups pick a loaded binding.
#[derive(Clone, Copy, Debug)]
enum KeySampler {
    Uniform,
    Zipfian(Zipf),
}

/// Where a generator's requests come from.
#[derive(Clone, Copy, Debug)]
enum Source {
    /// The measured mix.
    Mixed,
    /// Binds of loaded bindings next, next + step, ... below end.
    Preload { next: u64, step: u64, end: u64 },
}

/// The request stream of one connection.
#[derive(Debug)]
pub struct Generator {
    catalog: Catalog,
    state: u64,
    source: Source,
    bindings: u64,
    hit_ratio: f64,
    mix: Mix,
    keys: KeySampler,
    fresh_next: u64,
    fresh_step: u64,
    bound: VecDeque<u64>,
}

/// What a connection's generator needs to know.
#[derive(Clone, Copy, Debug)]
pub struct GeneratorConfig {
    /// The bindings.
    pub catalog: Catalog,
    /// Loaded bindings 0..bindings.
    pub bindings: u64,
    /// Share of lookups that hit.
    pub hit_ratio: f64,
    /// Lookups, binds, unbinds.
    pub mix: Mix,
    /// Key choice.
    pub keys: KeyChoice,
    /// Seed of the choices.
    pub seed: u64,
}

impl Generator {
    /// The measured stream of connection `connection` of `connections`, in
    /// phase `phase` of the run (fresh bindings differ per phase).
    pub fn mixed(
        config: &GeneratorConfig,
        connection: u64,
        connections: u64,
        phase: u64,
    ) -> Generator {
        let keys = match config.keys {
            KeyChoice::Uniform => KeySampler::Uniform,
            KeyChoice::Zipfian { s } => KeySampler::Zipfian(Zipf::new(config.bindings, s)),
        };
        Generator {
            catalog: config.catalog,
            state: config.seed ^ (connection + 1).wrapping_mul(0xD134_2543_DE82_EF95),
            source: Source::Mixed,
            bindings: config.bindings,
            hit_ratio: config.hit_ratio,
            mix: config.mix,
            keys,
            fresh_next: phase * FRESH_PER_PHASE + connection,
            fresh_step: connections.max(1),
            bound: VecDeque::with_capacity(if config.mix.unbind > 0.0 {
                UNBIND_QUEUE_MAX
            } else {
                0
            }),
        }
    }

    /// Binds of loaded bindings `connection`, `connection + connections`,
    /// ... below `end`.
    pub fn preload(catalog: Catalog, connection: u64, connections: u64, end: u64) -> Generator {
        Generator {
            catalog,
            state: 0,
            source: Source::Preload {
                next: connection,
                step: connections.max(1),
                end,
            },
            bindings: end,
            hit_ratio: 0.0,
            mix: Mix::LOOKUPS,
            keys: KeySampler::Uniform,
            fresh_next: 0,
            fresh_step: 1,
            bound: VecDeque::new(),
        }
    }

    /// Binds the preload still has to send (0 for a mixed stream).
    pub fn preload_left(&self) -> u64 {
        match self.source {
            Source::Preload { next, step, end } => end.saturating_sub(next).div_ceil(step),
            Source::Mixed => 0,
        }
    }

    fn random(&mut self) -> u64 {
        splitmix64(&mut self.state)
    }

    /// The next request, or `None` when a preload is done.
    pub fn next_op(&mut self) -> Option<Op> {
        if let Source::Preload { next, step, end } = &mut self.source {
            if *next >= *end {
                return None;
            }
            let index = *next;
            *next += *step;
            return Some(Op::Bind(self.catalog.loaded(index)));
        }
        let choice = unit(self.random());
        if choice < self.mix.lookup {
            return Some(self.lookup());
        }
        if choice < self.mix.lookup + self.mix.unbind {
            if let Some(index) = self.bound.pop_front() {
                return Some(Op::Unbind(self.catalog.fresh(index)));
            }
            // Nothing of ours is bound yet: bind instead.
        }
        let index = self.fresh_next;
        self.fresh_next += self.fresh_step;
        Some(Op::Bind(self.catalog.fresh(index)))
    }

    fn lookup(&mut self) -> Op {
        let hit = self.bindings > 0 && unit(self.random()) < self.hit_ratio;
        if !hit {
            let index = self.random();
            return Op::Lookup {
                query: self.catalog.miss(index),
                callee: None,
            };
        }
        let index = match self.keys {
            KeySampler::Uniform => below(self.random(), self.bindings),
            KeySampler::Zipfian(zipf) => zipf.sample(|| self.random()) - 1,
        };
        let salt = self.random();
        let binding = self.catalog.loaded(index);
        let (query, callee) = self.catalog.hit(&binding, salt);
        Op::Lookup {
            query,
            callee: Some(callee),
        }
    }

    /// A fresh bind was acknowledged: it may be unbound later.
    pub fn bound(&mut self, index: u64) {
        if self.mix.unbind <= 0.0 {
            return;
        }
        if self.bound.len() >= UNBIND_QUEUE_MAX {
            self.bound.pop_front();
        }
        self.bound.push_back(index);
    }
}

/// Direction of every synthetic binding.
pub const DIRECTION: Direction = Direction::Both;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::Synthetic;

    #[test]
    fn axb_bindings_are_x700_load_bindings() {
        let catalog = Catalog::new(3, ModeMix::AXB, 9);
        let loaded = Synthetic { seed: 3 }.request(77, 60);
        let ours = catalog.loaded(77);
        assert_eq!(ours.x, loaded.x);
        assert_eq!(ours.order(), loaded.order);
        let crate::binding::Parties::Axb { a, b } = loaded.parties else {
            unreachable!()
        };
        assert_eq!((ours.a, ours.b), (a, b));
        assert_eq!(catalog.hit(&ours, 1), (Synthetic { seed: 3 }.hit(77, 1), a));
    }

    #[test]
    fn packed_parties_equal_synthetic_ones() {
        for seed in [0, 1, 42, u64::MAX] {
            for index in (0..2000).chain([u64::MAX, 1 << 40]) {
                let expected = Synthetic { seed }.binding(index);
                assert_eq!(parties(seed, index), (expected.x, expected.a, expected.b));
            }
        }
        let catalog = Catalog::new(1, ModeMix::AXB, 0);
        assert_eq!(catalog.miss(9), Synthetic { seed: 1 }.miss(9));
        for pairs in [2, 100, 200] {
            let catalog = Catalog::new(4, ModeMix::AXB, 0).with_pairs_per_x(pairs);
            for index in (0..500).chain([1 << 33]) {
                let expected = Synthetic { seed: 4 }.pooled(index, pairs);
                let ours = catalog.loaded(index);
                assert_eq!(
                    (ours.x, ours.a, ours.b),
                    (expected.x, expected.a, expected.b)
                );
            }
        }
    }

    #[test]
    fn modes_follow_the_mix_and_axe_shares_x() {
        let modes = ModeMix::parse("axb=2,axn=1,axe=1").unwrap();
        let catalog = Catalog::new(5, modes, 0);
        let mut counts = [0u32; 3];
        for i in 0..10_000 {
            counts[catalog.loaded(i).mode as usize] += 1;
        }
        assert!((4_700..5_300).contains(&counts[0]), "{counts:?}");
        assert!((2_200..2_800).contains(&counts[1]), "{counts:?}");
        let axe: Vec<_> = (0..200)
            .map(|i| catalog.loaded(i))
            .filter(|b| b.mode == Mode::Axe)
            .collect();
        assert!(axe.len() > 20);
        assert!(axe.iter().all(|b| b.b.is_extension()));
        let first_group: Vec<_> = axe.iter().filter(|b| b.index < EXTENSIONS_PER_X).collect();
        assert!(first_group
            .windows(2)
            .all(|w| w[0].x == w[1].x && w[0].b != w[1].b));
    }

    #[test]
    fn orders_and_decimals() {
        let catalog = Catalog::new(1, ModeMix::AXB, 0);
        assert_eq!(catalog.loaded(1234).order().as_bytes(), b"load-1234");
        assert_eq!(catalog.fresh(0).order().as_bytes(), b"bench-0");
        let mut out = [0u8; 20];
        let n = decimal(u64::MAX, &mut out);
        assert_eq!(&out[..n], u64::MAX.to_string().as_bytes());
    }

    #[test]
    fn mixed_stream_hits_misses_and_unbinds_what_it_bound() {
        let config = GeneratorConfig {
            catalog: Catalog::new(1, ModeMix::AXB, 0),
            bindings: 100,
            hit_ratio: 0.5,
            mix: Mix::parse("lookup=0.5,bind=0.25,unbind=0.25").unwrap(),
            keys: KeyChoice::Uniform,
            seed: 7,
        };
        let mut generator = Generator::mixed(&config, 1, 4, 0);
        let (mut hits, mut misses, mut binds, mut unbinds) = (0, 0, 0, 0);
        for _ in 0..4000 {
            match generator.next_op().unwrap() {
                Op::Lookup {
                    callee: Some(_), ..
                } => hits += 1,
                Op::Lookup { callee: None, .. } => misses += 1,
                Op::Bind(binding) => {
                    assert!(binding.fresh && binding.index % 4 == 1);
                    binds += 1;
                    generator.bound(binding.index);
                }
                Op::Unbind(binding) => {
                    assert!(binding.fresh);
                    unbinds += 1;
                }
            }
        }
        assert!(hits > 800 && misses > 800 && unbinds > 800 && binds > 800);
        let mut preload = Generator::preload(config.catalog, 1, 3, 10);
        assert_eq!(preload.preload_left(), 3);
        let indices: Vec<u64> = std::iter::from_fn(|| preload.next_op())
            .map(|op| match op {
                Op::Bind(binding) => binding.index,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(indices, [1, 4, 7]);
    }
}
