//! Generalized entropy GEN (Liu, Lochman, Zach 2023, "GEN: Pushing the limits of softmax-based out-of-distribution
//! detection", CVPR): `sum_j p_j^gamma (1 - p_j)^gamma` over the top M softmax probabilities; a high value (a spread
//! prediction) flags an input.
use super::{Detector, DetectorKind, View};
use crate::error::{Error, Result};
use tch::{Kind, Tensor};

/// `gamma` = 0.1 as in Liu et al.; `m` = 10 top probabilities (every class of a 10-class dataset; Liu et al. take the
/// top 100 of ImageNet's 1000), or every class when the logits have fewer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenConfig {
    pub gamma: f64,
    pub m: usize,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig { gamma: 0.1, m: 10 }
    }
}

impl GenConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.gamma.is_finite() && self.gamma > 0.0 && self.gamma <= 1.0) {
            return Err(Error::config("gen.gamma", self.gamma, "must be in (0, 1]"));
        }
        if self.m < 1 {
            return Err(Error::config("gen.m", self.m, "must be at least 1 (the number of top probabilities)"));
        }
        Ok(())
    }
}

/// Score `G_gamma(p) = sum_{j <= M} p_(j)^gamma (1 - p_(j))^gamma`, p_(1) >= p_(2) >= ... the sorted softmax, higher
/// = more suspicious. Liu et al. score in-distribution confidence as -G; advdet keeps G, which is 0 for a one-hot
/// prediction and largest for a flat one.
#[derive(Debug, Clone)]
pub struct Gen {
    cfg: GenConfig,
}

impl Gen {
    pub fn new(cfg: GenConfig) -> Self {
        Gen { cfg }
    }
}

/// G per row of `logits`, in f64, each term as `exp(gamma (log p + log(1 - p)))` from log-softmax. With gamma = 0.1 a
/// class of probability 1e-30 still adds 1e-3, so `1 - p` of the top class must not round to 0: it is the sum of the
/// other classes' probabilities (a logsumexp of their log-probabilities, accurate however confident the prediction);
/// every other class has p <= 1/2, where `log1p(-p)` is accurate.
pub fn generalized_entropy(logits: &Tensor, gamma: f64, m: usize) -> Tensor {
    let logp = logits.to_kind(Kind::Double).log_softmax(-1, Kind::Double);
    let m = (m as i64).min(logp.size().last().copied().unwrap_or(1));
    let (top, idx) = logp.topk(m, -1, true, true);
    let rest = logp.scatter_value(-1, &idx.narrow(1, 0, 1), f64::NEG_INFINITY).logsumexp([-1], true);
    let log1m = Tensor::cat(&[rest, (-top.narrow(1, 1, m - 1).exp()).log1p()], 1);
    ((top + log1m) * gamma).exp().sum_dim_intlist(-1, false, Kind::Double)
}

impl Detector for Gen {
    fn kind(&self) -> DetectorKind {
        DetectorKind::Gen
    }
    fn score(&self, v: &View) -> Result<Tensor> {
        Ok(generalized_entropy(&v.route.logits, self.cfg.gamma, self.cfg.m))
    }
}
