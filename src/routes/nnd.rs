//! Route `nnd`: each image through its own calculation path chosen by architecture-controlling modules (Interpretable
//! Neural Network Decoupling, Li, Ji, Lin, Zhang, Yan, Wu, Huang, Shao, ECCV 2020, arXiv 1906.01166). One module per
//! conv layer reads what flows into that layer and outputs a gate per output channel: a sigmoid, thresholded at 0.5 on
//! the forward pass with the sigmoid's gradient on the backward pass (straight-through). The classifier stays frozen;
//! the modules learn to keep its accuracy with few channels open and with gate vectors that tell the classes apart.
//!
//! Documented readings, where the paper's estimator or wiring is not public:
//! - each module reads the *ungated* full model's input to its layer (the image, or the previous stage's output
//!   averaged over positions, `Model::stage_features`) through one linear layer: one ungated pass then one gated pass,
//!   instead of a hook between layers;
//! - the paper maximises the mutual information between architecture vectors and inputs; the stand-in is a linear
//!   classification head on the concatenated gate vector, trained with them (its cross-entropy is the MI term);
//! - loss: CE(gated logits, label) + `sparsity` x mean open gate + `mi` x CE(head(gates), label), Adam.
//!
//! The hidden fully connected units keep gate 1. The pass's `gates` is the path (`[B, units]`).
use super::{Pass, Route, RouteKind};
use crate::error::{Error, Result};
use crate::models::{Arch, Model};
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Kind, Tensor};

/// The modules' training: `epochs` over the training images, batches of `batch_size`, Adam at `lr`, the loss weights,
/// and the seed of the initial weights and the batch order.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct NndConfig {
    pub epochs: usize,
    pub batch_size: i64,
    pub lr: f64,
    pub sparsity: f64,
    pub mi: f64,
    pub seed: u64,
}

impl Default for NndConfig {
    fn default() -> Self {
        NndConfig { epochs: 1, batch_size: 128, lr: 1e-2, sparsity: 1.0, mi: 0.1, seed: 0 }
    }
}

/// The side of the square the image is averaged down to for the first layer's module.
const IMAGE_SIDE: i64 = 7;

/// The fitted modules: per gate layer, the stage it reads (`None`: the image) and its linear map, or `None` for a
/// fully connected layer (gate 1); and the MI stand-in's head.
#[derive(Debug)]
pub struct Nnd {
    pub vs: nn::VarStore,
    modules: Vec<Option<(Option<usize>, nn::Linear)>>,
    head: nn::Linear,
    pub cfg: NndConfig,
}

/// Which `Model::stage_features` entry flows into gate layer `layer` of `arch` (`None`: the image).
fn input_stage(arch: Arch, layer: usize) -> Option<usize> {
    match (arch, layer) {
        (_, 0) => None,
        // LeNet: conv2 reads conv1; VGG-small: conv i reads conv i-1
        (Arch::Lenet | Arch::VggSmall, l) => Some(l - 1),
        // ResNet-20: the stem is layer 0, then block j's two gate layers (1 + 2j, 2 + 2j) read the block's input,
        // the stem's output (stage 0) for j = 0, block j-1's output (stage j) after
        (Arch::Resnet20, l) => Some((l - 1) / 2),
    }
}

impl Nnd {
    /// Fresh modules for `model` (the opening bias puts every gate near 0.73, open: training starts from the full network).
    pub fn new(model: &Model, cfg: NndConfig) -> Result<Nnd> {
        let layout = model.gate_layout().clone();
        if !layout.layers.iter().any(|l| l.is_conv()) {
            return Err(Error::Model(format!("the nnd mode needs conv layers; arch {} has none", model.arch)));
        }
        tch::manual_seed(cfg.seed as i64);
        let vs = nn::VarStore::new(model.device());
        let root = vs.root();
        let (c, _, _) = model.arch.input_shape();
        let widths = stage_widths(model);
        let open = nn::LinearConfig { bs_init: Some(nn::Init::Const(1.0)), ..Default::default() };
        let mut modules = Vec::new();
        let mut conv_units = 0;
        for (l, layer) in layout.layers.iter().enumerate() {
            if !layer.is_conv() {
                modules.push(None);
                continue;
            }
            let stage = input_stage(model.arch, l);
            let fan_in = match stage {
                None => c * IMAGE_SIDE * IMAGE_SIDE,
                Some(s) => {
                    *widths.get(s).ok_or_else(|| Error::Model(format!("no stage {s} for layer {}", layer.name)))?
                }
            };
            let lin = nn::linear(&root / format!("module{l}"), fan_in, layer.width, open);
            modules.push(Some((stage, lin)));
            conv_units += layer.width;
        }
        let head = nn::linear(&root / "head", conv_units, model.num_classes(), Default::default());
        Ok(Nnd { vs, modules, head, cfg })
    }

    /// The gate logits' sigmoid per gate layer (`[B, width]`, 1 for fully connected layers), from the ungated pass.
    fn soft(&self, model: &Model, xs: &Tensor) -> Vec<Tensor> {
        let (stages, _) = tch::no_grad(|| model.stage_features(xs));
        let image = xs.adaptive_avg_pool2d([IMAGE_SIDE, IMAGE_SIDE]).flatten(1, -1);
        let b = xs.size()[0];
        model
            .gate_layout()
            .layers
            .iter()
            .zip(&self.modules)
            .map(|(layer, m)| match m {
                None => Tensor::ones([b, layer.width], (Kind::Float, xs.device())),
                Some((stage, lin)) => {
                    let input = match stage {
                        None => image.shallow_clone(),
                        Some(s) => stages[*s].detach(),
                    };
                    lin.forward(&input).sigmoid()
                }
            })
            .collect()
    }

