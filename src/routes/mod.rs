//! Routes: how an image reaches logits and features. The full model is one route; the subnetwork of the class the full
//! model predicts (Wang, Hu, Su, arXiv 1910.02673) is another, the predicted class's filter subset of the penultimate
//! features (Badola et al., arXiv 2112.07719) a third, and the gates of a model trained with class-specific gates
//! (CSG-CNN, Liang et al., arXiv 2007.08194) a fourth, each image's own critical data routing path (CDRP, Wang, Su,
//! Zhang, Hu, CVPR 2018) a fifth, each image's own path chosen by NND's architecture-controlling modules (Li et al.,
//! ECCV 2020) a sixth; the controls (`random-mask`, `union-mask`, `wrong-class`, `temperature`, `second-model`) ask
//! where any difference between the two comes from. Detectors read a route's output and never ask which route it was
//! (a path detector fitted on one route's paths is built once per route); adding a route is one file here and one
//! entry in `RouteKind` and `build`.
pub mod cdrp;
pub mod csg;
pub mod full;
pub mod nnd;
pub mod random_mask;
pub mod second_model;
pub mod subnet;
pub mod subspace;
pub mod temperature;
pub mod union_mask;
pub mod wrong_class;

use crate::error::{Error, Result};
use crate::models::Model;
use crate::subnet::Subnets;
use std::cell::RefCell;
use tch::Tensor;

/// The routes a suite or `advdet detect` can run, by name (the results' `mode` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    /// The full model.
    Full,
    /// Each image through the subnetwork (binary mask) of the class the full model predicts for it.
    Subnet,
    /// The full model's penultimate features masked to the predicted class's filter subset (Badola et al.).
    Subspace,
    /// A model trained with class-specific gates (CSG-CNN) through the predicted class's learned gate column.
    Csg,
    /// The same with the gate column thresholded at 0.5.
    #[serde(rename = "csg-binary")]
    CsgBinary,
    /// Each image through its own critical data routing path (CDRP), learned per image.
    Cdrp,
    /// Each image through its own gates from architecture-controlling modules (NND), learned on training images.
    Nnd,
    /// Control: a random mask with the predicted class's kept count per layer.
    #[serde(rename = "random-mask")]
    RandomMask,
    /// Control: one mask for every image, the union of the class masks.
    #[serde(rename = "union-mask")]
    UnionMask,
    /// Control: the subnetwork of the full model's second most likely class.
    #[serde(rename = "wrong-class")]
    WrongClass,
    /// Control: the full model at the one softmax temperature that gives the subnetworks' mean confidence.
    Temperature,
    /// Control: an independently trained model of the same architecture in place of the subnetwork.
    #[serde(rename = "second-model")]
    SecondModel,
}

impl RouteKind {
    pub const ALL: [RouteKind; 12] = [
        RouteKind::Full,
        RouteKind::Subnet,
        RouteKind::Subspace,
        RouteKind::Csg,
        RouteKind::CsgBinary,
        RouteKind::Cdrp,
        RouteKind::Nnd,
        RouteKind::RandomMask,
        RouteKind::UnionMask,
        RouteKind::WrongClass,
        RouteKind::Temperature,
        RouteKind::SecondModel,
    ];
    /// The routes a suite runs when `[detectors] modes` is not given: the comparison itself, without the controls.
    pub const DEFAULT: [RouteKind; 2] = [RouteKind::Full, RouteKind::Subnet];

    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Full => "full",
            RouteKind::Subnet => "subnet",
            RouteKind::Subspace => "subspace",
            RouteKind::Csg => "csg",
            RouteKind::CsgBinary => "csg-binary",
            RouteKind::Cdrp => "cdrp",
            RouteKind::Nnd => "nnd",
            RouteKind::RandomMask => "random-mask",
            RouteKind::UnionMask => "union-mask",
            RouteKind::WrongClass => "wrong-class",
            RouteKind::Temperature => "temperature",
            RouteKind::SecondModel => "second-model",
        }
    }

    /// Whether the route runs another network than the model (a pass there cannot be re-run on perturbed inputs, so
    /// detectors that take the input gradient skip it).
    pub fn other_network(self) -> bool {
        self == RouteKind::SecondModel
    }

    /// Whether the route reads the class subnetworks (the `subnet` route, the mask controls and the temperature fitted
    /// to the subnetworks' confidence).
    pub fn reads_subnets(self) -> bool {
        matches!(
            self,
            RouteKind::Subnet
                | RouteKind::RandomMask
                | RouteKind::UnionMask
                | RouteKind::WrongClass
                | RouteKind::Temperature
        )
    }

    /// Whether the route gives each image its own path (`Pass::gates` per image): what path detectors read.
    pub fn has_paths(self) -> bool {
        matches!(self, RouteKind::Cdrp | RouteKind::Nnd)
    }

    /// Whether the route reads the gate matrix of a model trained with class-specific gates.
    pub fn needs_class_gates(self) -> bool {
        matches!(self, RouteKind::Csg | RouteKind::CsgBinary)
    }

    /// Whether the route is the full model itself (detectors fitted on the full model's features run only there;
    /// detectors that compare a route with the full model run everywhere else).
    pub fn is_full(self) -> bool {
        self == RouteKind::Full
    }
}

