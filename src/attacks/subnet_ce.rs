//! `subnet-ce`: PGD-Linf (Madry et al. 2018) on CE(full model, y) - weight * CE(subnet of class p, p), for the
//! class-specific subnetworks of Wang et al. (arXiv 1910.02673). It attacks no detector's score and has no threshold:
//! it asks only whether a cheap attack that knows the subnetworks can keep the new prediction's subnetwork confident.
//! The attack a detection claim must survive is `adaptive` (src/attacks/adaptive/), which attacks each detector's own
//! score at its deployed threshold.
//!
//! p is the class the attack steers to: the target when targeted, else the full model's most likely class other than
//! the label (which becomes the prediction once the label is left). Minimising the subnet's cross-entropy on p keeps
//! that class's subnetwork confident about the new prediction, which is what a subnet-confidence detector checks.
use super::pgd::{Objective, Pgd};
use super::{ce_cost, ce_per_sample, check_count, check_nonneg, check_positive, prepare, success};
use super::{Attack, Batch, Norm, Targeting};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::subnet::Subnets;
use tch::{Reduction, Tensor};

/// The attack's name in suite files and results.
pub const NAME: &str = "subnet-ce";

#[derive(Debug)]
pub struct SubnetCe {
    /// The PGD-Linf schedule (eps, alpha, steps, restarts, random start, seed, targeting).
    pub pgd: Pgd,
    /// Weight of the subnet term (`kappa` in a suite file); 0 gives plain PGD-Linf.
    pub weight: f64,
    pub subnets: Subnets,
}

impl SubnetCe {
    /// Madry et al.'s MNIST PGD-Linf schedule with weight 1.
    pub fn new(subnets: Subnets) -> SubnetCe {
        SubnetCe { pgd: Pgd::linf(), weight: 1.0, subnets }
    }

    pub fn validate(&self) -> Result<()> {
        check(&self.pgd, self.weight)
    }
}

/// The checks of `SubnetCe::validate`, without the subnetworks.
pub(crate) fn check(p: &Pgd, weight: f64) -> Result<()> {
    check_nonneg(NAME, "eps", p.eps)?;
    check_positive(NAME, "alpha", p.alpha)?;
    check_count(NAME, "steps", p.steps)?;
    check_count(NAME, "restarts", p.restarts)?;
    if p.restarts > 1 && !p.random_start {
        return Err(Error::config("restarts", p.restarts, "needs random_start = true (attack subnet-ce)"));
    }
    check_nonneg(NAME, "kappa", weight)
}

struct SubnetObjective<'a> {
    model: &'a Model,
    batch: &'a Batch,
    subnets: &'a Subnets,
    weight: f64,
}

impl SubnetObjective<'_> {
    /// Per-sample terms: (full-model logits, the class steered to, subnet cross-entropy on it).
    fn terms(&self, x: &Tensor) -> (Tensor, Tensor) {
        let full = self.model.net.forward(x, None, false);
        let steer = match &self.batch.targets {
            Some(t) => t.shallow_clone(),
            None => {
                let masked = full.detach().scatter_value(1, &self.batch.ys.view([-1, 1]), f64::NEG_INFINITY);
                masked.argmax(-1, false)
            }
        };
        let sub = self.subnets.logits(self.model, x, &steer);
        let sub_ce = sub.cross_entropy_loss::<Tensor>(&steer, None, Reduction::None, -100, 0.0);
        (full, sub_ce)
    }
}

impl Objective for SubnetObjective<'_> {
    fn cost(&self, x: &Tensor) -> Result<Tensor> {
        let (full, sub_ce) = self.terms(x);
        Ok(ce_cost(&full, self.batch) - sub_ce.mean(None) * self.weight)
    }
    fn rank(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (full, sub_ce) = self.terms(x);
        Ok((success(&full, self.batch), ce_per_sample(&full, self.batch) - sub_ce * self.weight))
    }
}

impl Attack for SubnetCe {
    fn name(&self) -> String {
        "subnet-ce".into()
    }
    fn norm(&self) -> Norm {
        Norm::Linf
    }
    fn budget(&self) -> Option<f64> {
        Some(self.pgd.eps)
    }
    fn targeting(&self) -> &Targeting {
        &self.pgd.targeting
    }
    fn perturb_at(&self, model: &Model, xs: &Tensor, ys: &Tensor, offset: usize) -> Result<Tensor> {
        self.validate()?;
        if &self.subnets.layout != model.gate_layout() {
            return Err(Error::Model(format!(
                "subnet-ce: the subnetworks' gate layout {:?} does not fit the model's {:?}",
                self.subnets.layout,
                model.gate_layout()
            )));
        }
        let b = prepare(model, xs, ys, &self.pgd.targeting, offset)?;
        if self.subnets.num_classes() != b.classes {
            return Err(Error::Model(format!(
                "subnet-ce: {} subnetworks for a model with {} classes",
                self.subnets.num_classes(),
                b.classes
            )));
        }
        let subnets = self.subnets.to_device(model.device());
        let pgd = Pgd { norm: Norm::Linf, ..self.pgd.clone() };
        pgd.run(&b, &SubnetObjective { model, batch: &b, subnets: &subnets, weight: self.weight }, offset)
    }
}
