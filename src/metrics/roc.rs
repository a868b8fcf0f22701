//! The ROC walk over distinct thresholds with ties handled (Fawcett, "An introduction to ROC analysis", 2006), and the
//! metrics accumulated along it with scikit-learn's definitions (roc_auc_score, average_precision_score).
use super::sort::{from_key, key, sort_keys};
use super::Metrics;

/// Per-element multiplicities: every element once, or a bootstrap resample's counts.
pub(crate) trait Weights: Copy {
    fn at(self, i: usize) -> u64;
}

#[derive(Clone, Copy)]
pub(crate) struct Unit;

impl Weights for Unit {
    #[inline]
    fn at(self, _: usize) -> u64 {
        1
    }
}

impl Weights for &[u32] {
    #[inline]
    fn at(self, i: usize) -> u64 {
        u64::from(self[i])
    }
}

/// Scores split by class as order keys (sort::key), each in ascending key order, i.e. descending score: the one sort
/// every metric needs.
pub(crate) struct Sorted {
    pub pos: Vec<u64>,
    pub neg: Vec<u64>,
}

impl Sorted {
    /// `labels` and `scores` must already be validated (same length, finite).
    pub fn new(labels: &[bool], scores: &[f64]) -> Self {
        let n_pos = labels.iter().filter(|&&l| l).count();
        let mut pos = Vec::with_capacity(n_pos);
        let mut neg = Vec::with_capacity(labels.len() - n_pos);
        for (&l, &s) in labels.iter().zip(scores) {
            if l {
                pos.push(key(s))
            } else {
                neg.push(key(s))
            }
        }
        // the two sorts are independent; on a large input they run on two threads
        if labels.len() >= 100_000 {
            rayon::join(|| sort_keys(&mut pos), || sort_keys(&mut neg));
        } else {
            sort_keys(&mut pos);
            sort_keys(&mut neg);
        }
        Sorted { pos, neg }
    }

    /// Visits each distinct threshold (as a key), highest score first, with the (weighted) number of positives and
    /// negatives scoring exactly that value; a threshold whose elements all have weight 0 is not in the sample.
    #[inline]
    pub fn walk(&self, wp: impl Weights, wn: impl Weights, mut visit: impl FnMut(u64, u64, u64)) {
        let (pos, neg) = (&self.pos[..], &self.neg[..]);
        let (mut i, mut j) = (0, 0);
        while i < pos.len() || j < neg.len() {
            let t = match (pos.get(i), neg.get(j)) {
                (Some(&a), Some(&b)) => a.min(b),
                (Some(&a), None) => a,
                (None, Some(&b)) => b,
                (None, None) => break,
            };
            let mut dtp = 0;
            while i < pos.len() && pos[i] == t {
                dtp += wp.at(i);
                i += 1;
            }
            let mut dfp = 0;
            while j < neg.len() && neg[j] == t {
                dfp += wn.at(j);
                j += 1;
            }
            if dtp + dfp > 0 {
                visit(t, dtp, dfp);
            }
        }
    }

    /// Area under the ROC curve by the trapezoidal rule, summed exactly in integers (twice the area times P*N).
    pub fn auroc(&self) -> f64 {
        let (p, n) = (self.pos.len() as u64, self.neg.len() as u64);
        let (mut tp, mut twice_area) = (0u64, 0u128);
        self.walk(Unit, Unit, |_, dtp, dfp| {
            twice_area += u128::from(dfp) * u128::from(2 * tp + dtp);
            tp += dtp;
        });
        twice_area as f64 / (2 * u128::from(p) * u128::from(n)) as f64
    }

    /// All six metrics in one walk; with weights, those of a resample whose class sizes are the weights' sums.
    pub fn metrics(&self, wp: impl Weights, wn: impl Weights) -> Metrics {
        let p: u64 = (0..self.pos.len()).map(|i| wp.at(i)).sum();
        let n: u64 = (0..self.neg.len()).map(|j| wn.at(j)).sum();
        let (pf, nf) = (p as f64, n as f64);
        let (mut tp, mut fp, mut twice_area) = (0u64, 0u64, 0u128);
        let (mut ap_adv, mut ap_clean) = (0.0, 0.0);
        // the point (0, 0) of the threshold above every score
        let (mut tpr_at_fpr_5, mut fpr_at_tpr_95, mut accuracy) = (0.0f64, 1.0f64, 0.5f64);
        self.walk(wp, wn, |_, dtp, dfp| {
            twice_area += u128::from(dfp) * u128::from(2 * tp + dtp);
            if dfp > 0 {
                // clean is positive and the scores are negated: this threshold predicts clean for every score <= it
                let (clean_tp, clean_fp) = (n - fp, p - tp);
                ap_clean += dfp as f64 * (clean_tp as f64 / (clean_tp + clean_fp) as f64);
            }
            tp += dtp;
            fp += dfp;
            if dtp > 0 {
                ap_adv += dtp as f64 * (tp as f64 / (tp + fp) as f64);
            }
            let (tpr, fpr) = (tp as f64 / pf, fp as f64 / nf);
            if fpr <= 0.05 {
                tpr_at_fpr_5 = tpr_at_fpr_5.max(tpr);
            }
            if tpr >= 0.95 {
                fpr_at_tpr_95 = fpr_at_tpr_95.min(fpr);
            }
            accuracy = accuracy.max((tpr + 1.0 - fpr) / 2.0);
        });
        Metrics {
            auroc: twice_area as f64 / (2 * u128::from(p) * u128::from(n)) as f64,
            ap_adv: ap_adv / pf,
            ap_clean: ap_clean / nf,
            tpr_at_fpr_5,
            fpr_at_tpr_95,
            detection_accuracy: accuracy,
        }
    }

    /// The ROC curve, one point per distinct threshold after the point (0, 0) at threshold +inf.
    pub fn curve(&self) -> super::Roc {
        let (pf, nf) = (self.pos.len() as f64, self.neg.len() as f64);
        let mut roc = super::Roc { fpr: vec![0.0], tpr: vec![0.0], thresholds: vec![f64::INFINITY] };
        let (mut tp, mut fp) = (0u64, 0u64);
        self.walk(Unit, Unit, |t, dtp, dfp| {
            tp += dtp;
            fp += dfp;
            roc.fpr.push(fp as f64 / nf);
            roc.tpr.push(tp as f64 / pf);
            roc.thresholds.push(from_key(t));
        });
        roc
    }
}
