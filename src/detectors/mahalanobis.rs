//! Mahalanobis distance detector (Lee, Lee, Lee, Shin 2018, "A simple unified framework for detecting
//! out-of-distribution samples and adversarial attacks"): class-conditional Gaussians with one tied covariance on the
//! penultimate features, fitted on clean training images; the distance to the closest class mean flags an input.
use super::{fit_features, not_fitted, Detector, DetectorKind, View};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::models::Model;
use crate::routes::{Resources, RouteKind};
use tch::{Kind, Tensor};

/// `shrinkage` blends the tied covariance with a multiple of the identity, `(1 - s) Sigma + s tr(Sigma)/D I`. The
/// default 0 is Lee et al.'s plain empirical covariance (scikit-learn's `EmpiricalCovariance`, pseudo-inverted like its
/// `pinvh`); `ledoit_wolf = true` replaces `shrinkage` by the Ledoit-Wolf estimate (Ledoit & Wolf 2004, scikit-learn's
/// `LedoitWolf`), steadier when the fit set is small compared with the feature width (500 units for LeNet).
/// `magnitude` is Lee et al.'s input preprocessing step (pixel units of [0, 1] images), 0 = none (the default: they
/// tune it on adversarial validation data, which an attack-oblivious detector does not see). Lee et al. also combine
/// several layers with a logistic regression fitted on adversarial examples; here only the penultimate layer is used,
/// so the detector stays oblivious to the attack.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MahalanobisConfig {
    pub shrinkage: f64,
    pub ledoit_wolf: bool,
    pub magnitude: f64,
}

impl Default for MahalanobisConfig {
    fn default() -> Self {
        MahalanobisConfig { shrinkage: 0.0, ledoit_wolf: false, magnitude: 0.0 }
    }
}

impl MahalanobisConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.magnitude.is_finite() && (0.0..=1.0).contains(&self.magnitude)) {
            return Err(Error::config("mahalanobis.magnitude", self.magnitude, "must be in [0, 1]"));
        }
        if !(self.shrinkage.is_finite() && (0.0..=1.0).contains(&self.shrinkage)) {
            return Err(Error::config("mahalanobis.shrinkage", self.shrinkage, "must be in [0, 1]"));
        }
        Ok(())
    }
}

/// Score `min_c (f(x) - mu_c)^T Sigma^+ (f(x) - mu_c)`, f the penultimate features, full model only.
#[derive(Debug)]
pub struct Mahalanobis {
    cfg: MahalanobisConfig,
    fit_size: usize,
    fitted: Option<Gaussians>,
}

impl Mahalanobis {
    pub fn new(cfg: MahalanobisConfig, fit_size: usize) -> Self {
        Mahalanobis { cfg, fit_size, fitted: None }
    }
}

/// The fitted class-conditional Gaussians: class means `[C, D]`, the pseudo-inverse of the tied covariance `[D, D]`
/// (f64, on the features' device) and the shrinkage that was applied to that covariance.
#[derive(Debug)]
pub struct Gaussians {
    pub means: Tensor,
    pub precision: Tensor,
    pub shrinkage: f64,
}

impl Gaussians {
    /// Lee et al.'s estimator on feature rows `feats` `[N, D]` with labels `labels` `[N]` in `0..classes`: per-class
    /// means, one covariance of the class-centred rows (divided by N, as scikit-learn's `EmpiricalCovariance`), shrunk
    /// as `cfg` says (its `magnitude` is not used here), then pseudo-inverted with scipy's `pinvh` cutoff.
    pub fn fit(feats: &Tensor, labels: &Tensor, classes: i64, cfg: &MahalanobisConfig) -> Result<Gaussians> {
        let _guard = tch::no_grad_guard();
        let (n, d) = match feats.size()[..] {
            [n, d] if n > 0 && d > 0 => (n, d),
            ref s => return Err(Error::Model(format!("detector mahalanobis: features of shape {s:?}, need [N, D]"))),
        };
        if labels.size() != [n] {
            return Err(Error::Model(format!("detector mahalanobis: {:?} labels for {n} feature rows", labels.size())));
        }
        let feats = feats.to_kind(Kind::Double);
        let labels = labels.to_device(feats.device()).to_kind(Kind::Int64);
        let onehot = labels.f_one_hot(classes)?.to_kind(Kind::Double);
        let counts = onehot.sum_dim_intlist(0, false, Kind::Double);
        if let Some(c) = Vec::<f64>::try_from(counts.to_device(tch::Device::Cpu))?.iter().position(|&k| k < 1.0) {
            return Err(Error::Missing(format!(
                "detector mahalanobis: no fit image of class {c}; use a larger fit set"
            )));
        }
        let means = onehot.transpose(0, 1).matmul(&feats) / counts.unsqueeze(1);
        let centred = &feats - means.index_select(0, &labels);
        let cov = centred.transpose(0, 1).matmul(&centred) / n as f64;
        let mu = cov.trace().double_value(&[]) / d as f64;
        let s = if cfg.ledoit_wolf { ledoit_wolf(&centred, &cov, mu) } else { cfg.shrinkage };
        let cov = &cov * (1.0 - s) + Tensor::eye(d, (Kind::Double, cov.device())) * (s * mu);
        // the cutoff scipy's pinvh uses (dimension x machine epsilon, relative): dead ReLU units give zero variance
        let rcond = d as f64 * f64::EPSILON;
        let precision = cov.f_linalg_pinv(rcond, true)?;
        Ok(Gaussians { means, precision, shrinkage: s })
    }

