//! Percentile bootstrap confidence intervals (Efron & Tibshirani, "An Introduction to the Bootstrap", 1993) for the
//! ROC metrics, resampling adversarial and clean scores separately so every resample keeps both class sizes.
use super::roc::{Sorted, Unit};
use super::{validate, Metrics, WithCi};
use crate::rng::Rng;
use rayon::prelude::*;

/// Lower and upper quantiles of the 95% percentile interval.
pub(crate) const LO_Q: f64 = 0.025;
pub(crate) const HI_Q: f64 = 0.975;

/// Bootstrap 95% intervals of every metric. `n_resamples` = 0 gives lo = hi = point. Resample r draws from
/// `Rng::stream(seed, r)`, so the result depends on the seed only, not on the number of threads.
pub fn bootstrap(labels: &[bool], scores: &[f64], n_resamples: usize, seed: u64) -> crate::Result<WithCi> {
    validate(labels, scores)?;
    let sorted = Sorted::new(labels, scores);
    let point = sorted.metrics(Unit, Unit);
    if n_resamples == 0 {
        return Ok(WithCi { point, lo: point, hi: point });
    }
    let (n_pos, n_neg) = (sorted.pos.len(), sorted.neg.len());
    // A resample is a multiset of the sorted scores: drawing counts per element instead of the elements themselves
    // keeps the order, so no resample needs a sort and each costs O(n).
    let samples: Vec<[f64; 6]> = (0..n_resamples)
        .into_par_iter()
        .map_init(
            || (vec![0u32; n_pos], vec![0u32; n_neg]),
            |(wp, wn), r| {
                let mut rng = Rng::stream(seed, r as u64);
                draw_counts(&mut rng, wp);
                draw_counts(&mut rng, wn);
                sorted.metrics(&wp[..], &wn[..]).values()
            },
        )
        .collect();
    let mut lo = [0.0; 6];
    let mut hi = [0.0; 6];
    let mut column = Vec::with_capacity(n_resamples);
    for k in 0..6 {
        column.clear();
        column.extend(samples.iter().map(|s| s[k]));
        column.sort_unstable_by(f64::total_cmp);
        lo[k] = quantile(&column, LO_Q);
        hi[k] = quantile(&column, HI_Q);
    }
    Ok(WithCi { point, lo: Metrics::from_values(lo), hi: Metrics::from_values(hi) })
}

/// Counts of `counts.len()` draws with replacement from `0..counts.len()`.
pub(crate) fn draw_counts(rng: &mut Rng, counts: &mut [u32]) {
    counts.fill(0);
    let n = counts.len();
    for _ in 0..n {
        counts[rng.below(n)] += 1;
    }
}

/// The q-quantile of sorted values with linear interpolation (numpy's default, "type 7").
pub(crate) fn quantile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let (below, above) = (h.floor() as usize, h.ceil() as usize);
    sorted[below] + (h - below as f64) * (sorted[above] - sorted[below])
}

#[cfg(test)]
mod tests {
    #[test]
    fn quantile_interpolates_like_numpy() {
        let xs = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(super::quantile(&xs, 0.0), 1.0);
        assert_eq!(super::quantile(&xs, 1.0), 4.0);
        assert!((super::quantile(&xs, 0.025) - 1.075).abs() < 1e-12);
        assert!((super::quantile(&xs, 0.975) - 3.925).abs() < 1e-12);
    }
}
