//! The cached stages of a suite run (data, model, class subnetworks after Wang et al., arXiv 1910.02673, attacks):
//! each computes into its cache folder and the run always reads the result back from disk, so a fresh, a resumed and a
//! warm run consume the same bytes.
use crate::attacks::{Adaptive, AttackSpec, DetectorTarget, FgsmSpec};
use crate::data::{self, Dataset, Split};
use crate::detectors::{Detector, DetectorKind};
use crate::error::{Error, Result};
use crate::io::{read_json, sha256_file, write_atomic, write_json};
use crate::models::checkpoint;
use crate::models::Model;
use crate::records::SubnetRecord;
use crate::report::manifest::{ScoreTime, StageTime};
use crate::routes::{Resources, RouteKind};
use crate::subnet::{self, Subnets};
use crate::suite::cache::{Cache, KeyBuilder, StageDir};
use crate::suite::schema::{Job, ModelSpec, Suite};
use crate::train;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Tensor};

/// What every stage needs: the suite, the cache, the device and the running tally of stage times.
pub struct Ctx<'a> {
    pub suite: &'a Suite,
    pub cache: Cache,
    pub device: Device,
    /// The CPU numerics of this process (pinned or native): part of every CPU stage's cache key.
    pub numerics: crate::cpu::CpuNumerics,
    pub stats: BTreeMap<&'static str, StageTime>,
    /// FGSM's gradient signs over the test images, by the FGSM spec without its eps: one gradient for an eps list.
    pub fgsm_signs: BTreeMap<String, Tensor>,
    /// Seconds per (detector, route) and per route pass of the scoring computed in this run.
    pub scoring: BTreeMap<(DetectorKind, RouteKind), f64>,
    pub route_passes: BTreeMap<RouteKind, f64>,
    /// The model's forward and backward calls while scoring.
    pub scoring_calls: (usize, usize),
    /// The fitted temperature of the `temperature` control route, when the suite runs it.
    pub temperature: Option<f64>,
    /// The class filter subsets of the `subspace` route, when the suite runs it.
    pub subspaces: Option<crate::routes::subspace::Subspaces>,
    /// The `nnd` route's fitted modules and their stage key, when the suite runs it.
    pub nnd: Option<(crate::routes::nnd::Nnd, String)>,
    /// The CDRP paths of the image sets being scored or fitted on (`use_cdrp_paths`); empty otherwise.
    pub cdrp_memo: crate::routes::cdrp::PathMemo,
}

/// The stages in pipeline order (the manifest lists them so); `paths` is the per-image path routes' own learning
/// (NND's modules, CDRP's paths of each image set, the path heatmaps).
pub const STAGES: [&str; 9] = ["data", "model", "subnets", "paths", "attacks", "fit", "scores", "metrics", "report"];

