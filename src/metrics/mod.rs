//! Detection metrics on f64 scores (higher = more likely adversarial), with scikit-learn's definitions and tie handling,
//! and their bootstrap confidence intervals: the numbers behind the comparison of full-model and subnetwork detectors
//! (Wang, Hu, Su, arXiv 1910.02673). No tensors and no plotting here (`csv` reads a scores file).
mod bootstrap;
pub mod csv;
pub mod paired;
pub mod proportions;
mod roc;
mod sort;

pub use bootstrap::bootstrap;
pub(crate) use bootstrap::quantile;
pub use paired::{delong, holm, normal_test, paired, DeLong, Paired, Reference};

use crate::error::Error;
use roc::{Sorted, Unit};

/// TPR at the threshold fixed at 5% FPR on clean held-out images (not on the test set, unlike `tpr_at_fpr_5` and
/// `detection_accuracy`, whose thresholds are picked on the very images they are measured on).
pub const HELDOUT_TPR: &str = "tpr_at_fpr_5_heldout";
/// The test set's FPR at that same held-out threshold: how far the 5% it was fixed at holds on the test images.
pub const HELDOUT_FPR: &str = "test_fpr_at_heldout_threshold";
/// The share of the attacked images the full model classified correctly when clean whose attack succeeded (the
/// prediction left the label) and whose score stays at or below the detector's operating threshold (5% FPR on clean
/// held-out images; `suite::scoring::operating_points`): what an attacker gets past the deployed detector.
pub const EVASION: &str = "evasion_at_fpr_5";

pub const METRIC_NAMES: [&str; 6] =
    ["auroc", "ap_adv", "ap_clean", "tpr_at_fpr_5", "fpr_at_tpr_95", "detection_accuracy"];

/// The six metrics, adversarial = positive.
/// - `auroc`: area under the ROC curve, trapezoidal over distinct thresholds (scikit-learn's roc_auc_score);
/// - `ap_adv`: average precision with adversarial as positive; `ap_clean`: with clean as positive and the scores
///   negated (both scikit-learn's average_precision_score);
/// - `tpr_at_fpr_5`: the largest TPR over thresholds whose FPR <= 0.05;
/// - `fpr_at_tpr_95`: the smallest FPR over thresholds whose TPR >= 0.95;
/// - `detection_accuracy`: the largest (TPR + 1 - FPR) / 2 over thresholds, the point (0, 0) included.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metrics {
    pub auroc: f64,
    pub ap_adv: f64,
    pub ap_clean: f64,
    pub tpr_at_fpr_5: f64,
    pub fpr_at_tpr_95: f64,
    pub detection_accuracy: f64,
}

impl Metrics {
    /// The metric called `name` (one of [`METRIC_NAMES`]).
    pub fn get(&self, name: &str) -> Option<f64> {
        METRIC_NAMES.iter().position(|&m| m == name).map(|k| self.values()[k])
    }

    /// The values in the order of [`METRIC_NAMES`].
    pub fn values(&self) -> [f64; 6] {
        [self.auroc, self.ap_adv, self.ap_clean, self.tpr_at_fpr_5, self.fpr_at_tpr_95, self.detection_accuracy]
    }

    /// The inverse of [`Metrics::values`].
    pub fn from_values(v: [f64; 6]) -> Self {
        Metrics {
            auroc: v[0],
            ap_adv: v[1],
            ap_clean: v[2],
            tpr_at_fpr_5: v[3],
            fpr_at_tpr_95: v[4],
            detection_accuracy: v[5],
        }
    }
}

/// A ROC curve: the point (0, 0) at threshold +inf, then one point per distinct score, highest first (scikit-learn's
/// roc_curve with drop_intermediate=False).
#[derive(Debug, Clone, PartialEq)]
pub struct Roc {
    pub fpr: Vec<f64>,
    pub tpr: Vec<f64>,
    pub thresholds: Vec<f64>,
}

/// A point estimate with its 95% percentile bootstrap bounds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WithCi {
    pub point: Metrics,
    pub lo: Metrics,
    pub hi: Metrics,
}

/// All six metrics. `labels`: true = adversarial (positive). Errors on empty input, one class only, NaN/inf scores,
/// length mismatch.
pub fn compute(labels: &[bool], scores: &[f64]) -> crate::Result<Metrics> {
    validate(labels, scores)?;
    Ok(Sorted::new(labels, scores).metrics(Unit, Unit))
}

/// The area under the ROC curve alone (the same value as [`compute`]'s `auroc`, with less work per threshold).
pub fn auroc(labels: &[bool], scores: &[f64]) -> crate::Result<f64> {
    validate(labels, scores)?;
    Ok(Sorted::new(labels, scores).auroc())
}

/// The full ROC curve (every distinct threshold; thin it before plotting a large one).
pub fn roc_curve(labels: &[bool], scores: &[f64]) -> crate::Result<Roc> {
    validate(labels, scores)?;
    Ok(Sorted::new(labels, scores).curve())
}

/// Checks what every metric needs: one finite score per label and both classes present.
pub(crate) fn validate(labels: &[bool], scores: &[f64]) -> crate::Result<()> {
    if labels.len() != scores.len() {
        return Err(Error::config(
            "scores",
            format!("{} values", scores.len()),
            format!("expected one score per label ({} labels)", labels.len()),
        ));
    }
    if labels.is_empty() {
        return Err(Error::config("scores", "[]", "no scores to evaluate"));
    }
    if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
        return Err(Error::config(format!("scores[{i}]"), scores[i], "scores must be finite"));
    }
    let n_adv = labels.iter().filter(|&&l| l).count();
    let n_clean = labels.len() - n_adv;
    if n_adv == 0 || n_clean == 0 {
        let missing = if n_adv == 0 { "adversarial (true)" } else { "clean (false)" };
        return Err(Error::config(
            "labels",
            format!("{n_adv} adversarial, {n_clean} clean"),
            format!("both classes are needed, there is no {missing} label"),
        ));
    }
    Ok(())
}
