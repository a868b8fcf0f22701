//! Kernel density and Bayesian uncertainty (Feinman, Curtin, Shintre, Gardner 2017, "Detecting adversarial samples
//! from artifacts"): low density of the last hidden layer's features among training images of the predicted class,
//! and high variance of Monte-Carlo dropout predictions, flag an input. Only for models with dropout.
use super::lid::mean_std;
use super::{fit_features, not_fitted, Detector, DetectorKind, View};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::models::{Arch, Model};
use crate::rng::Rng;
use crate::routes::{Resources, RouteKind};
use tch::{Kind, Tensor};

/// Gaussian-kernel `bandwidth` 1.20 (Feinman et al.'s MNIST value), `mc_samples` 50 dropout passes, `dropout` the
/// rate of the model's dropout layer (0.5 in LeNet and VGG-small).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KdbuConfig {
    pub bandwidth: f64,
    pub mc_samples: usize,
    pub dropout: f64,
}

impl Default for KdbuConfig {
    fn default() -> Self {
        KdbuConfig { bandwidth: 1.20, mc_samples: 50, dropout: 0.5 }
    }
}

impl KdbuConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.bandwidth.is_finite() && self.bandwidth > 0.0) {
            return Err(Error::config("kdbu.bandwidth", self.bandwidth, "must be a positive number"));
        }
        if self.mc_samples < 2 {
            return Err(Error::config("kdbu.mc_samples", self.mc_samples, "needs at least 2 dropout samples"));
        }
        if !(self.dropout > 0.0 && self.dropout < 1.0) {
            return Err(Error::config("kdbu.dropout", self.dropout, "must be in (0, 1)"));
        }
        Ok(())
    }
}

/// Feinman et al. combine standardised KD and BU with a logistic regression fitted on adversarial examples. Attack-
/// oblivious here: score = z(BU) - z(log KD), standardised by the clean second half of the fit set; the first half
/// holds the density's reference features. The dropout of LeNet and VGG-small sits on the penultimate features right
/// before the last linear layer, so MC dropout is applied there, on the eval-mode features (batch norm stays in eval
/// mode), with `mc_samples` masks drawn once from the seed and shared by all images: an image's score does not depend
/// on its batch, and a run is reproducible. Full model only.
#[derive(Debug)]
pub struct KdBu {
    cfg: KdbuConfig,
    fit_size: usize,
    seed: u64,
    fitted: Option<Fitted>,
}

#[derive(Debug)]
struct Fitted {
    refs: Tensor,
    ref_labels: Tensor,
    log_counts: Tensor,
    weight: Tensor,
    bias: Tensor,
    masks: Tensor,
    kd: (f64, f64),
    bu: (f64, f64),
}

impl KdBu {
    pub fn new(cfg: KdbuConfig, fit_size: usize, seed: u64) -> Self {
        KdBu { cfg, fit_size, seed, fitted: None }
    }

    fn check_arch(model: &Model) -> Result<()> {
        if model.arch == Arch::Resnet20 {
            return Err(Error::Model(format!(
                "detector kdbu needs a model with dropout; arch {} has none",
                model.arch
            )));
        }
        Ok(())
    }

    /// `(log KD, BU)` of penultimate features `f` `[B, D]` (f64) with logits `logits`.
    fn kd_bu(&self, ft: &Fitted, f: &Tensor, logits: &Tensor) -> (Tensor, Tensor) {
        let pred = logits.argmax(-1, true);
        let d2 = Tensor::cdist(f, &ft.refs, 2.0, None::<i64>).square();
        let same = ft.ref_labels.unsqueeze(0).eq_tensor(&pred);
        let logk =
            (d2 / (-2.0 * self.cfg.bandwidth * self.cfg.bandwidth)).masked_fill(&same.logical_not(), f64::NEG_INFINITY);
        let kd = logk.logsumexp([-1], false) - ft.log_counts.index_select(0, &pred.squeeze_dim(-1));
        let h = f.unsqueeze(0) * ft.masks.unsqueeze(1);
        let p = (h.matmul(&ft.weight.tr()) + &ft.bias).softmax(-1, Kind::Double);
        let second = p.square().sum_dim_intlist(-1, false, Kind::Double).mean_dim(0, false, Kind::Double);
        let first = p.mean_dim(0, false, Kind::Double).square().sum_dim_intlist(-1, false, Kind::Double);
        (kd, second - first)
    }
}

