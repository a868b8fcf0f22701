//! The evaluation protocol of the detection benchmark (as in Ma et al. 2018 and Lee et al. 2018: only images the model
//! gets right count as clean, only attacks that succeed count as adversarial) and the fitting split.
use crate::data::Dataset;
use crate::error::{Error, Result};

/// Which adversarial images count as positives (see `protocol_sets`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// The adversarial versions that the model misclassifies (the main protocol).
    Successful,
    /// Every adversarial version, whether the attack succeeded or not.
    All,
}

impl Protocol {
    pub const BOTH: [Protocol; 2] = [Protocol::Successful, Protocol::All];
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Successful => "successful",
            Protocol::All => "all",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for Protocol {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Protocol::BOTH
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| Error::config("protocol", s, "expected successful or all"))
    }
}

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

impl ScoredSet {
    /// The set of `protocol` out of `protocol_sets`' pair.
    pub fn pick(pair: &(ScoredSet, ScoredSet), protocol: Protocol) -> &ScoredSet {
        match protocol {
            Protocol::Successful => &pair.0,
            Protocol::All => &pair.1,
        }
    }
}

/// The fitting split: the last `fit_size` images of the training split (`train` must be the training split; the
/// detectors' `fit` checks it). Held out from the test set by construction; the classifiers here are trained on the
/// full training split, so these images are not unseen by the model, only by the evaluation.
pub fn fit_split(train: &Dataset, fit_size: usize) -> Dataset {
    let n = train.len();
    train.range(n.saturating_sub(fit_size), n)
}

/// The supervised detectors' halves of the fit images (`fit_split`'s): the first half fits their unsupervised part
/// (class means, reference features), the second half, clean and attacked by the training attack, fits their
/// regression (as Lee et al. and Ma et al. keep the density and the regression on separate images). Both are training
/// images: no test image reaches a supervised detector's fit.
pub fn supervised_split(fit: &Dataset) -> (Dataset, Dataset) {
    let half = fit.len() / 2;
    (fit.range(0, half), fit.range(half, fit.len()))
}
