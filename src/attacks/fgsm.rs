//! FGSM, the fast gradient sign method (Goodfellow, Shlens, Szegedy 2015, "Explaining and Harnessing Adversarial
//! Examples"): one step of size eps along the sign of the loss gradient; arithmetic as in torchattacks' FGSM.
use super::{ce_cost, check_nonneg, input_grad, prepare, Attack, Norm, Targeting};
use crate::error::Result;
use crate::models::Model;
use tch::Tensor;

#[derive(Debug, Clone, PartialEq)]
pub struct Fgsm {
    /// Linf budget; 0.25 is the paper's MNIST value.
    pub eps: f64,
    pub targeting: Targeting,
}

impl Default for Fgsm {
    fn default() -> Self {
        Fgsm { eps: 0.25, targeting: Targeting::Untargeted }
    }
}

impl Fgsm {
    pub fn validate(&self) -> Result<()> {
        check_nonneg("fgsm", "eps", self.eps)
    }
}

impl Attack for Fgsm {
    fn name(&self) -> String {
        "fgsm".into()
    }
    fn norm(&self) -> Norm {
        Norm::Linf
    }
    fn budget(&self) -> Option<f64> {
        Some(self.eps)
    }
    fn targeting(&self) -> &Targeting {
        &self.targeting
    }
    fn gradient_passes(&self) -> Option<usize> {
        Some(1)
    }
    fn perturb_at(&self, model: &Model, xs: &Tensor, ys: &Tensor, offset: usize) -> Result<Tensor> {
        self.validate()?;
        let b = prepare(model, xs, ys, &self.targeting, offset)?;
        let grad = input_grad(&b.xs, |x| Ok(ce_cost(&model.net.forward(x, None, false), &b)))?;
        Ok((&b.xs + grad.sign() * self.eps).clamp(0.0, 1.0))
    }
}
