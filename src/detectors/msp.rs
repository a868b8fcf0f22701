//! Maximum softmax probability (Hendrycks & Gimpel 2017, "A baseline for detecting misclassified and
//! out-of-distribution examples"): a low top-class probability flags an input.
use super::{check_call, finite_scores, mode_logits, Detector, Mode};
use crate::error::Result;
use crate::models::Model;
use crate::subnet::Subnets;
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
    fn name(&self) -> &'static str {
        "msp"
    }
    fn modes(&self) -> &'static [Mode] {
        &Mode::ALL
    }
    fn score(&self, model: &Model, subnets: Option<&Subnets>, mode: Mode, xs: &Tensor) -> Result<Vec<f64>> {
        check_call(self.name(), self.modes(), model, mode, xs)?;
        let logits = mode_logits(self.name(), model, subnets, mode, xs)?;
        finite_scores(self.name(), &one_minus_max_softmax(&logits))
    }
}
