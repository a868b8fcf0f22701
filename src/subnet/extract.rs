//! Class-specific subnetwork extraction (Wang, Hu, Su, arXiv 1910.02673, after CDRP, Wang, Su, Zhang, Hu, CVPR 2018):
//! the gates of all classes learned at once by distillation from the full model plus an L1 penalty, then binarised.
use super::analysis::{self, Analysis};
use super::mask::{self, Binarize};
use super::Subnets;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::models::Model;
use crate::progress;
use crate::rng::Rng;
use std::time::Instant;
use tch::{Kind, Tensor};

/// Gate-training settings.
///
/// From the CDRP code (Wang, Su, Zhang, Hu, CVPR 2018, one image at a time): gates start at 1.0, clamp to [0, 5]
/// (`gmax`), SGD at lr 0.1 with momentum 0.9, L1 weight 0.05 on the sum of the gates, 30 steps. Whole-class extraction
/// learns one gate row per class from many images, so it takes stochastic steps: 200 steps of 24 images per class drawn
/// from the first 500 training images of each class (48,000 image passes without weight gradients, under one training
/// epoch of 60,000 passes with them). A gate that the distillation does not defend falls by at most `lambda * lr / (1 -
/// momentum)` per step, so pruning needs `lambda * steps` of about 1 or more: lambda 0.002 pruned nothing in 200 steps,
/// CDRP's 0.05 left about 1% of the units (one channel per conv layer: a subnetwork that answers its class whatever the
/// input), 0.01 keeps about 20% (MNIST). Temperature 4 makes the distillation keep the full model's whole output
/// distribution (KL 0.02 instead of 0.15 at T = 1, MNIST). Pruned gates end at exactly 0 through the clamp; `threshold`
/// 0.05 keeps every gate that is still moving.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExtractConfig {
    /// Weight of the L1 penalty on the *sum* of a class's gates (each gate is pulled to 0 at rate `lambda`, whatever the
    /// network's size).
    pub lambda: f64,
    pub steps: usize,
    pub lr: f64,
    pub momentum: f64,
    /// Gates are clamped to `[0, gmax]` after each step.
    pub gmax: f64,
    /// Training images used per class (the first ones of each class in file order).
    pub images_per_class: usize,
    /// Binarisation: keep a unit when its gate is above this (ignored when `top_k_percent` is set).
    pub threshold: f64,
    /// Binarisation: keep the top k% units of each layer instead of thresholding.
    pub top_k_percent: Option<f64>,
    pub seed: u64,
    /// Images per class in each step's batch; `None` uses all `images_per_class` every step (full batch).
    pub batch_per_class: Option<usize>,
    /// Distillation temperature T: both softmaxes are taken of logits / T and the cross-entropy is scaled by T^2
    /// (Hinton et al. 2015), so the gated model must reproduce the full model's whole output distribution, not only its
    /// top class.
    pub temperature: f64,
    /// Held-out training images per class for the cross-class accuracy matrix; `None` uses all of them (own-class
    /// figures always use every held-out image).
    pub cross_images_per_class: Option<usize>,
    /// Which units get gates: `all` (conv channels and hidden fully connected units) or `conv` (conv channels only,
    /// the CSS/CDRP recipe; the fully connected units then stay in every subnetwork).
    pub gate: Gate,
}

/// The units a subnetwork may drop (`[subnet] gate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gate {
    /// Conv channels and hidden fully connected units.
    #[default]
    All,
    /// Conv channels only.
    Conv,
}

impl Gate {
    /// `[1, units]` f32: 1 on the columns this scope gates, 0 on those it leaves at 1 (on `device`).
    pub fn columns(self, layout: &crate::models::GateLayout, device: tch::Device) -> Tensor {
        let v: Vec<f32> = layout
            .layers
            .iter()
            .flat_map(|l| {
                let on = self == Gate::All || l.is_conv();
                std::iter::repeat_n(if on { 1f32 } else { 0f32 }, l.width as usize)
            })
            .collect();
        Tensor::from_slice(&v).view([1, -1]).to_device(device)
    }
}

impl Default for ExtractConfig {
    fn default() -> Self {
        ExtractConfig {
            lambda: 0.01,
            steps: 200,
            lr: 0.1,
            momentum: 0.9,
            gmax: 5.0,
            images_per_class: 500,
            threshold: 0.05,
            top_k_percent: None,
            seed: 0,
            batch_per_class: Some(24),
            temperature: 4.0,
            cross_images_per_class: Some(100),
            gate: Gate::All,
        }
    }
}

