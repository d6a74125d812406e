//! Deterministic key sequences: uniform and Zipf over `0..n`.
//!
//! The sequences are precomputed (so drawing a key costs one load in the
//! measured loop, the same for every implementation) from a fixed seed (so
//! every implementation sees the same keys in the same order).

/// A small, fast PRNG (xorshift64*); good enough to pick benchmark keys.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced by a fixed odd constant).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A uniform value in `0..n` (multiply-shift; the bias is negligible here).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// A uniform `f64` in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Which key distribution a workload draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dist {
    /// Every key equally likely.
    Uniform,
    /// Zipf with exponent 0.99 (YCSB's default): a few hot keys.
    Zipf,
}

impl Dist {
    /// The name used in benchmark ids.
    pub fn name(self) -> &'static str {
        match self {
            Dist::Uniform => "uniform",
            Dist::Zipf => "zipf",
        }
    }
}

/// `len` keys in `0..n` drawn from `dist` with `seed`.
pub fn sequence(dist: Dist, n: u64, len: usize, seed: u64) -> Vec<u64> {
    let mut rng = Rng::new(seed);
    match dist {
        Dist::Uniform => (0..len).map(|_| rng.below(n)).collect(),
        Dist::Zipf => {
            let cdf = zipf_cdf(n, 0.99);
            (0..len)
                .map(|_| {
                    let u = rng.unit();
                    let rank = cdf.partition_point(|&c| c < u) as u64;
                    // Scatter the ranks so the hot keys are not neighbours.
                    scatter(rank.min(n - 1), n)
                })
                .collect()
        }
    }
}

/// The cumulative distribution of Zipf(`s`) over ranks `0..n`.
fn zipf_cdf(n: u64, s: f64) -> Vec<f64> {
    let mut cdf = Vec::with_capacity(n as usize);
    let mut total = 0.0;
    for rank in 1..=n {
        total += 1.0 / (rank as f64).powf(s);
        cdf.push(total);
    }
    for c in &mut cdf {
        *c /= total;
    }
    cdf
}

/// A bijection on `0..n` (an affine map with a multiplier coprime to `n`).
fn scatter(rank: u64, n: u64) -> u64 {
    let mut a: u64 = 0x9E37_79B9 % n.max(2);
    while gcd(a, n) != 1 {
        a += 1;
    }
    ((rank as u128 * a as u128 + 12345) % n as u128) as u64
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_stay_in_range_and_zipf_is_skewed() {
        let u = sequence(Dist::Uniform, 1000, 10_000, 1);
        assert!(u.iter().all(|&k| k < 1000));
        let z = sequence(Dist::Zipf, 1000, 10_000, 1);
        assert!(z.iter().all(|&k| k < 1000));
        let hot = scatter(0, 1000);
        let hits = z.iter().filter(|&&k| k == hot).count();
        assert!(hits > 500, "rank 0 should be hot, got {hits}");
        let mut seen: Vec<u64> = (0..1000).map(|r| scatter(r, 1000)).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 1000, "scatter must be a bijection");
    }
}
