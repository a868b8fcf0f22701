//! Classifiers with per-sample channel gates on every gateable unit (each conv layer's output channels and each hidden
//! fully connected unit), the hook the class-specific subnetworks of Wang et al. (arXiv 1910.02673) need.
pub mod checkpoint;
pub mod csg;
pub mod lenet;
pub mod resnet;
pub mod training;
pub mod vgg;

use crate::data::DatasetName;
use crate::error::{Error, Result};
use std::sync::atomic::{AtomicUsize, Ordering};
use tch::{nn, Device, Tensor};

/// A named group of gateable units (one conv layer's output channels, or one hidden FC layer's units).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GateLayer {
    pub name: String,
    pub width: i64,
}

impl GateLayer {
    /// Whether the layer's units are conv channels; the architectures name their hidden fully connected layers `fc*`.
    pub fn is_conv(&self) -> bool {
        !self.name.starts_with("fc")
    }
}

/// The gateable units of a network, in the order of the columns of a gate tensor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GateLayout {
    pub layers: Vec<GateLayer>,
}

impl GateLayout {
    pub fn new(layers: &[(&str, i64)]) -> Self {
        GateLayout { layers: layers.iter().map(|(n, w)| GateLayer { name: n.to_string(), width: *w }).collect() }
    }
    /// Total number of gateable units (columns of a gate tensor).
    pub fn units(&self) -> i64 {
        self.layers.iter().map(|l| l.width).sum()
    }
    /// `(offset, width)` of each layer's columns.
    pub fn spans(&self) -> Vec<(i64, i64)> {
        let mut off = 0;
        self.layers
            .iter()
            .map(|l| {
                let s = (off, l.width);
                off += l.width;
                s
            })
            .collect()
    }
}

/// A classifier whose every gateable unit can be scaled per sample.
///
/// `gates` is `[batch, units]` (or `[1, units]`, broadcast) with the columns in `gate_layout()` order; `None` runs the
/// plain network, and a gate tensor of ones gives exactly the same logits.
pub trait Classifier: Send + std::fmt::Debug {
    /// Penultimate features and logits in one pass, handing the output of every stage before the penultimate layer
    /// (each conv layer, or the stem and each residual block, as gated) to `tap` as it is computed.
    fn forward_tapped(
        &self,
        xs: &Tensor,
        gates: Option<&Tensor>,
        train: bool,
        tap: &mut dyn FnMut(&Tensor),
    ) -> (Tensor, Tensor);

    /// Penultimate features and logits in one pass.
    fn forward_all(&self, xs: &Tensor, gates: Option<&Tensor>, train: bool) -> (Tensor, Tensor) {
        self.forward_tapped(xs, gates, train, &mut |_| {})
    }

    fn gate_layout(&self) -> &GateLayout;

    /// The last linear layer on penultimate features `[B, D]`: in eval mode `forward_all`'s logits are `head` of its
    /// features (dropout before that layer is the identity there). For detectors that change the features (ReAct).
    fn head(&self, features: &Tensor) -> Tensor;

    /// Logits.
    fn forward(&self, xs: &Tensor, gates: Option<&Tensor>, train: bool) -> Tensor {
        self.forward_all(xs, gates, train).1
    }

    /// Penultimate features (the input of the last linear layer).
    fn features(&self, xs: &Tensor, gates: Option<&Tensor>, train: bool) -> Tensor {
        self.forward_all(xs, gates, train).0
    }
}

/// Scales `xs` (`[B, C, ...]` or `[B, C]`) by gate columns `span` of `gates`, if any.
pub fn apply_gate(xs: Tensor, gates: Option<&Tensor>, span: (i64, i64)) -> Tensor {
    match gates {
        None => xs,
        Some(g) => {
            let g = g.narrow(1, span.0, span.1);
            let mut shape = g.size();
            shape.extend(std::iter::repeat_n(1, xs.dim() - 2));
            xs * g.view(shape.as_slice())
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    Lenet,
    VggSmall,
    Resnet20,
}

impl Arch {
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Lenet => "lenet",
            Arch::VggSmall => "vgg-small",
            Arch::Resnet20 => "resnet20",
        }
    }

    /// The input shape `(channels, height, width)` the architecture is built for.
    pub fn input_shape(self) -> (i64, i64, i64) {
        match self {
            Arch::Lenet => (1, 28, 28),
            Arch::VggSmall | Arch::Resnet20 => (3, 32, 32),
        }
    }

    /// The width of the penultimate features (the input of the last linear layer).
    pub fn feature_width(self) -> i64 {
        match self {
            Arch::Lenet => 500,
            Arch::VggSmall => 256,
            Arch::Resnet20 => 64,
        }
    }

    /// The architecture used for a dataset when none is named.
    pub fn default_for(dataset: DatasetName) -> Arch {
        match dataset {
            DatasetName::Mnist | DatasetName::FashionMnist => Arch::Lenet,
            DatasetName::Cifar10 => Arch::Resnet20,
        }
    }

    /// Fails unless the dataset's images fit the architecture.
    pub fn check_dataset(self, dataset: DatasetName) -> Result<()> {
        if self.input_shape() != dataset.image_shape() {
            return Err(Error::Model(format!(
                "arch {self} takes images of shape {:?} but dataset {dataset} has {:?}",
                self.input_shape(),
                dataset.image_shape()
            )));
        }
        Ok(())
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Arch {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "lenet" => Ok(Arch::Lenet),
            "vgg-small" | "vgg_small" | "vgg" => Ok(Arch::VggSmall),
            "resnet20" | "resnet-20" => Ok(Arch::Resnet20),
            _ => Err(Error::config("arch", s, "expected lenet, vgg-small or resnet20")),
        }
    }
}

