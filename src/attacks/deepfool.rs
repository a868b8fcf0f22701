//! DeepFool (Moosavi-Dezfooli, Fawzi, Frossard 2016, "DeepFool: a simple and accurate method to fool deep neural
//! networks"): linearise the classifier at the current point, add the step onto the nearest class boundary to the
//! total perturbation, and set x = clip(x0 + (1 + overshoot) * r_tot), until the label flips; batched.
//!
//! As in the authors' code the overshoot scales the total, and each step carries an extra 1e-4 along its direction.
//! torchattacks instead steps x <- clip(x + (1 + overshoot) r): where clipping cuts a step, its points converge onto
//! the boundary and the label flips only by the tie-break of an exact tie (see scripts/reference/compare_cw_deepfool.py).
use super::{check_count, check_nonneg, prepare, Attack, Norm, Targeting};
use crate::error::{Error, Result};
use crate::models::Model;
use tch::{Kind, Tensor};

#[derive(Debug, Clone, PartialEq)]
pub struct DeepFool {
    /// The paper's max_iter = 50.
    pub steps: usize,
    /// The paper's overshoot = 0.02.
    pub overshoot: f64,
}

impl Default for DeepFool {
    fn default() -> Self {
        DeepFool { steps: 50, overshoot: 0.02 }
    }
}

impl DeepFool {
    pub fn validate(&self) -> Result<()> {
        check_count("deepfool", "steps", self.steps)?;
        check_nonneg("deepfool", "overshoot", self.overshoot)
    }

    /// One DeepFool step for the still-correct samples `x` (labels `y`): the step r_i (flattened) and which samples
    /// were already fooled (and so take no step).
    fn step(&self, model: &Model, x: &Tensor, y: &Tensor, classes: i64) -> Result<(Tensor, Tensor)> {
        let (logits, jac) = tch::with_grad(|| -> Result<(Tensor, Tensor)> {
            let x = x.detach().set_requires_grad(true);
            let z = model.net.forward(&x, None, false);
            let mut grads = Vec::with_capacity(classes as usize);
            for k in 0..classes {
                let zk = z.select(1, k).sum(Kind::Float);
                let g = Tensor::f_run_backward(&[&zk], &[&x], k + 1 < classes, false)?;
                grads.push(g.into_iter().next().ok_or_else(|| Error::Model("no input gradient".into()))?);
            }
            Ok((z.detach(), Tensor::stack(&grads, 1)))
        })?;
        let n = x.size()[0];
        let fooled = logits.argmax(-1, false).ne_tensor(y);
        let jac = jac.view([n, classes, -1]);
        let yi = y.view([n, 1]);
        let f_prime = &logits - logits.gather(1, &yi, false);
        let w_prime = &jac - jac.gather(1, &yi.view([n, 1, 1]).expand([n, 1, jac.size()[2]], false), false);
        let norms = w_prime.norm_scalaropt_dim(2, [2], false).clamp_min(1e-12);
        let value = (f_prime.abs() / &norms).scatter_value(1, &yi, f64::INFINITY);
        let l = value.argmin(-1, true);
        let fl = f_prime.gather(1, &l, false).abs();
        let nl = norms.gather(1, &l, false);
        let wl = w_prime.gather(1, &l.view([n, 1, 1]).expand([n, 1, w_prime.size()[2]], false), false).squeeze_dim(1);
        Ok((wl * ((fl / &nl + 1e-4) / nl), fooled))
    }
}

impl Attack for DeepFool {
    fn name(&self) -> String {
        "deepfool".into()
    }
    fn norm(&self) -> Norm {
        Norm::L2
    }
    fn budget(&self) -> Option<f64> {
        None
    }
    fn perturb_at(&self, model: &Model, xs: &Tensor, ys: &Tensor, offset: usize) -> Result<Tensor> {
        self.validate()?;
        let b = prepare(model, xs, ys, &Targeting::Untargeted, offset)?;
        let n = b.xs.size()[0];
        let x0 = b.xs.view([n, -1]);
        let mut r_tot = x0.zeros_like();
        let mut adv = b.xs.copy();
        let mut active = Tensor::arange(n, (Kind::Int64, b.xs.device()));
        for _ in 0..self.steps {
            if active.size()[0] == 0 {
                break;
            }
            let x = adv.index_select(0, &active);
            let y = b.ys.index_select(0, &active);
            let (r, fooled) = self.step(model, &x, &y, b.classes)?;
            let keep = fooled.logical_not();
            let moving = active.masked_select(&keep);
            let rows = keep.nonzero().view([-1]);
            let total = r_tot.index_select(0, &moving) + r.index_select(0, &rows);
            let stepped = (x0.index_select(0, &moving) + &total * (1.0 + self.overshoot)).clamp(0.0, 1.0);
            r_tot = r_tot.index_copy(0, &moving, &total);
            adv = adv.index_copy(0, &moving, &stepped.view([-1, x.size()[1], x.size()[2], x.size()[3]]));
            active = moving;
        }
        Ok(adv)
    }
}
