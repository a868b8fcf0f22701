//! Supervised detectors, fitted on clean held-out training images and their adversarial versions under one training
//! attack (`eval::supervised_split`; never on test images): the published forms of three feature detectors, Mahalanobis
//! over every layer (Lee, Lee, Lee, Shin, NeurIPS 2018), LID over every layer (Ma et al., ICLR 2018) and KD+BU (Feinman,
//! Curtin, Shintre, Gardner 2017), each a logistic regression (smartcore's) on per-image features of the full model,
//! whose score is the decision value `w . x + b`, computed in libtorch so that it stays differentiable for the adaptive
//! attack; and the CDRP paper's detector (Wang, Su, Zhang, Hu, CVPR 2018), a random forest on the image's critical
//! data routing path, scored by the share of its trees that vote adversarial.
use super::kdbu::KdBu;
use super::lid::lid_estimate;
use super::mahalanobis::{Gaussians, MahalanobisConfig};
use super::{not_fitted, Detector, DetectorKind, View};
use crate::data::{Dataset, Split};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::routes::{Pass, Resources, RouteKind};
use smartcore::ensemble::random_forest_classifier::{RandomForestClassifier, RandomForestClassifierParameters};
use smartcore::linalg::basic::arrays::Array;
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::logistic_regression::{LogisticRegression, LogisticRegressionParameters};
use tch::{Device, Kind, Tensor};

/// A fitted binary logistic regression, `decision(x) = x . weight + bias`, in the features' own units (the fit
/// standardises each column, as the papers' scikit-learn pipelines do, and folds the scaling back in).
#[derive(Debug)]
pub struct Logistic {
    pub weight: Tensor,
    pub bias: f64,
}

impl Logistic {
    /// Fits `x` `[N, D]` against `y` (true = adversarial) with smartcore's L-BFGS, L2 penalty `alpha` on standardised
    /// columns. Errors when a class is missing or a feature is not finite.
    pub fn fit(x: &Tensor, y: &[bool], alpha: f64) -> Result<Logistic> {
        let (n, d) = match x.size()[..] {
            [n, d] if n as usize == y.len() && d > 0 => (n as usize, d as usize),
            ref s => return Err(Error::Model(format!("logistic regression: features {s:?} for {} labels", y.len()))),
        };
        let pos = y.iter().filter(|&&l| l).count();
        if pos == 0 || pos == n {
            return Err(Error::Missing(format!(
                "logistic regression: {pos} adversarial and {} clean training rows; it needs both",
                n - pos
            )));
        }
        let x = x.to_device(Device::Cpu).to_kind(Kind::Double).detach();
        let mean = x.mean_dim([0].as_slice(), false, Kind::Double);
        let scale = x.std_correction([0].as_slice(), 0, false).clamp_min(1e-12);
        let m = matrix("logistic regression", &((&x - &mean) / &scale))?;
        let labels: Vec<i32> = y.iter().map(|&l| l as i32).collect();
        let params = LogisticRegressionParameters::default().with_alpha(alpha);
        let lr = LogisticRegression::fit(&m, &labels, params)
            .map_err(|e| Error::Model(format!("logistic regression: {e}")))?;
        let coef: Vec<f64> = (0..d).map(|j| *lr.coefficients().get((0, j))).collect();
        let intercept = *lr.intercept().get((0, 0));
        let w = Tensor::from_slice(&coef) / &scale;
        let bias = intercept - f64::try_from((&w * &mean).sum(Kind::Double))?;
        Ok(Logistic { weight: w, bias })
    }

    /// `x . weight + bias` per row of `x` `[B, D]` (differentiable in `x`).
    pub fn decision(&self, x: &Tensor) -> Tensor {
        x.to_kind(Kind::Double).matmul(&self.weight.to_device(x.device())) + self.bias
    }
}

