//! KL divergence between the full model's and the class subnetwork's softmax, KL(p_full || p_subnet): an input the
//! subnetwork of its predicted class (Wang, Su, Zhang, Hu, arXiv 1910.02673) explains differently is suspicious.
use super::{check_call, finite_scores, full_and_subnet_logits, need_subnets, Detector, Mode};
use crate::error::Result;
use crate::models::Model;
use crate::subnet::Subnets;
use tch::{Kind, Tensor};

/// Score `sum_c p_full,c (log p_full,c - log p_subnet,c)` (nats, >= 0), subnet mode only.
#[derive(Debug, Clone, Copy, Default)]
pub struct Kl;

/// KL(softmax(full) || softmax(sub)) per row, in f64 from log-softmax.
pub fn kl_full_subnet(full: &Tensor, sub: &Tensor) -> Tensor {
    let lp = full.to_kind(Kind::Double).log_softmax(-1, Kind::Double);
    let lq = sub.to_kind(Kind::Double).log_softmax(-1, Kind::Double);
    (lp.exp() * (&lp - lq)).sum_dim_intlist(-1, false, Kind::Double).clamp_min(0.0)
}

/// Full and subnet logits of `xs`, after the checks every subnet-only detector makes.
pub(crate) fn pair(
    name: &str,
    modes: &[Mode],
    model: &Model,
    subnets: Option<&Subnets>,
    mode: Mode,
    xs: &Tensor,
) -> Result<(Tensor, Tensor)> {
    check_call(name, modes, model, mode, xs)?;
    let s = need_subnets(name, model, subnets)?;
    let xs = xs.to_device(model.device()).to_kind(Kind::Float);
    let (full, sub) = full_and_subnet_logits(model, Some(s), &xs);
    let sub = sub.unwrap_or_else(|| full.shallow_clone());
    Ok((full, sub))
}

impl Detector for Kl {
    fn name(&self) -> &'static str {
        "kl"
    }
    fn modes(&self) -> &'static [Mode] {
        &[Mode::Subnet]
    }
    fn score(&self, model: &Model, subnets: Option<&Subnets>, mode: Mode, xs: &Tensor) -> Result<Vec<f64>> {
        let (full, sub) = pair(self.name(), self.modes(), model, subnets, mode, xs)?;
        finite_scores(self.name(), &kl_full_subnet(&full, &sub))
    }
}
