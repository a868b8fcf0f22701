//! Class-specific gates learned in training (CSG-CNN: Liang, Wang, Hu, Zhang, "Training interpretable convolutional
//! neural networks by differentiating class-specific filters", ECCV 2020, arXiv 2007.08194). A gate matrix G
//! `[channels, classes]`, initialised to 0.5, scales the last conv block's output channels (the site: the last conv
//! layer of the gate layout, before pooling and the classifier; channel scaling by a non-negative gate commutes with
//! ReLU and max pooling). Training alternates whole epochs between the standard path (plain cross-entropy) and the
//! gated path (each image's channels multiplied by G[:, label]; loss cross-entropy + `SPARSITY_WEIGHT` *
//! relu(|G|_1 - `SPARSITY_RATIO` * numel(G))); after every gated step each channel's row is divided by its maximum over
//! the classes and clamped to [0, 1] (`normalise_`). The matrix is saved beside the checkpoint (`gates_path`), so the
//! weights file stays a plain `state_dict`.
use super::GateLayout;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// The weight of the sparsity term (the reference code's value).
pub const SPARSITY_WEIGHT: f64 = 1e-3;
/// The L1 budget of G as a fraction of its entries (the reference code's value).
pub const SPARSITY_RATIO: f64 = 0.2;
/// Every gate at initialisation.
pub const INIT: f64 = 0.5;
/// `csg-binary` keeps a channel for a class when its gate is above this.
pub const BINARY_THRESHOLD: f64 = 0.5;

/// The index of the gated layer in `layout` (its last conv layer) and its column span.
pub fn site(layout: &GateLayout) -> Result<(usize, (i64, i64))> {
    let i = layout
        .layers
        .iter()
        .rposition(|l| l.is_conv())
        .ok_or_else(|| Error::Model("class-specific gates need a conv layer to gate".into()))?;
    Ok((i, layout.spans()[i]))
}

/// A fresh gate matrix for `layout` and `classes`: every entry `INIT`.
pub fn init(layout: &GateLayout, classes: i64, device: Device) -> Result<Tensor> {
    let (_, (_, width)) = site(layout)?;
    Ok(Tensor::full([width, classes], INIT, (Kind::Float, device)))
}

/// Per-image gates `[B, units]` for the model's forward: 1 everywhere but the site, whose columns are
/// `g[:, classes[b]]` (`g` `[channels, classes]`, `classes` `[B]`). Gradients flow into `g`.
pub fn per_image(g: &Tensor, layout: &GateLayout, classes: &Tensor) -> Result<Tensor> {
    let (_, (off, width)) = site(layout)?;
    let b = classes.size()[0];
    let opts = (g.kind(), g.device());
    let own = g.index_select(1, &classes.to_device(g.device())).transpose(0, 1);
    let rest = layout.units() - off - width;
    Ok(Tensor::cat(&[Tensor::ones([b, off], opts), own, Tensor::ones([b, rest], opts)], 1))
}

/// The sparsity term `SPARSITY_WEIGHT * relu(|g|_1 - SPARSITY_RATIO * numel(g))`: zero while the matrix is within
/// its L1 budget.
pub fn sparsity_loss(g: &Tensor) -> Tensor {
    let budget = SPARSITY_RATIO * g.numel() as f64;
    (g.abs().sum(Kind::Float) - budget).relu() * SPARSITY_WEIGHT
}

/// The step after every gated update, in place: each row divided by its maximum over the classes, then clamped to
/// [0, 1]; a row whose maximum is not positive is set to 0.
pub fn normalise_(g: &mut Tensor) {
    let _guard = tch::no_grad_guard();
    let max = g.amax([1].as_slice(), true);
    let positive = max.gt(0.0);
    let scaled = (&*g / max.clamp_min(f64::MIN_POSITIVE)).clamp(0.0, 1.0);
    let new = scaled.where_self(&positive, &Tensor::zeros_like(&scaled));
    g.copy_(&new);
}

/// The binary gates of `csg-binary`: 1 where `g > BINARY_THRESHOLD`.
pub fn binary(g: &Tensor) -> Tensor {
    g.gt(BINARY_THRESHOLD).to_kind(g.kind())
}

/// Where the gate matrix of the checkpoint `weights` is kept: `<stem>.csg.safetensors`.
pub fn gates_path(weights: &Path) -> PathBuf {
    weights.with_extension("csg.safetensors")
}

pub fn save(g: &Tensor, weights: &Path) -> Result<()> {
    let path = gates_path(weights);
    crate::io::write_atomic(&path, |tmp| {
        Tensor::write_safetensors(&[("gates", g.to_device(Device::Cpu))], tmp)
            .map_err(|e| Error::format(&path, format!("cannot write: {e}")))
    })
}

