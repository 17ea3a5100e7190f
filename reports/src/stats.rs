//! The spread of one metric across independent runs (a sweep's seeds): mean with its 95%
//! Student-t interval, standard deviation, min, median, max. Seeds give independent replications
//! of the same scenario, so the t-interval of the mean is the honest way to say how sure a figure
//! is and the gate's test for whether two sweeps differ.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One metric across runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Spread {
    /// Runs.
    pub n: usize,
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (0 for one run).
    pub sd: f64,
    /// Half-width of the 95% t-interval of the mean (infinite for one run: nothing is known of
    /// the spread; written as `null`, which JSON has for it).
    #[serde(with = "infinite_as_null")]
    #[schemars(with = "Option<f64>")]
    pub ci95: f64,
    /// Smallest.
    pub min: f64,
    /// Median.
    pub p50: f64,
    /// Largest.
    pub max: f64,
}

/// JSON has no infinity: an infinite interval is written `null` and read back as infinite.
mod infinite_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
    }
}

/// t(0.975, df): the two-sided 95% Student-t quantile (normal beyond 30 degrees of freedom).
pub fn t95(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        d if d <= 30 => T[d - 1],
        d if d <= 60 => 2.000 + (2.042 - 2.000) * (60 - d) as f64 / 30.0,
        d if d <= 120 => 1.980 + (2.000 - 1.980) * (120 - d) as f64 / 60.0,
        _ => 1.960,
    }
}

impl Spread {
    /// The spread of `values` (none: `None`).
    pub fn of(values: &[f64]) -> Option<Self> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let sd = if n > 1 {
            (values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let p50 = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Self {
            n,
            mean,
            sd,
            ci95: if n > 1 {
                t95(n - 1) * sd / (n as f64).sqrt()
            } else {
                f64::INFINITY
            },
            min: sorted[0],
            p50,
            max: sorted[n - 1],
        })
    }

    /// Lower end of the 95% interval.
    pub fn lo(&self) -> f64 {
        self.mean - self.ci95
    }

    /// Upper end of the 95% interval.
    pub fn hi(&self) -> f64 {
        self.mean + self.ci95
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answer: 1..=5 has mean 3, sd √2.5, and t(0.975, 4) = 2.776.
    #[test]
    fn spread_of_a_known_sample() {
        let s = Spread::of(&[5.0, 1.0, 4.0, 2.0, 3.0]).unwrap();
        assert_eq!((s.n, s.mean, s.min, s.p50, s.max), (5, 3.0, 1.0, 3.0, 5.0));
        assert!((s.sd - 2.5f64.sqrt()).abs() < 1e-12);
        assert!((s.ci95 - 2.776 * 2.5f64.sqrt() / 5f64.sqrt()).abs() < 1e-12);
        let one = Spread::of(&[7.0]).unwrap();
        assert!(one.ci95.is_infinite() && one.sd == 0.0);
        assert!(Spread::of(&[]).is_none());
        // One run's infinite interval survives a JSON round trip.
        let back: Spread = serde_json::from_str(&serde_json::to_string(&one).unwrap()).unwrap();
        assert!(back.ci95.is_infinite());
    }

    /// The interval covers the true mean about 95% of the time: 2,000 samples of 10 uniform
    /// draws (mean 0.5) from a fixed LCG; the binomial 4-sigma band around 0.95 is ±0.020.
    #[test]
    fn the_interval_covers_the_mean_95_percent_of_the_time() {
        let mut x: u64 = 12345;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        let trials = 2000;
        let covered = (0..trials)
            .filter(|_| {
                let v: Vec<f64> = (0..10).map(|_| next()).collect();
                let s = Spread::of(&v).unwrap();
                s.lo() <= 0.5 && 0.5 <= s.hi()
            })
            .count();
        let share = covered as f64 / trials as f64;
        assert!(
            (share - 0.95).abs() < 4.0 * (0.95f64 * 0.05 / trials as f64).sqrt(),
            "{share}"
        );
    }
}