impl ExtractConfig {
    pub fn validate(&self) -> Result<()> {
        let pos = |field: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::config(field, v, "must be a positive number"))
            }
        };
        if !(self.lambda.is_finite() && self.lambda >= 0.0) {
            return Err(Error::config("lambda", self.lambda, "must be a finite number >= 0"));
        }
        pos("lr", self.lr)?;
        pos("gmax", self.gmax)?;
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return Err(Error::config("momentum", self.momentum, "must be in [0, 1)"));
        }
        if self.steps == 0 {
            return Err(Error::config("steps", 0, "must be at least 1"));
        }
        if self.images_per_class == 0 {
            return Err(Error::config("images-per-class", 0, "must be at least 1"));
        }
        if self.batch_per_class == Some(0) {
            return Err(Error::config("batch-per-class", 0, "must be at least 1"));
        }
        pos("temperature", self.temperature)?;
        if self.cross_images_per_class == Some(0) {
            return Err(Error::config("cross-images-per-class", 0, "must be at least 1"));
        }
        self.binarize().validate()
    }

    pub fn binarize(&self) -> Binarize {
        match self.top_k_percent {
            Some(k) => Binarize::TopKPercent(k),
            None => Binarize::Threshold(self.threshold),
        }
    }
}

/// One class's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClassSummary {
    pub class: usize,
    pub kept_fraction: f64,
    pub layer_kept_fraction: Vec<f64>,
    /// Accuracy of the class's subnetwork on the class's held-out training images.
    pub own_class_accuracy: f64,
    /// Accuracy of the full model on the same images.
    pub full_model_accuracy: f64,
    /// Mean KL(full || subnet) on the class's held-out images, and how often both predict the same class there.
    pub own_class_kl: f64,
    pub own_class_agreement: f64,
    pub train_images: usize,
    /// Held-out training images of the class the figures above were measured on.
    pub analysis_images: usize,
}

/// What an extraction measured (written as the JSON summary).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub config: ExtractConfig,
    pub arch: String,
    pub dataset: String,
    pub device: String,
    pub units: i64,
    /// Mean over classes of the fraction of all gateable units kept.
    pub mean_kept_fraction: f64,
    /// Per layer: name, width and mean over classes of the fraction kept.
    pub layers: Vec<(String, i64, f64)>,
    pub classes: Vec<ClassSummary>,
    /// Largest full-model minus subnet own-class accuracy over classes (percentage points when multiplied by 100).
    pub max_accuracy_drop: f64,
    /// Mean KL(full model || gated model) at the distillation temperature on the last step's batch, and the mean gate value after training.
    pub final_kl: f64,
    pub final_mean_gate: f64,
    /// Wall time of gate training plus binarisation, and of the analysis.
    pub extract_seconds: f64,
    pub analysis_seconds: f64,
    pub analysis: Analysis,
}

pub struct Extraction {
    pub subnets: Subnets,
    pub summary: Summary,
}

/// Learns the gates of all classes at once from `train` (clean training images, the first images_per_class of each
/// class) and binarises them; the analysis uses `held_out`, training images that gate training does not use. No test
/// image, clean or attacked, is ever seen by extraction or its analysis.
pub fn extract(model: &Model, train: &Dataset, held_out: &Dataset, cfg: &ExtractConfig) -> Result<Extraction> {
    cfg.validate()?;
    let start = Instant::now();
    let (gates, kl) = train_gates(model, train, cfg)?;
    let masks = mask::binarize(&gates, model.gate_layout(), cfg.binarize())?;
    // units outside the gate scope stay in every subnetwork, whatever the binarisation rule
    let masks = masks.maximum(&(1.0 - cfg.gate.columns(model.gate_layout(), masks.device())));
    let subnets = Subnets { layout: model.gate_layout().clone(), gates, masks };
    subnets.validate()?;
    let extract_seconds = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let analysis = analysis::analyse(model, &subnets, held_out, cfg.cross_images_per_class)?;
    let analysis_seconds = start.elapsed().as_secs_f64();
    let train_counts = train.per_class(cfg.images_per_class).class_counts();
    let classes: Vec<ClassSummary> = (0..analysis.kept_fraction.len())
        .map(|c| ClassSummary {
            class: c,
            kept_fraction: analysis.kept_fraction[c],
            layer_kept_fraction: analysis.kept_per_layer[c].clone(),
            own_class_accuracy: analysis.own_class_accuracy[c],
            full_model_accuracy: analysis.full_model_accuracy[c],
            own_class_kl: analysis.own_class_kl[c],
            own_class_agreement: analysis.own_class_agreement[c],
            train_images: train_counts.get(c).copied().unwrap_or(0),
            analysis_images: analysis.images_per_class[c],
        })
        .collect();
    let n = classes.len().max(1) as f64;
    let layers = model
        .gate_layout()
        .layers
        .iter()
        .enumerate()
        .map(|(l, layer)| {
            (layer.name.clone(), layer.width, classes.iter().map(|c| c.layer_kept_fraction[l]).sum::<f64>() / n)
        })
        .collect();
    let summary = Summary {
        config: cfg.clone(),
        arch: model.arch.to_string(),
        dataset: train.name.to_string(),
        device: crate::device::describe(model.device(), &crate::cpu::current()),
        units: subnets.layout.units(),
        mean_kept_fraction: classes.iter().map(|c| c.kept_fraction).sum::<f64>() / n,
        layers,
        max_accuracy_drop: classes
            .iter()
            .map(|c| c.full_model_accuracy - c.own_class_accuracy)
            .fold(f64::MIN, f64::max),
        final_kl: kl,
        final_mean_gate: f64::try_from(subnets.gates.mean(Kind::Double))?,
        classes,
        extract_seconds,
        analysis_seconds,
        analysis,
    };
    Ok(Extraction { subnets, summary })
}