impl std::fmt::Display for RouteKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for RouteKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        RouteKind::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = RouteKind::ALL.iter().map(|r| r.as_str()).collect();
            Error::config("mode", s, format!("expected one of {}", names.join(", ")))
        })
    }
}

/// What routes may draw on besides the model.
#[derive(Clone, Copy, Default)]
pub struct Resources<'a> {
    /// The class subnetworks (the `subnet` route and the mask controls).
    pub subnets: Option<&'a Subnets>,
    /// The fitted temperature of the `temperature` control (`temperature::fit`).
    pub temperature: Option<f64>,
    /// The `second-model` control's network.
    pub second: Option<&'a Model>,
    /// The class filter subsets of the `subspace` route (`subspace::Subspaces::fit`).
    pub subspaces: Option<&'a subspace::Subspaces>,
    /// The architecture-controlling modules of the `nnd` route.
    pub nnd: Option<&'a nnd::Nnd>,
    /// CDRP paths learned beforehand (a suite's cached path stage), which the `cdrp` route reads.
    pub cdrp_paths: Option<&'a cdrp::PathMemo>,
}

/// One forward pass of a batch along a route (eval mode): logits, penultimate features and, for gated routes, the
/// per-sample gates it applied. In evaluation `logits` and `features` never carry a graph; a pass run with
/// `with_graph` also keeps its input and graph, so detectors that need the input gradient take it from this same
/// forward. The adaptive attack runs passes with gradients on over an input that requires its gradient: there the
/// logits and features carry the graph, and a detector's `score` of them is the differentiable score it attacks.
pub struct Pass {
    pub logits: Tensor,
    pub features: Tensor,
    pub gates: Option<Tensor>,
    /// The temperature the logits are divided by (the `temperature` control); `forward` divides by it too.
    temperature: Option<f64>,
    /// `[B, D]`: the penultimate features the route keeps (the `subspace` route); `forward` and `head` mask by it too.
    feature_mask: Option<Tensor>,
    graph: Option<Graph>,
    /// The full network's (features, logits) of transformed copies of this batch, by name (`forward_shared`).
    shared: RefCell<Vec<(String, Tensor, Tensor)>>,
}

/// The input (requiring its gradient) and the graph-carrying outputs of a pass.
struct Graph {
    input: Tensor,
    features: Tensor,
    logits: Tensor,
}

impl Pass {
    /// The forward of `xs` through `model` with `gates` (eval mode; gradients as the caller's guard says).
    pub fn run(model: &Model, xs: &Tensor, gates: Option<Tensor>) -> Pass {
        let (features, logits) = model.forward_eval(xs, gates.as_ref());
        Pass { logits, features, gates, temperature: None, feature_mask: None, graph: None, shared: Default::default() }
    }

    /// A pass from given outputs (no gates, no temperature, no graph): for tests and reference checks that score fixed
    /// logits, never for the evaluation path.
    pub fn from_outputs(logits: Tensor, features: Tensor) -> Pass {
        Pass {
            logits,
            features,
            gates: None,
            temperature: None,
            feature_mask: None,
            graph: None,
            shared: Default::default(),
        }
    }

    /// The full model's forward of `xs` with its logits divided by `temperature`.
    pub fn run_tempered(model: &Model, xs: &Tensor, temperature: f64) -> Pass {
        let (features, logits) = model.forward_eval(xs, None);
        Pass {
            logits: logits / temperature,
            features,
            gates: None,
            temperature: Some(temperature),
            feature_mask: None,
            graph: None,
            shared: Default::default(),
        }
    }

