//! Supervised training and evaluation of the classifiers, deterministic on CPU for a seed, with a checkpoint cache
//! keyed on everything that changes the weights.
use crate::data::{self, Dataset, DatasetName, Split};
use crate::error::{Error, Result};
use crate::models::checkpoint::{self, ModelMeta};
use crate::models::{Arch, Model};
use crate::progress;
use crate::rng::Rng;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

/// Bumped whenever a change to the architectures or the training loop changes the weights a config produces.
pub const TRAINING_CODE_VERSION: u32 = 1;

pub use crate::models::training::Training;

/// Training settings. Defaults: Adam (Kingma & Ba 2015) at lr 1e-3, batch 64, the learning rate multiplied by
/// `lr_decay` after each epoch; 6 epochs (MNIST-like) or 30 (CIFAR-10).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    pub arch: Arch,
    pub dataset: DatasetName,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub lr_decay: f64,
    pub seed: u64,
    /// Left out of the serialisation (and so of the cache key) when standard: standard models keep their keys.
    #[serde(default, skip_serializing_if = "Training::is_standard")]
    pub training: Training,
}

impl TrainConfig {
    pub fn default_for(dataset: DatasetName, arch: Arch) -> TrainConfig {
        let epochs = match dataset {
            DatasetName::Cifar10 => 30,
            _ => 6,
        };
        TrainConfig {
            arch,
            dataset,
            epochs,
            batch_size: 64,
            lr: 1e-3,
            lr_decay: 0.7,
            seed: 0,
            training: Training::Standard,
        }
    }

    pub fn validate(&self) -> Result<()> {
        self.arch.check_dataset(self.dataset)?;
        if self.epochs == 0 {
            return Err(Error::config("epochs", 0, "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(Error::config("batch-size", 0, "must be at least 1"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::config("lr", self.lr, "must be a positive number"));
        }
        self.training.validate(self.epochs)
    }

    /// The part of a model's name that says how it was trained (`-csg`; nothing for standard training).
    pub fn tag(&self) -> &'static str {
        self.training.tag()
    }

    /// A key over everything that determines the trained weights, the numerics of the device included (the CPU mode
    /// and its pins, or the host in native mode).
    pub fn cache_key(&self, data_hash: &str, device: Device) -> String {
        let mut h = Sha256::new();
        h.update(serde_json::to_string(self).unwrap_or_default());
        h.update(data_hash);
        h.update(TRAINING_CODE_VERSION.to_le_bytes());
        h.update(tch_version());
        h.update(numerics_tag(device));
        format!("{:x}", h.finalize())[..16].to_string()
    }
}

/// What makes weights depend on the machine: `cuda`, or the CPU numerics of this process.
pub fn numerics_tag(device: Device) -> String {
    if device.is_cuda() {
        "cuda".to_string()
    } else {
        crate::cpu::current().tag()
    }
}

pub fn tch_version() -> &'static str {
    "libtorch-2.11.0"
}

/// Clean accuracy overall and per class.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Evaluation {
    pub accuracy: f64,
    pub per_class: Vec<f64>,
    pub n: usize,
}

pub fn evaluate(model: &Model, ds: &Dataset, batch_size: i64) -> Evaluation {
    let preds = Vec::<i64>::try_from(model.predict(&ds.images, batch_size).to_device(Device::Cpu)).unwrap_or_default();
    let labels = ds.label_vec();
    let classes = ds.num_classes() as usize;
    let (mut hit, mut tot) = (vec![0usize; classes], vec![0usize; classes]);
    for (p, l) in preds.iter().zip(&labels) {
        tot[*l as usize] += 1;
        hit[*l as usize] += (p == l) as usize;
    }
    let correct: usize = hit.iter().sum();
    Evaluation {
        accuracy: correct as f64 / labels.len().max(1) as f64,
        per_class: hit.iter().zip(&tot).map(|(h, t)| *h as f64 / (*t).max(1) as f64).collect(),
        n: labels.len(),
    }
}

/// What a training run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainReport {
    pub epoch_loss: Vec<f64>,
    pub epoch_accuracy: Vec<f64>,
    pub seconds: f64,
    pub images_per_sec: f64,
}