impl<'a> Ctx<'a> {
    /// What the routes draw on besides the model, for this variant's model and subnetworks.
    pub fn resources<'b>(&'b self, model: &'b ModelStage, sub: &'b SubnetStage) -> Resources<'b> {
        Resources {
            subnets: Some(&sub.subnets),
            temperature: self.temperature,
            second: model.second.as_ref().map(|s| &s.model),
            subspaces: self.subspaces.as_ref(),
            nnd: self.nnd.as_ref().map(|(n, _)| n),
            cdrp_paths: Some(&self.cdrp_memo),
        }
    }

    /// What makes a stage's bytes depend on the machine: `cuda`, or the CPU mode with its pins (native: the host).
    pub fn device_kind(&self) -> String {
        if self.device.is_cuda() {
            "cuda".to_string()
        } else {
            self.numerics.tag()
        }
    }

    /// Adds one instance of `stage` to the tally.
    pub fn record(&mut self, stage: &'static str, computed: bool, start: Instant) {
        self.record_many(stage, computed as usize, !computed as usize, start);
    }

    /// Records `computed` and `cached` instances of `stage` that took the time since `start` together.
    pub fn record_many(&mut self, stage: &'static str, computed: usize, cached: usize, start: Instant) {
        self.record_seconds(stage, computed, cached, start.elapsed().as_secs_f64());
    }

    /// Records `computed` and `cached` instances of `stage` that took `seconds` together.
    pub fn record_seconds(&mut self, stage: &'static str, computed: usize, cached: usize, seconds: f64) {
        let e = self.stats.entry(stage).or_insert_with(|| StageTime {
            stage: stage.to_string(),
            computed: 0,
            cached: 0,
            seconds: 0.0,
        });
        e.computed += computed;
        e.cached += cached;
        e.seconds += seconds;
    }

    pub fn stage_times(&self) -> Vec<StageTime> {
        STAGES.iter().filter_map(|s| self.stats.get(s).cloned()).collect()
    }

    /// The `(computed, seconds)` tallied so far for `stage`.
    pub fn tally(&self, stage: &str) -> (usize, f64) {
        self.stats.get(stage).map_or((0, 0.0), |s| (s.computed, s.seconds))
    }

    /// Adds one scoring's times: `detectors[i]` with its routes is scoring `i` of `scored`.
    pub fn add_scoring_times(&mut self, detectors: &[(DetectorKind, &[RouteKind])], scored: &crate::eval::Scores) {
        for ((kind, routes), secs) in detectors.iter().zip(&scored.seconds) {
            for (&r, s) in routes.iter().zip(secs) {
                *self.scoring.entry((*kind, r)).or_default() += s;
            }
        }
        for (&r, s) in &scored.pass_seconds {
            *self.route_passes.entry(r).or_default() += s;
        }
        self.scoring_calls.0 += scored.forwards;
        self.scoring_calls.1 += scored.backwards;
    }

    /// The scoring times for the manifest: per (detector, route) in suite order, and per route pass.
    pub fn scoring_times(&self) -> (Vec<ScoreTime>, BTreeMap<String, f64>) {
        let per = self
            .scoring
            .iter()
            .map(|((d, r), &seconds)| ScoreTime { detector: d.to_string(), route: r.to_string(), seconds })
            .collect();
        (per, self.route_passes.iter().map(|(r, &s)| (r.to_string(), s)).collect())
    }

    /// The scoring's model calls for the manifest.
    pub fn scoring_calls(&self) -> BTreeMap<String, usize> {
        BTreeMap::from([
            ("forwards".to_string(), self.scoring_calls.0),
            ("backwards".to_string(), self.scoring_calls.1),
        ])
    }

    pub fn say(&self, msg: &str) {
        eprintln!("[{}] {msg}", self.suite.name);
    }
}

/// Writes named tensors (moved to the CPU) to a .safetensors file atomically.
pub fn save_tensors(path: &Path, tensors: &[(&str, &Tensor)]) -> Result<()> {
    let cpu: Vec<(&str, Tensor)> = tensors.iter().map(|(n, t)| (*n, t.to_device(Device::Cpu).contiguous())).collect();
    write_atomic(path, |tmp| {
        Tensor::write_safetensors(&cpu, tmp).map_err(|e| Error::format(path, format!("cannot write: {e}")))
    })
}

/// Reads the named tensors of a .safetensors file, each required.
pub fn load_tensors(path: &Path, names: &[&str]) -> Result<Vec<Tensor>> {
    let all = Tensor::read_safetensors(path).map_err(|e| Error::format(path, format!("unreadable cache file: {e}")))?;
    names
        .iter()
        .map(|n| {
            all.iter()
                .find(|(k, _)| k == n)
                .map(|(_, t)| t.shallow_clone())
                .ok_or_else(|| Error::format(path, format!("no tensor named {n}")))
        })
        .collect()
}

/// The data of a run: the attacked test images, the held-out fitting images, and the full splits while needed.
pub struct DataStage {
    pub key: String,
    pub test: Dataset,
    pub fit: Dataset,
    pub test_full: Dataset,
    pub train_full: Option<Dataset>,
}

fn subset(like: &Dataset, images: Tensor, labels: Tensor) -> Dataset {
    Dataset { name: like.name, split: like.split, images, labels, source_hash: like.source_hash.clone() }
}

