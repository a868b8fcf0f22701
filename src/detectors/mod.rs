//! Adversarial-example detectors behind one `Detector` trait: confidence scores with the full model or with the class
//! subnetwork (Wang, Su, Zhang, Hu, arXiv 1910.02673), and feature-based baselines fitted on clean training images.
pub mod disagree;
pub mod entropy;
pub mod kdbu;
pub mod kl;
pub mod lid;
pub mod mahalanobis;
pub mod margin;
pub mod msp;
pub mod odin;
mod protocol;

pub use protocol::{fit_split, protocol_sets, score_batched, ScoredSet};

use crate::data::{Dataset, Split};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::subnet::Subnets;
use tch::{Device, Kind, Tensor};

/// Which network scores an image: the full model, or the subnetwork of the class the full model predicts for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Full,
    Subnet,
}

impl Mode {
    pub const ALL: [Mode; 2] = [Mode::Full, Mode::Subnet];
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Subnet => "subnet",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "full" => Ok(Mode::Full),
            "subnet" => Ok(Mode::Subnet),
            _ => Err(Error::config("mode", s, "expected full or subnet")),
        }
    }
}

/// A detector: one score per image, higher = more likely adversarial (never a boolean, so a ROC curve exists).
pub trait Detector {
    /// "msp", "entropy", "margin", "odin", "kl", "disagree", "mahalanobis", "lid" or "kdbu".
    fn name(&self) -> &'static str;
    /// The modes it supports.
    fn modes(&self) -> &'static [Mode];
    /// Whether `fit` does anything (so callers load training images only when needed).
    fn needs_fit(&self) -> bool {
        false
    }
    /// Fit on clean held-out training images (never test images, never adversarial ones). Default: no fitting.
    fn fit(&mut self, _model: &Model, _clean: &Dataset) -> Result<()> {
        Ok(())
    }
    /// One score per image, higher = more likely adversarial, f64 `[batch]` on the CPU. `subnets` is required for
    /// `Mode::Subnet` and subnet-only detectors. In subnet mode each image goes through the subnetwork of the class the
    /// full model predicts for it, in one batched forward.
    fn score(&self, model: &Model, subnets: Option<&Subnets>, mode: Mode, xs: &Tensor) -> Result<Vec<f64>>;
}

pub const ALL_DETECTORS: [&str; 9] =
    ["msp", "entropy", "margin", "odin", "kl", "disagree", "mahalanobis", "lid", "kdbu"];

/// Every detector's parameters; `Default` holds the published values (see each detector's config).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    pub odin: odin::OdinConfig,
    pub mahalanobis: mahalanobis::MahalanobisConfig,
    pub lid: lid::LidConfig,
    pub kdbu: kdbu::KdbuConfig,
    pub disagree: disagree::DisagreeConfig,
    /// How many clean held-out training images the fitted detectors use (the last `fit_size` of the training split).
    pub fit_size: usize,
    /// Seed of the detectors' own randomness (the MC-dropout masks of KD+BU).
    pub seed: u64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            odin: Default::default(),
            mahalanobis: Default::default(),
            lid: Default::default(),
            kdbu: Default::default(),
            disagree: Default::default(),
            fit_size: 5000,
            seed: 0,
        }
    }
}

impl DetectorConfig {
    pub fn validate(&self) -> Result<()> {
        self.odin.validate()?;
        self.mahalanobis.validate()?;
        self.lid.validate()?;
        self.kdbu.validate()?;
        self.disagree.validate()?;
        if self.fit_size < 20 {
            return Err(Error::config("fit_size", self.fit_size, "needs at least 20 clean training images"));
        }
        Ok(())
    }
}

/// A detector by name, with its parameters from `cfg` (validated).
pub fn by_name(name: &str, cfg: &DetectorConfig) -> Result<Box<dyn Detector>> {
    cfg.validate()?;
    Ok(match name {
        "msp" => Box::new(msp::Msp),
        "entropy" => Box::new(entropy::Entropy),
        "margin" => Box::new(margin::Margin),
        "odin" => Box::new(odin::Odin::new(cfg.odin.clone())),
        "kl" => Box::new(kl::Kl),
        "disagree" => Box::new(disagree::Disagree::new(cfg.disagree.clone())),
        "mahalanobis" => Box::new(mahalanobis::Mahalanobis::new(cfg.mahalanobis.clone(), cfg.fit_size)),
        "lid" => Box::new(lid::Lid::new(cfg.lid.clone(), cfg.fit_size)),
        "kdbu" => Box::new(kdbu::KdBu::new(cfg.kdbu.clone(), cfg.fit_size, cfg.seed)),
        _ => return Err(Error::config("detector", name, format!("expected one of {}", ALL_DETECTORS.join(", ")))),
    })
}

