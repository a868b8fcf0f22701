//! Suite files (`attacks/*.toml`): the TOML schema of one benchmark run of the class-specific-subnetwork detectors
//! (Wang, Su, Zhang, Hu, arXiv 1910.02673), validated before any tensor is touched; unknown keys are rejected with the
//! file, key and line, and each `[[attack]]` eps list expands into one job per value.
use crate::attacks::AttackSpec;
use crate::cpu::CpuMode;
use crate::data::DatasetName;
use crate::detectors::{DetectorConfig, DetectorKind};
use crate::device::DeviceChoice;
use crate::error::{Error, Result};
use crate::eval::Protocol;
use crate::models::Arch;
use crate::routes::RouteKind;
use crate::subnet::ExtractConfig;
use crate::suite::expand::{detector_section, expand_attacks};
use crate::suite::locate::{line_of, Locator};
use crate::train::TrainConfig;
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
    Weights { path: PathBuf, arch: Option<Arch> },
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
    pub jobs: Vec<Job>,
    pub detectors: Vec<DetectorKind>,
    /// The routes detectors score on (`[detectors] modes`).
    pub modes: Vec<RouteKind>,
    pub detector_config: DetectorConfig,
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
        loc.error_line(line, quoted(e.message()).as_deref().unwrap_or(""), e.message().trim())
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

    let model = model_spec(&loc, raw.model, data.dataset)?;
    let subnet: ExtractConfig = match raw.subnet {
        Some(t) => loc.typed(t, "subnet", 0)?,
        None => ExtractConfig::default(),
    };
    subnet.validate().map_err(|e| loc.error_section("subnet", 0, None, &e.to_string()))?;

    let jobs = expand_attacks(&loc, raw.attack, seed)?;
    if jobs.is_empty() {
        return Err(loc.error_line(None, "attack", "the suite has no [[attack]] entry"));
    }
    let (detectors, modes, mut detector_config) = detector_section(&loc, raw.detectors)?;
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
        jobs,
        detectors,
        modes,
        detector_config,
        bootstrap: raw.metrics.bootstrap.unwrap_or(1000),
        protocols,
    })
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
    if let Some(w) = m.weights {
        let line = Some(line_of(loc.src, w.span().start));
        let trained = [
            ("epochs", m.epochs.is_some()),
            ("batch_size", m.batch_size.is_some()),
            ("lr", m.lr.is_some()),
            ("lr_decay", m.lr_decay.is_some()),
            ("seed", m.seed.is_some()),
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
        return Ok(ModelSpec::Weights { path: w.into_inner(), arch: m.arch });
    }
    let arch = m.arch.unwrap_or_else(|| Arch::default_for(dataset));
    let mut cfg = TrainConfig::default_for(dataset, arch);
    cfg.epochs = m.epochs.unwrap_or(cfg.epochs);
    cfg.batch_size = m.batch_size.unwrap_or(cfg.batch_size);
    cfg.lr = m.lr.unwrap_or(cfg.lr);
    cfg.lr_decay = m.lr_decay.unwrap_or(cfg.lr_decay);
    cfg.seed = m.seed.unwrap_or(cfg.seed);
    cfg.validate().map_err(|e| loc.error_section("model", 0, None, &e.to_string()))?;
    Ok(ModelSpec::Train(cfg))
}
