//! Route `cdrp`: each image through its own critical data routing path (CDRP: Wang, Su, Zhang, Hu, "Interpret neural
//! networks by identifying critical data routing paths", CVPR 2018). Per image, one scalar gate per output channel of
//! every conv layer, starting at 1, multiplied onto the channel; `steps` SGD steps (lr, momentum) on the distillation
//! loss CE(p_full(x), p_gated(x)) + `l1` * sum of the gates, the gates clamped to [0, `gmax`] after each step; the path
//! kept is the lowest-loss gates among the steps whose prediction equals the full model's (the all-ones start is one,
//! so a path always exists and never changes the prediction). The authors' code learns one image at a time; here a
//! batch learns together, its loss the sum of the images' losses, so each image's gates see only their own gradient.
//! The hidden fully connected units keep gate 1. The pass's `gates` is the path (`[B, units]`), which the path
//! detectors read; the adaptive attack treats the path as fixed per step (it is re-learned at each step, and its
//! gradient with respect to the image is not taken).
use super::{Pass, Route, RouteKind};
use crate::error::{Error, Result};
use crate::models::Model;
use tch::{Kind, Tensor};

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

pub struct Cdrp {
    cfg: CdrpConfig,
}

impl Cdrp {
    pub fn new(model: &Model) -> Result<Self> {
        if !model.gate_layout().layers.iter().any(|l| l.is_conv()) {
            return Err(Error::Model(format!("the cdrp mode needs conv layers; arch {} has none", model.arch)));
        }
        Ok(Cdrp { cfg: CdrpConfig::default() })
    }
}

impl Route for Cdrp {
    fn kind(&self) -> RouteKind {
        RouteKind::Cdrp
    }
    fn pass(&self, model: &Model, xs: &Tensor, _full: &Pass) -> Result<Option<Pass>> {
        let path = paths(model, xs, &self.cfg)?;
        Ok(Some(Pass::run(model, xs, Some(path))))
    }
}
