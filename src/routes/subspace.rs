//! Class-specific filter subsets (Badola, Roy, Padmanabhan, Lal, "Decomposing the deep: finding class specific filters
//! in deep CNNs", arXiv 2112.07719). Over clean training images, each image's k largest penultimate features (the
//! last block's globally pooled channels on ResNet-20, the hidden fully connected units on LeNet and VGG-small) are
//! counted per class; the k indices a class's images pick most often form its subset S_c. The decomposed head computes
//! `logit_c = sum over j in S_c of W[c, j] x_j + b_c`. Route `subspace`: the full model's penultimate features masked to
//! the predicted class's S_c, then the last layer (a feature-level subnetwork). The paper also fine-tunes the
//! decomposed head with the rest frozen; advdet does not (the route reads the full model's own last layer).
use super::{Pass, Route, RouteKind};
use crate::error::{Error, Result};
use crate::models::Model;
use tch::{Device, Kind, Tensor};

/// The paper's k for ResNet-20 (64 pooled channels); the suites may set another (`[subspace] k`).
pub const DEFAULT_K: usize = 5;

/// One filter subset per class.
#[derive(Debug)]
pub struct Subspaces {
    pub k: usize,
    /// `members[c]`: the k feature indices of class c, ascending.
    pub members: Vec<Vec<usize>>,
    /// `[classes, D]` (float, on the model's device): 1 on a class's members, else 0.
    pub masks: Tensor,
}

/// The indices of the `k` largest values of `row`, ties to the lower index, in that order.
pub fn top_k(row: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// Per class, the `k` indices that appear most often among its samples' top-k features (`features` row-major
/// `[n, width]`, `labels[i]` in `0..classes`), ties to the lower index; each subset is returned ascending. A class
/// whose samples name fewer than k distinct indices is filled up with never-named ones, lowest first. Errors on k of 0
/// or above the width, and on a class with no samples.
pub fn class_subsets(
    features: &[f32],
    width: usize,
    labels: &[i64],
    classes: usize,
    k: usize,
) -> Result<Vec<Vec<usize>>> {
    if k == 0 || k > width {
        return Err(Error::config("subspace.k", k, format!("must be between 1 and the {width} penultimate features")));
    }
    if features.len() != labels.len() * width {
        return Err(Error::Model(format!(
            "{} feature values for {} labels of width {width}",
            features.len(),
            labels.len()
        )));
    }
    let mut counts = vec![vec![0usize; width]; classes];
    for (row, &y) in features.chunks(width).zip(labels) {
        let c = usize::try_from(y)
            .ok()
            .filter(|&c| c < classes)
            .ok_or_else(|| Error::Model(format!("label {y} outside the {classes} classes of the filter subsets")))?;
        for j in top_k(row, k) {
            counts[c][j] += 1;
        }
    }
    let mut seen = vec![false; classes];
    for &y in labels {
        seen[y as usize] = true;
    }
    if let Some(c) = seen.iter().position(|s| !s) {
        return Err(Error::Missing(format!("class {c} has no fitting image to choose its filter subset from")));
    }
    Ok(counts
        .iter()
        .map(|cnt| {
            let mut idx: Vec<usize> = (0..width).collect();
            idx.sort_by(|&a, &b| cnt[b].cmp(&cnt[a]).then(a.cmp(&b)));
            idx.truncate(k);
            idx.sort_unstable();
            idx
        })
        .collect())
}

impl Subspaces {
    /// The subsets of the given members (each of `width` features) as masks on `device`.
    pub fn new(k: usize, members: Vec<Vec<usize>>, width: usize, device: Device) -> Subspaces {
        let mut flat = vec![0f32; members.len() * width];
        for (c, m) in members.iter().enumerate() {
            for &j in m {
                flat[c * width + j] = 1.0;
            }
        }
        let masks = Tensor::from_slice(&flat).view([members.len() as i64, width as i64]).to_device(device);
        Subspaces { k, members, masks }
    }

    /// The subsets of `model` from clean training `images` and their `labels` (no gradient, eval mode, in batches).
    pub fn fit(model: &Model, images: &Tensor, labels: &Tensor, k: usize, batch_size: i64) -> Result<Subspaces> {
        let features = penultimate(model, images, batch_size)?;
        let width = features.size().get(1).copied().unwrap_or(0) as usize;
        let flat = Vec::<f32>::try_from(features.to_kind(Kind::Float).flatten(0, -1))?;
        let labels = Vec::<i64>::try_from(labels.to_kind(Kind::Int64))?;
        let members = class_subsets(&flat, width, &labels, model.num_classes() as usize, k)?;
        Ok(Subspaces::new(k, members, width, model.device()))
    }

    /// The decomposed head's logits on penultimate `features` `[B, D]`: column c is the model's last layer on the
    /// features masked to S_c, read at class c (`[B, classes]`). With every S_c the whole feature set it is the model's
    /// own head.
    pub fn decomposed_logits(&self, model: &Model, features: &Tensor) -> Tensor {
        let cols: Vec<Tensor> =
            (0..self.members.len() as i64).map(|c| model.head(&(features * self.masks.get(c))).select(1, c)).collect();
        Tensor::stack(&cols, 1)
    }

    /// The accuracy on `images` with `labels` of the decomposed head and of the model's own head, in that order.
    pub fn decomposed_accuracy(
        &self,
        model: &Model,
        images: &Tensor,
        labels: &Tensor,
        batch_size: i64,
    ) -> Result<(f64, f64)> {
        let features = penultimate(model, images, batch_size)?;
        let _guard = tch::no_grad_guard();
        let labels = labels.to_kind(Kind::Int64);
        let accuracy = |logits: Tensor| -> Result<f64> {
            let pred = logits.argmax(-1, false).to_device(Device::Cpu);
            let hits = i64::try_from(pred.eq_tensor(&labels).sum(Kind::Int64))?;
            Ok(hits as f64 / labels.size()[0].max(1) as f64)
        };
        Ok((accuracy(self.decomposed_logits(model, &features))?, accuracy(model.head(&features))?))
    }
}

/// The full model's penultimate features of `images`, `[n, D]`.
fn penultimate(model: &Model, images: &Tensor, batch_size: i64) -> Result<Tensor> {
    let _guard = tch::no_grad_guard();
    let n = images.size()[0];
    let parts: Vec<Tensor> = (0..n)
        .step_by(batch_size.max(1) as usize)
        .map(|s| {
            let xs = images.narrow(0, s, batch_size.min(n - s)).to_device(model.device()).to_kind(Kind::Float);
            model.forward_eval(&xs, None).0
        })
        .collect();
    if parts.is_empty() {
        return Err(Error::Missing("the filter subsets need clean training images to fit on".into()));
    }
    Ok(Tensor::cat(&parts, 0))
}

pub struct Subspace<'a> {
    s: &'a Subspaces,
}