pub fn data_stage(ctx: &mut Ctx) -> Result<DataStage> {
    let start = Instant::now();
    let d = &ctx.suite.data;
    let hint = |e: Error| match e {
        Error::Missing(m) => {
            Error::Missing(format!("{m} (in a suite file: data_dir in [data] of {})", ctx.suite.path.display()))
        }
        other => other,
    };
    let test_full = data::load(d.dataset, d.data_dir.as_deref(), Split::Test).map_err(hint)?;
    let train_full = data::load(d.dataset, d.data_dir.as_deref(), Split::Train).map_err(hint)?;
    if d.fit_size >= train_full.len() {
        return Err(Error::config(
            "data.fit_size",
            d.fit_size,
            format!("must be below the {} images of the {} training split", train_full.len(), d.dataset),
        ));
    }
    let n_test = d.test_limit.min(test_full.len());
    let key = KeyBuilder::new("data")
        .part("dataset", d.dataset)
        .part("test", &test_full.source_hash)
        .part("train", &train_full.source_hash)
        .part("test_limit", n_test)
        .part("fit_size", d.fit_size)
        .finish();
    let stage = ctx.cache.stage("data", &key);
    let computed = !stage.is_done();
    if computed {
        stage.create()?;
        let test = test_full.limit(n_test);
        let fit = crate::eval::fit_split(&train_full, d.fit_size);
        let tensors = [
            ("test_images", &test.images),
            ("test_labels", &test.labels),
            ("fit_images", &fit.images),
            ("fit_labels", &fit.labels),
        ];
        save_tensors(&stage.file("data.safetensors"), &tensors)?;
        let info = BTreeMap::from([
            ("test_sha256", test_full.source_hash.clone()),
            ("train_sha256", train_full.source_hash.clone()),
        ]);
        stage.finish(&info)?;
    }
    let t = load_tensors(&stage.file("data.safetensors"), &["test_images", "test_labels", "fit_images", "fit_labels"])?;
    let test = subset(&test_full, t[0].shallow_clone(), t[1].shallow_clone());
    let fit = subset(&train_full, t[2].shallow_clone(), t[3].shallow_clone());
    ctx.record("data", computed, start);
    Ok(DataStage { key, test, fit, test_full, train_full: Some(train_full) })
}

/// The classifier of a run.
pub struct ModelStage {
    pub model: Model,
    pub path: PathBuf,
    pub hash: String,
    pub label: String,
    /// Clean accuracy on the full test split.
    pub accuracy: f64,
    /// The `second-model` control's network, when the suite runs that route.
    pub second: Option<Box<ModelStage>>,
}

impl ModelStage {
    /// What determines the scores of a detector besides the subnetworks: the model, and the second model if any.
    pub fn scoring_key(&self) -> String {
        match &self.second {
            Some(s) => format!("{}+{}", self.hash, s.hash),
            None => self.hash.clone(),
        }
    }
}

/// The suite's model (trained once into the model cache, or its weights file), and the second model when the suite
/// runs `second-model`.
pub fn model_stage(ctx: &mut Ctx, data: &DataStage) -> Result<ModelStage> {
    let mut stage = load_model(ctx, data, &ctx.suite.model.clone())?;
    if ctx.suite.modes.contains(&RouteKind::SecondModel) {
        let spec = ctx.suite.model.second().ok_or_else(|| Error::Missing("no second model for second-model".into()))?;
        let second = load_model(ctx, data, &spec)?;
        if second.hash == stage.hash {
            return Err(Error::Model(format!(
                "the second model is the model itself ({}): second-model needs an independently trained one",
                second.path.display()
            )));
        }
        stage.second = Some(Box::new(second));
    }
    Ok(stage)
}

fn load_model(ctx: &mut Ctx, data: &DataStage, spec: &ModelSpec) -> Result<ModelStage> {
    let start = Instant::now();
    let train_hash = &data.fit.source_hash;
    let (path, arch, label, computed) = match spec {
        ModelSpec::Train(cfg) => {
            let expected = train::cached_model_path(cfg, train_hash, ctx.device);
            let cached = expected.is_file() && checkpoint::sidecar_path(&expected).is_file();
            if !cached {
                ctx.say(&format!(
                    "training {} on {} ({} epochs, seed {}{}), once; later runs take it from the model cache",
                    cfg.arch,
                    cfg.dataset,
                    cfg.epochs,
                    cfg.seed,
                    match &cfg.training {
                        train::Training::Standard => String::new(),
                        t => format!(", {}", t.describe()),
                    }
                ));
            }
            let path = train::cached_model(cfg, ctx.suite.data.data_dir.as_deref(), ctx.device)?;
            (path, Some(cfg.arch), format!("{}-s{}-e{}{}", cfg.arch, cfg.seed, cfg.epochs, cfg.tag()), !cached)
        }
        ModelSpec::Weights { path, arch, .. } => {
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            (path.clone(), *arch, stem, false)
        }
    };
    let (mut model, meta) = checkpoint::load(&path, arch, ctx.device)?;
    model.arch.check_dataset(ctx.suite.data.dataset)?;
    model.freeze();
    let label = if label.starts_with(model.arch.as_str()) { label } else { format!("{}:{label}", model.arch) };
    // a model's class-specific gates are part of it: every stage keyed on the model is keyed on them too
    let gates = crate::models::csg::gates_path(&path);
    let hash = match model.csg.is_some() && gates.is_file() {
        true => format!("{}+csg{}", sha256_file(&path)?, sha256_file(&gates)?),
        false => sha256_file(&path)?,
    };
    let accuracy = match meta.filter(|m| m.dataset == ctx.suite.data.dataset && m.data_hash == *train_hash) {
        Some(m) => m.test_accuracy,
        None => train::evaluate(&model, &data.test_full, 500).accuracy,
    };
    ctx.record("model", computed, start);
    Ok(ModelStage { model, path, hash, label, accuracy, second: None })
}

