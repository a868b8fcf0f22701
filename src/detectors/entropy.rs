//! Predictive entropy of the softmax (Shannon entropy of the predicted class distribution; used as an uncertainty
//! score for adversarial detection by Smith & Gal 2018): a flat prediction flags an input.
use super::{Detector, DetectorKind, View};
use crate::error::Result;
use tch::{Kind, Tensor};

/// Score `-sum_c p_c log p_c` (nats), higher = more suspicious.
#[derive(Debug, Clone, Copy, Default)]
pub struct Entropy;

/// Entropy per row of `logits`, in f64, from log-softmax (no `0 * log 0` NaN).
pub fn entropy(logits: &Tensor) -> Tensor {
    let logp = logits.to_kind(Kind::Double).log_softmax(-1, Kind::Double);
    -(logp.exp() * &logp).sum_dim_intlist(-1, false, Kind::Double)
}

impl Detector for Entropy {
    fn kind(&self) -> DetectorKind {
        DetectorKind::Entropy
    }
    fn score(&self, v: &View) -> Result<Tensor> {
        Ok(entropy(&v.route.logits))
    }
}