/// `x` `[N, D]` as smartcore's matrix; a feature that is not finite is an error naming its row and column.
fn matrix(what: &str, x: &Tensor) -> Result<DenseMatrix<f64>> {
    let d = x.size()[1] as usize;
    let flat = Vec::<f64>::try_from(x.to_device(Device::Cpu).to_kind(Kind::Double).flatten(0, -1))?;
    if let Some(i) = flat.iter().position(|v| !v.is_finite()) {
        return Err(Error::Model(format!("{what}: feature {} of row {} is not finite", i % d, i / d)));
    }
    let rows: Vec<Vec<f64>> = flat.chunks(d).map(|r| r.to_vec()).collect();
    DenseMatrix::from_2d_vec(&rows).map_err(|e| Error::Model(format!("{what}: {e}")))
}

/// A random forest of `trees` trees (smartcore's: each a bootstrap sample of the rows, sqrt(D) candidate features per
/// split, grown fully), each fitted as a one-tree forest of its own seed so that the score can be the share of trees
/// that vote adversarial (smartcore's forest returns only the majority class).
#[derive(Debug)]
pub struct Forest {
    trees: Vec<RandomForestClassifier<f64, i32, DenseMatrix<f64>, Vec<i32>>>,
}

impl Forest {
    /// Fits on `x` `[N, D]` against `y` (true = adversarial), tree i with seed `seed + i`. Errors when a class is
    /// missing or a feature is not finite.
    pub fn fit(x: &Tensor, y: &[bool], trees: usize, seed: u64) -> Result<Forest> {
        let n = x.size()[0] as usize;
        let pos = y.iter().filter(|&&l| l).count();
        if n != y.len() || pos == 0 || pos == n {
            return Err(Error::Missing(format!(
                "random forest: {pos} adversarial and {} clean training rows; it needs both",
                y.len() - pos
            )));
        }
        let m = matrix("random forest", x)?;
        let labels: Vec<i32> = y.iter().map(|&l| l as i32).collect();
        let trees = (0..trees as u64)
            .map(|i| {
                let p = RandomForestClassifierParameters::default().with_n_trees(1).with_seed(seed.wrapping_add(i));
                RandomForestClassifier::fit(&m, &labels, p).map_err(|e| Error::Model(format!("random forest: {e}")))
            })
            .collect::<Result<_>>()?;
        Ok(Forest { trees })
    }

    /// The share of trees that vote adversarial, per row of `x` `[B, D]` (f64, CPU).
    pub fn votes(&self, x: &Tensor) -> Result<Tensor> {
        let m = matrix("random forest", x)?;
        let mut share = vec![0.0; x.size()[0] as usize];
        for t in &self.trees {
            let p = t.predict(&m).map_err(|e| Error::Model(format!("random forest: {e}")))?;
            for (s, v) in share.iter_mut().zip(p) {
                *s += v as f64;
            }
        }
        Ok(Tensor::from_slice(&share) / self.trees.len().max(1) as f64)
    }
}

/// What a supervised detector learns on its features.
#[derive(Debug, Clone, Copy)]
pub enum Learner {
    /// Logistic regression with L2 penalty `ALPHA`: the score is its decision value (differentiable).
    Logistic,
    /// A random forest of this many trees: the score is the share voting adversarial (not differentiable).
    Forest { trees: usize, seed: u64 },
}

#[derive(Debug)]
enum Fitted {
    Logistic(Logistic),
    Forest(Forest),
}

impl Fitted {
    fn fit(learner: Learner, x: &Tensor, y: &[bool]) -> Result<Fitted> {
        Ok(match learner {
            Learner::Logistic => Fitted::Logistic(Logistic::fit(x, y, ALPHA)?),
            Learner::Forest { trees, seed } => Fitted::Forest(Forest::fit(x, y, trees, seed)?),
        })
    }
    fn score(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Fitted::Logistic(lr) => Ok(lr.decision(x)),
            Fitted::Forest(f) => f.votes(x),
        }
    }
}

