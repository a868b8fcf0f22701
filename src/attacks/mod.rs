//! Adversarial attacks behind one small trait: FGSM, BIM, PGD (Linf, L2), MI-FGSM, CW-L2, DeepFool, the adaptive attack
//! on a detector at its threshold (`adaptive`), and `subnet-ce`, PGD that keeps the class-specific subnetwork (Wang et
//! al., arXiv 1910.02673) of the new prediction confident; inputs and outputs in [0, 1].
pub mod adaptive;
pub mod bim;
pub mod cw;
pub mod deepfool;
pub mod fgsm;
pub mod mifgsm;
pub mod pgd;
mod spec;
pub mod subnet_ce;
mod summary;
mod targeting;

pub use adaptive::{Adaptive, AdaptiveConfig, DetectorTarget, Steer};
pub use bim::Bim;
pub use cw::CwL2;
pub use deepfool::DeepFool;
pub use fgsm::Fgsm;
pub use mifgsm::MiFgsm;
pub use pgd::Pgd;
pub use spec::{
    build, AdaptiveSpec, AttackSpec, BimSpec, CwSpec, DeepFoolSpec, FgsmSpec, MiFgsmSpec, PgdSpec, SubnetCeSpec,
    Targeted, ATTACK_NAMES,
};
pub use subnet_ce::SubnetCe;
pub use summary::{AttackOutcome, AttackSummary};
pub use targeting::Targeting;

use crate::error::{Error, Result};
use crate::models::Model;
use tch::{Kind, Reduction, Tensor};

/// The threat model's norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    Linf,
    L2,
}

/// An attack: adversarial images for a batch of images and labels, on the model's device, in eval mode, taking
/// gradients with respect to the input only.
pub trait Attack {
    /// The attack's name as in suite files (`fgsm`, `pgd-linf`, ...).
    fn name(&self) -> String;
    fn norm(&self) -> Norm;
    /// The perturbation budget (eps) in `norm()`; `None` for minimum-norm attacks (CW-L2, DeepFool).
    fn budget(&self) -> Option<f64>;
    fn targeting(&self) -> &Targeting {
        &targeting::UNTARGETED
    }
    /// The number of forward+backward passes the attack makes per batch when that number is fixed (FGSM, BIM, PGD,
    /// MI-FGSM); `None` for attacks that stop early or take per-class gradients. The attack's time is bounded below by
    /// that many passes of the model (see `gradient_bound`).
    fn gradient_passes(&self) -> Option<usize> {
        None
    }
    /// Adversarial versions of `xs` (`[B, C, H, W]` in [0, 1]) with labels `ys` (`[B]`), when they are samples
    /// `offset..offset + B` of a larger set: the offset picks given targets, random targets and random starts, so the
    /// result does not depend on how a dataset is cut into batches.
    fn perturb_at(&self, model: &Model, xs: &Tensor, ys: &Tensor, offset: usize) -> Result<Tensor>;
    /// `perturb_at` with offset 0.
    fn perturb(&self, model: &Model, xs: &Tensor, ys: &Tensor) -> Result<Tensor> {
        self.perturb_at(model, xs, ys, 0)
    }
}

/// Runs `attack` over a dataset-sized tensor in batches of `batch_size` (each moved to the model's device), with a
/// progress bar; returns the adversarial images on the model's device.
pub fn run_batched(attack: &dyn Attack, model: &Model, xs: &Tensor, ys: &Tensor, batch_size: i64) -> Result<Tensor> {
    if batch_size < 1 {
        return Err(Error::config("batch-size", batch_size, "must be at least 1"));
    }
    let n = check_shapes(model, xs, ys)?;
    let pb = crate::progress::bar(n as u64, &attack.name());
    let mut parts = Vec::new();
    for start in (0..n).step_by(batch_size as usize) {
        let len = batch_size.min(n - start);
        let bx = xs.narrow(0, start, len).to_device(model.device());
        let by = ys.narrow(0, start, len).to_device(model.device());
        parts.push(attack.perturb_at(model, &bx, &by, start as usize)?);
        pb.inc(len as u64);
    }
    pb.finish_and_clear();
    Ok(Tensor::cat(&parts, 0))
}

