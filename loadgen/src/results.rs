//! What the modes report: round-trip times ([`LatencyResult`]), and the small sums shared by
//! the other results (medians, rounding, CPU deltas, figures that may be missing).

use serde_json::{json, Value};

/// Round-trip times of one run.
#[derive(Clone, Debug)]
pub struct LatencyResult {
    /// Samples in ns, sorted.
    pub samples_ns: Vec<u64>,
}

impl LatencyResult {
    /// Samples in ns, in any order.
    pub fn new(mut samples_ns: Vec<u64>) -> LatencyResult {
        samples_ns.sort_unstable();
        LatencyResult { samples_ns }
    }

    /// The `q` quantile (nearest rank) in µs.
    pub fn quantile_us(&self, q: f64) -> f64 {
        if self.samples_ns.is_empty() {
            return f64::NAN;
        }
        let n = self.samples_ns.len();
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        self.samples_ns[rank - 1] as f64 / 1000.0
    }

    /// Mean in µs.
    pub fn mean_us(&self) -> f64 {
        let sum: u128 = self.samples_ns.iter().map(|&n| u128::from(n)).sum();
        sum as f64 / self.samples_ns.len().max(1) as f64 / 1000.0
    }

    /// p50, p90, p99, p99.9, max and mean as JSON (µs).
    pub fn to_json(&self) -> Value {
        json!({
            "count": self.samples_ns.len(),
            "p50_us": round3(self.quantile_us(0.5)),
            "p90_us": round3(self.quantile_us(0.9)),
            "p99_us": round3(self.quantile_us(0.99)),
            "p999_us": round3(self.quantile_us(0.999)),
            "max_us": round3(self.quantile_us(1.0)),
            "mean_us": round3(self.mean_us()),
        })
    }

    /// One human-readable line.
    pub fn line(&self) -> String {
        format!(
            "{} round trips: p50 {:.1} µs  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  mean {:.1}",
            self.samples_ns.len(),
            self.quantile_us(0.5),
            self.quantile_us(0.9),
            self.quantile_us(0.99),
            self.quantile_us(0.999),
            self.quantile_us(1.0),
            self.mean_us()
        )
    }
}

/// Round to 3 decimals (NaN becomes null in JSON output through `json!`).
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The median of `values` (NaN ignored); NaN when there is none.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub(crate) fn delta(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(b? - a?)
}

pub(crate) fn opt(x: Option<f64>) -> Value {
    x.filter(|v| v.is_finite())
        .map_or(Value::Null, |v| json!(round3(v)))
}

pub(crate) fn fmt_opt(x: Option<f64>, decimals: usize) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "n/a".to_string(),
    }
}