/// What a supervised detector regresses on: per-image features of the full model, the unsupervised part fitted on
/// clean images, possibly in several candidate settings among which the training attack chooses.
pub trait Features: Send + std::fmt::Debug {
    /// Fit the unsupervised part (class means, references) on clean held-out training images.
    fn fit(&mut self, model: &Model, clean: &Dataset) -> Result<()>;
    /// How many settings the training attack chooses among (Lee et al.'s preprocessing magnitudes).
    fn candidates(&self) -> usize {
        1
    }
    /// Setting `candidate` in words, for the run's log.
    fn candidate_name(&self, candidate: usize) -> String {
        format!("setting {candidate}")
    }
    /// The route whose pass `features` reads (the full model's unless a source says otherwise).
    fn route(&self) -> RouteKind {
        RouteKind::Full
    }
    /// Whether `features` reads route `route`'s pass.
    fn reads(&self, route: RouteKind) -> bool {
        route == self.route()
    }
    /// Whether the source reads any of several routes, one per fitted detector (`Detector::fits_per_route`).
    fn per_route(&self) -> bool {
        false
    }
    /// Binds a `per_route` source to `route`.
    fn set_route(&mut self, _route: RouteKind) {}
    /// `[B, D]` f64 features of the batch in setting `candidate`.
    fn features(&self, v: &View, candidate: usize) -> Result<Tensor>;
    /// The features in every setting, in order (a source overrides it to share work between settings).
    fn every_candidate(&self, v: &View) -> Result<Vec<Tensor>> {
        (0..self.candidates()).map(|c| self.features(v, c)).collect()
    }
}

/// A supervised detector: `features` under the setting with the best training AUROC, then its learner.
#[derive(Debug)]
pub struct Supervised {
    kind: DetectorKind,
    source: Box<dyn Features>,
    learner: Learner,
    /// The setting chosen and the learner fitted on it.
    fitted: Option<(usize, Fitted)>,
    /// What the fit saw: clean rows, adversarial rows, and the training AUROC of the chosen setting (with several).
    rows: (usize, usize, Option<f64>),
}

/// The L2 penalty of the regressions (smartcore's `alpha`; scikit-learn's default C = 1 is alpha = 1 on the summed
/// loss).
pub const ALPHA: f64 = 1.0;

/// The trees of `path-rf`'s forest (the CDRP paper's 50).
pub const FOREST_TREES: usize = 50;

impl Supervised {
    pub fn new(kind: DetectorKind, source: Box<dyn Features>, learner: Learner) -> Self {
        Supervised { kind, source, learner, fitted: None, rows: (0, 0, None) }
    }

    /// Features of every image of `images` in every setting, in batches.
    fn all_features(&self, model: &Model, images: &Tensor, res: Resources) -> Result<Vec<Tensor>> {
        let n = images.size()[0];
        let route = crate::routes::build(self.source.route(), model, res)?;
        let mut parts: Vec<Vec<Tensor>> = (0..self.source.candidates()).map(|_| Vec::new()).collect();
        for start in (0..n).step_by(500) {
            let xs = images.narrow(0, start, 500.min(n - start)).to_device(model.device());
            let full = tch::no_grad(|| Pass::run(model, &xs, None));
            let own = match self.source.route().is_full() {
                true => None,
                false => tch::no_grad(|| route.pass(model, &xs, &full))?,
            };
            let v = View { model, xs: &xs, full: &full, route: own.as_ref().unwrap_or(&full) };
            for (acc, f) in parts.iter_mut().zip(self.source.every_candidate(&v)?) {
                acc.push(f.detach().to_device(Device::Cpu));
            }
        }
        Ok(parts.iter().map(|p| Tensor::cat(p, 0)).collect())
    }
}

impl Detector for Supervised {
    fn kind(&self) -> DetectorKind {
        self.kind
    }
    fn runs_on(&self, route: RouteKind) -> bool {
        self.source.reads(route)
    }
    fn needs_fit(&self) -> bool {
        true
    }
    fn supervised(&self) -> bool {
        true
    }
    fn fits_per_route(&self) -> bool {
        self.source.per_route()
    }
    fn for_route(&mut self, route: RouteKind) {
        self.source.set_route(route)
    }
    fn differentiable(&self) -> bool {
        matches!(self.learner, Learner::Logistic)
    }
    fn fit_note(&self) -> Option<String> {
        let (c, _) = self.fitted.as_ref()?;
        let (clean, adv, auroc) = self.rows;
        let setting = match (self.source.candidates(), auroc) {
            (1, _) | (_, None) => String::new(),
            (_, Some(a)) => format!(", {} (training AUROC {a:.4})", self.source.candidate_name(*c)),
        };
        Some(format!("{}: fitted on {clean} clean and {adv} adversarial training images{setting}", self.name()))
    }
    fn fit(&mut self, model: &Model, clean: &Dataset, _res: Resources) -> Result<()> {
        if clean.split != Split::Train {
            return Err(Error::config("fit data", clean.split, "supervised detectors fit on training images only"));
        }
        self.source.fit(model, clean)
    }

