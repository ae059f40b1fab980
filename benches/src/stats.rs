//! Statistics helpers: latency histograms, medians, paired ratios.
//!
//! Every comparison the harness reports is a ratio of two cases measured in the same run. The cases
//! are interleaved repetition by repetition (A₁ B₁ A₂ B₂ …), so a ratio is computed per repetition
//! and the median of those ratios is reported: a burst of noise from another process hits both
//! sides of one repetition, and a single bad repetition does not move the median.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Highest latency a histogram records (longer values are clamped to it): 60 s in nanoseconds.
const MAX_NANOS: u64 = 60_000_000_000;

/// A latency histogram in nanoseconds, 3 significant digits.
#[derive(Clone, Debug)]
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

impl Latency {
    /// An empty histogram.
    pub fn new() -> Self {
        // The bounds are constants that hdrhistogram accepts (low ≥ 1, high ≥ 2·low, sigfig ≤ 5).
        Latency(Histogram::new_with_bounds(1, MAX_NANOS, 3).expect("valid histogram bounds"))
    }

    /// Records one duration (clamped to 1 ns ..= 60 s).
    pub fn record(&mut self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos())
            .unwrap_or(MAX_NANOS)
            .clamp(1, MAX_NANOS);
        self.0.saturating_record(nanos);
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Latency) {
        // Both histograms have the same bounds, so adding cannot fail.
        self.0.add(&other.0).expect("histograms with equal bounds");
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The value at quantile `q` (0.0..=1.0), or zero if empty.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.0.value_at_quantile(q))
    }

    /// p50, p99 and p99.9.
    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            p50: self.quantile(0.50),
            p99: self.quantile(0.99),
            p999: self.quantile(0.999),
            count: self.count(),
        }
    }
}

/// The percentiles the report shows.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LatencySummary {
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// 99.9th percentile.
    pub p999: Duration,
    /// How many values were recorded.
    pub count: u64,
}

/// The median of `values` (the mean of the two middle values for an even count); `None` if empty
/// or if any value is NaN.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() || values.iter().any(|v| v.is_nan()) {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v.get(mid).copied()
    } else {
        Some((v.get(mid - 1)? + v.get(mid)?) / 2.0)
    }
}

/// The median over repetitions of `numerator[i] / denominator[i]`.
///
/// The two slices are the same cases' samples in repetition order; pairs where either side is
/// missing (a shorter slice) or the denominator is not positive are skipped.
pub fn paired_ratio(numerator: &[f64], denominator: &[f64]) -> Option<f64> {
    let ratios: Vec<f64> = numerator
        .iter()
        .zip(denominator)
        .filter(|(_, d)| **d > 0.0)
        .map(|(n, d)| n / d)
        .collect();
    median(&ratios)
}

/// Converts a count to `f64` for rates (exact below 2^53, which every count here is).
#[expect(
    clippy::cast_precision_loss,
    reason = "counts of operations and bytes stay far below 2^53"
)]
pub fn f(n: u64) -> f64 {
    n as f64
}

/// `count / elapsed` per second, or 0 for a zero duration.
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        f(count) / secs
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn paired_ratio_is_the_median_of_per_repetition_ratios() {
        // Per-repetition ratios: 2.0, 0.5 (a noisy repetition), 2.2 → median 2.0. The ratio of
        // the medians would be 100/60 = 1.67: pairing is what removes the noise.
        let a = [100.0, 50.0, 110.0];
        let b = [50.0, 100.0, 50.0];
        assert_eq!(paired_ratio(&a, &b), Some(2.0));
        // A zero denominator is skipped, a shorter slice bounds the pairs.
        assert_eq!(paired_ratio(&[1.0, 9.0, 3.0], &[1.0, 0.0]), Some(1.0));
        assert_eq!(paired_ratio(&[1.0], &[0.0]), None);
    }

    #[test]
    fn histogram_percentiles() {
        let mut h = Latency::new();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        // 3 significant digits: values are exact to within 0.1 %.
        let close = |d: Duration, us: f64| (d.as_secs_f64() * 1e6 - us).abs() <= us * 0.001 + 0.5;
        assert!(close(s.p50, 500.0), "{:?}", s.p50);
        assert!(close(s.p99, 990.0), "{:?}", s.p99);
        assert!(close(s.p999, 999.0), "{:?}", s.p999);

        let mut other = Latency::new();
        other.record(Duration::from_secs(3600)); // clamped to the 60 s ceiling
        h.merge(&other);
        assert_eq!(h.count(), 1001);
        assert!(h.quantile(1.0) >= Duration::from_secs(59));
        assert_eq!(Latency::new().quantile(0.99), Duration::ZERO);
    }

    #[test]
    fn rates() {
        assert!((rate(1000, Duration::from_millis(500)) - 2000.0).abs() < 1e-9);
        assert!(rate(5, Duration::ZERO).abs() < f64::EPSILON);
    }
}