/// The gate-training loop: returns the gates `[classes, units]` and the last step's mean KL.
///
/// Loss per class c: mean over its batch images of the cross-entropy between the full model's detached softmax and the
/// gated model's (equal to KL(full || gated) up to the full model's entropy, so the same gradients) plus
/// `lambda * sum_u gate[c, u]`; the loss minimised is the sum over classes, so each class's row follows exactly the
/// gradient of its own loss, as if extracted alone. Only the gate tensor gets gradients: the model's parameters are
/// neither updated nor given `.grad`. With `gate = "conv"` the gradient of every fully connected unit's gate is zeroed,
/// so those gates stay exactly 1.
pub fn train_gates(model: &Model, train: &Dataset, cfg: &ExtractConfig) -> Result<(Tensor, f64)> {
    let device = model.device();
    let classes = train.num_classes();
    let t = cfg.temperature;
    let subset = train.per_class(cfg.images_per_class);
    let counts = subset.class_counts();
    if let Some(c) = counts.iter().position(|&n| n == 0) {
        return Err(Error::config("dataset", train.name, format!("the training images hold no image of class {c}")));
    }
    let images = subset.images.to_device(device);
    let labels = subset.labels.to_device(device);
    let teacher = {
        let _g = tch::no_grad_guard();
        let parts: Vec<Tensor> =
            subset.batches(1000, device).map(|(x, _)| (model.logits(&x) / t).softmax(-1, Kind::Float)).collect();
        Tensor::cat(&parts, 0)
    };
    // per-class index pools, reshuffled (seeded) each time one is used up: sampling without replacement
    let label_vec = subset.label_vec();
    let mut pools: Vec<Vec<i64>> = vec![Vec::new(); classes as usize];
    for (i, &l) in label_vec.iter().enumerate() {
        pools[l as usize].push(i as i64);
    }
    let mut rng = Rng::new(cfg.seed);
    let mut cursor = vec![usize::MAX; classes as usize];
    let units = model.gate_layout().units();
    let mut gates = Tensor::ones([classes, units], (Kind::Float, device)).set_requires_grad(true);
    let mut velocity = Tensor::zeros([classes, units], (Kind::Float, device));
    let scope = cfg.gate.columns(model.gate_layout(), device);
    let pb = progress::bar(cfg.steps as u64, "extract");
    let mut kl = f64::NAN;
    for step in 0..cfg.steps {
        let mut idx = Vec::new();
        let mut weight = Vec::new();
        for (c, pool) in pools.iter_mut().enumerate() {
            let take = cfg.batch_per_class.unwrap_or(pool.len()).min(pool.len());
            for _ in 0..take {
                if cursor[c] >= pool.len() {
                    if cfg.batch_per_class.is_some() {
                        let perm = rng.permutation(pool.len());
                        *pool = perm.iter().map(|&p| pool[p as usize]).collect();
                    }
                    cursor[c] = 0;
                }
                idx.push(pool[cursor[c]]);
                weight.push(1.0f32 / take as f32);
                cursor[c] += 1;
            }
        }
        let idx = Tensor::from_slice(&idx).to_device(device);
        let weight = Tensor::from_slice(&weight).to_device(device);
        let (xs, ys, tp) = (images.index_select(0, &idx), labels.index_select(0, &idx), teacher.index_select(0, &idx));
        // gradient tracking on even when the caller holds a no-grad guard (libtorch crashes on a backward without a graph)
        let (ce, grad) = tch::with_grad(|| -> Result<(Tensor, Tensor)> {
            let logits = model.net.forward(&xs, Some(&gates.index_select(0, &ys)), false) / t;
            let ce = -(&tp * logits.log_softmax(-1, Kind::Float)).sum_dim_intlist(1, false, Kind::Float) * (t * t);
            let loss = (&ce * &weight).sum(Kind::Float) + gates.sum(Kind::Float) * cfg.lambda;
            let grad = Tensor::f_run_backward(&[&loss], &[&gates], false, false)?.remove(0) * &scope;
            Ok((ce.detach(), grad))
        })?;
        {
            let _g = tch::no_grad_guard();
            velocity = &velocity * cfg.momentum + &grad;
            let _ = gates.f_sub_(&(&velocity * cfg.lr))?;
            let _ = gates.f_clamp_(0.0, cfg.gmax)?;
        }
        if step % 20 == 0 || step + 1 == cfg.steps {
            let entropy = -(&tp * tp.clamp_min(1e-12).log()).sum_dim_intlist(1, false, Kind::Float);
            kl = f64::try_from((&ce / (t * t) - entropy).detach().mean(Kind::Double))?;
            let mean_gate = f64::try_from(gates.detach().mean(Kind::Double))?;
            pb.set_message(format!("kl {kl:.4} mean gate {mean_gate:.3}"));
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok((gates.detach(), kl))
}
