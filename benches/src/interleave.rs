//! Statistics of the benches' interleaved passes.
//!
//! This VM's speed drifts by up to 2x over minutes, and criterion measures one case after the
//! other; so the pipeline and tunnel benches end with a pass that runs every case in turn, one
//! burst each, for thousands of rounds, and report low quantiles (additive noise only ever makes
//! a sample slower) and per-round differences between cases (load that comes and goes cancels).

/// The `q` quantile (0..=1) of `samples`, by the nearest-rank-below method; NaN when empty.
pub fn quantile(samples: &[f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q.clamp(0.0, 1.0)) as usize]
}

/// The median of the per-round differences `a[i] - b[i]` (both sampled in the same rounds).
pub fn paired_median(a: &[f64], b: &[f64]) -> f64 {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    quantile(&d, 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_paired_differences() {
        let v: Vec<f64> = (0..=100).rev().map(f64::from).collect();
        assert_eq!(quantile(&v, 0.1), 10.0);
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert!(quantile(&[], 0.5).is_nan());
        // A shared drift cancels in the paired difference but not in the plain medians.
        let base: Vec<f64> = (0..100).map(|i| 10.0 + (i % 7) as f64 * 5.0).collect();
        let case: Vec<f64> = base.iter().map(|b| b + 3.0).collect();
        assert_eq!(paired_median(&case, &base), 3.0);
    }
}