    /// The rows: the clean images the model gets right (negatives) and the adversarial versions that it gets wrong
    /// (positives), as the test protocol counts them.
    fn fit_supervised(&mut self, model: &Model, clean: &Dataset, adversarial: &Tensor, res: Resources) -> Result<()> {
        let name = self.name();
        if clean.split != Split::Train {
            return Err(Error::config("fit data", clean.split, format!("{name} fits on training images only")));
        }
        if adversarial.size() != clean.images.size() {
            return Err(Error::Model(format!(
                "detector {name}: {:?} adversarial images for {:?} clean ones",
                adversarial.size(),
                clean.images.size()
            )));
        }
        let labels = clean.label_vec();
        let candidates = self.source.candidates();
        let mut best: Option<(f64, usize, Fitted)> = None;
        let predict = |images: &Tensor| Vec::<i64>::try_from(model.predict(images, 500).to_device(Device::Cpu));
        let (pc, pa) = (predict(&clean.images)?, predict(adversarial)?);
        let correct: Vec<i64> = (0..labels.len()).filter(|&i| pc[i] == labels[i]).map(|i| i as i64).collect();
        let fooled: Vec<i64> = correct.iter().copied().filter(|&i| pa[i as usize] != labels[i as usize]).collect();
        if fooled.is_empty() {
            return Err(Error::Missing(format!(
                "detector {name}: the training attack fooled none of the {} clean training images the model gets \
                 right; a supervised detector needs successful adversarial examples to fit on",
                correct.len()
            )));
        }
        let y: Vec<bool> =
            std::iter::repeat_n(false, correct.len()).chain(std::iter::repeat_n(true, fooled.len())).collect();
        // features of the rows only: the clean images the model gets right and the adversarial ones it gets wrong
        let rows =
            |images: &Tensor, idx: &[i64]| images.index_select(0, &Tensor::from_slice(idx).to_device(images.device()));
        let clean_features = self.all_features(model, &rows(&clean.images, &correct), res)?;
        let adv_features = self.all_features(model, &rows(adversarial, &fooled), res)?;
        for (c, (fc, fa)) in clean_features.iter().zip(&adv_features).enumerate() {
            let x = Tensor::cat(&[fc, fa], 0);
            let fitted =
                Fitted::fit(self.learner, &x, &y).map_err(|e| Error::Model(format!("detector {name}: {e}")))?;
            let auroc = match candidates {
                1 => 1.0,
                _ => crate::metrics::auroc(&y, &Vec::<f64>::try_from(fitted.score(&x)?)?)?,
            };
            if best.as_ref().is_none_or(|(a, _, _)| auroc > *a) {
                self.rows = (correct.len(), fooled.len(), (candidates > 1).then_some(auroc));
                best = Some((auroc, c, fitted));
            }
        }
        self.fitted = best.map(|(_, c, lr)| (c, lr));
        Ok(())
    }

    fn score(&self, v: &View) -> Result<Tensor> {
        let (c, fitted) = self.fitted.as_ref().ok_or_else(|| {
            Error::Missing(format!(
                "detector {} is not fitted on adversarial examples: call fit_supervised with a training attack's \
                 images first",
                self.name()
            ))
        })?;
        fitted.score(&self.source.features(v, *c)?)
    }
}

/// Lee et al.'s input preprocessing magnitudes (their released code's list), chosen among on the training attack.
pub const MAGNITUDES: [f64; 7] = [0.0, 0.0005, 0.001, 0.0014, 0.002, 0.005, 0.01];

