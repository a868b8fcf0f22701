//! Route `cdrp`: each image through its own critical data routing path (CDRP: Wang, Su, Zhang, Hu, "Interpret neural
//! networks by identifying critical data routing paths", CVPR 2018). Per image, one scalar gate per output channel of
//! every conv layer, starting at 1, multiplied onto the channel; `steps` SGD steps (lr, momentum) on the distillation
//! loss CE(p_full(x), p_gated(x)) + `l1` * sum of the gates, the gates clamped to [0, `gmax`] after each step; the path
//! kept is the lowest-loss gates among the steps whose prediction equals the full model's (the all-ones start is one,
//! so a path always exists and never changes the prediction). The authors' code learns one image at a time; here a
//! batch learns together, its loss the sum of the images' losses, so each image's gates see only their own gradient.
//! The hidden fully connected units keep gate 1. The pass's `gates` is the path (`[B, units]`), which the path
//! detectors read; the adaptive attack treats the path as fixed per step (it is re-learned at each step, and its
//! gradient with respect to the image is not taken). A suite learns each image set's paths once, in batches of
//! `PATH_BATCH` from the set's start, caches them, and hands them to the route through a `PathMemo`: every use of an
//! image's path in that set (scoring, fitting the path detectors, the class-path heatmap) reads the same bytes.
use super::{Pass, Route, RouteKind};
use crate::error::{Error, Result};
use crate::models::Model;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use tch::{Device, Kind, Tensor};

/// The CDRP code's settings.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct CdrpConfig {
    pub steps: usize,
    pub lr: f64,
    pub momentum: f64,
    pub l1: f64,
    pub gmax: f64,
}

impl Default for CdrpConfig {
    fn default() -> Self {
        CdrpConfig { steps: 30, lr: 0.1, momentum: 0.9, l1: 0.05, gmax: 5.0 }
    }
}

/// 1 on the gate columns of conv channels, 0 on the hidden fully connected units (`[1, units]`).
pub fn conv_columns(model: &Model) -> Tensor {
    let cols: Vec<f32> = model
        .gate_layout()
        .layers
        .iter()
        .flat_map(|l| std::iter::repeat_n(if l.is_conv() { 1.0 } else { 0.0 }, l.width as usize))
        .collect();
    Tensor::from_slice(&cols).view([1, -1]).to_device(model.device())
}

/// The CDRP paths of the batch `xs` (`[B, units]`, 1 on the fully connected columns), learned together.
pub fn paths(model: &Model, xs: &Tensor, cfg: &CdrpConfig) -> Result<Tensor> {
    let xs = xs.detach();
    let b = xs.size()[0];
    let units = model.gate_layout().units();
    let conv = conv_columns(model);
    let (teacher, target) = {
        let _guard = tch::no_grad_guard();
        let logits = model.net.forward(&xs, None, false);
        (logits.softmax(-1, Kind::Float), logits.argmax(-1, false))
    };
    let opts = (Kind::Float, model.device());
    let mut gates = Tensor::ones([b, units], opts);
    let mut velocity = Tensor::zeros([b, units], opts);
    let mut best = gates.copy();
    let mut best_loss = Tensor::full([b], f64::INFINITY, (Kind::Double, model.device()));
    for _ in 0..cfg.steps {
        let g = gates.detach().set_requires_grad(true);
        let (loss, pred, grad) = tch::with_grad(|| -> Result<(Tensor, Tensor, Tensor)> {
            let logits = model.net.forward(&xs, Some(&g), false);
            let ce = -(&teacher * logits.log_softmax(-1, Kind::Float)).sum_dim_intlist(1, false, Kind::Float);
            let per_image = ce + (&g * &conv).sum_dim_intlist(1, false, Kind::Float) * cfg.l1;
            let grad = Tensor::f_run_backward(&[&per_image.sum(Kind::Float)], &[&g], false, false)?
                .pop()
                .ok_or_else(|| Error::Model("autograd returned no gate gradient".into()))?;
            Ok((per_image.detach(), logits.argmax(-1, false), grad * &conv))
        })?;
        let _guard = tch::no_grad_guard();
        let better = pred.eq_tensor(&target).logical_and(&loss.to_kind(Kind::Double).lt_tensor(&best_loss));
        best = gates.where_self(&better.unsqueeze(1), &best);
        best_loss = loss.to_kind(Kind::Double).where_self(&better, &best_loss);
        velocity = &velocity * cfg.momentum + grad;
        gates = (&gates - &velocity * cfg.lr).clamp(0.0, cfg.gmax);
    }
    Ok(best)
}

pub struct Cdrp<'a> {
    cfg: CdrpConfig,
    /// Paths learned beforehand, read instead of learning them again.
    memo: Option<&'a PathMemo>,
}

