//! MI-FGSM, momentum iterative FGSM (Dong, Liao, Pang, Su, Zhu, Hu, Li 2018, "Boosting Adversarial Attacks with
//! Momentum"): the gradient, L1-normalised by its mean absolute value, accumulates with decay mu; arithmetic as in
//! torchattacks' MIFGSM.
use super::{ce_cost, check_count, check_nonneg, check_positive, input_grad, prepare, Attack, Norm, Targeting};
use crate::error::Result;
use crate::models::Model;
use tch::Tensor;

#[derive(Debug, Clone, PartialEq)]
pub struct MiFgsm {
    pub eps: f64,
    /// The paper's step is eps / steps.
    pub alpha: f64,
    /// The paper's T = 10.
    pub steps: usize,
    /// The paper's mu = 1.0.
    pub decay: f64,
    pub targeting: Targeting,
}

impl Default for MiFgsm {
    fn default() -> Self {
        MiFgsm { eps: 0.3, alpha: 0.03, steps: 10, decay: 1.0, targeting: Targeting::Untargeted }
    }
}

impl MiFgsm {
    pub fn validate(&self) -> Result<()> {
        check_nonneg("mifgsm", "eps", self.eps)?;
        check_positive("mifgsm", "alpha", self.alpha)?;
        check_count("mifgsm", "steps", self.steps)?;
        check_nonneg("mifgsm", "decay", self.decay)
    }
}

impl Attack for MiFgsm {
    fn name(&self) -> String {
        "mifgsm".into()
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
        let images = &b.xs;
        let mut momentum = images.zeros_like();
        let mut adv = images.shallow_clone();
        for _ in 0..self.steps {
            let grad = input_grad(&adv, |x| Ok(ce_cost(&model.net.forward(x, None, false), &b)))?;
            let scale = grad.abs().mean_dim([1i64, 2, 3].as_slice(), true, None);
            // torchattacks divides by the mean unguarded; a sample whose gradient is exactly zero (a saturated
            // softmax) would turn into NaN there, here it keeps its momentum
            let scale = scale.ones_like().where_self(&scale.eq(0.0), &scale);
            let grad = grad / scale + &momentum * self.decay;
            momentum = grad.shallow_clone();
            let stepped = &adv + grad.sign() * self.alpha;
            let delta = (&stepped - images).clamp(-self.eps, self.eps);
            adv = (images + delta).clamp(0.0, 1.0);
        }
        Ok(adv)
    }
}