/// Trains a fresh model on `train` (shuffled each epoch with the seed), returning it with the per-epoch figures.
pub fn train(cfg: &TrainConfig, train: &Dataset, device: Device) -> Result<(Model, TrainReport)> {
    cfg.validate()?;
    if train.is_empty() {
        return Err(Error::config("dataset", cfg.dataset, "the training split is empty"));
    }
    tch::manual_seed(cfg.seed as i64);
    let mut model = Model::new(cfg.arch, device);
    let mut opt = nn::Adam::default().build(&model.vs, cfg.lr)?;
    // CSG-CNN: the gate matrix in a store of its own, and the gated path's own Adam state for the weights and the gates
    let gate_vs = nn::VarStore::new(device);
    let mut gated = match cfg.training {
        Training::Standard | Training::Adversarial(_) | Training::Consistency(_) => None,
        Training::Csg { .. } => {
            let init = crate::models::csg::init(model.gate_layout(), model.num_classes(), device)?;
            let g = gate_vs.root().var_copy("gates", &init);
            let opt_w = nn::Adam::default().build(&model.vs, cfg.lr)?;
            let gate_lr = match cfg.training {
                Training::Csg { gate_lr, .. } => gate_lr,
                _ => cfg.lr,
            };
            let opt_g = nn::Adam::default().build(&gate_vs, gate_lr)?;
            Some((g, opt_w, opt_g))
        }
    };
    let n = train.len();
    let steps_per_epoch = n.div_ceil(cfg.batch_size);
    let pb = progress::bar((steps_per_epoch * cfg.epochs) as u64, "train");
    let mut rng = Rng::new(cfg.seed);
    let (mut losses, mut accs) = (Vec::new(), Vec::new());
    let start = Instant::now();
    for epoch in 0..cfg.epochs {
        let lr = cfg.lr * cfg.lr_decay.powi(epoch as i32);
        opt.set_lr(lr);
        let gated_epoch = cfg.training.gated(epoch);
        let perm = Tensor::from_slice(&rng.permutation(n));
        let (mut loss_sum, mut correct, mut seen) = (0.0, 0i64, 0usize);
        let epoch_start = Instant::now();
        for b in 0..steps_per_epoch {
            let idx = perm.narrow(0, (b * cfg.batch_size) as i64, cfg.batch_size.min(n - b * cfg.batch_size) as i64);
            let xs = train.images.index_select(0, &idx).to_device(device);
            let ys = train.labels.index_select(0, &idx).to_device(device);
            let (logits, loss) = match (&mut gated, gated_epoch) {
                (Some((g, opt_w, opt_g)), true) => {
                    let gates = crate::models::csg::per_image(g, model.gate_layout(), &ys)?;
                    let logits = model.net.forward(&xs, Some(&gates), true);
                    let loss = logits.cross_entropy_for_logits(&ys) + crate::models::csg::sparsity_loss(g);
                    opt_w.set_lr(lr);
                    opt_w.zero_grad();
                    opt_g.zero_grad();
                    loss.backward();
                    opt_w.step();
                    opt_g.step();
                    crate::models::csg::normalise_(g);
                    (logits, loss)
                }
                _ => match cfg.training.robust().filter(|r| r.attacks()) {
                    Some(r) => {
                        let adv = pgd_linf(&model, &xs, &ys, r)?;
                        let (f, logits) = model.net.forward_all(&xs, None, true);
                        let (f_adv, logits_adv) = model.net.forward_all(&adv, None, true);
                        let consistency = (&f - &f_adv).square().sum_dim_intlist([1].as_slice(), false, Kind::Float);
                        let loss = logits.cross_entropy_for_logits(&ys)
                            + logits_adv.cross_entropy_for_logits(&ys) * r.adv_weight
                            + consistency.mean(Kind::Float) * r.beta;
                        opt.backward_step(&loss);
                        (logits, loss)
                    }
                    None => {
                        let logits = model.net.forward(&xs, None, true);
                        let loss = logits.cross_entropy_for_logits(&ys);
                        opt.backward_step(&loss);
                        (logits, loss)
                    }
                },
            };
            let bs = ys.size()[0] as usize;
            loss_sum += f64::try_from(&loss)? * bs as f64;
            correct += i64::try_from(logits.argmax(-1, false).eq_tensor(&ys).sum(Kind::Int64))?;
            seen += bs;
            pb.inc(1);
            if b % 50 == 0 {
                pb.set_message(format!(
                    "epoch {}/{} loss {:.4} acc {:.4} {:.0} img/s",
                    epoch + 1,
                    cfg.epochs,
                    loss_sum / seen as f64,
                    correct as f64 / seen as f64,
                    seen as f64 / epoch_start.elapsed().as_secs_f64()
                ));
            }
        }
        losses.push(loss_sum / seen as f64);
        accs.push(correct as f64 / seen as f64);
        pb.println(format!(
            "epoch {}/{}{}: loss {:.4}, train accuracy {:.4}, {:.0} images/s",
            epoch + 1,
            cfg.epochs,
            if gated_epoch { " (gated path)" } else { "" },
            losses[epoch],
            accs[epoch],
            seen as f64 / epoch_start.elapsed().as_secs_f64()
        ));
    }
    pb.finish_and_clear();
    if let Some((g, _, _)) = gated {
        model.csg = Some(g.detach().copy());
    }
    let seconds = start.elapsed().as_secs_f64();
    let report = TrainReport {
        epoch_loss: losses,
        epoch_accuracy: accs,
        seconds,
        images_per_sec: (n * cfg.epochs) as f64 / seconds,
    };
    Ok((model, report))
}