    /// The full model's forward of `xs` with its penultimate features multiplied by `mask` (`[B, D]`) and the last
    /// layer applied to them: the features are the masked ones.
    pub fn run_feature_masked(model: &Model, xs: &Tensor, mask: Tensor) -> Pass {
        let (features, _) = model.forward_eval(xs, None);
        let features = features * &mask;
        let logits = model.head(&features);
        Pass {
            logits,
            features,
            gates: None,
            temperature: None,
            feature_mask: Some(mask),
            graph: None,
            shared: Default::default(),
        }
    }

    /// The same network on other inputs (the gates and temperature of this pass): for detectors that perturb their
    /// input.
    pub fn forward(&self, model: &Model, xs: &Tensor) -> (Tensor, Tensor) {
        let (features, logits) = model.forward_eval(xs, self.gates.as_ref());
        self.finish(model, features, logits)
    }

    /// `forward` of `xs`, a copy of this batch transformed as `name` says (a squeezer), with the full network's forward
    /// of it shared through `full` (the full model's pass over the batch) by the routes that run the full network
    /// itself (the full model, the temperature control, the feature subspace): the first runs it, the others reuse it,
    /// with the bytes `forward` gives. Gated routes, and inputs that carry a gradient, run their own.
    pub fn forward_shared(&self, model: &Model, full: &Pass, name: &str, xs: &Tensor) -> (Tensor, Tensor) {
        if self.gates.is_some() || xs.requires_grad() {
            return self.forward(model, xs);
        }
        let known = full
            .shared
            .borrow()
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, f, l)| (f.shallow_clone(), l.shallow_clone()));
        let (features, logits) = match known {
            Some(out) => out,
            None => {
                let (f, l) = model.forward_eval(xs, None);
                full.shared.borrow_mut().push((name.to_string(), f.shallow_clone(), l.shallow_clone()));
                (f, l)
            }
        };
        self.finish(model, features, logits)
    }

    /// This route's outputs from its network's `features` and `logits`: the feature mask and the temperature applied.
    fn finish(&self, model: &Model, features: Tensor, logits: Tensor) -> (Tensor, Tensor) {
        let (features, logits) = match &self.feature_mask {
            Some(m) => {
                let f = features * m;
                let l = model.head(&f);
                (f, l)
            }
            None => (features, logits),
        };
        match self.temperature {
            Some(t) => (features, logits / t),
            None => (features, logits),
        }
    }

    /// The logits the same network's last layer gives on other penultimate features (divided by this pass's
    /// temperature, as `forward`'s): for detectors that change the features.
    pub fn head(&self, model: &Model, features: &Tensor) -> Tensor {
        let logits = match &self.feature_mask {
            Some(m) => model.head(&(features * m)),
            None => model.head(features),
        };
        match self.temperature {
            Some(t) => logits / t,
            None => logits,
        }
    }

    /// `run` through `pass` with gradients on, on a copy of `xs` that requires its gradient, the graph kept for
    /// `input_grad`. The logits and features are the bytes a no-grad pass gives (tests/detectors.rs holds it).
    pub fn with_graph(xs: &Tensor, pass: impl FnOnce(&Tensor) -> Result<Option<Pass>>) -> Result<Option<Pass>> {
        let input = xs.detach().set_requires_grad(true);
        let p = tch::with_grad(|| pass(&input))?;
        Ok(p.map(|p| Pass {
            logits: p.logits.detach(),
            features: p.features.detach(),
            gates: p.gates,
            temperature: p.temperature,
            feature_mask: p.feature_mask,
            graph: Some(Graph { input, features: p.features, logits: p.logits }),
            shared: Default::default(),
        }))
    }

    /// The gradient with respect to the images `xs` of the scalar `loss(features, logits)` of this route's network.
    /// A pass with its graph reuses its own forward (one backward, no forward); otherwise it runs one forward.
    pub fn input_grad(
        &self,
        model: &Model,
        xs: &Tensor,
        loss: impl FnOnce(&Tensor, &Tensor) -> Tensor,
    ) -> Result<Tensor> {
        tch::with_grad(|| match &self.graph {
            Some(g) => model.input_grad(&loss(&g.features, &g.logits), &g.input, true),
            None => {
                let x = xs.detach().set_requires_grad(true);
                let (f, l) = self.forward(model, &x);
                model.input_grad(&loss(&f, &l), &x, false)
            }
        })
    }
}