/// The record of a model trained with class-specific gates (`None` for any other model): its gate matrix, their
/// class-specificity and the per-class clean accuracy of its paths on the whole test split.
pub fn csg_record(model: &ModelStage, data: &DataStage, batch_size: i64) -> Result<Option<crate::records::CsgRecord>> {
    let Some(g) = &model.model.csg else { return Ok(None) };
    let spec = crate::models::csg::specificity(g)?;
    let acc =
        crate::models::csg::path_accuracy(&model.model, &data.test_full.images, &data.test_full.labels, batch_size)?;
    Ok(Some(crate::records::CsgRecord {
        gates: Vec::<Vec<f64>>::try_from(g.to_kind(tch::Kind::Double).to_device(Device::Cpu))?,
        mean_max_share: spec.mean_max_share,
        mean_entropy: spec.mean_entropy,
        dead_channels: spec.dead_channels,
        kept_fraction: spec.kept_fraction,
        full_accuracy: acc.full,
        label_gated_accuracy: acc.by_label,
        predicted_gated_accuracy: acc.by_prediction,
    }))
}

/// The class subnetworks of the model.
pub struct SubnetStage {
    pub key: String,
    pub subnets: Subnets,
    pub file: PathBuf,
    pub record: SubnetRecord,
}

pub fn subnet_stage(ctx: &mut Ctx, data: &DataStage, model: &ModelStage) -> Result<SubnetStage> {
    let start = Instant::now();
    let key = KeyBuilder::new("subnets")
        .part("model", &model.hash)
        .part("data", &data.key)
        .json("config", &ctx.suite.subnet)
        .part("device", ctx.device_kind())
        .finish();
    let stage = ctx.cache.stage("subnets", &key);
    let computed = !stage.is_done();
    if computed {
        ctx.say("extracting the class subnetworks");
        stage.create()?;
        let train = data.train_full.as_ref().ok_or_else(|| Error::Missing("the training split was released".into()))?;
        // gates learn from the training images before the fit split; the analysis runs on the fit split (held out)
        let own = train.range(0, train.len() - ctx.suite.data.fit_size);
        let ex = subnet::extract(&model.model, &own, &data.fit, &ctx.suite.subnet)?;
        let weights = stage.file("subnets.safetensors");
        subnet::output::write_all(&ex, &weights)?;
        crate::report::heatmap::subnet_maps(&ex.summary.analysis, &weights)?;
        let a = &ex.summary.analysis;
        let record = SubnetRecord {
            layers: a.layers.clone(),
            kept: a.kept_per_layer.clone(),
            kept_fraction: a.kept_fraction.clone(),
            own_class_accuracy: a.own_class_accuracy.clone(),
            full_model_accuracy: a.full_model_accuracy.clone(),
            similarity: a.jaccard.clone(),
        };
        write_json(&stage.file("record.json"), &record)?;
        stage.finish(&BTreeMap::from([("extract_seconds", ex.summary.extract_seconds)]))?;
    }
    let file = stage.file("subnets.safetensors");
    let subnets = Subnets::load(&file, model.model.gate_layout(), ctx.device)?;
    let record: SubnetRecord = read_json(&stage.file("record.json"))?;
    ctx.record("subnets", computed, start);
    Ok(SubnetStage { key, subnets, file, record })
}

/// One job's adversarial images (the model's predictions on them come from the full-model pass that scores them),
/// and for an adaptive job its first descent's curve (`records::TargetRecord::curve`).
pub struct AttackStage {
    pub key: String,
    pub adversarial: Tensor,
    pub curve: Option<Vec<[f64; 3]>>,
}