/// PGD-Linf examples of `xs` for adversarial and consistency training: a uniform random start within `eps`, then
/// `steps` signed-gradient steps of the cross-entropy of the eval-mode network, each projected back into the ball and
/// onto [0, 1]. Gradients are taken with respect to the images only (the weights' gradients stay untouched).
fn pgd_linf(model: &Model, xs: &Tensor, ys: &Tensor, r: &crate::models::training::Robust) -> Result<Tensor> {
    let start = (xs + Tensor::rand_like(xs) * (2.0 * r.eps) - r.eps).clamp(0.0, 1.0);
    let mut x = start.detach();
    for _ in 0..r.steps {
        let input = x.detach().set_requires_grad(true);
        let loss = model.net.forward(&input, None, false).cross_entropy_for_logits(ys);
        let grad = Tensor::f_run_backward(&[&loss], &[&input], false, false)?
            .pop()
            .ok_or_else(|| Error::Model("autograd returned no input gradient".into()))?;
        let _guard = tch::no_grad_guard();
        let stepped = x + grad.sign() * r.alpha;
        x = stepped.clamp_tensor(Some(&(xs - r.eps)), Some(&(xs + r.eps))).clamp(0.0, 1.0);
    }
    Ok(x.detach())
}

/// Trains on the dataset's training split, evaluates on its test split and saves weights + sidecar to `out`.
pub fn train_and_save(
    cfg: &TrainConfig,
    data_dir: Option<&Path>,
    device: Device,
    out: &Path,
) -> Result<(ModelMeta, TrainReport)> {
    cfg.validate()?;
    let train_ds = data::load(cfg.dataset, data_dir, Split::Train)?;
    let test_ds = data::load(cfg.dataset, data_dir, Split::Test)?;
    let (model, report) = train(cfg, &train_ds, device)?;
    let eval = evaluate(&model, &test_ds, 1000);
    let meta = ModelMeta {
        arch: cfg.arch,
        dataset: cfg.dataset,
        seed: cfg.seed,
        epochs: cfg.epochs,
        batch_size: cfg.batch_size,
        lr: cfg.lr,
        test_accuracy: eval.accuracy,
        advdet_version: env!("CARGO_PKG_VERSION").to_string(),
        data_hash: train_ds.source_hash.clone(),
        training: cfg.training.clone(),
    };
    checkpoint::save(&model, out, Some(&meta))?;
    Ok((meta, report))
}

/// The cached checkpoint for `cfg`, trained (once) when absent: `<cache>/models/<arch>-<dataset>-s<seed>-e<epochs>-<key>`.
/// Where the model cache keeps the model `cfg` trains on the training set with sha256 `data_hash`.
pub fn cached_model_path(cfg: &TrainConfig, data_hash: &str, device: Device) -> PathBuf {
    let key = cfg.cache_key(data_hash, device);
    data::cache_dir().join("models").join(format!(
        "{}-{}-s{}-e{}{}-{key}.safetensors",
        cfg.arch,
        cfg.dataset,
        cfg.seed,
        cfg.epochs,
        cfg.tag()
    ))
}

pub fn cached_model(cfg: &TrainConfig, data_dir: Option<&Path>, device: Device) -> Result<PathBuf> {
    cfg.validate()?;
    let train_ds = data::load(cfg.dataset, data_dir, Split::Train)?;
    let path = cached_model_path(cfg, &train_ds.source_hash, device);
    drop(train_ds);
    let ready = |p: &Path| {
        p.is_file()
            && checkpoint::sidecar_path(p).is_file()
            && (!cfg.training.is_csg() || crate::models::csg::gates_path(p).is_file())
    };
    if ready(&path) {
        return Ok(path);
    }
    // One process trains, the others wait for it: tests and suite runs in parallel would otherwise train the same model.
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let lock_path = path.with_extension("lock");
    let lock = std::fs::File::create(&lock_path).map_err(|e| Error::io(&lock_path, e))?;
    lock.lock().map_err(|e| Error::io(&lock_path, e))?;
    if !ready(&path) {
        train_and_save(cfg, data_dir, device, &path)?;
    }
    drop(lock);
    Ok(path)
}
