//! Adversarial-example detectors behind one `Detector` trait: confidence scores of whatever route an image took (the
//! full model, the class subnetwork of Wang, Hu, Su, arXiv 1910.02673, ...), and feature-based baselines
//! fitted on clean training images. `eval` runs each route once per batch and hands its pass to every detector.
pub mod disagree;
pub mod energy;
pub mod entropy;
pub mod gen;
pub mod kdbu;
pub mod kl;
pub mod lid;
pub mod mahalanobis;
pub mod margin;
pub mod maxlogit;
pub mod msp;
pub mod odin;
pub mod path_dist;
pub mod react;
pub mod squeeze;
pub mod supervised;
use crate::data::{Dataset, Split};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::routes::{Pass, Resources, RouteKind};
use tch::{Device, Kind, Tensor};

/// The detectors, by name (the results' `detector` column; suite files and `--detectors` name them so).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DetectorKind {
    Msp,
    Entropy,
    Margin,
    Odin,
    Kl,
    Disagree,
    Mahalanobis,
    Lid,
    Kdbu,
    Energy,
    Maxlogit,
    Gen,
    React,
    Squeeze,
    #[serde(rename = "path-class-dist")]
    PathClassDist,
    #[serde(rename = "mahalanobis-sup")]
    MahalanobisSup,
    #[serde(rename = "lid-sup")]
    LidSup,
    #[serde(rename = "kdbu-sup")]
    KdbuSup,
    #[serde(rename = "path-rf")]
    PathRf,
}

impl DetectorKind {
    pub const ALL: [DetectorKind; 19] = [
        DetectorKind::Msp,
        DetectorKind::Entropy,
        DetectorKind::Margin,
        DetectorKind::Odin,
        DetectorKind::Kl,
        DetectorKind::Disagree,
        DetectorKind::Mahalanobis,
        DetectorKind::Lid,
        DetectorKind::Kdbu,
        DetectorKind::Energy,
        DetectorKind::Maxlogit,
        DetectorKind::Gen,
        DetectorKind::React,
        DetectorKind::Squeeze,
        DetectorKind::PathClassDist,
        DetectorKind::MahalanobisSup,
        DetectorKind::LidSup,
        DetectorKind::KdbuSup,
        DetectorKind::PathRf,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DetectorKind::Msp => "msp",
            DetectorKind::Entropy => "entropy",
            DetectorKind::Margin => "margin",
            DetectorKind::Odin => "odin",
            DetectorKind::Kl => "kl",
            DetectorKind::Disagree => "disagree",
            DetectorKind::Mahalanobis => "mahalanobis",
            DetectorKind::Lid => "lid",
            DetectorKind::Kdbu => "kdbu",
            DetectorKind::Energy => "energy",
            DetectorKind::Maxlogit => "maxlogit",
            DetectorKind::Gen => "gen",
            DetectorKind::React => "react",
            DetectorKind::Squeeze => "squeeze",
            DetectorKind::PathClassDist => "path-class-dist",
            DetectorKind::MahalanobisSup => "mahalanobis-sup",
            DetectorKind::LidSup => "lid-sup",
            DetectorKind::KdbuSup => "kdbu-sup",
            DetectorKind::PathRf => "path-rf",
        }
    }

    /// What the detector reads: "confidence" (one route's output: its softmax or logits, ODIN's after a gradient
    /// step), "two-network" (the route's output against the full model's), "feature" (penultimate features, fitted
    /// on clean training images), "squeezing" (the route's output on the input against squeezed copies), "path"
    /// (per-input routing paths) or "supervised" (fitted on a training attack's adversarial examples too).
    pub fn family(self) -> &'static str {
        match self {
            DetectorKind::Msp
            | DetectorKind::Entropy
            | DetectorKind::Margin
            | DetectorKind::Odin
            | DetectorKind::Energy
            | DetectorKind::Maxlogit
            | DetectorKind::Gen => "confidence",
            DetectorKind::Kl | DetectorKind::Disagree => "two-network",
            DetectorKind::Mahalanobis | DetectorKind::Lid | DetectorKind::Kdbu | DetectorKind::React => "feature",
            DetectorKind::Squeeze => "squeezing",
            DetectorKind::PathClassDist => "path",
            DetectorKind::MahalanobisSup | DetectorKind::LidSup | DetectorKind::KdbuSup | DetectorKind::PathRf => {
                "supervised"
            }
        }
    }
}

impl std::fmt::Display for DetectorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for DetectorKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        DetectorKind::ALL.into_iter().find(|d| d.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = DetectorKind::ALL.iter().map(|d| d.as_str()).collect();
            Error::config("detector", s, format!("expected one of {}", names.join(", ")))
        })
    }
}