    /// Hard gates with the straight-through gradient: 0/1 on the forward pass, the sigmoid's gradient backward.
    fn straight_through(soft: &Tensor) -> Tensor {
        soft.ge(0.5).to_kind(Kind::Float) + soft - soft.detach()
    }

    /// The path of each image of `xs`: `[B, units]`, 0/1 on conv channels, 1 on fully connected units.
    pub fn gates(&self, model: &Model, xs: &Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        let parts: Vec<Tensor> = self.soft(model, xs).iter().map(|s| s.ge(0.5).to_kind(Kind::Float)).collect();
        Tensor::cat(&parts, 1)
    }

    /// The sigmoid gates before thresholding, `[B, units]` (1 on fully connected units): in [0, 1].
    pub fn soft_gates(&self, model: &Model, xs: &Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        Tensor::cat(&self.soft(model, xs), 1)
    }

    /// Trains the modules on `images`/`labels` (training images) with the classifier frozen; returns the mean loss of
    /// each epoch.
    pub fn fit(&mut self, model: &Model, images: &Tensor, labels: &Tensor) -> Result<Vec<f64>> {
        let n = images.size()[0];
        if n == 0 {
            return Err(Error::Missing("nnd: no training images for the controlling modules".into()));
        }
        let conv = super::cdrp::conv_columns(model);
        let conv_count = conv.sum(Kind::Float).double_value(&[]);
        let mut opt = nn::Adam::default().build(&self.vs, self.cfg.lr)?;
        let mut rng = crate::rng::Rng::new(self.cfg.seed);
        let mut losses = Vec::new();
        for _ in 0..self.cfg.epochs {
            let order = Tensor::from_slice(&rng.permutation(n as usize));
            let (mut total, mut batches) = (0.0, 0);
            for start in (0..n).step_by(self.cfg.batch_size as usize) {
                let idx = order.narrow(0, start, self.cfg.batch_size.min(n - start));
                let xs = images.index_select(0, &idx).to_device(model.device());
                let ys = labels.index_select(0, &idx).to_device(model.device());
                let loss = tch::with_grad(|| {
                    let soft = self.soft(model, &xs);
                    let g = Tensor::cat(&soft.iter().map(Self::straight_through).collect::<Vec<_>>(), 1);
                    let ce = model.net.forward(&xs, Some(&g), false).cross_entropy_for_logits(&ys);
                    let open = (&g * &conv).sum(Kind::Float) / (conv_count * xs.size()[0] as f64);
                    let conv_gates = g.index_select(1, &conv.squeeze_dim(0).nonzero().squeeze_dim(1));
                    let mi = self.head.forward(&conv_gates).cross_entropy_for_logits(&ys);
                    let loss = ce + open * self.cfg.sparsity + mi * self.cfg.mi;
                    opt.backward_step(&loss);
                    loss.detach()
                });
                total += loss.double_value(&[]);
                batches += 1;
            }
            losses.push(total / batches.max(1) as f64);
        }
        Ok(losses)
    }
}

/// The width of each `Model::stage_features` entry.
fn stage_widths(model: &Model) -> Vec<i64> {
    let (c, h, w) = model.arch.input_shape();
    let probe = Tensor::zeros([1, c, h, w], (Kind::Float, model.device()));
    let (stages, _) = tch::no_grad(|| model.stage_features(&probe));
    stages.iter().map(|s| s.size()[1]).collect()
}

/// The `nnd` route: the image's own gates from the fitted modules.
pub struct NndRoute<'a> {
    nnd: &'a Nnd,
}

impl<'a> NndRoute<'a> {
    pub fn new(nnd: Option<&'a Nnd>) -> Result<Self> {
        let nnd = nnd.ok_or_else(|| {
            Error::Missing("the nnd mode needs the fitted architecture-controlling modules (a suite fits them)".into())
        })?;
        Ok(NndRoute { nnd })
    }
}

impl Route for NndRoute<'_> {
    fn kind(&self) -> RouteKind {
        RouteKind::Nnd
    }
    fn pass(&self, model: &Model, xs: &Tensor, _full: &Pass) -> Result<Option<Pass>> {
        let gates = self.nnd.gates(model, xs);
        Ok(Some(Pass::run(model, xs, Some(gates))))
    }
}

/// Clean accuracy of `images` through their NND paths and through the full model, with the mean share of conv
/// channels open, in batches.
pub fn summary(model: &Model, nnd: &Nnd, images: &Tensor, labels: &Tensor, batch: i64) -> Result<(f64, f64, f64)> {
    let _guard = tch::no_grad_guard();
    let n = images.size()[0];
    let (mut hit, mut hit_full, mut open) = (0.0, 0.0, 0.0);
    for start in (0..n).step_by(batch.max(1) as usize) {
        let len = batch.min(n - start);
        let xs = images.narrow(0, start, len).to_device(model.device());
        let ys = labels.narrow(0, start, len).to_device(model.device());
        let gates = nnd.gates(model, &xs);
        let correct = |logits: Tensor| logits.argmax(-1, false).eq_tensor(&ys).sum(Kind::Float).double_value(&[]);
        hit += correct(model.net.forward(&xs, Some(&gates), false));
        hit_full += correct(model.net.forward(&xs, None, false));
        open += open_share(model, &gates).sum(Kind::Float).double_value(&[]);
    }
    let n = n.max(1) as f64;
    Ok((hit / n, hit_full / n, open / n))
}

/// The share of open conv gates of `gates` (`[B, units]`) per image, `[B]`.
pub fn open_share(model: &Model, gates: &Tensor) -> Tensor {
    let conv = super::cdrp::conv_columns(model).to_device(gates.device());
    (gates * &conv).sum_dim_intlist(1, false, Kind::Float) / conv.sum(Kind::Float)
}
