//! Zipf's law over ranks 1..=n, the key popularity `x700 bench --keys
//! zipfian` draws from, and the uniform draw in [0, 1) it is built on.

/// Most draws of the zipfian sampler before it takes its last candidate
/// (one draw is accepted with probability above 0.9).
const ZIPF_TRIES_MAX: u32 = 64;

/// A draw in [0, 1).
pub(super) fn unit(random: u64) -> f64 {
    // 53 random bits: exact in f64.
    #[allow(clippy::cast_precision_loss)]
    let value = (random >> 11) as f64;
    value / (1u64 << 53) as f64
}

/// Zipf's law over ranks 1..=n by rejection-inversion (Hörmann and
/// Derflinger, 1996, as in Apache Commons RNG): O(1) per draw, no tables.
#[derive(Clone, Copy, Debug)]
pub struct Zipf {
    n: f64,
    s: f64,
    h_integral_x1: f64,
    h_integral_n: f64,
    squeeze: f64,
}

impl Zipf {
    /// Ranks 1..=n (n >= 1), exponent s > 0.
    pub fn new(n: u64, s: f64) -> Zipf {
        // Counts below 2^53 (BINDINGS_MAX): exact in f64.
        #[allow(clippy::cast_precision_loss)]
        let n = n.max(1) as f64;
        let mut zipf = Zipf {
            n,
            s,
            h_integral_x1: 0.0,
            h_integral_n: 0.0,
            squeeze: 0.0,
        };
        zipf.h_integral_x1 = zipf.h_integral(1.5) - 1.0;
        zipf.h_integral_n = zipf.h_integral(n + 0.5);
        zipf.squeeze = 2.0 - zipf.h_integral_inverse(zipf.h_integral(2.5) - zipf.h(2.0));
        zipf
    }

    /// One rank in 1..=n from a source of random words.
    pub fn sample(&self, mut random: impl FnMut() -> u64) -> u64 {
        let mut k = 1.0;
        for _ in 0..ZIPF_TRIES_MAX {
            let u = self.h_integral_n + unit(random()) * (self.h_integral_x1 - self.h_integral_n);
            let x = self.h_integral_inverse(u);
            k = (x + 0.5).floor().clamp(1.0, self.n);
            if k - x <= self.squeeze || u >= self.h_integral(k + 0.5) - self.h(k) {
                break;
            }
        }
        // 1 <= k <= n < 2^53: exact, fits u64.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let rank = k as u64;
        rank
    }

    fn h(&self, x: f64) -> f64 {
        (-self.s * x.ln()).exp()
    }

    fn h_integral(&self, x: f64) -> f64 {
        let log_x = x.ln();
        helper2((1.0 - self.s) * log_x) * log_x
    }

    fn h_integral_inverse(&self, x: f64) -> f64 {
        let t = (x * (1.0 - self.s)).max(-1.0);
        (helper1(t) * x).exp()
    }
}

/// ln(1 + x) / x, accurate near 0.
fn helper1(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// (e^x - 1) / x, accurate near 0.
fn helper2(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + 0.25 * x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::splitmix64;

    #[test]
    fn zipf_favours_low_ranks_and_stays_in_range() {
        let zipf = Zipf::new(1000, 1.0);
        let mut state = 1;
        let mut counts = vec![0u32; 1001];
        for _ in 0..100_000 {
            let rank = zipf.sample(|| splitmix64(&mut state));
            assert!((1..=1000).contains(&rank));
            counts[rank as usize] += 1;
        }
        // Rank 1 has weight 1/H(1000) ~ 13.4%, rank 2 half of that.
        assert!((12_000..15_000).contains(&counts[1]), "{}", counts[1]);
        let ratio = f64::from(counts[1]) / f64::from(counts[2]);
        assert!((1.8..2.2).contains(&ratio), "{ratio}");
        let one = Zipf::new(1, 0.99);
        assert_eq!(one.sample(|| splitmix64(&mut state)), 1);
    }
}
