//! Two score vectors on the same images (one detector on the full model and on the class subnetwork of Wang et al.,
//! arXiv 1910.02673, or two detectors) compared as the paired data they are: DeLong's test for two correlated ROC
//! curves (DeLong, DeLong & Clarke-Pearson, Biometrics 1988) by the midrank algorithm of Sun & Xu (IEEE SPL 2014), a
//! paired, stratified bootstrap interval of the differences, and Holm's step-down adjustment of many p-values.
use super::bootstrap::{draw_counts, quantile, HI_Q, LO_Q};
use super::roc::Sorted;
use super::validate;
use crate::error::Error;
use crate::rng::Rng;
use rayon::prelude::*;

/// DeLong's test of `auroc_b - auroc_a`: `z` is the difference over its standard error and `p` its two-sided p-value.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeLong {
    pub auroc_a: f64,
    pub auroc_b: f64,
    pub delta: f64,
    /// The variance of the difference (the structural components' covariance, Sun & Xu eq. 5).
    pub variance: f64,
    pub z: f64,
    pub p: f64,
}

/// The paired comparison of score vectors `a` and `b`: DeLong's test, and 95% percentile intervals of
/// `auroc_b - auroc_a` and `tpr_at_fpr_5_b - tpr_at_fpr_5_a` over paired, stratified bootstrap resamples.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Paired {
    pub delong: DeLong,
    pub delta_auroc_lo: f64,
    pub delta_auroc_hi: f64,
    pub delta_tpr_at_fpr_5: f64,
    pub delta_tpr_at_fpr_5_lo: f64,
    pub delta_tpr_at_fpr_5_hi: f64,
}

/// Checks that `a` and `b` are scores of the same images: equal lengths, finite, both classes.
fn validate_pair(labels: &[bool], a: &[f64], b: &[f64]) -> crate::Result<()> {
    if a.len() != b.len() {
        return Err(Error::config(
            "paired scores",
            format!("{} and {} values", a.len(), b.len()),
            "a paired comparison needs both scores of every image",
        ));
    }
    validate(labels, a)?;
    validate(labels, b)
}

/// Midranks (1-based; tied values share the mean of their ranks) of `x`.
fn midranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_unstable_by(|&i, &j| x[i].total_cmp(&x[j]));
    let mut ranks = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        // -0.0 and 0.0 are one value
        while j < order.len() && x[order[j]] == x[order[i]] {
            j += 1;
        }
        let mid = (i + j + 1) as f64 / 2.0;
        for &k in &order[i..j] {
            ranks[k] = mid;
        }
        i = j;
    }
    ranks
}

/// AUROC and the structural components of one score vector: `(auroc, v10 per positive, v01 per negative)`, where
/// `v10[i]` is the fraction of negatives that positive `i` outscores (ties count one half) and `v01[j]` the fraction
/// of positives that outscore negative `j`.
fn components(pos: &[f64], neg: &[f64]) -> (f64, Vec<f64>, Vec<f64>) {
    let (m, n) = (pos.len() as f64, neg.len() as f64);
    let all: Vec<f64> = pos.iter().chain(neg).copied().collect();
    let (tz, tx, ty) = (midranks(&all), midranks(pos), midranks(neg));
    let v10: Vec<f64> = (0..pos.len()).map(|i| (tz[i] - tx[i]) / n).collect();
    let v01: Vec<f64> = (0..neg.len()).map(|j| 1.0 - (tz[pos.len() + j] - ty[j]) / m).collect();
    let auroc = v10.iter().sum::<f64>() / m;
    (auroc, v10, v01)
}

/// Sample covariance (denominator len - 1) of two equally long vectors; 0 for fewer than two values.
fn cov(x: &[f64], y: &[f64]) -> f64 {
    let k = x.len() as f64;
    if x.len() < 2 {
        return 0.0;
    }
    let (mx, my) = (x.iter().sum::<f64>() / k, y.iter().sum::<f64>() / k);
    x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum::<f64>() / (k - 1.0)
}