/// The detector an adaptive job attacks on `mode`, at its operating point (`scoring::operating_points`).
pub struct AttackTarget<'a> {
    pub detector: &'a dyn Detector,
    pub mode: RouteKind,
    pub threshold: f64,
    pub scale: f64,
    /// The key of everything that determines the detector's scores (`scoring::DetectorSlot::key`).
    pub key: &'a str,
}

/// Whether an attack reads the subnetworks (its cache key then depends on them).
fn uses_subnets(job: &Job) -> bool {
    matches!(job.attack, AttackSpec::SubnetCe(_) | AttackSpec::Adaptive(_))
}

pub fn attack_stage(
    ctx: &mut Ctx,
    job: &Job,
    data: &DataStage,
    model: &ModelStage,
    sub: &SubnetStage,
    target: Option<&AttackTarget>,
) -> Result<AttackStage> {
    let start = Instant::now();
    let mut kb = KeyBuilder::new("attack")
        .part("model", &model.hash)
        .part("data", &data.key)
        .json("spec", &job.attack)
        .part("device", ctx.device_kind());
    if uses_subnets(job) {
        kb = kb.part("subnets", &sub.key);
    }
    if let Some(t) = target {
        kb = kb
            .part("detector", t.key)
            .part("mode", t.mode)
            .part("threshold", format!("{:e}", t.threshold))
            .part("scale", format!("{:e}", t.scale));
        if let Some(temp) = ctx.temperature {
            kb = kb.part("temperature", format!("{temp:e}"));
        }
    }
    let key = kb.finish();
    let stage: StageDir = ctx.cache.stage("attack", &key);
    let computed = !stage.is_done();
    if computed {
        stage.create()?;
        let batch = ctx.suite.batch_size as i64;
        let (images, labels) = (&data.test.images, &data.test.labels);
        let adv = match &job.attack {
            // every eps of an FGSM list steps along the same gradient sign: one forward+backward for all of them
            AttackSpec::Fgsm(spec) => {
                let fgsm = spec.build()?;
                let shared = format!("{:?}", FgsmSpec { eps: None, ..spec.clone() });
                let sign = match ctx.fgsm_signs.get(&shared) {
                    Some(s) => s.shallow_clone(),
                    None => {
                        let s = fgsm.gradient_signs(&model.model, images, labels, batch)?;
                        ctx.fgsm_signs.insert(shared, s.shallow_clone());
                        s
                    }
                };
                fgsm.step(&images.to_device(model.model.device()), &sign)
            }
            AttackSpec::Adaptive(spec) => {
                let t = target.ok_or_else(|| Error::Missing(format!("job {}: no detector to attack", job.index)))?;
                let route = crate::routes::build(t.mode, &model.model, ctx.resources(model, sub))?;
                let target = DetectorTarget {
                    detector: t.detector,
                    route: route.as_ref(),
                    threshold: t.threshold,
                    scale: t.scale,
                };
                let attack = Adaptive::new(spec.config()?, target);
                let adv = crate::attacks::run_batched(&attack, &model.model, images, labels, batch)?;
                write_json(&stage.file("curve.json"), &*attack.curve.borrow())?;
                adv
            }
            _ => {
                let attack = crate::attacks::build(&job.attack, Some(&sub.subnets))?;
                crate::attacks::run_batched(attack.as_ref(), &model.model, images, labels, batch)?
            }
        };
        save_tensors(&stage.file("adv.safetensors"), &[("adversarial", &adv)])?;
        stage.finish(&BTreeMap::from([("seconds", start.elapsed().as_secs_f64())]))?;
    }
    let t = load_tensors(&stage.file("adv.safetensors"), &["adversarial"])?;
    let curve = match target {
        Some(_) => Some(read_json(&stage.file("curve.json"))?),
        None => None,
    };
    ctx.record("attacks", computed, start);
    Ok(AttackStage { key, adversarial: t[0].shallow_clone(), curve })
}

