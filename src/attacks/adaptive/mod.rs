//! The adaptive attack: one detector on one route attacked end to end by an attacker who knows the model, the route
//! (the class subnetworks), the detector and its threshold (Carlini & Wagner 2017, "Adversarial examples are not easily
//! detected"; Athalye, Carlini & Wagner 2018; Tramer, Carlini, Brendel & Madry 2020, "On adaptive attacks to
//! adversarial example defenses").
//!
//! Per image, within the Linf or L2 ball of `eps`, it minimises
//! `max(max_{j != t} z_j - z_t, 0) + w * 1[argmax z = t] * max(0, (s(x) - tau) / scale + kappa)`:
//! the margin of the full model's logits `z` for the steered class `t` (CW's f6 with confidence 0) plus a hinge on the
//! detector's score `s` at its threshold `tau` (the score at 5% FPR on clean held-out images), which is zero once the
//! score is `kappa` spreads below the threshold, so the effort then goes to the classifier. The hinge counts only while
//! the full model predicts t: before that, the gradient of a confidence score (MSP, entropy, ...) raises the
//! confidence of the label's class and pulls against the margin (a first run without the gate left MSP on the full
//! model unbroken at 0% success). Steps are PGD's (sign steps
//! in Linf, normalised gradient steps in L2, projected; `Pgd::step`). For each weight of the grid and each of
//! `restarts` starts (the clean image, then random points of the ball), the images not yet evading run `steps` steps
//! (after the first weight, only those the full model classified as t at some iterate: the weight acts after that);
//! per image the best iterate over all steps, weights and restarts is kept (evading first, then classified as t with
//! the lowest score, then the lowest margin). An image evades when the full model predicts t and the detector's score is at most tau. The stand-ins for
//! the steps that are not differentiable are in `target`.
pub mod target;

pub use target::{margin, DetectorTarget, Reading};

use super::pgd::Pgd;
use super::{prepare, select_rows, Attack, Norm, Targeting};
use crate::error::{Error, Result};
use crate::models::Model;
use std::cell::RefCell;
use tch::{Kind, Tensor};

/// The class each image is steered to: the full model's most likely class other than the label on the clean image,
/// or a seeded random class other than the label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Steer {
    Wrong,
    Random,
}

impl Steer {
    pub fn as_str(self) -> &'static str {
        match self {
            Steer::Wrong => "wrong",
            Steer::Random => "random",
        }
    }
}

/// The attack's budget and effort.
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptiveConfig {
    pub norm: Norm,
    pub eps: f64,
    pub alpha: f64,
    pub steps: usize,
    pub restarts: usize,
    /// The hinge weights tried, in order, each from `restarts` random starts (images that evade stop early).
    pub weights: Vec<f64>,
    /// How far below the threshold the hinge stops pushing, in units of the clean scores' spread.
    pub kappa: f64,
    pub steer: Steer,
    pub seed: u64,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        AdaptiveConfig::new(Norm::Linf, 0.3)
    }
}

impl AdaptiveConfig {
    /// 200 steps of 2.5 eps / 200 (the step rule of Madry et al.'s robustness library), 5 restarts, the weight grid
    /// 0.1, 1, 10, 100, kappa 0.1, steered to the most likely wrong class.
    pub fn new(norm: Norm, eps: f64) -> AdaptiveConfig {
        AdaptiveConfig {
            norm,
            eps,
            alpha: Pgd::l2_alpha(eps, 200),
            steps: 200,
            restarts: 5,
            weights: vec![0.1, 1.0, 10.0, 100.0],
            kappa: 0.1,
            steer: Steer::Wrong,
            seed: 0,
        }
    }

    pub fn validate(&self) -> Result<()> {
        super::check_nonneg(NAME, "eps", self.eps)?;
        super::check_positive(NAME, "alpha", self.alpha)?;
        super::check_count(NAME, "steps", self.steps)?;
        super::check_count(NAME, "restarts", self.restarts)?;
        super::check_nonneg(NAME, "kappa", self.kappa)?;
        if self.weights.is_empty() {
            return Err(Error::config("weights", "[]", "give at least one hinge weight (attack adaptive)"));
        }
        for &w in &self.weights {
            super::check_nonneg(NAME, "weights", w)?;
        }
        Ok(())
    }

    /// The PGD whose steps and random starts the attack takes.
    pub fn pgd(&self) -> Pgd {
        Pgd {
            norm: self.norm,
            eps: self.eps,
            alpha: self.alpha,
            steps: self.steps,
            restarts: 1,
            random_start: true,
            seed: self.seed,
            targeting: Targeting::Untargeted,
        }
    }
}

/// The attack's name in suite files and results.
pub const NAME: &str = "adaptive";

/// Per step of the first descent (first weight, first start) of the first batch: the batch's mean loss, the share of
/// its images evading at that iterate, and the share evading at their best iterate so far.
pub type CurvePoint = [f64; 3];

pub struct Adaptive<'a> {
    pub cfg: AdaptiveConfig,
    pub target: DetectorTarget<'a>,
    /// Filled by the batch at offset 0.
    pub curve: RefCell<Vec<CurvePoint>>,
}

