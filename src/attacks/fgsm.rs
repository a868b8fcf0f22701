//! FGSM, the fast gradient sign method (Goodfellow, Shlens, Szegedy 2015, "Explaining and Harnessing Adversarial
//! Examples"): one step of size eps along the sign of the loss gradient; arithmetic as in torchattacks' FGSM.
use super::{ce_cost, check_nonneg, check_shapes, input_grad, prepare, Attack, Norm, Targeting};
use crate::error::{Error, Result};
use crate::models::Model;
use tch::{Kind, Tensor};

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

    /// A batch on the model's device and the sign of the loss gradient at it (`int8`): all of the attack but its step
    /// size, so one gradient serves every eps.
    pub fn gradient_sign(&self, model: &Model, xs: &Tensor, ys: &Tensor, offset: usize) -> Result<(Tensor, Tensor)> {
        let b = prepare(model, xs, ys, &self.targeting, offset)?;
        let grad = input_grad(&b.xs, |x| Ok(ce_cost(&model.net.forward(x, None, false), &b)))?;
        Ok((b.xs, grad.sign().to_kind(Kind::Int8)))
    }

    /// The gradient signs of a dataset-sized tensor, batch by batch as `run_batched` batches it (a random target
    /// depends on the image's index in the whole set), with a progress bar; on the model's device.
    pub fn gradient_signs(&self, model: &Model, xs: &Tensor, ys: &Tensor, batch_size: i64) -> Result<Tensor> {
        if batch_size < 1 {
            return Err(Error::config("batch-size", batch_size, "must be at least 1"));
        }
        let n = check_shapes(model, xs, ys)?;
        let pb = crate::progress::bar(n as u64, "fgsm gradient");
        let mut parts = Vec::new();
        for start in (0..n).step_by(batch_size as usize) {
            let len = batch_size.min(n - start);
            let (bx, by) = (xs.narrow(0, start, len), ys.narrow(0, start, len));
            parts.push(self.gradient_sign(model, &bx, &by, start as usize)?.1);
            pb.inc(len as u64);
        }
        pb.finish_and_clear();
        Ok(Tensor::cat(&parts, 0))
    }

    /// The step of size eps from `xs` along `sign`, clamped to [0, 1] (elementwise: any batching gives the same bytes).
    pub fn step(&self, xs: &Tensor, sign: &Tensor) -> Tensor {
        (xs + sign.to_kind(xs.kind()) * self.eps).clamp(0.0, 1.0)
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
        let (xs, sign) = self.gradient_sign(model, xs, ys, offset)?;
        Ok(self.step(&xs, &sign))
    }
}