/// The supervised detectors' training images: the regression half of the fit images (`eval::supervised_split`), clean,
/// and their versions under the suite's training attack `job` (cached). Training images only, never test images.
pub fn train_attack_stage(ctx: &mut Ctx, job: &Job, data: &DataStage, model: &ModelStage) -> Result<(Dataset, Tensor)> {
    let start = Instant::now();
    let (_, clean) = crate::eval::supervised_split(&data.fit);
    let key = KeyBuilder::new("train-attack")
        .part("model", &model.hash)
        .part("data", &data.key)
        .json("spec", &job.attack)
        .part("device", ctx.device_kind())
        .finish();
    let stage: StageDir = ctx.cache.stage("train-attack", &key);
    let computed = !stage.is_done();
    if computed {
        stage.create()?;
        let attack = crate::attacks::build(&job.attack, None)?;
        let batch = ctx.suite.batch_size as i64;
        let adv = crate::attacks::run_batched(attack.as_ref(), &model.model, &clean.images, &clean.labels, batch)?;
        save_tensors(&stage.file("adv.safetensors"), &[("adversarial", &adv)])?;
        stage.finish(&BTreeMap::from([("seconds", start.elapsed().as_secs_f64())]))?;
    }
    let t = load_tensors(&stage.file("adv.safetensors"), &["adversarial"])?;
    ctx.record("attacks", computed, start);
    Ok((clean, t[0].shallow_clone()))
}

/// The `nnd` route's architecture-controlling modules for `model`, trained (cached) on the training images before the
/// fit split, the classifier frozen.
pub fn nnd_stage(ctx: &mut Ctx, data: &DataStage, model: &ModelStage) -> Result<(crate::routes::nnd::Nnd, String)> {
    use crate::routes::nnd::{Nnd, NndConfig};
    let start = Instant::now();
    let cfg = NndConfig { seed: ctx.suite.seed, ..Default::default() };
    let key = KeyBuilder::new("nnd")
        .part("model", &model.hash)
        .part("data", &data.key)
        .json("config", &cfg)
        .part("device", ctx.device_kind())
        .finish();
    let stage: StageDir = ctx.cache.stage("nnd", &key);
    let computed = !stage.is_done();
    let mut nnd = Nnd::new(&model.model, cfg)?;
    let file = stage.file("nnd.safetensors");
    if computed {
        let train = data
            .train_full
            .as_ref()
            .ok_or_else(|| Error::Missing("nnd: the training split is no longer loaded".into()))?;
        let n = train.len().saturating_sub(data.fit.len());
        let images = train.range(0, n);
        ctx.say(&format!("nnd route: training the controlling modules on {n} training images, the classifier frozen"));
        stage.create()?;
        let losses = nnd.fit(&model.model, &images.images, &images.labels)?;
        ctx.say(&format!("nnd route: mean loss per epoch {losses:.4?}"));
        nnd.vs.save(&file).map_err(|e| Error::io(&file, std::io::Error::other(e.to_string())))?;
        stage.finish(&BTreeMap::from([("losses", format!("{losses:?}"))]))?;
    }
    nnd.vs.load(&file).map_err(|e| Error::format(&file, format!("unreadable nnd modules: {e}")))?;
    ctx.record("paths", computed, start);
    Ok((nnd, key))
}

/// Makes the `cdrp` route read the paths of the images of `sets` (each an image set: the clean test or fit images, an
/// attack's images), each set's learned once (`cdrp::set_paths`, in batches from its first image) and cached per
/// (model, image set) as a `cdrp-paths` stage; every use of a set's paths then reads the same bytes. Nothing when the
/// suite does not run the `cdrp` route. `forget_cdrp_paths` ends the use.
pub fn use_cdrp_paths(ctx: &mut Ctx, model: &ModelStage, sets: &[&Tensor]) -> Result<()> {
    use crate::routes::cdrp::{images_key, set_paths, CdrpConfig, PATH_BATCH};
    if !ctx.suite.modes.contains(&RouteKind::Cdrp) {
        return Ok(());
    }
    let cfg = CdrpConfig::default();
    let units = model.model.gate_layout().units();
    let mut loaded = Vec::new();
    for images in sets {
        let start = Instant::now();
        let key = KeyBuilder::new("cdrp-paths")
            .part("model", &model.hash)
            .part("images", images_key(images)?)
            .json("config", &cfg)
            .part("batch", PATH_BATCH)
            .part("device", ctx.device_kind())
            .finish();
        let stage = ctx.cache.stage("cdrp-paths", &key);
        let file = stage.file("paths.safetensors");
        let computed = !stage.is_done();
        if computed {
            stage.create()?;
            let paths = set_paths(&model.model, images, &cfg)?;
            save_tensors(&file, &[("paths", &paths)])?;
            stage.finish(&BTreeMap::from([("seconds", start.elapsed().as_secs_f64())]))?;
        }
        let paths = load_tensors(&file, &["paths"])?.pop().ok_or_else(|| Error::format(&file, "no paths"))?;
        let n = images.size()[0];
        if paths.size() != [n, units] {
            return Err(Error::format(
                &file,
                format!(
                    "CDRP paths of shape {:?}, expected [{n}, {units}] for these images and model {}: the cache holds \
                     another model's or image set's paths",
                    paths.size(),
                    model.hash
                ),
            ));
        }
        loaded.push(paths);
        ctx.record("paths", computed, start);
    }
    let pairs: Vec<(&Tensor, &Tensor)> = sets.iter().copied().zip(loaded.iter()).collect();
    ctx.cdrp_memo.replace(&pairs)
}