/// DeLong's test of `auroc(b) - auroc(a)` on the same images (`labels`: true = adversarial). When the difference has
/// zero variance (e.g. `b` a monotone transform of `a`), `z` is 0 and `p` 1 for a zero difference, and `z` infinite and
/// `p` 0 otherwise.
pub fn delong(labels: &[bool], a: &[f64], b: &[f64]) -> crate::Result<DeLong> {
    validate_pair(labels, a, b)?;
    Ok(Components::new(labels, a).delong(&Components::new(labels, b)))
}

/// One score vector's AUROC and structural components (`components`), split by class.
struct Components {
    auroc: f64,
    v10: Vec<f64>,
    v01: Vec<f64>,
}

impl Components {
    fn new(labels: &[bool], s: &[f64]) -> Self {
        let pos: Vec<f64> = labels.iter().zip(s).filter(|(&l, _)| l).map(|(_, &v)| v).collect();
        let neg: Vec<f64> = labels.iter().zip(s).filter(|(&l, _)| !l).map(|(_, &v)| v).collect();
        let (auroc, v10, v01) = components(&pos, &neg);
        Components { auroc, v10, v01 }
    }

    /// DeLong's test of `b.auroc - self.auroc`.
    fn delong(&self, b: &Components) -> DeLong {
        let (m, n) = (self.v10.len() as f64, self.v01.len() as f64);
        let s = |x10: &[f64], y10: &[f64], x01: &[f64], y01: &[f64]| cov(x10, y10) / m + cov(x01, y01) / n;
        let variance = s(&self.v10, &self.v10, &self.v01, &self.v01) + s(&b.v10, &b.v10, &b.v01, &b.v01)
            - 2.0 * s(&self.v10, &b.v10, &self.v01, &b.v01);
        let delta = b.auroc - self.auroc;
        let (z, p) = normal_test(delta, variance.max(0.0).sqrt());
        DeLong { auroc_a: self.auroc, auroc_b: b.auroc, delta, variance: variance.max(0.0), z, p }
    }
}

/// The z statistic `delta / se` and its two-sided normal p. A variance at or below rounding (it is a difference of
/// sums) counts as zero: then p is 1 for a zero difference and 0 otherwise.
pub fn normal_test(delta: f64, se: f64) -> (f64, f64) {
    if se * se > 1e-15 * (1.0 + delta * delta) {
        let z = delta / se;
        (z, libm::erfc(z.abs() / std::f64::consts::SQRT_2))
    } else if delta == 0.0 {
        (0.0, 1.0)
    } else {
        (delta.signum() * f64::INFINITY, 0.0)
    }
}

/// One score vector ready for resampling: its sort, and for each sorted position the image it came from (its index
/// among the images of its class, in input order).
struct Resampleable {
    sorted: Sorted,
    pos_image: Vec<usize>,
    neg_image: Vec<usize>,
}

impl Resampleable {
    fn new(labels: &[bool], scores: &[f64]) -> Self {
        let sorted = Sorted::new(labels, scores);
        let order = |want: bool| -> Vec<usize> {
            let class: Vec<f64> = labels.iter().zip(scores).filter(|(&l, _)| l == want).map(|(_, &s)| s).collect();
            let mut idx: Vec<usize> = (0..class.len()).collect();
            // the sort's order (descending score); images with tied scores share a threshold, so their order is moot
            idx.sort_by_key(|&i| super::sort::key(class[i]));
            idx
        };
        Resampleable { sorted, pos_image: order(true), neg_image: order(false) }
    }

    /// (auroc, tpr_at_fpr_5) of the resample that takes positive image `i` `pos[i]` times and negative `j` `neg[j]`.
    fn metrics(&self, pos: &[u32], neg: &[u32], wp: &mut Vec<u32>, wn: &mut Vec<u32>) -> (f64, f64) {
        wp.clear();
        wp.extend(self.pos_image.iter().map(|&i| pos[i]));
        wn.clear();
        wn.extend(self.neg_image.iter().map(|&j| neg[j]));
        let m = self.sorted.metrics(&wp[..], &wn[..]);
        (m.auroc, m.tpr_at_fpr_5)
    }
}