    /// Squared Mahalanobis distance of each feature row `[B, D]` to each class mean, `[B, C]` (f64).
    pub fn distances(&self, feats: &Tensor) -> Tensor {
        let diff = feats.to_kind(Kind::Double).unsqueeze(1) - self.means.unsqueeze(0);
        (diff.matmul(&self.precision) * &diff).sum_dim_intlist(-1, false, Kind::Double)
    }

    /// The squared distance of each row to its closest class mean, `[B]`: the detector's score.
    pub fn min_distance(&self, feats: &Tensor) -> Tensor {
        self.distances(feats).min_dim(-1, false).0
    }
}

/// The Ledoit-Wolf shrinkage of the covariance `cov` (with `mu = tr(cov) / D`) of the centred rows `x` `[N, D]`,
/// scikit-learn's `ledoit_wolf_shrinkage` formula.
fn ledoit_wolf(x: &Tensor, cov: &Tensor, mu: f64) -> f64 {
    let (n, d) = (x.size()[0] as f64, x.size()[1] as f64);
    let x2 = x.square();
    let beta_sum = x2.transpose(0, 1).matmul(&x2).sum(Kind::Double).double_value(&[]);
    let delta_sum = (cov * n).square().sum(Kind::Double).double_value(&[]) / (n * n);
    let beta = (beta_sum / n - delta_sum) / (d * n);
    let delta = (delta_sum - 2.0 * mu * mu * d + d * mu * mu) / d;
    let beta = beta.min(delta);
    if beta <= 0.0 || delta <= 0.0 {
        0.0
    } else {
        beta / delta
    }
}

impl Detector for Mahalanobis {
    fn kind(&self) -> DetectorKind {
        DetectorKind::Mahalanobis
    }
    /// Fitted on the full model's features: the full model only.
    fn runs_on(&self, route: RouteKind) -> bool {
        route.is_full()
    }
    fn needs_fit(&self) -> bool {
        true
    }

    fn fit(&mut self, model: &Model, clean: &Dataset, _res: Resources) -> Result<()> {
        let (feats, _, labels) = fit_features(self.name(), model, clean, self.fit_size)?;
        self.fitted = Some(Gaussians::fit(&feats, &labels, clean.num_classes(), &self.cfg)?);
        Ok(())
    }

    fn wants_input_grad(&self) -> bool {
        self.cfg.magnitude != 0.0
    }
    /// The distance to the steered class's mean, which bounds the distance to the closest mean from above: descending
    /// the minimum instead pulls an image between two classes towards its label's mean, and back to its label.
    fn attack_score(&self, v: &View, steer: &Tensor) -> Option<Result<Tensor>> {
        let g = match self.fitted.as_ref() {
            Some(g) => g,
            None => return Some(Err(not_fitted(self.name()))),
        };
        let feats = match self.cfg.magnitude == 0.0 {
            true => Ok(v.route.features.shallow_clone()),
            false => v
                .route
                .input_grad(v.model, v.xs, |features, _| g.min_distance(features).sum(Kind::Double))
                .map(|grad| v.route.forward(v.model, &(v.xs - (grad.sign() * self.cfg.magnitude).detach())).0),
        };
        Some(feats.map(|f| g.distances(&f).gather(1, &steer.view([-1, 1]), false).squeeze_dim(1)))
    }

    fn score(&self, v: &View) -> Result<Tensor> {
        let g = self.fitted.as_ref().ok_or_else(|| not_fitted(self.name()))?;
        // no guard: on a pass that carries a graph (the adaptive attack) the score stays differentiable
        if self.cfg.magnitude == 0.0 {
            return Ok(g.min_distance(&v.route.features));
        }
        // Lee et al.: step against the gradient of the distance to the closest class mean (a constant step for an
        // attack differentiating through it: BPDA)
        let grad = v.route.input_grad(v.model, v.xs, |features, _| g.min_distance(features).sum(Kind::Double))?;
        let x = v.xs - (grad.sign() * self.cfg.magnitude).detach();
        Ok(g.min_distance(&v.route.forward(v.model, &x).0))
    }
}