impl<'a> Subspace<'a> {
    pub fn new(model: &Model, subspaces: Option<&'a Subspaces>) -> Result<Self> {
        let s = subspaces.ok_or_else(|| {
            Error::Missing("the subspace mode needs the class filter subsets, fitted on clean training images".into())
        })?;
        if s.members.len() as i64 != model.num_classes() {
            return Err(Error::Model(format!(
                "{} filter subsets for a model of {} classes",
                s.members.len(),
                model.num_classes()
            )));
        }
        let width = s.masks.size().get(1).copied().unwrap_or(0);
        if width != model.arch.feature_width() {
            return Err(Error::Model(format!(
                "filter subsets of {width} features for arch {} ({} penultimate features)",
                model.arch,
                model.arch.feature_width()
            )));
        }
        Ok(Subspace { s })
    }
}

impl Route for Subspace<'_> {
    fn kind(&self) -> RouteKind {
        RouteKind::Subspace
    }
    /// Its own forward (a detector taking the input gradient needs a graph through the mask).
    fn pass(&self, model: &Model, xs: &Tensor, full: &Pass) -> Result<Option<Pass>> {
        self.pass_as(model, xs, full, &full.logits.argmax(-1, false))
    }
    fn pass_as(&self, model: &Model, xs: &Tensor, _full: &Pass, classes: &Tensor) -> Result<Option<Pass>> {
        let mask = self.s.masks.index_select(0, &classes.to_device(self.s.masks.device()));
        Ok(Some(Pass::run_feature_masked(model, xs, mask)))
    }
}