/// `(auroc_b - auroc_a, tpr_at_fpr_5_b - tpr_at_fpr_5_a)` on one resample of images: positive image `i` (the `i`-th
/// adversarial image in input order) taken `pos_counts[i]` times, negative `j` `neg_counts[j]` times. The step every
/// paired bootstrap resample makes; exposed so that it can be checked against an independent implementation.
pub fn resample_deltas(
    labels: &[bool],
    a: &[f64],
    b: &[f64],
    pos_counts: &[u32],
    neg_counts: &[u32],
) -> crate::Result<(f64, f64)> {
    validate_pair(labels, a, b)?;
    let n_pos = labels.iter().filter(|&&l| l).count();
    if pos_counts.len() != n_pos || neg_counts.len() != labels.len() - n_pos {
        return Err(Error::config(
            "resample counts",
            format!("{} and {}", pos_counts.len(), neg_counts.len()),
            format!("expected one count per adversarial ({n_pos}) and per clean ({}) image", labels.len() - n_pos),
        ));
    }
    let (ra, rb) = (Resampleable::new(labels, a), Resampleable::new(labels, b));
    let (mut wp, mut wn) = (Vec::new(), Vec::new());
    let (auc_a, tpr_a) = ra.metrics(pos_counts, neg_counts, &mut wp, &mut wn);
    let (auc_b, tpr_b) = rb.metrics(pos_counts, neg_counts, &mut wp, &mut wn);
    Ok((auc_b - auc_a, tpr_b - tpr_a))
}

/// DeLong's test and paired bootstrap intervals of `b` against `a` over the same images. Resample `r` draws the
/// adversarial and the clean images separately (stratified) from `Rng::stream(seed, r)`, and both score vectors are
/// evaluated on that one resample of images, so every comparison with the same seed over the same images shares its
/// resamples. With `n_resamples` 0 the intervals are the point differences.
pub fn paired(labels: &[bool], a: &[f64], b: &[f64], n_resamples: usize, seed: u64) -> crate::Result<Paired> {
    validate_pair(labels, a, b)?;
    Reference::new(labels, a, n_resamples, seed)?.against(labels, b)
}

/// The side `a` of paired comparisons, computed once for any number of `b`s on the same images (one detector's full
/// route against each of its other routes): its DeLong components and its (auroc, tpr_at_fpr_5) on every resample.
/// `against` gives the bytes `paired` gives.
pub struct Reference {
    labels: Vec<bool>,
    components: Components,
    tpr: f64,
    /// Per resample, a's (auroc, tpr_at_fpr_5).
    resampled: Vec<(f64, f64)>,
    seed: u64,
}

impl Reference {
    pub fn new(labels: &[bool], a: &[f64], n_resamples: usize, seed: u64) -> crate::Result<Self> {
        validate(labels, a)?;
        let ra = Resampleable::new(labels, a);
        let (_, tpr) = ra.metrics(&ones(labels, true), &ones(labels, false), &mut Vec::new(), &mut Vec::new());
        let resampled = resample(labels, n_resamples, seed, |cp, cn, wp, wn| ra.metrics(cp, cn, wp, wn));
        Ok(Reference { labels: labels.to_vec(), components: Components::new(labels, a), tpr, resampled, seed })
    }