/// A way through the network. `pass` gets the batch and the full model's pass over it (computed once per batch and
/// shared by every route), and returns its own pass.
pub trait Route {
    fn kind(&self) -> RouteKind;
    /// The route's pass over `xs` (no gradient), given the full model's pass `full` over the same images.
    fn pass(&self, model: &Model, xs: &Tensor, full: &Pass) -> Result<Option<Pass>>;
    /// The route's pass with the class it routes by fixed to `classes` (`[B]`) instead of the full model's prediction:
    /// the adaptive attack's stand-in for that piecewise-constant choice (it steers each image to a class and attacks
    /// that class's route, which is the route the image takes once the full model predicts the class). Default: `pass`
    /// (routes that pick no mask by the predicted class).
    fn pass_as(&self, model: &Model, xs: &Tensor, full: &Pass, _classes: &Tensor) -> Result<Option<Pass>> {
        self.pass(model, xs, full)
    }
}

/// Each image's path on a route with per-image paths (`cdrp`, `nnd`): the route's gates `[N, units]` over `images`
/// in batches of `batch`, without gradients; a route without per-image paths is an error naming it.
pub fn image_paths(model: &Model, route: &dyn Route, images: &Tensor, batch: i64) -> Result<Tensor> {
    let _guard = tch::no_grad_guard();
    let n = images.size()[0];
    let mut parts = Vec::new();
    for start in (0..n).step_by(batch.max(1) as usize) {
        let xs = images.narrow(0, start, batch.min(n - start)).to_device(model.device());
        let full = Pass::run(model, &xs, None);
        let pass = route.pass(model, &xs, &full)?;
        let gates = pass.and_then(|p| p.gates).ok_or_else(|| {
            Error::Model(format!("route {} has no per-image paths (the cdrp and nnd routes have)", route.kind()))
        })?;
        parts.push(gates);
    }
    match parts.is_empty() {
        true => Err(Error::Missing(format!("route {}: no images to take paths of", route.kind()))),
        false => Ok(Tensor::cat(&parts, 0)),
    }
}

/// The mean row of `values` (`[N, D]`, in double precision) of each class `0..classes` by `labels` (`[N]`); `None`
/// for a class with no row.
pub fn class_means(values: &Tensor, labels: &Tensor, classes: i64) -> Vec<Option<Tensor>> {
    let values = values.to_kind(tch::Kind::Double);
    let labels = labels.to_device(values.device());
    (0..classes)
        .map(|c| {
            let idx = labels.eq(c).nonzero().squeeze_dim(1);
            (idx.size()[0] > 0).then(|| values.index_select(0, &idx).mean_dim([0].as_slice(), false, tch::Kind::Double))
        })
        .collect()
}

/// The route `kind`, checked against the model and the resources it needs (an error names what is missing).
pub fn build<'a>(kind: RouteKind, model: &Model, res: Resources<'a>) -> Result<Box<dyn Route + 'a>> {
    Ok(match kind {
        RouteKind::Full => Box::new(full::Full),
        RouteKind::Subnet => Box::new(subnet::ClassSubnet::new(model, res.subnets)?),
        RouteKind::Subspace => Box::new(subspace::Subspace::new(model, res.subspaces)?),
        RouteKind::Csg => Box::new(csg::ClassGates::new(model, false)?),
        RouteKind::CsgBinary => Box::new(csg::ClassGates::new(model, true)?),
        RouteKind::Cdrp => Box::new(cdrp::Cdrp::new(model, res.cdrp_paths)?),
        RouteKind::Nnd => Box::new(nnd::NndRoute::new(res.nnd)?),
        RouteKind::RandomMask => Box::new(random_mask::RandomMask::new(model, res.subnets)?),
        RouteKind::UnionMask => Box::new(union_mask::UnionMask::new(model, res.subnets)?),
        RouteKind::WrongClass => Box::new(wrong_class::WrongClass::new(model, res.subnets)?),
        RouteKind::Temperature => Box::new(temperature::Temperature::new(res.temperature)?),
        RouteKind::SecondModel => Box::new(second_model::SecondModel::new(model, res.second)?),
    })
}
