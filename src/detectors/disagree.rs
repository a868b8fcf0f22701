//! Disagreement between the full model and the subnetwork of its predicted class (Wang, Su, Zhang, Hu,
//! arXiv 1910.02673: the subnetwork of a class should reproduce the full model on that class's images).
use super::kl::{kl_full_subnet, pair};
use super::{finite_scores, Detector, Mode};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::subnet::Subnets;
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

/// Score `1[argmax subnet != argmax full] + min(tie_break * KL, 0.49)`, subnet mode only.
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
    fn name(&self) -> &'static str {
        "disagree"
    }
    fn modes(&self) -> &'static [Mode] {
        &[Mode::Subnet]
    }
    fn score(&self, model: &Model, subnets: Option<&Subnets>, mode: Mode, xs: &Tensor) -> Result<Vec<f64>> {
        let (full, sub) = pair(self.name(), self.modes(), model, subnets, mode, xs)?;
        let differ = full.argmax(-1, false).ne_tensor(&sub.argmax(-1, false)).to_kind(Kind::Double);
        let tie = (kl_full_subnet(&full, &sub) * self.cfg.tie_break).clamp_max(0.49);
        finite_scores(self.name(), &(differ + tie))
    }
}