impl<'a> Cdrp<'a> {
    pub fn new(model: &Model, memo: Option<&'a PathMemo>) -> Result<Self> {
        if !model.gate_layout().layers.iter().any(|l| l.is_conv()) {
            return Err(Error::Model(format!("the cdrp mode needs conv layers; arch {} has none", model.arch)));
        }
        Ok(Cdrp { cfg: CdrpConfig::default(), memo })
    }
}

impl Route for Cdrp<'_> {
    fn kind(&self) -> RouteKind {
        RouteKind::Cdrp
    }
    /// The batch's paths from the memo when it holds every image's (images of a cached set), else learned here.
    fn pass(&self, model: &Model, xs: &Tensor, _full: &Pass) -> Result<Option<Pass>> {
        let path = match self.memo.and_then(|m| m.lookup(xs)) {
            Some(p) => p.to_device(xs.device()),
            None => paths(model, xs, &self.cfg)?,
        };
        Ok(Some(Pass::run(model, xs, Some(path))))
    }
}

/// The batch size a suite learns an image set's paths in (the bytes of a path can depend on its batch's size).
pub const PATH_BATCH: i64 = 500;

/// The paths of `images` (any number, on any device), learned in batches of `PATH_BATCH` from the first image: the
/// canonical paths of an image set, which a suite caches (`[N, units]`, on the CPU).
pub fn set_paths(model: &Model, images: &Tensor, cfg: &CdrpConfig) -> Result<Tensor> {
    let n = images.size()[0];
    let parts: Vec<Tensor> = (0..n)
        .step_by(PATH_BATCH as usize)
        .map(|s| {
            let xs = images.narrow(0, s, PATH_BATCH.min(n - s)).to_device(model.device());
            Ok(paths(model, &xs, cfg)?.to_device(Device::Cpu))
        })
        .collect::<Result<_>>()?;
    match parts.is_empty() {
        true => Ok(Tensor::zeros([0, model.gate_layout().units()], (Kind::Float, Device::Cpu))),
        false => Ok(Tensor::cat(&parts, 0)),
    }
}

/// Paths of images learned beforehand, by the images' bytes: the `cdrp` route reads a batch's paths here when every
/// image of it has one. An image that occurs twice keeps the path it was given first.
#[derive(Default)]
pub struct PathMemo {
    rows: RefCell<HashMap<u64, Tensor>>,
}

impl PathMemo {
    /// Forgets every path, then holds `paths[i]` for image `images[i]` of each set in turn.
    pub fn replace(&self, sets: &[(&Tensor, &Tensor)]) -> Result<()> {
        let mut rows = self.rows.borrow_mut();
        rows.clear();
        for (images, paths) in sets {
            if images.size()[0] != paths.size()[0] {
                return Err(Error::Model(format!("{} paths for {} images", paths.size()[0], images.size()[0])));
            }
            let paths = paths.to_device(Device::Cpu);
            for (i, k) in image_keys(images)?.into_iter().enumerate() {
                rows.entry(k).or_insert_with(|| paths.get(i as i64));
            }
        }
        Ok(())
    }

    /// The paths of the images `xs`, `[B, units]` on the CPU, if the memo holds every one.
    pub fn lookup(&self, xs: &Tensor) -> Option<Tensor> {
        let rows = self.rows.borrow();
        if rows.is_empty() {
            return None;
        }
        let keys = image_keys(xs).ok()?;
        let found: Option<Vec<Tensor>> = keys.iter().map(|k| rows.get(k).map(|t| t.shallow_clone())).collect();
        found.filter(|f| !f.is_empty()).map(|f| Tensor::stack(&f, 0))
    }

    /// Forgets every path.
    pub fn clear(&self) {
        self.rows.borrow_mut().clear();
    }

    pub fn len(&self) -> usize {
        self.rows.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A key of a whole image set's bytes (hex), for a cache of its paths.
pub fn images_key(images: &Tensor) -> Result<String> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    images.size().hash(&mut h);
    image_keys(images)?.hash(&mut h);
    Ok(format!("{:016x}", h.finish()))
}

/// One key per image of `xs` (`[B, ...]`): a hash of its f32 values' bits.
fn image_keys(xs: &Tensor) -> Result<Vec<u64>> {
    let b = xs.size()[0];
    let flat = Vec::<f32>::try_from(xs.to_device(Device::Cpu).to_kind(Kind::Float).contiguous().view([-1]))?;
    let per = if b == 0 { 0 } else { flat.len() / b as usize };
    Ok((0..b as usize)
        .map(|i| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            for v in &flat[i * per..(i + 1) * per] {
                v.to_bits().hash(&mut h);
            }
            h.finish()
        })
        .collect())
}