impl<'a> Adaptive<'a> {
    pub fn new(cfg: AdaptiveConfig, target: DetectorTarget<'a>) -> Adaptive<'a> {
        Adaptive { cfg, target, curve: RefCell::new(Vec::new()) }
    }

    /// The steered classes of a batch at `offset` (`xs`, `ys` on the model's device).
    pub fn steer(&self, model: &Model, xs: &Tensor, ys: &Tensor, offset: usize) -> Result<Tensor> {
        match self.cfg.steer {
            Steer::Wrong => {
                let logits = tch::no_grad(|| model.logits(xs));
                Ok(logits.scatter_value(1, &ys.view([-1, 1]), f64::NEG_INFINITY).argmax(-1, false))
            }
            Steer::Random => Targeting::Random { seed: self.cfg.seed }
                .targets(model, xs, ys, offset, model.num_classes())?
                .ok_or_else(|| Error::Model("no random targets".into())),
        }
    }

    /// One descent with hinge weight `weight` from `start` around `images` (steered to `steer`): `steps` steps, and
    /// the final iterate (what PGD returns: with weight 0 this is PGD on the margin loss). `observe` sees every iterate
    /// with its reading and per-sample loss, the start included; with `stop_early` the descent ends once every image
    /// evades.
    #[allow(clippy::too_many_arguments)]
    pub fn descend(
        &self,
        model: &Model,
        images: &Tensor,
        start: Tensor,
        steer: &Tensor,
        weight: f64,
        stop_early: bool,
        mut observe: impl FnMut(&Tensor, &Reading, &Tensor) -> Result<()>,
    ) -> Result<Tensor> {
        let pgd = self.cfg.pgd();
        let t = steer.view([-1, 1]);
        let mut adv = start;
        for step in 0..=self.cfg.steps {
            let (reading, loss, grad) = tch::with_grad(|| -> Result<(Reading, Tensor, Option<Tensor>)> {
                let x = adv.detach().set_requires_grad(true);
                let r = self.target.read(model, &x, steer)?;
                // the hinge counts once the full model predicts t: before that a confidence score's gradient would
                // raise the label's confidence, against the margin
                let hinge = (&r.excess + self.cfg.kappa).relu() * r.success.to_kind(Kind::Double);
                let loss = margin(&r.logits, &t).clamp_min(0.0) + hinge * weight;
                let last = step == self.cfg.steps;
                let grad = match last {
                    true => None,
                    false => Some(model.input_grad(&loss.mean(Kind::Double), &x, false)?),
                };
                Ok((r, loss.detach(), grad))
            })?;
            observe(&adv, &reading, &loss)?;
            let done = stop_early && bool::try_from(reading.evaded.all())?;
            match grad {
                Some(g) if !done => adv = pgd.step(images, &adv, &(-g.to_kind(adv.kind()))),
                _ => break,
            }
        }
        Ok(adv)
    }
}

impl Attack for Adaptive<'_> {
    fn name(&self) -> String {
        NAME.into()
    }
    fn norm(&self) -> Norm {
        self.cfg.norm
    }
    fn budget(&self) -> Option<f64> {
        Some(self.cfg.eps)
    }
    fn perturb_at(&self, model: &Model, xs: &Tensor, ys: &Tensor, offset: usize) -> Result<Tensor> {
        self.cfg.validate()?;
        self.target.validate()?;
        let b = prepare(model, xs, ys, &Targeting::Untargeted, offset)?;
        let steer = self.steer(model, &b.xs, &b.ys, offset)?;
        let n = b.xs.size()[0];
        let device = b.xs.device();
        let pgd = self.cfg.pgd();
        // per image: the best iterate, its rank (2 evading, 1 classified as steered, 0 neither) and a value that
        // orders iterates of equal rank (minus the hinge's argument, or minus the margin)
        let mut best = b.xs.copy();
        let mut rank = Tensor::full([n], -1i64, (Kind::Int64, device));
        let mut value = Tensor::full([n], f64::NEG_INFINITY, (Kind::Double, device));
        let record = offset == 0;
        for (wi, &w) in self.cfg.weights.iter().enumerate() {
            for r in 0..self.cfg.restarts {
                // the hinge counts only once an image is classified as t, so for an image that never was during the
                // first weight's starts another weight repeats margin PGD: later weights take the classified ones
                let left = match wi {
                    0 => rank.lt(2),
                    _ => rank.eq(1),
                };
                let left = left.nonzero().squeeze_dim(1);
                if left.size()[0] == 0 {
                    break;
                }
                let images = b.xs.index_select(0, &left);
                let st = steer.index_select(0, &left);
                // the first start of each weight is the clean image (CW's), the others random in the ball (Madry's):
                // with a large eps a random start is mostly noise, far from any image the detector would pass
                let start = match r {
                    0 => images.copy(),
                    _ => pgd.random_start(&b.xs, wi * self.cfg.restarts + r, offset).index_select(0, &left),
                };
                let first = record && wi == 0 && r == 0;
                let mut curve = Vec::new();
                let _last = self.descend(model, &images, start, &st, w, true, |adv, reading, loss| {
                    let t = st.view([-1, 1]);
                    let new_rank = reading.evaded.to_kind(Kind::Int64) + reading.success.to_kind(Kind::Int64);
                    let new_value = (-&reading.excess.detach())
                        .where_self(&reading.success, &-margin(&reading.logits.detach(), &t));
                    let (old_rank, old_value) = (rank.index_select(0, &left), value.index_select(0, &left));
                    let better = new_rank
                        .gt_tensor(&old_rank)
                        .logical_or(&new_rank.eq_tensor(&old_rank).logical_and(&new_value.gt_tensor(&old_value)));
                    let rows = select_rows(&better, adv, &best.index_select(0, &left));
                    best = best.index_copy(0, &left, &rows);
                    rank = rank.index_copy(0, &left, &new_rank.where_self(&better, &old_rank));
                    value = value.index_copy(0, &left, &new_value.where_self(&better, &old_value));
                    if first {
                        let mean = |t: &Tensor| t.to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
                        curve.push([mean(loss), mean(&reading.evaded), mean(&rank.index_select(0, &left).eq(2))]);
                    }
                    Ok(())
                })?;
                if first {
                    *self.curve.borrow_mut() = curve;
                }
            }
        }
        Ok(best)
    }
}