/// Lee et al.: per stage (`Model::stage_features`: each conv layer's or block's output averaged over positions, then
/// the penultimate features), class means with one tied covariance fitted on clean images; the feature of stage l is
/// the squared distance to its closest class mean after the input is moved by `magnitude` against the gradient sign
/// of that distance (one preprocessing per stage, as their code does).
#[derive(Debug)]
pub struct MahalanobisLayers {
    cfg: MahalanobisConfig,
    stages: Vec<Gaussians>,
}

impl MahalanobisLayers {
    pub fn new(cfg: MahalanobisConfig) -> Self {
        MahalanobisLayers { cfg, stages: Vec::new() }
    }
}

impl Features for MahalanobisLayers {
    fn fit(&mut self, model: &Model, clean: &Dataset) -> Result<()> {
        let stages = stage_rows(model, &clean.images, false)?;
        let labels = clean.labels.to_device(model.device());
        self.stages =
            stages.iter().map(|f| Gaussians::fit(f, &labels, model.num_classes(), &self.cfg)).collect::<Result<_>>()?;
        Ok(())
    }
    fn candidates(&self) -> usize {
        MAGNITUDES.len()
    }
    fn candidate_name(&self, candidate: usize) -> String {
        format!("input step magnitude {}", MAGNITUDES[candidate])
    }
    fn features(&self, v: &View, candidate: usize) -> Result<Tensor> {
        let signs = match MAGNITUDES[candidate] {
            0.0 => Vec::new(),
            _ => self.gradient_signs(v)?,
        };
        self.at(v, MAGNITUDES[candidate], &signs)
    }
    /// One gradient per stage for every magnitude.
    fn every_candidate(&self, v: &View) -> Result<Vec<Tensor>> {
        let signs = self.gradient_signs(v)?;
        MAGNITUDES.iter().map(|&m| self.at(v, m, &signs)).collect()
    }
}

impl MahalanobisLayers {
    /// Per stage, the sign of the input gradient of the distance to the closest class mean (a constant for an attack
    /// that differentiates through the score: BPDA).
    fn gradient_signs(&self, v: &View) -> Result<Vec<Tensor>> {
        if self.stages.is_empty() {
            return Err(not_fitted("mahalanobis-sup"));
        }
        let x = v.xs.detach().set_requires_grad(true);
        tch::with_grad(|| {
            let (stages, _) = v.model.stage_features(&x);
            let last = self.stages.len() - 1;
            self.stages
                .iter()
                .zip(&stages)
                .enumerate()
                .map(|(l, (g, f))| {
                    Ok(v.model.input_grad(&g.min_distance(f).sum(Kind::Double), &x, l < last)?.sign().detach())
                })
                .collect()
        })
    }

    /// The stage distances after each stage's step of `magnitude` along `signs` (no step at 0).
    fn at(&self, v: &View, magnitude: f64, signs: &[Tensor]) -> Result<Tensor> {
        if self.stages.is_empty() {
            return Err(not_fitted("mahalanobis-sup"));
        }
        let mut cols = Vec::new();
        if magnitude == 0.0 {
            let (stages, _) = v.model.stage_features(v.xs);
            for (g, f) in self.stages.iter().zip(&stages) {
                cols.push(g.min_distance(f));
            }
        } else {
            for (l, (g, sign)) in self.stages.iter().zip(signs).enumerate() {
                let (stages, _) = v.model.stage_features(&(v.xs - sign * magnitude));
                cols.push(g.min_distance(&stages[l]));
            }
        }
        Ok(Tensor::stack(&cols, 1))
    }
}

/// Every stage's features (and with `logits`, the logits last) of `images` in eval mode without gradient, f64.
fn stage_rows(model: &Model, images: &Tensor, logits: bool) -> Result<Vec<Tensor>> {
    let _guard = tch::no_grad_guard();
    let n = images.size()[0];
    let mut per_stage: Vec<Vec<Tensor>> = Vec::new();
    for start in (0..n).step_by(500) {
        let xs = images.narrow(0, start, 500.min(n - start)).to_device(model.device());
        let (mut stages, l) = model.stage_features(&xs);
        if logits {
            stages.push(l);
        }
        per_stage.resize_with(stages.len(), Vec::new);
        for (acc, s) in per_stage.iter_mut().zip(stages) {
            acc.push(s.to_kind(Kind::Double));
        }
    }
    if per_stage.is_empty() {
        return Err(Error::Missing("no clean training images to fit on".into()));
    }
    Ok(per_stage.iter().map(|p| Tensor::cat(p, 0)).collect())
}