/// Fails unless `mode` is one of the detector's modes and `xs` is a batch of images the model takes.
pub(crate) fn check_call(name: &str, modes: &[Mode], model: &Model, mode: Mode, xs: &Tensor) -> Result<()> {
    if !modes.contains(&mode) {
        let ok: Vec<&str> = modes.iter().map(|m| m.as_str()).collect();
        return Err(Error::config("mode", mode, format!("detector {name} supports only {}", ok.join(", "))));
    }
    let (c, h, w) = model.arch.input_shape();
    let size = xs.size();
    if size.len() != 4 || size[1..] != [c, h, w] {
        return Err(Error::Model(format!(
            "detector {name}: images of shape {size:?}, but arch {} takes [N, {c}, {h}, {w}]",
            model.arch
        )));
    }
    if !matches!(xs.kind(), Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16) {
        return Err(Error::Model(format!(
            "detector {name}: images of kind {:?}, expected floats in [0, 1]",
            xs.kind()
        )));
    }
    Ok(())
}

/// The subnetworks, or an error naming the detector when they are missing or do not fit the model.
pub(crate) fn need_subnets<'a>(name: &str, model: &Model, subnets: Option<&'a Subnets>) -> Result<&'a Subnets> {
    let s = subnets.ok_or_else(|| {
        Error::Missing(format!("detector {name} in subnet mode needs the class subnetworks (--subnets FILE)"))
    })?;
    if s.layout != *model.gate_layout() {
        return Err(Error::Model(format!(
            "detector {name}: the subnetworks' gate layout does not fit arch {} ({} vs {} units)",
            model.arch,
            s.layout.units(),
            model.gate_layout().units()
        )));
    }
    Ok(s)
}

/// Logits of the full model and, when `subnets` is given, of each image's predicted-class subnetwork (eval mode,
/// no gradients): `(full, subnet)`.
pub(crate) fn full_and_subnet_logits(
    model: &Model,
    subnets: Option<&Subnets>,
    xs: &Tensor,
) -> (Tensor, Option<Tensor>) {
    let _guard = tch::no_grad_guard();
    let full = model.logits(xs);
    let sub = subnets.map(|s| {
        let gates = s.gates_for(&full.argmax(-1, false)).to_device(model.device());
        model.net.forward(xs, Some(&gates), false)
    });
    (full, sub)
}

/// The logits a confidence detector reads in `mode` (after `check_call`).
pub(crate) fn mode_logits(
    name: &str,
    model: &Model,
    subnets: Option<&Subnets>,
    mode: Mode,
    xs: &Tensor,
) -> Result<Tensor> {
    let xs = xs.to_device(model.device()).to_kind(Kind::Float);
    Ok(match mode {
        Mode::Full => full_and_subnet_logits(model, None, &xs).0,
        Mode::Subnet => {
            let s = need_subnets(name, model, subnets)?;
            full_and_subnet_logits(model, Some(s), &xs).1.unwrap_or(Tensor::zeros([0], (Kind::Float, Device::Cpu)))
        }
    })
}

/// A score tensor as f64 on the CPU; a NaN or infinite score is an error naming the detector and the image.
pub(crate) fn finite_scores(name: &str, scores: &Tensor) -> Result<Vec<f64>> {
    let v = Vec::<f64>::try_from(scores.to_device(Device::Cpu).to_kind(Kind::Double).flatten(0, -1))?;
    if let Some((i, s)) = v.iter().enumerate().find(|(_, s)| !s.is_finite()) {
        return Err(Error::Model(format!("detector {name}: score {s} for image {i} of the batch is not finite")));
    }
    Ok(v)
}

/// Penultimate features and logits (f64, eval mode) and labels of the first `fit_size` images of `clean`, which must
/// come from the training split: detectors are never fitted on test images.
pub(crate) fn fit_features(
    name: &str,
    model: &Model,
    clean: &Dataset,
    fit_size: usize,
) -> Result<(Tensor, Tensor, Tensor)> {
    if clean.split != Split::Train {
        return Err(Error::config(
            "fit data",
            clean.split,
            format!("detector {name} is fitted on clean training images only, never on test images"),
        ));
    }
    let ds = clean.limit(fit_size);
    if ds.len() < 20 {
        return Err(Error::Missing(format!(
            "detector {name}: {} clean training images to fit on, need at least 20",
            ds.len()
        )));
    }
    let (c, h, w) = model.arch.input_shape();
    if ds.images.size()[1..] != [c, h, w] {
        return Err(Error::Model(format!(
            "detector {name}: fit images of shape {:?} do not fit arch {}",
            ds.images.size(),
            model.arch
        )));
    }
    let _guard = tch::no_grad_guard();
    let (feats, logits): (Vec<Tensor>, Vec<Tensor>) = ds
        .batches(500, model.device())
        .map(|(x, _)| {
            let (f, l) = model.net.forward_all(&x, None, false);
            (f.to_kind(Kind::Double), l.to_kind(Kind::Double))
        })
        .unzip();
    Ok((Tensor::cat(&feats, 0), Tensor::cat(&logits, 0), ds.labels.to_device(model.device())))
}

/// An error for a fitted detector scored before `fit`.
pub(crate) fn not_fitted(name: &str) -> Error {
    Error::Missing(format!("detector {name} is not fitted: call fit with clean training images first"))
}
