//! Local intrinsic dimensionality (Ma, Li, Wang, Erfani, Wijewickrema, Schoenebeck, Song, Houle, Bailey 2018,
//! "Characterizing adversarial subspaces using local intrinsic dimensionality"): the maximum-likelihood LID estimate
//! from the k nearest neighbours in a minibatch of clean references; adversarial regions have a higher LID.
use super::{fit_features, not_fitted, Detector, DetectorKind, View};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::models::Model;
use crate::routes::{Resources, RouteKind};
use tch::{Kind, Tensor};

/// `k` = 20 neighbours within reference minibatches of `minibatch` = 100 clean images (Ma et al.'s MNIST setting).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LidConfig {
    pub k: usize,
    pub minibatch: usize,
}

impl Default for LidConfig {
    fn default() -> Self {
        LidConfig { k: 20, minibatch: 100 }
    }
}

impl LidConfig {
    pub fn validate(&self) -> Result<()> {
        if self.k < 2 {
            return Err(Error::config("lid.k", self.k, "needs at least 2 neighbours"));
        }
        if self.minibatch < self.k {
            return Err(Error::config("lid.minibatch", self.minibatch, format!("must be at least lid.k = {}", self.k)));
        }
        Ok(())
    }
}

/// Ma et al. estimate LID on several layers and combine the layers with a logistic regression fitted on adversarial
/// examples. Attack-oblivious here: two layers (penultimate features and logits, the activations `Classifier` exposes),
/// each image's LID averaged over every reference minibatch (the first half of the fit set, so the score of an image
/// does not depend on the other images in its batch), each layer standardised by the mean and standard deviation of
/// the LID of the clean second half of the fit set, and the two z-scores summed. Full model only.
#[derive(Debug)]
pub struct Lid {
    cfg: LidConfig,
    fit_size: usize,
    /// Per layer: reference activations `[R, D]` (R a multiple of the minibatch) and the clean (mean, std).
    fitted: Option<Vec<(Tensor, f64, f64)>>,
}

impl Lid {
    pub fn new(cfg: LidConfig, fit_size: usize) -> Self {
        Lid { cfg, fit_size, fitted: None }
    }

    fn estimate(&self, acts: &Tensor, refs: &Tensor) -> Tensor {
        lid_estimate(acts, refs, self.cfg.k as i64, self.cfg.minibatch as i64)
    }

    fn combined(&self, layers: &[(Tensor, f64, f64)], acts: &[Tensor]) -> Tensor {
        let parts: Vec<Tensor> =
            layers.iter().zip(acts).map(|((refs, mu, sd), a)| (self.estimate(a, refs) - *mu) / *sd).collect();
        Tensor::stack(&parts, 0).sum_dim_intlist(0, false, Kind::Double)
    }
}

/// Mean over the reference minibatches of `m` rows of `refs` (`[R, D]`, R a multiple of m) of the MLE LID
/// `-(1/k sum_i log(r_i / r_k))^-1` of each row of `acts` (`[B, D]`) from its `k` nearest references, `[B]`.
pub(crate) fn lid_estimate(acts: &Tensor, refs: &Tensor, k: i64, m: i64) -> Tensor {
    let b = acts.size()[0];
    let d = Tensor::cdist(acts, refs, 2.0, None::<i64>).view([b, -1, m]);
    let (r, _) = d.topk(k, -1, false, true);
    let r = r.clamp_min(1e-12);
    let logs = (&r / r.narrow(-1, k - 1, 1)).log().sum_dim_intlist(-1, false, Kind::Double).clamp_max(-1e-12);
    (-(k as f64) / logs).mean_dim(-1, false, Kind::Double)
}

/// Mean and standard deviation of a 1-d f64 tensor, the deviation kept away from 0.
pub(crate) fn mean_std(t: &Tensor) -> Result<(f64, f64)> {
    let mu = t.mean(Kind::Double).double_value(&[]);
    let sd = t.std(true).double_value(&[]);
    if !(mu.is_finite() && sd.is_finite()) {
        return Err(Error::Model(format!("calibration statistics are not finite (mean {mu}, std {sd})")));
    }
    Ok((mu, sd.max(1e-12)))
}

impl Detector for Lid {
    fn kind(&self) -> DetectorKind {
        DetectorKind::Lid
    }
    /// Fitted on the full model's features: the full model only.
    fn runs_on(&self, route: RouteKind) -> bool {
        route.is_full()
    }
    fn needs_fit(&self) -> bool {
        true
    }

    fn fit(&mut self, model: &Model, clean: &Dataset, _res: Resources) -> Result<()> {
        let (feats, logits, _) = fit_features(self.name(), model, clean, self.fit_size)?;
        let n = feats.size()[0];
        let m = self.cfg.minibatch as i64;
        let refs = (n / 2) / m * m;
        if refs == 0 {
            return Err(Error::Missing(format!(
                "detector lid: {n} fit images give no reference minibatch of {m} (half the fit set is references)"
            )));
        }
        let _guard = tch::no_grad_guard();
        let mut layers = Vec::new();
        for acts in [feats, logits] {
            let (r, calib) = (acts.narrow(0, 0, refs), acts.narrow(0, n / 2, n - n / 2));
            let (mu, sd) =
                mean_std(&self.estimate(&calib, &r)).map_err(|e| Error::Model(format!("detector lid: {e}")))?;
            layers.push((r, mu, sd));
        }
        self.fitted = Some(layers);
        Ok(())
    }

    fn score(&self, v: &View) -> Result<Tensor> {
        let layers = self.fitted.as_ref().ok_or_else(|| not_fitted(self.name()))?;
        // no guard: on a pass that carries a graph (the adaptive attack) the score is differentiable, the neighbours
        // of each step chosen by `topk` and the gradient flowing through their distances
        let (f, l) = (&v.route.features, &v.route.logits);
        Ok(self.combined(layers, &[f.to_kind(Kind::Double), l.to_kind(Kind::Double)]))
    }
}
