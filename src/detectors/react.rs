//! ReAct (Sun, Guo, Li 2021, "ReAct: out-of-distribution detection with rectified activations", NeurIPS): the
//! penultimate activations clipped at a high percentile of the clean fit images' activations, then the energy score
//! of the logits the last linear layer gives on the clipped features.
use super::energy::energy;
use super::{fit_features, not_fitted, Detector, DetectorKind, View};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::models::Model;
use crate::routes::{Resources, RouteKind};
use tch::{Kind, Tensor};

/// `percentile` p = 90 as in Sun et al.: the clipping threshold is the p-th percentile of every penultimate activation
/// of the clean fit images, all units pooled (their code: `np.percentile(activations.flatten(), 90)`, numpy's linear
/// interpolation).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReactConfig {
    pub percentile: f64,
}

impl Default for ReactConfig {
    fn default() -> Self {
        ReactConfig { percentile: 90.0 }
    }
}

impl ReactConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.percentile.is_finite() && self.percentile > 0.0 && self.percentile < 100.0) {
            return Err(Error::config("react.percentile", self.percentile, "must be strictly between 0 and 100"));
        }
        Ok(())
    }
}

/// Score E(x) = `-logsumexp(W min(h(x), c) + b)` (energy at T = 1, as Sun et al.), h the route's penultimate features,
/// W and b the model's last linear layer and c the threshold fitted on the full model's clean fit features; higher =
/// more suspicious. On the subnet and mask routes the route's own (gated) features are clipped with that same c. On the
/// `temperature` route the clipped logits are divided by the route's temperature, as its own logits are (the route's
/// network is the tempered model). Never on `second-model`: the threshold and the last layer are the model's.
#[derive(Debug)]
pub struct React {
    cfg: ReactConfig,
    fit_size: usize,
    threshold: Option<f64>,
}

impl React {
    pub fn new(cfg: ReactConfig, fit_size: usize) -> Self {
        React { cfg, fit_size, threshold: None }
    }

    /// Fits the threshold on penultimate feature rows `[N, D]` (`fit` does so on the clean fit images' features).
    pub fn fit_features(&mut self, feats: &Tensor) -> Result<f64> {
        let c = percentile(feats, self.cfg.percentile)?;
        self.threshold = Some(c);
        Ok(c)
    }

    /// The fitted clipping threshold, if any.
    pub fn threshold(&self) -> Option<f64> {
        self.threshold
    }
}

/// The `p`-th percentile of every entry of `values`, with numpy's default (linear) interpolation between the two
/// closest ranks: rank `p / 100 * (n - 1)` of the sorted entries (in f64; a sort, so no size limit).
pub fn percentile(values: &Tensor, p: f64) -> Result<f64> {
    let _guard = tch::no_grad_guard();
    let sorted = values.to_kind(Kind::Double).flatten(0, -1).sort(0, false).0;
    let n = sorted.size()[0];
    if n == 0 {
        return Err(Error::Missing("detector react: no activations to take a percentile of".into()));
    }
    let rank = p / 100.0 * (n - 1) as f64;
    let lo = (rank.floor() as i64).clamp(0, n - 1);
    let hi = (lo + 1).min(n - 1);
    let (a, b) = (sorted.double_value(&[lo]), sorted.double_value(&[hi]));
    // numpy's `_lerp`: a + (b - a) t, taken from the upper end when t >= 1/2 (the same rounding as numpy)
    let t = rank - lo as f64;
    let v = if t >= 0.5 { b - (b - a) * (1.0 - t) } else { a + (b - a) * t };
    if !v.is_finite() {
        return Err(Error::Model(format!("detector react: the activations' {p}th percentile is {v}")));
    }
    Ok(v)
}

impl Detector for React {
    fn kind(&self) -> DetectorKind {
        DetectorKind::React
    }
    fn runs_on(&self, route: RouteKind) -> bool {
        !route.other_network()
    }
    fn needs_fit(&self) -> bool {
        true
    }

    fn fit(&mut self, model: &Model, clean: &Dataset, _res: Resources) -> Result<()> {
        let (feats, _, _) = fit_features(self.name(), model, clean, self.fit_size)?;
        self.fit_features(&feats)?;
        Ok(())
    }

    fn score(&self, v: &View) -> Result<Tensor> {
        let c = self.threshold.ok_or_else(|| not_fitted(self.name()))?;
        // no guard: on a pass that carries a graph the score is differentiable, through the unclipped units
        let clipped = v.route.features.clamp_max(c);
        Ok(energy(&v.route.head(v.model, &clipped), 1.0))
    }
}
