//! The evaluation protocol of the detection benchmark (as in Ma et al. 2018 and Lee et al. 2018: only images the model
//! gets right count as clean, only attacks that succeed count as adversarial), batched scoring and the fitting split.
use super::{Detector, Mode};
use crate::data::Dataset;
use crate::error::Result;
use crate::models::Model;
use crate::subnet::Subnets;
use tch::Tensor;

/// Labels (true = adversarial, the positive class) and scores to hand to `metrics::compute` / `metrics::bootstrap`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScoredSet {
    pub labels: Vec<bool>,
    pub scores: Vec<f64>,
}

impl ScoredSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// `(clean, adversarial)` counts.
    pub fn counts(&self) -> (usize, usize) {
        let adv = self.labels.iter().filter(|&&l| l).count();
        (self.labels.len() - adv, adv)
    }
    fn push(&mut self, adversarial: bool, score: f64) {
        self.labels.push(adversarial);
        self.scores.push(score);
    }
}

/// The evaluation protocol. Image `i` of a test set has a clean version (score `clean_scores[i]`, prediction
/// `pred_clean[i]`) and an adversarial version (`adv_scores[i]`, `pred_adv[i]`), and true class `labels[i]`.
///
/// - Negatives (clean) are the clean test images the model classifies correctly (`pred_clean == label`), all of them.
/// - "successful" (the main protocol): positives are the adversarial versions of those images that succeed, i.e. that
///   the model misclassifies (`pred_adv != label`). Failed attacks are left out: they are not adversarial examples.
/// - "all" (the variant): positives are the adversarial versions of every correctly classified clean image, whether
///   the attack succeeded or not.
///
/// Images the model already misclassifies when clean are left out of both sets. The slices are read in parallel up to
/// the shortest one; callers pass slices of equal length (`advdet detect` checks this before calling).
/// Returns `(successful, all)`; within each set the order is by image, clean before adversarial.
pub fn protocol_sets(
    clean_scores: &[f64],
    adv_scores: &[f64],
    labels: &[i64],
    pred_clean: &[i64],
    pred_adv: &[i64],
) -> (ScoredSet, ScoredSet) {
    let (mut successful, mut all) = (ScoredSet::default(), ScoredSet::default());
    let n = clean_scores.len().min(adv_scores.len()).min(labels.len()).min(pred_clean.len()).min(pred_adv.len());
    for i in 0..n {
        if pred_clean[i] != labels[i] {
            continue;
        }
        successful.push(false, clean_scores[i]);
        all.push(false, clean_scores[i]);
        if pred_adv[i] != labels[i] {
            successful.push(true, adv_scores[i]);
        }
        all.push(true, adv_scores[i]);
    }
    (successful, all)
}

/// Scores a dataset-sized tensor `[N, C, H, W]` (on any device) in batches of `batch_size`, with a progress bar.
/// Every detector here scores each image independently of the others in its batch, so the result does not depend on
/// `batch_size`.
pub fn score_batched(
    det: &dyn Detector,
    model: &Model,
    subnets: Option<&Subnets>,
    mode: Mode,
    xs: &Tensor,
    batch_size: i64,
) -> Result<Vec<f64>> {
    let n = xs.size().first().copied().unwrap_or(0);
    let b = batch_size.max(1);
    let bar = crate::progress::bar(n.max(0) as u64, &format!("{}/{}", det.name(), mode));
    let mut scores = Vec::with_capacity(n.max(0) as usize);
    for start in (0..n).step_by(b as usize) {
        let batch = xs.narrow(0, start, b.min(n - start)).to_device(model.device());
        scores.extend(det.score(model, subnets, mode, &batch)?);
        bar.inc(b.min(n - start) as u64);
    }
    bar.finish_and_clear();
    Ok(scores)
}

/// The fitting split: the last `fit_size` images of the training split (`train` must be the training split; the
/// detectors' `fit` checks it). Held out from the test set by construction; the classifiers here are trained on the
/// full training split, so these images are not unseen by the model, only by the evaluation.
pub fn fit_split(train: &Dataset, fit_size: usize) -> Dataset {
    let n = train.len();
    train.range(n.saturating_sub(fit_size), n)
}