impl KdBu {
    /// `(log KD, BU)` of the route's pass, `[B]` each, unstandardised (the supervised `kdbu-sup` regresses on them).
    pub fn pair(&self, v: &View) -> Result<(Tensor, Tensor)> {
        Self::check_arch(v.model)?;
        let ft = self.fitted.as_ref().ok_or_else(|| not_fitted("kdbu"))?;
        // no guard: on a pass that carries a graph (the adaptive attack) the score is differentiable, the MC-dropout
        // masks fixed at fit time
        let (f, l) = (&v.route.features, &v.route.logits);
        Ok(self.kd_bu(ft, &f.to_kind(Kind::Double), &l.to_kind(Kind::Double)))
    }
}

impl Detector for KdBu {
    fn kind(&self) -> DetectorKind {
        DetectorKind::Kdbu
    }
    /// Fitted on the full model's features: the full model only.
    fn runs_on(&self, route: RouteKind) -> bool {
        route.is_full()
    }
    fn needs_fit(&self) -> bool {
        true
    }

    fn fit(&mut self, model: &Model, clean: &Dataset, _res: Resources) -> Result<()> {
        Self::check_arch(model)?;
        let (feats, logits, labels) = fit_features(self.name(), model, clean, self.fit_size)?;
        let vars = model.vs.variables();
        let get = |n: &str| {
            vars.get(n).map(|t| t.detach().to_kind(Kind::Double)).ok_or_else(|| {
                Error::Model(format!("detector kdbu: arch {} has no {n}, the layer after its dropout", model.arch))
            })
        };
        let (weight, bias) = (get("fc2.weight")?, get("fc2.bias")?);
        let _guard = tch::no_grad_guard();
        let gap = (feats.matmul(&weight.tr()) + &bias - &logits).abs().max().double_value(&[]);
        if gap.is_nan() || gap >= 1e-3 {
            return Err(Error::Model(format!(
                "detector kdbu: the logits of arch {} are not fc2 of its penultimate features (gap {gap})",
                model.arch
            )));
        }
        let (n, d) = (feats.size()[0], feats.size()[1]);
        let keep = 1.0 - self.cfg.dropout;
        let mut rng = Rng::new(self.seed);
        let bits: Vec<f64> = (0..self.cfg.mc_samples as i64 * d)
            .map(|_| if ((rng.next_u64() >> 11) as f64) < keep * (1u64 << 53) as f64 { 1.0 / keep } else { 0.0 })
            .collect();
        let masks = Tensor::from_slice(&bits).view([self.cfg.mc_samples as i64, d]).to_device(model.device());
        let half = n / 2;
        let ref_labels = labels.narrow(0, 0, half);
        let classes = clean.num_classes();
        let counts = ref_labels.one_hot(classes).sum_dim_intlist(0, false, Kind::Double);
        if counts.min().double_value(&[]) < 1.0 {
            return Err(Error::Missing("detector kdbu: a class has no reference image; use a larger fit set".into()));
        }
        let mut ft = Fitted {
            refs: feats.narrow(0, 0, half),
            ref_labels,
            log_counts: counts.log(),
            weight,
            bias,
            masks,
            kd: (0.0, 1.0),
            bu: (0.0, 1.0),
        };
        let (kd, bu) = self.kd_bu(&ft, &feats.narrow(0, half, n - half), &logits.narrow(0, half, n - half));
        let err = |e: Error| Error::Model(format!("detector kdbu: {e}"));
        ft.kd = mean_std(&kd).map_err(err)?;
        ft.bu = mean_std(&bu).map_err(err)?;
        self.fitted = Some(ft);
        Ok(())
    }

    fn score(&self, v: &View) -> Result<Tensor> {
        let (kd, bu) = self.pair(v)?;
        let ft = self.fitted.as_ref().ok_or_else(|| not_fitted(self.name()))?;
        Ok((bu - ft.bu.0) / ft.bu.1 - (kd - ft.kd.0) / ft.kd.1)
    }
}
