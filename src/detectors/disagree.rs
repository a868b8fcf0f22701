//! Disagreement between the full model and the subnetwork of its predicted class (Wang, Su, Zhang, Hu,
//! arXiv 1910.02673: the subnetwork of a class should reproduce the full model on that class's images).
use super::kl::kl_full_subnet;
use super::{Detector, DetectorKind, View};
use crate::error::{Error, Result};
use crate::routes::RouteKind;
use tch::{Kind, Tensor};

/// `tie_break` scales KL(p_full || p_subnet), added to the 0/1 disagreement so that images within each group are
/// ordered by how far the two softmaxes are apart; the added term is capped below 0.5, so every disagreement still
/// scores above every agreement. 0 gives the plain 0/1 score.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DisagreeConfig {
    pub tie_break: f64,
}

impl Default for DisagreeConfig {
    fn default() -> Self {
        DisagreeConfig { tie_break: 1e-6 }
    }
}

impl DisagreeConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.tie_break.is_finite() && (0.0..=1e-3).contains(&self.tie_break)) {
            return Err(Error::config("disagree.tie_break", self.tie_break, "must be in [0, 1e-3]"));
        }
        Ok(())
    }
}

/// Score `1[argmax route != argmax full] + min(tie_break * KL, 0.49)`, on every route but the full model.
#[derive(Debug, Clone)]
pub struct Disagree {
    cfg: DisagreeConfig,
}

impl Disagree {
    pub fn new(cfg: DisagreeConfig) -> Self {
        Disagree { cfg }
    }
}

impl Detector for Disagree {
    fn kind(&self) -> DetectorKind {
        DetectorKind::Disagree
    }
    /// It compares a route with the full model: every route but the full model itself.
    fn runs_on(&self, route: RouteKind) -> bool {
        !route.is_full()
    }
    fn score(&self, v: &View) -> Result<Tensor> {
        let (full, sub) = (&v.full.logits, &v.route.logits);
        let differ = full.argmax(-1, false).ne_tensor(&sub.argmax(-1, false)).to_kind(Kind::Double);
        let tie = (kl_full_subnet(full, sub) * self.cfg.tie_break).clamp_max(0.49);
        Ok(differ + tie)
    }
}