    /// The comparison of `b`, scores of the reference's images, with the reference.
    pub fn against(&self, labels: &[bool], b: &[f64]) -> crate::Result<Paired> {
        if labels != self.labels.as_slice() {
            return Err(Error::config(
                "paired scores",
                format!("{} labels", labels.len()),
                "a paired comparison needs the reference's images, in its order",
            ));
        }
        validate(labels, b)?;
        let delong = self.components.delong(&Components::new(labels, b));
        let rb = Resampleable::new(labels, b);
        let (_, tpr_b) = rb.metrics(&ones(labels, true), &ones(labels, false), &mut Vec::new(), &mut Vec::new());
        let delta_tpr = tpr_b - self.tpr;
        if self.resampled.is_empty() {
            return Ok(Paired {
                delong,
                delta_auroc_lo: delong.delta,
                delta_auroc_hi: delong.delta,
                delta_tpr_at_fpr_5: delta_tpr,
                delta_tpr_at_fpr_5_lo: delta_tpr,
                delta_tpr_at_fpr_5_hi: delta_tpr,
            });
        }
        let of_b = resample(labels, self.resampled.len(), self.seed, |cp, cn, wp, wn| rb.metrics(cp, cn, wp, wn));
        let samples: Vec<(f64, f64)> = self
            .resampled
            .iter()
            .zip(&of_b)
            .map(|((auc_a, tpr_a), (auc_b, tpr_b))| (auc_b - auc_a, tpr_b - tpr_a))
            .collect();
        let interval = |pick: fn(&(f64, f64)) -> f64| {
            let mut v: Vec<f64> = samples.iter().map(pick).collect();
            v.sort_unstable_by(f64::total_cmp);
            (quantile(&v, LO_Q), quantile(&v, HI_Q))
        };
        let (alo, ahi) = interval(|s| s.0);
        let (tlo, thi) = interval(|s| s.1);
        Ok(Paired {
            delong,
            delta_auroc_lo: alo,
            delta_auroc_hi: ahi,
            delta_tpr_at_fpr_5: delta_tpr,
            delta_tpr_at_fpr_5_lo: tlo,
            delta_tpr_at_fpr_5_hi: thi,
        })
    }
}

/// One count of every image of the class `positive`.
fn ones(labels: &[bool], positive: bool) -> Vec<u32> {
    vec![1u32; labels.iter().filter(|&&l| l == positive).count()]
}

/// `eval` on each of `n_resamples` resamples of images: resample `r` draws the adversarial, then the clean images'
/// counts (by image, in input order) from `Rng::stream(seed, r)`.
fn resample(
    labels: &[bool],
    n_resamples: usize,
    seed: u64,
    eval: impl Fn(&[u32], &[u32], &mut Vec<u32>, &mut Vec<u32>) -> (f64, f64) + Sync,
) -> Vec<(f64, f64)> {
    let n_pos = labels.iter().filter(|&&l| l).count();
    let n_neg = labels.len() - n_pos;
    (0..n_resamples)
        .into_par_iter()
        .map_init(
            || (vec![0u32; n_pos], vec![0u32; n_neg], Vec::new(), Vec::new()),
            |(cp, cn, wp, wn), r| {
                let mut rng = Rng::stream(seed, r as u64);
                draw_counts(&mut rng, cp);
                draw_counts(&mut rng, cn);
                eval(cp, cn, wp, wn)
            },
        )
        .collect()
}

/// Holm's step-down adjustment (Holm, Scand. J. Statist. 1979) of a family of p-values, in their input order: the
/// `k`-th smallest of `m` becomes `max over j <= k of min(1, (m - j + 1) p_(j))`. NaN p-values (tests that could not be
/// made) stay NaN and do not count in `m`.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..p.len()).filter(|&i| !p[i].is_nan()).collect();
    order.sort_by(|&i, &j| p[i].total_cmp(&p[j]));
    let m = order.len();
    let mut out = vec![f64::NAN; p.len()];
    let mut running = 0.0f64;
    for (k, &i) in order.iter().enumerate() {
        running = running.max(((m - k) as f64 * p[i]).min(1.0));
        out[i] = running;
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn midranks_share_ties() {
        assert_eq!(super::midranks(&[3.0, 1.0, 3.0, 2.0, -0.0, 0.0]), [5.5, 3.0, 5.5, 4.0, 1.5, 1.5]);
    }

    #[test]
    fn holm_matches_the_textbook_example() {
        // m = 4 (the NaN does not count): 4 * 0.01, 3 * 0.03, 2 * 0.04 raised to the running 0.09, 1 * 0.5
        let adj = super::holm(&[0.04, 0.01, f64::NAN, 0.5, 0.03]);
        let want = [0.09, 0.04, f64::NAN, 0.5, 0.09];
        for (a, w) in adj.iter().zip(want) {
            assert!((a.is_nan() && w.is_nan()) || (a - w).abs() < 1e-15, "{adj:?}");
        }
    }
}