/// What a detector scores a batch from: the images (on the model's device, f32), the full model's pass over them
/// and the pass of the route being scored (the same pass when the route is the full model).
pub struct View<'a> {
    pub model: &'a Model,
    pub xs: &'a Tensor,
    pub full: &'a Pass,
    pub route: &'a Pass,
}

/// A detector: one score per image, higher = more likely adversarial (never a boolean, so a ROC curve exists).
/// It reads a route's output and never asks which route it is.
pub trait Detector {
    fn kind(&self) -> DetectorKind;
    fn name(&self) -> &'static str {
        self.kind().as_str()
    }
    /// Whether it scores images on `route` (default: every route).
    fn runs_on(&self, _route: RouteKind) -> bool {
        true
    }
    /// The routes of `asked` it scores on, in order; never a route through another network when it takes the input
    /// gradient (that route's pass cannot re-run its network on perturbed inputs).
    fn routes_of(&self, asked: &[RouteKind]) -> Vec<RouteKind> {
        asked.iter().copied().filter(|&r| self.runs_on(r) && !(r.other_network() && self.wants_input_grad())).collect()
    }
    /// Whether `fit` does anything (so callers load training images only when needed).
    fn needs_fit(&self) -> bool {
        false
    }
    /// Fit on clean held-out training images (never test images, never adversarial ones); `res` gives the routes it
    /// reads what they need. Default: no fitting.
    fn fit(&mut self, _model: &Model, _clean: &Dataset, _res: Resources) -> Result<()> {
        Ok(())
    }
    /// Whether it is fitted on adversarial examples too (`fit_supervised`, after `fit`): the results name the attack
    /// it was trained on, and which attacks it has seen.
    fn supervised(&self) -> bool {
        false
    }
    /// Fit on clean held-out training images `clean` (never test images) and their versions `adversarial` under the
    /// suite's training attack (`eval::supervised_split` says which images). Default: nothing to fit.
    fn fit_supervised(
        &mut self,
        _model: &Model,
        _clean: &Dataset,
        _adversarial: &Tensor,
        _res: Resources,
    ) -> Result<()> {
        Ok(())
    }
    /// Whether its fit depends on the one route it reads (per-image paths): a suite then builds one per route
    /// (`for_route`), each fitted on its route's passes.
    fn fits_per_route(&self) -> bool {
        false
    }
    /// Binds a detector that `fits_per_route` to `route`: it fits on and scores that route only.
    fn for_route(&mut self, _route: RouteKind) {}
    /// What the supervised fit chose and saw, for the run's log (`None`: nothing to say).
    fn fit_note(&self) -> Option<String> {
        None
    }
    /// Whether `score` has an input gradient the adaptive attack can descend (not a forest's votes).
    fn differentiable(&self) -> bool {
        true
    }
    /// Whether `score` takes the input gradient of the route's network (`Pass::input_grad`): `eval` then runs the
    /// route's pass with its graph, so the gradient reuses that forward.
    fn wants_input_grad(&self) -> bool {
        false
    }
    /// One score per image of the batch, `[batch]` (any float kind, any device); `eval` checks that each is finite.
    fn score(&self, v: &View) -> Result<Tensor>;
    /// The stand-in the adaptive attack descends instead of `score` when steering image i to class `steer[i]`, in
    /// the score's units, where `score`'s own gradient misleads: an upper bound that keeps the image in that class
    /// (Mahalanobis), or the same values with a usable gradient (BPDA for squeezing). `None`: the attack descends
    /// `score`. The attack always judges evasion by `score`.
    fn attack_score(&self, _v: &View, _steer: &Tensor) -> Option<Result<Tensor>> {
        None
    }
}

/// Every detector's parameters; `Default` holds the published values (see each detector's config).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    pub odin: odin::OdinConfig,
    pub mahalanobis: mahalanobis::MahalanobisConfig,
    pub lid: lid::LidConfig,
    pub kdbu: kdbu::KdbuConfig,
    pub energy: energy::EnergyConfig,
    pub gen: gen::GenConfig,
    pub react: react::ReactConfig,
    pub squeeze: squeeze::SqueezeConfig,
    /// How many clean held-out training images the fitted detectors use (the last `fit_size` of the training split).
    pub fit_size: usize,
    /// Seed of the detectors' own randomness (the MC-dropout masks of KD+BU).
    pub seed: u64,
    /// Per-class normalisation (suites only): each score z-scored within the full model's predicted class, with the
    /// statistics of the same detector and route on the clean held-out fit images (`eval::ClassStats`). The detectors
    /// fitted on those images (Mahalanobis, LID, KD+BU, ReAct) keep their raw scores: their fit-image scores are
    /// in-sample.
    pub class_normalise: bool,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            odin: Default::default(),
            mahalanobis: Default::default(),
            lid: Default::default(),
            kdbu: Default::default(),
            energy: Default::default(),
            gen: Default::default(),
            react: Default::default(),
            squeeze: Default::default(),
            fit_size: 5000,
            seed: 0,
            class_normalise: false,
        }
    }
}