/// The targets a targeted attack aimed at over a dataset-sized tensor, resolved batch by batch as `run_batched` runs
/// it (a random target depends on the image's index in the whole set); `None` for an untargeted attack.
pub fn targets_batched(
    attack: &dyn Attack,
    model: &Model,
    xs: &Tensor,
    ys: &Tensor,
    batch_size: i64,
) -> Result<Option<Tensor>> {
    if !attack.targeting().is_targeted() {
        return Ok(None);
    }
    let n = check_shapes(model, xs, ys)?;
    let classes = model.num_classes();
    let mut parts = Vec::new();
    for start in (0..n).step_by(batch_size.max(1) as usize) {
        let len = batch_size.max(1).min(n - start);
        let (bx, by) = (xs.narrow(0, start, len), ys.narrow(0, start, len));
        if let Some(t) = attack.targeting().targets(model, &bx, &by, start as usize, classes)? {
            parts.push(t);
        }
    }
    Ok(Some(Tensor::cat(&parts, 0)))
}

/// The lower bound of an attack's time over a dataset-sized tensor, in seconds: `passes` forward+backward passes (the
/// input gradient of the mean cross-entropy) per batch of `batch_size`, the batches moved to the model's device as
/// `run_batched` moves them, after one untimed warm-up pass; CUDA is synchronised before the clock is read.
pub fn gradient_bound(model: &Model, xs: &Tensor, ys: &Tensor, batch_size: i64, passes: usize) -> Result<f64> {
    if batch_size < 1 {
        return Err(Error::config("batch-size", batch_size, "must be at least 1"));
    }
    let n = check_shapes(model, xs, ys)?;
    let device = model.device();
    let sync = || {
        if let tch::Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    let pass = |bx: &Tensor, by: &Tensor| {
        input_grad(bx, |x| Ok(model.net.forward(x, None, false).cross_entropy_for_logits(by))).map(drop)
    };
    let len = batch_size.min(n);
    pass(&xs.narrow(0, 0, len).to_device(device), &ys.narrow(0, 0, len).to_device(device))?;
    sync();
    let start = std::time::Instant::now();
    for s in (0..n).step_by(batch_size as usize) {
        let len = batch_size.min(n - s);
        let bx = xs.narrow(0, s, len).to_device(device);
        let by = ys.narrow(0, s, len).to_device(device);
        for _ in 0..passes {
            pass(&bx, &by)?;
        }
    }
    sync();
    Ok(start.elapsed().as_secs_f64())
}

/// A validated batch on the model's device.
pub(crate) struct Batch {
    pub xs: Tensor,
    pub ys: Tensor,
    /// Per-sample targets for a targeted attack.
    pub targets: Option<Tensor>,
    pub classes: i64,
}

/// Checks shapes, kinds and value ranges; returns the batch size. Errors instead of libtorch panics on bad input.
pub(crate) fn check_shapes(model: &Model, xs: &Tensor, ys: &Tensor) -> Result<i64> {
    let (c, h, w) = model.arch.input_shape();
    let size = xs.size();
    if size.len() != 4 || size[1..] != [c, h, w] {
        return Err(Error::config(
            "images",
            format!("{size:?}"),
            format!("arch {} takes [N, {c}, {h}, {w}]", model.arch),
        ));
    }
    if ys.size() != [size[0]] {
        return Err(Error::config(
            "labels",
            format!("{:?}", ys.size()),
            format!("expected [{}] (one per image)", size[0]),
        ));
    }
    if size[0] == 0 {
        return Err(Error::config("images", "[]", "the dataset is empty: nothing to attack"));
    }
    if xs.kind() != Kind::Float {
        return Err(Error::config("images", format!("{:?}", xs.kind()), "expected f32 images in [0, 1]"));
    }
    let (lo, hi) = (f64::try_from(xs.min())?, f64::try_from(xs.max())?);
    if !(lo >= 0.0 && hi <= 1.0) {
        return Err(Error::config("images", format!("range [{lo}, {hi}]"), "pixel values must lie in [0, 1]"));
    }
    Ok(size[0])
}

/// Validates a batch, moves it to the model's device and resolves the targets of `targeting`.
pub(crate) fn prepare(model: &Model, xs: &Tensor, ys: &Tensor, targeting: &Targeting, offset: usize) -> Result<Batch> {
    check_shapes(model, xs, ys)?;
    let device = model.device();
    let xs = xs.detach().to_device(device);
    let ys = ys.to_device(device).f_to_kind(Kind::Int64)?;
    let classes = model.num_classes();
    let (lo, hi) = (i64::try_from(ys.min())?, i64::try_from(ys.max())?);
    if lo < 0 || hi >= classes {
        return Err(Error::config("labels", format!("range [{lo}, {hi}]"), format!("labels must lie in 0..{classes}")));
    }
    let targets = targeting.targets(model, &xs, &ys, offset, classes)?;
    Ok(Batch { xs, ys, targets, classes })
}

/// The gradient of the scalar `f(x)` with respect to `x` only (gradient tracking on, even under a no-grad guard;
/// parameters' `.grad` untouched).
pub(crate) fn input_grad(x: &Tensor, f: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    tch::with_grad(|| {
        let x = x.detach().set_requires_grad(true);
        let cost = f(&x)?;
        let mut grads = Tensor::f_run_backward(&[&cost], &[&x], false, false)?;
        grads.pop().ok_or_else(|| Error::Model("autograd returned no input gradient".into()))
    })
}

/// torchattacks' cost: mean cross-entropy of the labels (untargeted, ascended) or minus that of the targets.
pub(crate) fn ce_cost(logits: &Tensor, b: &Batch) -> Tensor {
    match &b.targets {
        None => logits.cross_entropy_loss::<Tensor>(&b.ys, None, Reduction::Mean, -100, 0.0),
        Some(t) => -logits.cross_entropy_loss::<Tensor>(t, None, Reduction::Mean, -100, 0.0),
    }
}

/// The per-sample version of `ce_cost`.
pub(crate) fn ce_per_sample(logits: &Tensor, b: &Batch) -> Tensor {
    match &b.targets {
        None => logits.cross_entropy_loss::<Tensor>(&b.ys, None, Reduction::None, -100, 0.0),
        Some(t) => -logits.cross_entropy_loss::<Tensor>(t, None, Reduction::None, -100, 0.0),
    }
}

/// Per-sample success: the prediction left the label (untargeted) or reached the target.
pub(crate) fn success(logits: &Tensor, b: &Batch) -> Tensor {
    let pred = logits.argmax(-1, false);
    match &b.targets {
        None => pred.ne_tensor(&b.ys),
        Some(t) => pred.eq_tensor(t),
    }
}

/// Keeps, per sample, `new` where `take` (bool `[B]`) holds and `old` elsewhere.
pub(crate) fn select_rows(take: &Tensor, new: &Tensor, old: &Tensor) -> Tensor {
    let mut shape = vec![-1i64];
    shape.extend(std::iter::repeat_n(1, new.dim() - 1));
    new.where_self(&take.view(shape.as_slice()), old)
}

/// Parameter checks shared by the attacks' `validate`.
pub(crate) fn check_nonneg(attack: &str, field: &str, v: f64) -> Result<()> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(Error::config(field, v, format!("must be a finite number >= 0 (attack {attack})")))
    }
}

pub(crate) fn check_positive(attack: &str, field: &str, v: f64) -> Result<()> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(Error::config(field, v, format!("must be a finite number > 0 (attack {attack})")))
    }
}

pub(crate) fn check_count(attack: &str, field: &str, v: usize) -> Result<()> {
    if v >= 1 {
        Ok(())
    } else {
        Err(Error::config(field, v, format!("must be at least 1 (attack {attack})")))
    }
}