/// Ends a `use_cdrp_paths`: the `cdrp` route learns its paths again (the adaptive attack's perturbed images).
pub fn forget_cdrp_paths(ctx: &Ctx) {
    ctx.cdrp_memo.clear();
}

/// Images (the first of the fit split, clean training images) whose paths the path-similarity heatmaps summarise.
pub const PATH_IMAGES: usize = 1000;

/// The class similarity of the paths of every path route the suite runs (`records::PathSimilarity`), cached.
pub fn path_similarity(
    ctx: &mut Ctx,
    data: &DataStage,
    model: &ModelStage,
    sub: &SubnetStage,
) -> Result<Vec<crate::records::PathSimilarity>> {
    let mut out = Vec::new();
    for kind in [RouteKind::Cdrp, RouteKind::Nnd].into_iter().filter(|k| ctx.suite.modes.contains(k)) {
        let start = Instant::now();
        let mut kb = KeyBuilder::new("path-similarity")
            .part("model", &model.hash)
            .part("data", &data.key)
            .part("route", kind)
            .part("images", PATH_IMAGES)
            .part("device", ctx.device_kind());
        if let (RouteKind::Nnd, Some((_, k))) = (kind, &ctx.nnd) {
            kb = kb.part("nnd", k);
        }
        let stage = ctx.cache.stage("path-similarity", &kb.finish());
        let computed = !stage.is_done();
        // the CDRP paths it reads are tallied by their own stage
        let nested = ctx.tally("paths").1;
        if computed {
            stage.create()?;
            if kind == RouteKind::Cdrp {
                use_cdrp_paths(ctx, model, &[&data.fit.images])?;
            }
            let rec = class_paths(ctx, data, model, sub, kind);
            forget_cdrp_paths(ctx);
            let rec = rec?;
            write_json(&stage.file("record.json"), &rec)?;
            stage.finish(&BTreeMap::from([("seconds", start.elapsed().as_secs_f64())]))?;
        }
        out.push(read_json(&stage.file("record.json"))?);
        let seconds = start.elapsed().as_secs_f64() - (ctx.tally("paths").1 - nested);
        ctx.record_seconds("paths", computed as usize, !computed as usize, seconds);
    }
    Ok(out)
}

fn class_paths(
    ctx: &Ctx,
    data: &DataStage,
    model: &ModelStage,
    sub: &SubnetStage,
    kind: RouteKind,
) -> Result<crate::records::PathSimilarity> {
    use tch::Kind;
    let m = &model.model;
    let ds = data.fit.limit(PATH_IMAGES);
    let route = crate::routes::build(kind, m, ctx.resources(model, sub))?;
    let conv = crate::routes::cdrp::conv_columns(m).squeeze_dim(0).nonzero().squeeze_dim(1);
    let paths = crate::routes::image_paths(m, route.as_ref(), &ds.images, 250)?;
    let open = paths.index_select(1, &conv).gt(0.5).to_kind(Kind::Double).to_device(Device::Cpu);
    // a class's path: the channels open on at least half its images (none for a class with no image)
    let masks: Vec<Tensor> = crate::routes::class_means(&open, &ds.labels, m.num_classes())
        .into_iter()
        .map(|mean| match mean {
            Some(mean) => mean.ge(0.5).to_kind(Kind::Double),
            None => Tensor::zeros([open.size()[1]], (Kind::Double, Device::Cpu)),
        })
        .collect();
    Ok(crate::records::PathSimilarity {
        route: kind.to_string(),
        images: ds.len(),
        open_share: open.mean(Kind::Double).double_value(&[]),
        similarity: crate::subnet::analysis::jaccard(&Tensor::stack(&masks, 0))?,
    })
}