impl DetectorConfig {
    pub fn validate(&self) -> Result<()> {
        self.odin.validate()?;
        self.mahalanobis.validate()?;
        self.lid.validate()?;
        self.kdbu.validate()?;
        self.energy.validate()?;
        self.gen.validate()?;
        self.react.validate()?;
        self.squeeze.validate()?;
        if self.fit_size < 20 {
            return Err(Error::config("fit_size", self.fit_size, "needs at least 20 clean training images"));
        }
        Ok(())
    }
}

/// The detector `kind` with its parameters from `cfg` (validated).
pub fn build(kind: DetectorKind, cfg: &DetectorConfig) -> Result<Box<dyn Detector>> {
    cfg.validate()?;
    Ok(match kind {
        DetectorKind::Msp => Box::new(msp::Msp),
        DetectorKind::Entropy => Box::new(entropy::Entropy),
        DetectorKind::Margin => Box::new(margin::Margin),
        DetectorKind::Odin => Box::new(odin::Odin::new(cfg.odin.clone())),
        DetectorKind::Kl => Box::new(kl::Kl),
        DetectorKind::Disagree => Box::new(disagree::Disagree),
        DetectorKind::Mahalanobis => Box::new(mahalanobis::Mahalanobis::new(cfg.mahalanobis.clone(), cfg.fit_size)),
        DetectorKind::Lid => Box::new(lid::Lid::new(cfg.lid.clone(), cfg.fit_size)),
        DetectorKind::Kdbu => Box::new(kdbu::KdBu::new(cfg.kdbu.clone(), cfg.fit_size, cfg.seed)),
        DetectorKind::Energy => Box::new(energy::Energy::new(cfg.energy.clone())),
        DetectorKind::Maxlogit => Box::new(maxlogit::MaxLogit),
        DetectorKind::Gen => Box::new(gen::Gen::new(cfg.gen.clone())),
        DetectorKind::React => Box::new(react::React::new(cfg.react.clone(), cfg.fit_size)),
        DetectorKind::Squeeze => Box::new(squeeze::Squeeze::new(cfg.squeeze.clone())),
        DetectorKind::PathClassDist => Box::new(path_dist::PathClassDist::new(cfg.fit_size)),
        DetectorKind::MahalanobisSup => Box::new(supervised::Supervised::new(
            kind,
            Box::new(supervised::MahalanobisLayers::new(cfg.mahalanobis.clone())),
            supervised::Learner::Logistic,
        )),
        DetectorKind::LidSup => Box::new(supervised::Supervised::new(
            kind,
            Box::new(supervised::LidLayers::new(&cfg.lid)),
            supervised::Learner::Logistic,
        )),
        DetectorKind::KdbuSup => Box::new(supervised::Supervised::new(
            kind,
            Box::new(supervised::KdBuPair(kdbu::KdBu::new(cfg.kdbu.clone(), cfg.fit_size, cfg.seed))),
            supervised::Learner::Logistic,
        )),
        DetectorKind::PathRf => Box::new(supervised::Supervised::new(
            kind,
            Box::new(supervised::PathGates::default()),
            supervised::Learner::Forest { trees: supervised::FOREST_TREES, seed: cfg.seed },
        )),
    })
}

/// A detector by name (`build` after parsing the name).
pub fn by_name(name: &str, cfg: &DetectorConfig) -> Result<Box<dyn Detector>> {
    build(name.parse()?, cfg)
}

/// A score tensor as f64 on the CPU; a NaN or infinite score is an error naming the detector and the image.
pub fn finite_scores(name: &str, scores: &Tensor) -> Result<Vec<f64>> {
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

#[cfg(test)]
mod tests {
    use super::DetectorKind;

    #[test]
    fn every_detector_has_one_of_the_six_families() {
        let of = |f: &str| -> Vec<&str> {
            DetectorKind::ALL.iter().filter(|k| k.family() == f).map(|k| k.as_str()).collect()
        };
        assert_eq!(of("confidence"), ["msp", "entropy", "margin", "odin", "energy", "maxlogit", "gen"]);
        assert_eq!(of("two-network"), ["kl", "disagree"]);
        assert_eq!(of("feature"), ["mahalanobis", "lid", "kdbu", "react"]);
        assert_eq!(of("squeezing"), ["squeeze"]);
        assert_eq!(of("path"), ["path-class-dist"]);
        assert_eq!(of("supervised"), ["mahalanobis-sup", "lid-sup", "kdbu-sup", "path-rf"]);
        let families = ["confidence", "two-network", "feature", "squeezing", "path", "supervised"];
        assert!(DetectorKind::ALL.iter().all(|k| families.contains(&k.family())));
    }
}
