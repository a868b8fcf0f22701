//! BIM / I-FGSM, the basic iterative method (Kurakin, Goodfellow, Bengio 2017, "Adversarial Examples in the Physical
//! World"): FGSM steps of size alpha, each clipped to the eps-ball and [0, 1]; arithmetic as in torchattacks' BIM.
use super::{ce_cost, check_count, check_nonneg, check_positive, input_grad, prepare, Attack, Norm, Targeting};
use crate::error::Result;
use crate::models::Model;
use tch::Tensor;

#[derive(Debug, Clone, PartialEq)]
pub struct Bim {
    pub eps: f64,
    /// Step size; the paper's is one grey level, 1/255.
    pub alpha: f64,
    /// The paper's rule `min(eps*255 + 4, 1.25*eps*255)` unless set (see `Bim::kurakin_steps`).
    pub steps: usize,
    pub targeting: Targeting,
}

impl Default for Bim {
    /// eps 0.3 (the MNIST budget), alpha 1/255, and the paper's step rule for that eps (80 steps).
    fn default() -> Self {
        Bim { eps: 0.3, alpha: 1.0 / 255.0, steps: Bim::kurakin_steps(0.3), targeting: Targeting::Untargeted }
    }
}

impl Bim {
    /// Kurakin et al.'s number of iterations for a budget eps in [0, 1] units: `min(eps*255 + 4, 1.25*eps*255)`,
    /// at least 1.
    pub fn kurakin_steps(eps: f64) -> usize {
        let e = eps * 255.0;
        ((e + 4.0).min(1.25 * e).floor() as usize).max(1)
    }

    pub fn validate(&self) -> Result<()> {
        check_nonneg("bim", "eps", self.eps)?;
        check_positive("bim", "alpha", self.alpha)?;
        check_count("bim", "steps", self.steps)
    }
}

impl Attack for Bim {
    fn name(&self) -> String {
        "bim".into()
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
        Some(self.steps)
    }
    fn perturb_at(&self, model: &Model, xs: &Tensor, ys: &Tensor, offset: usize) -> Result<Tensor> {
        self.validate()?;
        let b = prepare(model, xs, ys, &self.targeting, offset)?;
        let lower = (&b.xs - self.eps).clamp_min(0.0);
        let upper = &b.xs + self.eps;
        let mut images = b.xs.shallow_clone();
        for _ in 0..self.steps {
            let grad = input_grad(&images, |x| Ok(ce_cost(&model.net.forward(x, None, false), &b)))?;
            let adv = &images + grad.sign() * self.alpha;
            images = adv.maximum(&lower).minimum(&upper).clamp_max(1.0);
        }
        Ok(images)
    }
}
