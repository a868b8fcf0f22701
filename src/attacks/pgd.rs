//! PGD, projected gradient descent in the Linf or L2 ball with random start and restarts (Madry, Makelov, Schmidt,
//! Tsipras, Vladu 2018, "Towards Deep Learning Models Resistant to Adversarial Attacks"); step and projection
//! arithmetic as in torchattacks' PGD and PGDL2; random starts from `crate::rng` (per sample, batch-independent).
use super::{
    ce_cost, ce_per_sample, check_count, check_nonneg, check_positive, input_grad, prepare, select_rows, success,
};
use super::{Attack, Batch, Norm, Targeting};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::rng::Rng;
use tch::{Kind, Tensor};

#[derive(Debug, Clone, PartialEq)]
pub struct Pgd {
    pub norm: Norm,
    pub eps: f64,
    pub alpha: f64,
    pub steps: usize,
    /// Runs from independent random starts; per sample the first successful one is kept, else the highest loss.
    pub restarts: usize,
    pub random_start: bool,
    pub seed: u64,
    pub targeting: Targeting,
}

impl Default for Pgd {
    fn default() -> Self {
        Pgd::linf()
    }
}

impl Pgd {
    /// Madry et al.'s MNIST setting: eps 0.3, step 0.01, 40 steps, random start.
    pub fn linf() -> Pgd {
        Pgd {
            norm: Norm::Linf,
            eps: 0.3,
            alpha: 0.01,
            steps: 40,
            restarts: 1,
            random_start: true,
            seed: 0,
            targeting: Targeting::Untargeted,
        }
    }

    /// L2 on MNIST: eps 2.0, 40 steps of 2.5 * eps / steps (the step rule of Madry et al.'s robustness library).
    pub fn l2() -> Pgd {
        Pgd { norm: Norm::L2, eps: 2.0, alpha: Pgd::l2_alpha(2.0, 40), ..Pgd::linf() }
    }

    pub fn l2_alpha(eps: f64, steps: usize) -> f64 {
        2.5 * eps / steps.max(1) as f64
    }

    pub fn validate(&self) -> Result<()> {
        let name = self.label();
        check_nonneg(name, "eps", self.eps)?;
        check_positive(name, "alpha", self.alpha)?;
        check_count(name, "steps", self.steps)?;
        check_count(name, "restarts", self.restarts)?;
        if self.restarts > 1 && !self.random_start {
            return Err(Error::config("restarts", self.restarts, format!("needs random_start = true (attack {name})")));
        }
        Ok(())
    }