/// The gate matrix saved beside `weights`, if any, checked against the layout and the class count.
pub fn load(weights: &Path, layout: &GateLayout, classes: i64, device: Device) -> Result<Option<Tensor>> {
    let path = gates_path(weights);
    if !path.is_file() {
        return Ok(None);
    }
    let named = Tensor::read_safetensors(&path)
        .map_err(|e| Error::format(&path, format!("not a readable .safetensors file: {e}")))?;
    let g = named
        .into_iter()
        .find(|(n, _)| n == "gates")
        .map(|(_, t)| t)
        .ok_or_else(|| Error::format(&path, "no tensor `gates`"))?;
    let (_, (_, width)) = site(layout)?;
    if g.size() != [width, classes] {
        return Err(Error::format(
            &path,
            format!("gates of shape {:?}, the model needs [{width}, {classes}]", g.size()),
        ));
    }
    let v = Vec::<f32>::try_from(g.to_kind(Kind::Float).flatten(0, -1))?;
    if v.iter().any(|x| !(0.0..=1.0).contains(x)) {
        return Err(Error::format(&path, "gates outside [0, 1]"));
    }
    Ok(Some(g.to_kind(Kind::Float).to_device(device)))
}

/// How class-specific a gate matrix is: per channel (row), the largest class's share of the row's sum and the entropy
/// (nats) of the row normalised to sum 1; a zero row has share and entropy NaN and is left out of the means.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Specificity {
    /// Mean over live channels of the largest class share (1: one class per channel; 1/classes: shared evenly).
    pub mean_max_share: f64,
    /// Mean over live channels of the row entropy (0: one class; ln(classes): even).
    pub mean_entropy: f64,
    pub max_share: Vec<f64>,
    pub entropy: Vec<f64>,
    /// Channels with a zero row (gated off for every class).
    pub dead_channels: usize,
    /// Fraction of entries above `BINARY_THRESHOLD` (what `csg-binary` keeps).
    pub kept_fraction: f64,
}

pub fn specificity(g: &Tensor) -> Result<Specificity> {
    let rows = Vec::<Vec<f64>>::try_from(g.to_kind(Kind::Double).to_device(Device::Cpu))?;
    let (mut max_share, mut entropy, mut dead, mut kept, mut n) = (Vec::new(), Vec::new(), 0, 0usize, 0usize);
    for r in &rows {
        let s: f64 = r.iter().sum();
        n += r.len();
        kept += r.iter().filter(|&&x| x > BINARY_THRESHOLD).count();
        if s <= 0.0 {
            dead += 1;
            max_share.push(f64::NAN);
            entropy.push(f64::NAN);
            continue;
        }
        max_share.push(r.iter().cloned().fold(f64::MIN, f64::max) / s);
        entropy.push(-r.iter().filter(|&&x| x > 0.0).map(|&x| (x / s) * (x / s).ln()).sum::<f64>());
    }
    let mean = |v: &[f64]| {
        let live: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
        live.iter().sum::<f64>() / live.len().max(1) as f64
    };
    Ok(Specificity {
        mean_max_share: mean(&max_share),
        mean_entropy: mean(&entropy),
        max_share,
        entropy,
        dead_channels: dead,
        kept_fraction: kept as f64 / n.max(1) as f64,
    })
}

/// Per-class clean accuracy of the three ways a CSG model can run: the full path, the gated path with each image's
/// true label's gates (the training-time path: an oracle), and the gated path with the full path's predicted class's
/// gates (the `csg` route).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PathAccuracy {
    pub full: Vec<f64>,
    pub by_label: Vec<f64>,
    pub by_prediction: Vec<f64>,
}

pub fn path_accuracy(model: &super::Model, images: &Tensor, labels: &Tensor, batch_size: i64) -> Result<PathAccuracy> {
    let g = model.csg.as_ref().ok_or_else(|| Error::Model("the model has no class-specific gates".into()))?;
    let _guard = tch::no_grad_guard();
    let classes = model.num_classes() as usize;
    let n = images.size()[0];
    let (mut hits, mut total) =
        ([vec![0usize; classes], vec![0usize; classes], vec![0usize; classes]], vec![0; classes]);
    for s in (0..n).step_by(batch_size.max(1) as usize) {
        let len = batch_size.min(n - s);
        let xs = images.narrow(0, s, len).to_device(model.device()).to_kind(Kind::Float);
        let ys = labels.narrow(0, s, len).to_device(model.device()).to_kind(Kind::Int64);
        let full = model.forward_eval(&xs, None).1.argmax(-1, false);
        let by_label = model.forward_eval(&xs, Some(&per_image(g, model.gate_layout(), &ys)?)).1.argmax(-1, false);
        let by_pred = model.forward_eval(&xs, Some(&per_image(g, model.gate_layout(), &full)?)).1.argmax(-1, false);
        let y = Vec::<i64>::try_from(ys.to_device(Device::Cpu))?;
        for (k, pred) in [full, by_label, by_pred].iter().enumerate() {
            let p = Vec::<i64>::try_from(pred.to_device(Device::Cpu))?;
            for (a, b) in p.iter().zip(&y) {
                hits[k][*b as usize] += (a == b) as usize;
            }
        }
        for b in &y {
            total[*b as usize] += 1;
        }
    }
    let rate = |h: &[usize]| h.iter().zip(&total).map(|(h, t)| *h as f64 / (*t).max(1) as f64).collect();
    Ok(PathAccuracy { full: rate(&hits[0]), by_label: rate(&hits[1]), by_prediction: rate(&hits[2]) })
}
