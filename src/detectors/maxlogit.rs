//! Maximum logit (Hendrycks et al. 2022, "Scaling out-of-distribution detection for real-world settings", ICML): the
//! unnormalised top logit, which keeps the scale that softmax discards; a low top logit flags an input.
use super::{Detector, DetectorKind, View};
use crate::error::Result;
use tch::{Kind, Tensor};

/// Score `-max_c f_c` (the negated top logit), higher = more suspicious.
#[derive(Debug, Clone, Copy, Default)]
pub struct MaxLogit;

impl Detector for MaxLogit {
    fn kind(&self) -> DetectorKind {
        DetectorKind::Maxlogit
    }
    fn score(&self, v: &View) -> Result<Tensor> {
        let (top, _) = v.route.logits.to_kind(Kind::Double).max_dim(-1, false);
        Ok(-top)
    }
}