    fn label(&self) -> &'static str {
        match self.norm {
            Norm::Linf => "pgd-linf",
            Norm::L2 => "pgd-l2",
        }
    }

    /// Projected steps from `start` around `images`, ascending `obj`.
    pub(crate) fn iterate(&self, images: &Tensor, start: Tensor, obj: &dyn Objective) -> Result<Tensor> {
        let mut adv = start;
        for _ in 0..self.steps {
            let grad = input_grad(&adv, |x| obj.cost(x))?;
            adv = self.step(images, &adv, &grad);
        }
        Ok(adv)
    }

    /// One step of `alpha` from `adv` up the gradient `grad` (its sign in Linf, its direction in L2), projected onto the
    /// eps ball around `images` and onto [0, 1]. A descent passes the negated gradient.
    pub(crate) fn step(&self, images: &Tensor, adv: &Tensor, grad: &Tensor) -> Tensor {
        let bsz = images.size()[0];
        match self.norm {
            Norm::Linf => {
                let stepped = adv + grad.sign() * self.alpha;
                let delta = (&stepped - images).clamp(-self.eps, self.eps);
                (images + delta).clamp(0.0, 1.0)
            }
            Norm::L2 => {
                let norms = grad.view([bsz, -1]).norm_scalaropt_dim(2, [1], false) + 1e-10;
                let grad = grad / norms.view([bsz, 1, 1, 1]);
                let stepped = adv + grad * self.alpha;
                let delta = &stepped - images;
                let dnorms = delta.view([bsz, -1]).norm_scalaropt_dim(2, [1], false);
                let factor = (dnorms.reciprocal() * self.eps).minimum(&dnorms.ones_like());
                (images + delta * factor.view([-1, 1, 1, 1])).clamp(0.0, 1.0)
            }
        }
    }

    /// A random start for restart `restart` of samples `offset..`: uniform in the Linf ball, or torchattacks' L2
    /// start (a Gaussian direction scaled to a uniform fraction of eps), clipped to [0, 1].
    pub fn random_start(&self, images: &Tensor, restart: usize, offset: usize) -> Tensor {
        let size = images.size();
        let per: usize = size[1..].iter().product::<i64>() as usize;
        let mut noise = vec![0f32; size[0] as usize * per];
        let seed = self.seed ^ (restart as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for (i, row) in noise.chunks_mut(per).enumerate() {
            let mut rng = Rng::stream(seed, (offset + i) as u64);
            match self.norm {
                Norm::Linf => row.iter_mut().for_each(|v| *v = (2.0 * unit(&mut rng) - 1.0) as f32 * self.eps as f32),
                Norm::L2 => {
                    row.iter_mut().for_each(|v| *v = gaussian(&mut rng) as f32);
                    let norm = row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt().max(1e-12);
                    let scale = (unit(&mut rng) * self.eps / norm) as f32;
                    row.iter_mut().for_each(|v| *v *= scale);
                }
            }
        }
        let noise = Tensor::from_slice(&noise).view(size.as_slice()).to_device(images.device());
        (images + noise).clamp(0.0, 1.0)
    }

    /// PGD with restarts on any objective (the adaptive attack reuses it).
    pub(crate) fn run(&self, b: &Batch, obj: &dyn Objective, offset: usize) -> Result<Tensor> {
        let mut best: Option<(Tensor, Tensor, Tensor)> = None;
        for r in 0..self.restarts {
            let start = if self.random_start { self.random_start(&b.xs, r, offset) } else { b.xs.copy() };
            let adv = self.iterate(&b.xs, start, obj)?;
            if self.restarts == 1 {
                return Ok(adv);
            }
            let (ok, value) = tch::no_grad(|| obj.rank(&adv))?;
            best = Some(match best {
                None => (adv, ok, value),
                Some((badv, bok, bval)) => {
                    let better = ok
                        .logical_and(&bok.logical_not())
                        .logical_or(&ok.eq_tensor(&bok).logical_and(&value.gt_tensor(&bval)));
                    (select_rows(&better, &adv, &badv), ok.logical_or(&bok), value.where_self(&better, &bval))
                }
            });
            if let Some((_, ok, _)) = &best {
                if bool::try_from(ok.all())? {
                    break;
                }
            }
        }
        best.map(|(adv, _, _)| adv).ok_or_else(|| Error::config("restarts", 0, "must be at least 1"))
    }
}

/// What PGD ascends: a batch-mean cost for the gradient and a per-sample (success, value) to rank restarts.
pub(crate) trait Objective {
    fn cost(&self, x: &Tensor) -> Result<Tensor>;
    fn rank(&self, x: &Tensor) -> Result<(Tensor, Tensor)>;
}

/// torchattacks' cross-entropy objective.
pub(crate) struct CrossEntropy<'a> {
    pub model: &'a Model,
    pub batch: &'a Batch,
}

impl Objective for CrossEntropy<'_> {
    fn cost(&self, x: &Tensor) -> Result<Tensor> {
        Ok(ce_cost(&self.model.net.forward(x, None, false), self.batch))
    }
    fn rank(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let logits = self.model.net.forward(x, None, false);
        Ok((success(&logits, self.batch), ce_per_sample(&logits, self.batch).to_kind(Kind::Float)))
    }
}

fn unit(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Box-Muller.
fn gaussian(rng: &mut Rng) -> f64 {
    let u = 1.0 - unit(rng);
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * unit(rng)).cos()
}

impl Attack for Pgd {
    fn name(&self) -> String {
        self.label().into()
    }
    fn norm(&self) -> Norm {
        self.norm
    }
    fn budget(&self) -> Option<f64> {
        Some(self.eps)
    }
    fn targeting(&self) -> &Targeting {
        &self.targeting
    }
    fn gradient_passes(&self) -> Option<usize> {
        // restarts stop early once every sample has succeeded
        (self.restarts == 1).then_some(self.steps)
    }
    fn perturb_at(&self, model: &Model, xs: &Tensor, ys: &Tensor, offset: usize) -> Result<Tensor> {
        self.validate()?;
        let b = prepare(model, xs, ys, &self.targeting, offset)?;
        self.run(&b, &CrossEntropy { model, batch: &b }, offset)
    }
}
