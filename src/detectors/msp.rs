//! Maximum softmax probability (Hendrycks & Gimpel 2017, "A baseline for detecting misclassified and
//! out-of-distribution examples"): a low top-class probability flags an input.
use super::{Detector, DetectorKind, View};
use crate::error::Result;
use tch::{Kind, Tensor};

/// Score `1 - max_c softmax(logits)_c`, higher = more suspicious.
#[derive(Debug, Clone, Copy, Default)]
pub struct Msp;

/// `1 - max softmax` per row of `logits`, in f64, computed as the sum of the other classes' probabilities so that a
/// confident prediction (top probability rounding to 1.0) still gets a distinct, non-zero score.
pub fn one_minus_max_softmax(logits: &Tensor) -> Tensor {
    let p = logits.to_kind(Kind::Double).softmax(-1, Kind::Double);
    let top = p.argmax(-1, true);
    let others = p.scatter_value(-1, &top, 0.0);
    others.sum_dim_intlist(-1, false, Kind::Double)
}

impl Detector for Msp {
    fn kind(&self) -> DetectorKind {
        DetectorKind::Msp
    }
    fn score(&self, v: &View) -> Result<Tensor> {
        Ok(one_minus_max_softmax(&v.route.logits))
    }
}