/// A network with its parameters: the unit every stage passes around.
#[derive(Debug)]
pub struct Model {
    pub arch: Arch,
    pub vs: nn::VarStore,
    pub net: Box<dyn Classifier>,
    /// The width of the logits.
    classes: i64,
    /// The class gate matrix `[channels, classes]` of a model trained with class-specific gates (`csg`), else `None`.
    pub csg: Option<Tensor>,
    calls: Calls,
}

/// Forward and backward calls made through `Model::forward_eval` and `Model::input_grad` (the scoring path's), so a
/// test can hold the number of passes an evaluation makes.
#[derive(Debug, Default)]
struct Calls {
    forward: AtomicUsize,
    backward: AtomicUsize,
}

impl Model {
    /// A freshly initialised network (libtorch's generator decides the initial weights: seed it first).
    pub fn new(arch: Arch, device: Device) -> Model {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        // every dataset advdet reads (MNIST, Fashion-MNIST, CIFAR-10) has ten classes
        let classes = 10;
        let net: Box<dyn Classifier> = match arch {
            Arch::Lenet => Box::new(lenet::Lenet::new(&root, classes)),
            Arch::VggSmall => Box::new(vgg::VggSmall::new(&root, classes)),
            Arch::Resnet20 => Box::new(resnet::Resnet20::new(&root, classes)),
        };
        Model { arch, vs, net, classes, csg: None, calls: Calls::default() }
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// The number of classes the network tells apart (its logits' width).
    pub fn num_classes(&self) -> i64 {
        self.classes
    }

    pub fn gate_layout(&self) -> &GateLayout {
        self.net.gate_layout()
    }

    /// Logits in eval mode, without gradient tracking for the parameters.
    pub fn logits(&self, xs: &Tensor) -> Tensor {
        self.net.forward(xs, None, false)
    }

    /// Penultimate features and logits in eval mode, gradients as the caller's guard says (counted in `calls`).
    pub fn forward_eval(&self, xs: &Tensor, gates: Option<&Tensor>) -> (Tensor, Tensor) {
        self.calls.forward.fetch_add(1, Ordering::Relaxed);
        self.net.forward_all(xs, gates, false)
    }

    /// Every stage's output averaged over its spatial positions (`[B, channels]` each, Lee et al.'s per-layer
    /// features), then the penultimate features, and the logits, in eval mode. Not counted in `calls`, which count
    /// the routes' passes: its callers are a detector's own features and the NND route's controlling modules, as
    /// CDRP's path-learning steps call the network directly.
    pub fn stage_features(&self, xs: &Tensor) -> (Vec<Tensor>, Tensor) {
        let mut stages = Vec::new();
        let (features, logits) = self.net.forward_tapped(xs, None, false, &mut |t| {
            stages.push(if t.dim() > 2 { t.flatten(2, -1).mean_dim(2, false, t.kind()) } else { t.shallow_clone() })
        });
        stages.push(features);
        (stages, logits)
    }

    /// The logits the last linear layer gives on penultimate features `[B, D]` (`Classifier::head`).
    pub fn head(&self, features: &Tensor) -> Tensor {
        self.net.head(features)
    }

    /// The gradient of the scalar `loss` with respect to `input` only (counted in `calls`); `keep_graph` leaves the
    /// graph for another gradient through the same forward.
    pub fn input_grad(&self, loss: &Tensor, input: &Tensor, keep_graph: bool) -> Result<Tensor> {
        self.calls.backward.fetch_add(1, Ordering::Relaxed);
        let mut grads = Tensor::f_run_backward(&[loss], &[input], keep_graph, false)?;
        grads.pop().ok_or_else(|| Error::Model("autograd returned no input gradient".into()))
    }

    /// `(forward, backward)` calls made so far through `forward_eval` and `input_grad`.
    pub fn calls(&self) -> (usize, usize) {
        (self.calls.forward.load(Ordering::Relaxed), self.calls.backward.load(Ordering::Relaxed))
    }

    /// Freezes the parameters so attacks and detectors take gradients only with respect to their inputs.
    pub fn freeze(&mut self) {
        self.vs.freeze();
    }

    /// Predicted classes for a dataset-sized tensor, in batches, in eval mode.
    pub fn predict(&self, images: &Tensor, batch_size: i64) -> Tensor {
        let _guard = tch::no_grad_guard();
        let n = images.size()[0];
        let parts: Vec<Tensor> = (0..n)
            .step_by(batch_size.max(1) as usize)
            .map(|s| {
                let xs = images.narrow(0, s, batch_size.min(n - s)).to_device(self.device());
                self.logits(&xs).argmax(-1, false)
            })
            .collect();
        if parts.is_empty() {
            Tensor::zeros([0], (tch::Kind::Int64, self.device()))
        } else {
            Tensor::cat(&parts, 0)
        }
    }
}
