//! Suite files (`attacks/*.toml`): the TOML schema of one benchmark run of the class-specific-subnetwork detectors
//! (Wang, Hu, Su, arXiv 1910.02673), validated before any tensor is touched; unknown keys are rejected with the
//! file, key and line, and each `[[attack]]` eps list expands into one job per value.
use crate::attacks::AttackSpec;
use crate::cpu::CpuMode;
use crate::data::DatasetName;
use crate::detectors::{DetectorConfig, DetectorKind};
use crate::device::DeviceChoice;
use crate::error::{Error, Result};
use crate::eval::Protocol;
use crate::models::training::Robust;
use crate::models::Arch;
use crate::routes::RouteKind;
use crate::subnet::ExtractConfig;
use crate::suite::expand::{detector_section, expand_attacks, train_attack, Targets};
use crate::suite::locate::{line_of, Locator};
use crate::train::{TrainConfig, Training};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSuite {
    suite: SuiteSection,
    data: DataSection,
    #[serde(default)]
    model: ModelSection,
    #[serde(default)]
    subnet: Option<toml::Table>,
    subspace: Option<SubspaceSection>,
    #[serde(default)]
    attack: Vec<toml::Table>,
    detectors: toml::Table,
    #[serde(default)]
    metrics: MetricsSection,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteSection {
    name: Spanned<String>,
    #[serde(default)]
    seed: u64,
    device: Option<DeviceChoice>,
    cpu_mode: Option<CpuMode>,
    batch_size: Option<Spanned<usize>>,
    seeds: Option<Spanned<Vec<u64>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DataSection {
    dataset: DatasetName,
    data_dir: Option<PathBuf>,
    test_limit: Option<Spanned<usize>>,
    fit_size: Option<Spanned<usize>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ModelSection {
    arch: Option<Arch>,
    epochs: Option<usize>,
    batch_size: Option<usize>,
    lr: Option<f64>,
    lr_decay: Option<f64>,
    seed: Option<u64>,
    weights: Option<Spanned<PathBuf>>,
    second_weights: Option<Spanned<PathBuf>>,
    training: Option<Spanned<String>>,
    csg_warmup: Option<usize>,
    csg_every: Option<usize>,
    csg_gate_lr: Option<f64>,
    adv_eps: Option<f64>,
    adv_steps: Option<usize>,
    consistency_beta: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubspaceSection {
    /// One size, or a list of sizes to sweep.
    k: Spanned<toml::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MetricsSection {
    bootstrap: Option<usize>,
    protocol: Option<Spanned<String>>,
}

/// Where the classifier comes from: trained (and cached) from a config, or a weights file.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSpec {
    Train(TrainConfig),
    /// `second`: the `second-model` control's weights (`[model] second_weights`).
    Weights {
        path: PathBuf,
        arch: Option<Arch>,
        second: Option<PathBuf>,
    },
}

impl ModelSpec {
    /// The `second-model` control's network: the same training with the seed after this one's, or the second weights
    /// file.
    pub fn second(&self) -> Option<ModelSpec> {
        match self {
            ModelSpec::Train(c) => Some(ModelSpec::Train(TrainConfig { seed: c.seed.wrapping_add(1), ..c.clone() })),
            ModelSpec::Weights { second, arch, .. } => {
                second.as_ref().map(|p| ModelSpec::Weights { path: p.clone(), arch: *arch, second: None })
            }
        }
    }
}

/// One (seed, lambda, k) of a suite's `[suite] seeds` x `[subnet] lambda` x `[subspace] k`: a model, an extraction and
/// a set of class filter subsets of its own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Variant {
    /// Position among the suite's seeds (0 without `seeds`).
    pub seed_index: usize,
    /// The model training and extraction seed (`None` without `[suite] seeds`: the `[model]`/`[subnet]` seeds hold).
    pub seed: Option<u64>,
    pub lambda: f64,
    /// The `subspace` route's k (`None` when the suite does not run that route).
    pub subspace_k: Option<usize>,
}

/// The images of a run: the first `test_limit` test images (file order) are attacked; the last `fit_size` training
/// images fit the detectors that need fitting.
#[derive(Debug, Clone, PartialEq)]
pub struct DataSpec {
    pub dataset: DatasetName,
    pub data_dir: Option<PathBuf>,
    pub test_limit: usize,
    pub fit_size: usize,
}

/// One attack with one parameter set: the unit of caching and sharding.
#[derive(Debug, Clone)]
pub struct Job {
    /// Position in the expanded suite.
    pub index: usize,
    pub attack: AttackSpec,
    pub name: String,
    /// The parameters as written in the suite, `key=value` joined by spaces, keys sorted (the results' `params`).
    pub params: String,
}

/// A validated suite.
#[derive(Debug, Clone)]
pub struct Suite {
    pub path: PathBuf,
    /// sha256 of the file's bytes.
    pub source_hash: String,
    pub name: String,
    pub seed: u64,
    pub device: Option<DeviceChoice>,
    /// `reproducible` (pinned CPU kernels, the default) or `native`; `--cpu-mode` overrides it.
    pub cpu_mode: Option<CpuMode>,
    /// Images per batch for attacks and scoring.
    pub batch_size: usize,
    pub data: DataSpec,
    pub model: ModelSpec,
    pub subnet: ExtractConfig,
    /// `[suite] seeds`: each trains its own model and extracts its own subnetworks (empty: the one model of `[model]`).
    pub seeds: Vec<u64>,
    /// `[subnet] lambda` as a list: one extraction per value (one value without a list).
    pub lambdas: Vec<f64>,
    pub jobs: Vec<Job>,
    pub detectors: Vec<DetectorKind>,
    /// The routes detectors score on (`[detectors] modes`).
    pub modes: Vec<RouteKind>,
    /// `[subspace] k`: the size of each class's filter subset of the `subspace` route (the first of `subspace_ks`).
    pub subspace_k: usize,
    /// `[subspace] k` as a list: one set of class subsets per value, swept as lambda is (one value without a list).
    pub subspace_ks: Vec<usize>,
    pub detector_config: DetectorConfig,
    /// The attack the supervised detectors are trained on (`[detectors] train_attack`), one of `jobs`; `None` when the
    /// suite scores no supervised detector.
    pub train_attack: Option<Job>,
    /// Bootstrap resamples for the confidence intervals (0: none).
    pub bootstrap: usize,
    /// Successful and/or all (see `eval::protocol_sets`).
    pub protocols: Vec<Protocol>,
}

/// Reads and validates a suite file.
pub fn load(path: &Path) -> Result<Suite> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let src = String::from_utf8(bytes.clone()).map_err(|e| Error::format(path, format!("not UTF-8: {e}")))?;
    parse(path, &src, crate::io::sha256_bytes(&bytes))
}

/// Validates the text of a suite file; `path` is only used in messages and as the suite's origin.
pub fn parse(path: &Path, src: &str, source_hash: String) -> Result<Suite> {
    let loc = Locator { path, src };
    let raw: RawSuite = toml::from_str(src).map_err(|e| {
        let line = e.span().map(|s| line_of(src, s.start));
        // a bad value: the key is the left side of its line (serde quotes the value, not the key)
        let lhs = line
            .filter(|_| e.message().starts_with("invalid"))
            .and_then(|l| src.lines().nth(l - 1))
            .and_then(|t| t.split_once('='))
            .map(|(k, _)| k.trim().to_string());
        let key = lhs.or_else(|| quoted(e.message()));
        loc.error_line(line, key.as_deref().unwrap_or(""), e.message().trim())
    })?;

    let name = raw.suite.name.get_ref().clone();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) || name.starts_with('.')
    {
        let line = line_of(src, raw.suite.name.span().start);
        return Err(loc.error_line(
            Some(line),
            "suite.name",
            "must be a non-empty folder name of letters, digits, - _ .",
        ));
    }
    let seed = raw.suite.seed;
    let batch_size = positive(&loc, raw.suite.batch_size, "suite.batch_size", 256)?;

    let d = raw.data;
    let data = DataSpec {
        dataset: d.dataset,
        data_dir: d.data_dir,
        test_limit: positive(&loc, d.test_limit, "data.test_limit", 10_000)?,
        fit_size: positive(&loc, d.fit_size, "data.fit_size", 5_000)?,
    };

    let seeds = match raw.suite.seeds {
        None => Vec::new(),
        Some(v) => {
            let line = Some(line_of(src, v.span().start));
            let list = v.into_inner();
            if list.is_empty() {
                return Err(loc.error_line(line, "suite.seeds", "must list at least one seed"));
            }
            if let Some(d) = list.iter().enumerate().find(|(i, x)| list[..*i].contains(x)) {
                return Err(loc.error_line(line, "suite.seeds", &format!("seed {} is listed twice", d.1)));
            }
            if raw.model.seed.is_some() {
                return Err(loc.error_section(
                    "model",
                    0,
                    Some("seed"),
                    "cannot be combined with suite.seeds: each of those seeds trains a model",
                ));
            }
            if let Some(w) = &raw.model.weights {
                return Err(loc.error_line(
                    Some(line_of(src, w.span().start)),
                    "model.weights",
                    "cannot be combined with suite.seeds: seeds train models, weights are used as they are",
                ));
            }
            list
        }
    };
    let model = model_spec(&loc, raw.model, data.dataset)?;
    let (subnet, lambdas): (ExtractConfig, Vec<f64>) = match raw.subnet {
        Some(mut t) => {
            let list = match t.get("lambda") {
                Some(toml::Value::Array(a)) => Some(lambda_list(&loc, a)?),
                _ => None,
            };
            if let Some(l) = &list {
                t.insert("lambda".into(), toml::Value::Float(l[0]));
            }
            let cfg: ExtractConfig = loc.typed(t, "subnet", 0)?;
            let lambdas = list.unwrap_or_else(|| vec![cfg.lambda]);
            (cfg, lambdas)
        }
        None => (ExtractConfig::default(), vec![ExtractConfig::default().lambda]),
    };
    subnet.validate().map_err(|e| loc.error_section("subnet", 0, None, &e.to_string()))?;

    let all_requested = raw.detectors.get("names").and_then(|v| v.as_str()) == Some("all");
    let section = detector_section(&loc, raw.detectors)?;
    let (mut detectors, modes, mut detector_config) = (section.detectors, section.modes, section.config);
    let targets = Targets { detectors: &detectors, modes: &modes, config: &detector_config };
    let jobs = expand_attacks(&loc, raw.attack, seed, &targets)?;
    if jobs.is_empty() {
        return Err(loc.error_line(None, "attack", "the suite has no [[attack]] entry"));
    }
    let train_attack = train_attack(&loc, section.train_attack, &jobs, &mut detectors, all_requested)?;
    if modes.contains(&RouteKind::SecondModel) && model.second().is_none() {
        return Err(loc.error_section(
            "detectors",
            0,
            Some("modes"),
            "second-model needs a second network: with model.weights, give model.second_weights (an independently \
             trained model of the same architecture)",
        ));
    }
    let subspace_ks = subspace_ks(&loc, raw.subspace, &modes, &model)?;
    if let (Some(m), ModelSpec::Train(c)) = (modes.iter().find(|m| m.needs_class_gates()), &model) {
        if !c.training.is_csg() {
            return Err(loc.error_section(
                "detectors",
                0,
                Some("modes"),
                &format!("{m} needs a model trained with class-specific gates: set [model] training = \"csg\""),
            ));
        }
    }
    detector_config.fit_size = data.fit_size;
    detector_config.validate().map_err(|e| loc.error_section("detectors", 0, None, &e.to_string()))?;

    let protocols = match raw.metrics.protocol {
        None => vec![Protocol::Successful],
        Some(p) => match p.get_ref().as_str() {
            "successful" => vec![Protocol::Successful],
            "all" => vec![Protocol::All],
            "both" => Protocol::BOTH.to_vec(),
            other => {
                return Err(loc.error_line(
                    Some(line_of(src, p.span().start)),
                    "metrics.protocol",
                    &format!("`{other}`: expected successful, all or both"),
                ))
            }
        },
    };
    Ok(Suite {
        path: path.to_path_buf(),
        source_hash,
        name,
        seed,
        device: raw.suite.device,
        cpu_mode: raw.suite.cpu_mode,
        batch_size,
        data,
        model,
        subnet,
        seeds,
        lambdas,
        jobs,
        detectors,
        modes,
        subspace_k: subspace_ks[0],
        subspace_ks,
        detector_config,
        train_attack,
        bootstrap: raw.metrics.bootstrap.unwrap_or(1000),
        protocols,
    })
}

/// `[subspace] k`, one value or a list: each at least 1 and at most the architecture's penultimate features (when the
/// suite names it), none twice, only with the `subspace` mode (a list also with `full` and `subnet`, which the subset
/// sweep reads); `subspace::DEFAULT_K` without the section.
fn subspace_ks(
    loc: &Locator,
    section: Option<SubspaceSection>,
    modes: &[RouteKind],
    model: &ModelSpec,
) -> Result<Vec<usize>> {
    let Some(sec) = section else { return Ok(vec![crate::routes::subspace::DEFAULT_K]) };
    let line = Some(line_of(loc.src, sec.k.span().start));
    if !modes.contains(&RouteKind::Subspace) {
        return Err(loc.error_line(line, "subspace.k", "the suite does not run the subspace mode ([detectors] modes)"));
    }
    let not_int = |v: &toml::Value| loc.error_line(line, "subspace.k", &format!("`{v}` is not a whole number"));
    let ks: Vec<i64> = match sec.k.into_inner() {
        toml::Value::Integer(k) => vec![k],
        toml::Value::Array(list) if list.is_empty() => {
            return Err(loc.error_line(line, "subspace.k", "the list is empty: give at least one value"))
        }
        toml::Value::Array(list) => {
            list.iter().map(|v| v.as_integer().ok_or_else(|| not_int(v))).collect::<Result<_>>()?
        }
        other => return Err(not_int(&other)),
    };
    // the subset sweep reads each k's subspace row beside the same model's full and subnet rows
    if ks.len() > 1 && !(modes.contains(&RouteKind::Full) && modes.contains(&RouteKind::Subnet)) {
        return Err(loc.error_line(
            line,
            "subspace.k",
            "a list of k is a sweep against the full model: [detectors] modes must hold full and subnet as well",
        ));
    }
    let arch = match model {
        ModelSpec::Train(c) => Some(c.arch),
        ModelSpec::Weights { arch, .. } => *arch,
    };
    let width = arch.map(|a| a.feature_width());
    let mut out: Vec<usize> = Vec::new();
    for k in ks {
        if k < 1 || width.is_some_and(|w| k > w) {
            let most = match (arch, width) {
                (Some(a), Some(w)) => format!("the {w} penultimate features of {a}"),
                _ => "the penultimate features".to_string(),
            };
            return Err(loc.error_line(line, "subspace.k", &format!("{k}: must be between 1 and {most}")));
        }
        if out.contains(&(k as usize)) {
            return Err(loc.error_line(line, "subspace.k", &format!("{k} is listed twice")));
        }
        out.push(k as usize);
    }
    Ok(out)
}

/// `[subnet] lambda` as a list: non-empty, each value a positive finite number, none twice.
fn lambda_list(loc: &Locator, a: &[toml::Value]) -> Result<Vec<f64>> {
    let err = |msg: &str| loc.error_section("subnet", 0, Some("lambda"), msg);
    if a.is_empty() {
        return Err(err("the list is empty: give at least one value"));
    }
    let mut out: Vec<f64> = Vec::new();
    for v in a {
        let x = match v {
            toml::Value::Float(f) => *f,
            toml::Value::Integer(i) => *i as f64,
            other => return Err(err(&format!("`{other}` is not a number"))),
        };
        if !(x.is_finite() && x > 0.0) {
            return Err(err(&format!("{x}: every value of a lambda list must be a positive number")));
        }
        if out.contains(&x) {
            return Err(err(&format!("{x} is listed twice")));
        }
        out.push(x);
    }
    Ok(out)
}

impl Suite {
    /// The (seed, lambda, k) triples of the suite, seeds first, then lambdas: one model per seed, one extraction per
    /// (seed, lambda), one set of class subsets per triple (k only when the suite runs the `subspace` route).
    pub fn variants(&self) -> Vec<Variant> {
        let seeds: Vec<Option<u64>> =
            if self.seeds.is_empty() { vec![None] } else { self.seeds.iter().map(|&s| Some(s)).collect() };
        let ks: Vec<Option<usize>> = match self.modes.contains(&RouteKind::Subspace) {
            true => self.subspace_ks.iter().map(|&k| Some(k)).collect(),
            false => vec![None],
        };
        let mut out = Vec::new();
        for (seed_index, &seed) in seeds.iter().enumerate() {
            for &lambda in &self.lambdas {
                out.extend(ks.iter().map(|&subspace_k| Variant { seed_index, seed, lambda, subspace_k }));
            }
        }
        out
    }

    /// The number of seeds (1 without `[suite] seeds`).
    pub fn seed_count(&self) -> usize {
        self.seeds.len().max(1)
    }

    /// This suite as it runs for one variant: its seed trains the model and seeds the extraction, its lambda weighs
    /// the extraction's penalty, its k sizes the class subsets.
    pub fn for_variant(&self, v: Variant) -> Suite {
        let mut s = self.clone();
        s.subnet.lambda = v.lambda;
        if let Some(k) = v.subspace_k {
            s.subspace_k = k;
        }
        if let Some(seed) = v.seed {
            s.subnet.seed = seed;
            if let ModelSpec::Train(c) = &mut s.model {
                c.seed = seed;
            }
        }
        s
    }
}

/// The first backquoted word of a message (toml and serde name the offending key that way).
fn quoted(msg: &str) -> Option<String> {
    let start = msg.find('`')? + 1;
    let len = msg[start..].find('`')?;
    Some(msg[start..start + len].to_string())
}

fn positive(loc: &Locator, v: Option<Spanned<usize>>, key: &str, default: usize) -> Result<usize> {
    match v {
        None => Ok(default),
        Some(s) if *s.get_ref() == 0 => {
            Err(loc.error_line(Some(line_of(loc.src, s.span().start)), key, "must be at least 1"))
        }
        Some(s) => Ok(*s.get_ref()),
    }
}

fn model_spec(loc: &Locator, m: ModelSection, dataset: DatasetName) -> Result<ModelSpec> {
    if let (Some(s), None) = (&m.second_weights, &m.weights) {
        return Err(loc.error_line(
            Some(line_of(loc.src, s.span().start)),
            "model.second_weights",
            "only goes with model.weights (a trained model's second network is the next seed's)",
        ));
    }
    if let Some(w) = m.weights {
        let line = Some(line_of(loc.src, w.span().start));
        let trained = [
            ("epochs", m.epochs.is_some()),
            ("batch_size", m.batch_size.is_some()),
            ("lr", m.lr.is_some()),
            ("lr_decay", m.lr_decay.is_some()),
            ("seed", m.seed.is_some()),
            ("training", m.training.is_some()),
            ("csg_warmup", m.csg_warmup.is_some()),
            ("csg_every", m.csg_every.is_some()),
            ("csg_gate_lr", m.csg_gate_lr.is_some()),
            ("adv_eps", m.adv_eps.is_some()),
            ("adv_steps", m.adv_steps.is_some()),
            ("consistency_beta", m.consistency_beta.is_some()),
        ];
        if let Some((k, _)) = trained.iter().find(|(_, set)| *set) {
            return Err(loc.error_line(
                line,
                "model.weights",
                &format!("cannot be combined with model.{k}: weights are used as they are"),
            ));
        }
        if let Some(a) = m.arch {
            a.check_dataset(dataset).map_err(|e| loc.error_line(line, "model.arch", &e.to_string()))?;
        }
        let second = m.second_weights.map(Spanned::into_inner);
        return Ok(ModelSpec::Weights { path: w.into_inner(), arch: m.arch, second });
    }
    let arch = m.arch.unwrap_or_else(|| Arch::default_for(dataset));
    let mut cfg = TrainConfig::default_for(dataset, arch);
    let kind = match &m.training {
        None => "standard",
        Some(t) => match t.get_ref().as_str() {
            k @ ("standard" | "csg" | "adversarial" | "consistency") => k,
            other => {
                return Err(loc.error_line(
                    Some(line_of(loc.src, t.span().start)),
                    "model.training",
                    &format!("`{other}`: expected standard, csg, adversarial or consistency"),
                ))
            }
        },
    };
    // each training's own keys, refused with any other
    let own: [(&str, bool, &[&str]); 6] = [
        ("csg_warmup", m.csg_warmup.is_some(), &["csg"]),
        ("csg_gate_lr", m.csg_gate_lr.is_some(), &["csg"]),
        ("csg_every", m.csg_every.is_some(), &["csg"]),
        ("adv_eps", m.adv_eps.is_some(), &["adversarial", "consistency"]),
        ("adv_steps", m.adv_steps.is_some(), &["adversarial", "consistency"]),
        ("consistency_beta", m.consistency_beta.is_some(), &["consistency"]),
    ];
    if let Some((k, _, with)) = own.iter().find(|(_, set, with)| *set && !with.contains(&kind)) {
        let with: Vec<String> = with.iter().map(|w| format!("\"{w}\"")).collect();
        return Err(loc.error_section(
            "model",
            0,
            Some(k),
            &format!("only goes with model.training = {}", with.join(" or ")),
        ));
    }
    match kind {
        "csg" => {
            // CSG-CNN's schedule ends on a gated epoch when the epochs are a multiple of 3: 9 on MNIST-like data
            cfg.epochs = m.epochs.unwrap_or(if arch == Arch::Lenet { 9 } else { cfg.epochs });
            let Training::Csg { warmup, every, gate_lr } = Training::csg_for(cfg.epochs) else {
                unreachable!("csg_for is csg")
            };
            cfg.training = Training::Csg {
                warmup: m.csg_warmup.unwrap_or(warmup),
                every: m.csg_every.unwrap_or(every),
                gate_lr: m.csg_gate_lr.unwrap_or(gate_lr),
            };
        }
        "adversarial" | "consistency" => {
            let beta = if kind == "consistency" { m.consistency_beta.unwrap_or(0.1) } else { 0.0 };
            let mut r = Robust::default_for(arch.input_shape().0 == 1, beta);
            if let Some(eps) = m.adv_eps {
                r.eps = eps;
            }
            if let Some(steps) = m.adv_steps {
                r.steps = steps;
            }
            // the step size follows the budget: 2.5 eps / steps (Madry et al.'s rule)
            if m.adv_eps.is_some() || m.adv_steps.is_some() {
                r.alpha = 2.5 * r.eps / r.steps.max(1) as f64;
            }
            cfg.training = if kind == "consistency" { Training::Consistency(r) } else { Training::Adversarial(r) };
        }
        _ => {}
    }
    // a training's own check names the key it refuses (csg_warmup, csg_every, csg_gate_lr, adv_eps, ...)
    if let Err(e) = cfg.training.validate(cfg.epochs) {
        let key = match &e {
            Error::Config { field, .. } => field.clone(),
            _ => "training".to_string(),
        };
        return Err(loc.error_section("model", 0, Some(&key), &e.to_string()));
    }
    cfg.epochs = m.epochs.unwrap_or(cfg.epochs);
    cfg.batch_size = m.batch_size.unwrap_or(cfg.batch_size);
    cfg.lr = m.lr.unwrap_or(cfg.lr);
    cfg.lr_decay = m.lr_decay.unwrap_or(cfg.lr_decay);
    cfg.seed = m.seed.unwrap_or(cfg.seed);
    cfg.validate().map_err(|e| loc.error_section("model", 0, None, &e.to_string()))?;
    Ok(ModelSpec::Train(cfg))
}