/// Ma et al.: the maximum-likelihood LID of every stage's features and of the logits, each against reference
/// minibatches of clean images (the fit images, in whole minibatches; the unsupervised `lid`'s estimator). Their
/// code takes each layer's flattened activations and the neighbours within the image's own minibatch; here the
/// stages are averaged over positions (`Model::stage_features`) and the references are fixed clean images, so an
/// image's score does not depend on the batch it is scored in.
#[derive(Debug)]
pub struct LidLayers {
    k: i64,
    minibatch: i64,
    refs: Vec<Tensor>,
}

impl LidLayers {
    pub fn new(cfg: &super::lid::LidConfig) -> Self {
        LidLayers { k: cfg.k as i64, minibatch: cfg.minibatch as i64, refs: Vec::new() }
    }
}

impl Features for LidLayers {
    fn fit(&mut self, model: &Model, clean: &Dataset) -> Result<()> {
        let n = clean.len() as i64 / self.minibatch * self.minibatch;
        if n == 0 {
            return Err(Error::Missing(format!(
                "detector lid-sup: {} fit images give no reference minibatch of {}",
                clean.len(),
                self.minibatch
            )));
        }
        self.refs = stage_rows(model, &clean.images.narrow(0, 0, n), true)?;
        Ok(())
    }
    fn features(&self, v: &View, _candidate: usize) -> Result<Tensor> {
        if self.refs.is_empty() {
            return Err(not_fitted("lid-sup"));
        }
        let (mut stages, logits) = v.model.stage_features(v.xs);
        stages.push(logits);
        let cols: Vec<Tensor> = self
            .refs
            .iter()
            .zip(&stages)
            .map(|(r, a)| lid_estimate(&a.to_kind(Kind::Double), r, self.k, self.minibatch))
            .collect();
        Ok(Tensor::stack(&cols, 1))
    }
}

/// Feinman et al.: the two features of the unsupervised `kdbu` (log kernel density among the predicted class's
/// reference features, Bayesian uncertainty of MC dropout), unstandardised: the regression weighs them.
#[derive(Debug)]
pub struct KdBuPair(pub KdBu);

impl Features for KdBuPair {
    fn fit(&mut self, model: &Model, clean: &Dataset) -> Result<()> {
        self.0.fit(model, clean, Resources::default())
    }
    fn features(&self, v: &View, _candidate: usize) -> Result<Tensor> {
        let (kd, bu) = self.0.pair(v)?;
        Ok(Tensor::stack(&[kd, bu], 1))
    }
}

/// The CDRP paper's detector input: the image's routing path, the gates of every conv channel (fully connected columns
/// dropped) of a route with per-image paths: CDRP's learned gates (`cdrp`, the paper's) or NND's module gates (`nnd`).
/// One detector per route: the suite binds it (`set_route`); unbound, it reads `cdrp`.
#[derive(Debug, Default)]
pub struct PathGates {
    route: Option<RouteKind>,
}

impl Features for PathGates {
    fn fit(&mut self, _model: &Model, _clean: &Dataset) -> Result<()> {
        Ok(())
    }
    fn route(&self) -> RouteKind {
        self.route.unwrap_or(RouteKind::Cdrp)
    }
    fn reads(&self, route: RouteKind) -> bool {
        self.route.map_or(route.has_paths(), |r| r == route)
    }
    fn per_route(&self) -> bool {
        true
    }
    fn set_route(&mut self, route: RouteKind) {
        self.route = Some(route);
    }
    fn features(&self, v: &View, _candidate: usize) -> Result<Tensor> {
        let path = v.route.gates.as_ref().ok_or_else(|| {
            Error::Model("detector path-rf needs a route with per-image paths (the cdrp or nnd mode)".into())
        })?;
        let keep = crate::routes::cdrp::conv_columns(v.model).to_device(path.device()).squeeze_dim(0).nonzero();
        Ok(path.to_kind(Kind::Double).index_select(1, &keep.squeeze_dim(1)))
    }
}
