//! KL divergence between the full model's and the class subnetwork's softmax, KL(p_full || p_subnet): an input the
//! subnetwork of its predicted class (Wang, Hu, Su, arXiv 1910.02673) explains differently is suspicious.
use super::{Detector, DetectorKind, View};
use crate::error::Result;
use crate::routes::RouteKind;
use tch::{Kind, Tensor};

/// Score `sum_c p_full,c (log p_full,c - log p_route,c)` (nats, >= 0), on every route but the full model.
#[derive(Debug, Clone, Copy, Default)]
pub struct Kl;

/// KL(softmax(full) || softmax(sub)) per row, in f64 from log-softmax.
pub fn kl_full_subnet(full: &Tensor, sub: &Tensor) -> Tensor {
    let lp = full.to_kind(Kind::Double).log_softmax(-1, Kind::Double);
    let lq = sub.to_kind(Kind::Double).log_softmax(-1, Kind::Double);
    (lp.exp() * (&lp - lq)).sum_dim_intlist(-1, false, Kind::Double).clamp_min(0.0)
}

impl Detector for Kl {
    fn kind(&self) -> DetectorKind {
        DetectorKind::Kl
    }
    /// It compares a route with the full model: every route but the full model itself.
    fn runs_on(&self, route: RouteKind) -> bool {
        !route.is_full()
    }
    fn score(&self, v: &View) -> Result<Tensor> {
        Ok(kl_full_subnet(&v.full.logits, &v.route.logits))
    }
}
