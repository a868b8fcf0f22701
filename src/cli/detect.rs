//! `advdet detect`: scores clean and adversarial images with each detector in the full and the subnet mode (the
//! comparison of Wang, Su, Zhang, Hu, arXiv 1910.02673) and writes per-image scores and the metric table.
use super::model_args::ModelArgs;
use advdet::data::{self, Split};
use advdet::detectors::{self, fit_split, protocol_sets, score_batched, Detector, DetectorConfig, Mode, ScoredSet};
use advdet::metrics::{self, WithCi, METRIC_NAMES};
use advdet::io::write_text;
use advdet::models::Arch;
use advdet::subnet::Subnets;
use advdet::Error;
use anyhow::Result;
use clap::Args;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

#[derive(Args)]
pub struct DetectArgs {
    #[command(flatten)]
    pub m: ModelArgs,
    /// Class subnetworks (.safetensors with gates and masks), needed for the subnet mode
    #[arg(long)]
    pub subnets: Option<PathBuf>,
    /// The file `advdet attack` writes: tensors adversarial, labels and (unless --clean is given) clean
    #[arg(long)]
    pub adv: PathBuf,
    /// Clean images (tensor `clean` or `images`), in the same order as --adv's adversarial images
    #[arg(long)]
    pub clean: Option<PathBuf>,
    /// Comma-separated detector names (default: all of msp, entropy, margin, odin, kl, disagree, mahalanobis, lid, kdbu)
    #[arg(long, value_delimiter = ',')]
    pub detectors: Option<Vec<String>>,
    /// Comma-separated modes: full, subnet
    #[arg(long, value_delimiter = ',', default_value = "full,subnet")]
    pub modes: Vec<Mode>,
    /// Bootstrap resamples for the 95% intervals (0: none)
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Seed of the bootstrap and of the detectors' own randomness
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Clean training images of --dataset the fitted detectors use, the last ones of the training split (default: the
    /// config's, 5000)
    #[arg(long)]
    pub fit_size: Option<usize>,
    /// Detector parameters as JSON (the fields of DetectorConfig; unknown fields are an error)
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long, default_value_t = 256)]
    pub batch_size: i64,
    /// Output folder: scores.csv, metrics.csv, config.json
    #[arg(long)]
    pub out: PathBuf,
}

/// The validated plan: configuration, detectors and the (detector, mode) pairs to score.
struct Plan {
    cfg: DetectorConfig,
    pairs: Vec<(usize, Mode)>,
    detectors: Vec<Box<dyn Detector>>,
}

fn plan(a: &DetectArgs) -> Result<Plan> {
    let mut cfg: DetectorConfig = match &a.config {
        None => DetectorConfig::default(),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
            serde_json::from_str(&text).map_err(|e| Error::format(p, format!("invalid detector config: {e}")))?
        }
    };
    cfg.fit_size = a.fit_size.unwrap_or(cfg.fit_size);
    cfg.seed = a.seed;
    cfg.validate()?;
    if a.batch_size < 1 {
        return Err(Error::config("--batch-size", a.batch_size, "must be at least 1").into());
    }
    let explicit = a.detectors.is_some();
    let names: Vec<String> = match &a.detectors {
        Some(v) => v.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
        None => detectors::ALL_DETECTORS.iter().map(|s| s.to_string()).collect(),
    };
    if names.is_empty() {
        return Err(Error::config("--detectors", "", "name at least one detector").into());
    }
    let (mut dets, mut pairs) = (Vec::new(), Vec::new());
    for name in &names {
        if dets.iter().any(|d: &Box<dyn Detector>| d.name() == name) {
            continue;
        }
        let det = detectors::by_name(name, &cfg)?;
        let modes: Vec<Mode> = a.modes.iter().copied().filter(|m| det.modes().contains(m)).collect();
        if modes.is_empty() && explicit {
            let ok: Vec<&str> = det.modes().iter().map(|m| m.as_str()).collect();
            return Err(Error::config(
                "--modes",
                format!("{:?}", a.modes),
                format!("detector {name} supports only {}", ok.join(", ")),
            )
            .into());
        }
        pairs.extend(modes.into_iter().map(|m| (dets.len(), m)));
        dets.push(det);
    }
    if pairs.is_empty() {
        return Err(Error::config("--modes", format!("{:?}", a.modes), "no detector supports these modes").into());
    }
    if a.subnets.is_none() && pairs.iter().any(|&(_, m)| m == Mode::Subnet) {
        return Err(Error::Missing(
            "the subnet mode needs --subnets FILE (or pass --modes full and full-mode detectors)".into(),
        )
        .into());
    }
    Ok(Plan { cfg, pairs, detectors: dets })
}

/// The first tensor of `names` present in a .safetensors file's tensors.
fn tensor(all: &[(String, Tensor)], names: &[&str]) -> Option<Tensor> {
    names.iter().find_map(|n| all.iter().find(|(k, _)| k == n)).map(|(_, t)| t.shallow_clone())
}

fn read(path: &Path) -> Result<Vec<(String, Tensor)>> {
    if !path.is_file() {
        return Err(Error::Missing(format!("{} does not exist", path.display())).into());
    }
    Ok(Tensor::read_safetensors(path)
        .map_err(|e| Error::format(path, format!("not a readable .safetensors file: {e}")))?)
}

/// Clean images, adversarial images and labels, checked against each other and the architecture, and the file's
/// `pred_adv` when present.
fn load_sets(a: &DetectArgs, arch: Arch) -> Result<(Tensor, Tensor, Vec<i64>, Option<Vec<i64>>)> {
    let adv_all = read(&a.adv)?;
    let need = |t: Option<Tensor>, path: &Path, name: &str| {
        t.ok_or_else(|| anyhow::Error::from(Error::format(path, format!("no tensor named {name}"))))
    };
    let adv = need(tensor(&adv_all, &["adversarial"]), &a.adv, "adversarial")?;
    let labels = need(tensor(&adv_all, &["labels"]), &a.adv, "labels")?;
    let clean = match &a.clean {
        Some(p) => need(tensor(&read(p)?, &["clean", "images"]), p, "clean (or images)")?,
        None => need(tensor(&adv_all, &["clean"]), &a.adv, "clean (or pass --clean FILE)")?,
    };
    let (c, h, w) = arch.input_shape();
    for (t, what, path) in [(&adv, "adversarial", &a.adv), (&clean, "clean", a.clean.as_ref().unwrap_or(&a.adv))] {
        let s = t.size();
        if s.len() != 4 || s[1..] != [c, h, w] {
            return Err(Error::format(
                path,
                format!("{what} images have shape {s:?}, arch {arch} takes [N, {c}, {h}, {w}]"),
            )
            .into());
        }
        // libtorch's min/max abort on an empty tensor: name the problem instead.
        if s[0] == 0 {
            return Err(Error::format(path, format!("{what} holds no images (shape {s:?})")).into());
        }
        let (lo, hi) = (t.min().double_value(&[]), t.max().double_value(&[]));
        if !(lo >= 0.0 && hi <= 1.0) {
            return Err(Error::format(path, format!("{what} pixel values span [{lo}, {hi}], expected [0, 1]")).into());
        }
    }
    if clean.size()[0] != adv.size()[0] {
        return Err(Error::format(
            &a.adv,
            format!("{} clean but {} adversarial images", clean.size()[0], adv.size()[0]),
        )
        .into());
    }
    let labels = Vec::<i64>::try_from(labels.to_kind(Kind::Int64).flatten(0, -1))?;
    if labels.len() as i64 != adv.size()[0] {
        return Err(Error::format(&a.adv, format!("{} labels for {} images", labels.len(), adv.size()[0])).into());
    }
    if let Some((i, l)) = labels.iter().enumerate().find(|(_, &l)| !(0..10).contains(&l)) {
        return Err(Error::format(&a.adv, format!("label {l} of image {i} is not a class 0..9")).into());
    }
    let file_pred = match tensor(&adv_all, &["pred_adv"]) {
        Some(t) => Some(Vec::<i64>::try_from(t.to_kind(Kind::Int64).flatten(0, -1))?),
        None => None,
    };
    Ok((clean.to_kind(Kind::Float), adv.to_kind(Kind::Float), labels, file_pred))
}

pub fn run(a: DetectArgs) -> Result<i32> {
    let mut plan = plan(&a)?;
    let loaded = a.m.load()?;
    let (model, device) = (&loaded.model, loaded.device);
    let (clean, adv, labels, file_pred) = load_sets(&a, model.arch)?;
    let subnets = match &a.subnets {
        Some(p) if plan.pairs.iter().any(|&(_, m)| m == Mode::Subnet) => {
            Some(Subnets::load(p, model.gate_layout(), device)?)
        }
        _ => None,
    };
    let preds = |xs: &Tensor| Vec::<i64>::try_from(model.predict(xs, a.batch_size).to_device(Device::Cpu));
    let (pred_clean, pred_adv) = (preds(&clean)?, preds(&adv)?);
    if let Some(fp) = file_pred.filter(|fp| *fp != pred_adv) {
        let differ = fp.iter().zip(&pred_adv).filter(|(x, y)| x != y).count() + fp.len().abs_diff(pred_adv.len());
        eprintln!("warning: this model's predictions differ from the attack file's pred_adv on {differ} images (a transfer attack?); using this model's");
    }
    if plan.detectors.iter().any(|d| d.needs_fit()) {
        let dataset = a.m.dataset(&loaded, "the dataset of the fitting split")?;
        let fit = fit_split(&data::load(dataset, a.m.data_dir.as_deref(), Split::Train)?, plan.cfg.fit_size);
        eprintln!("fitting on the last {} clean {dataset} training images", fit.len());
        for det in plan.detectors.iter_mut().filter(|d| d.needs_fit()) {
            det.fit(model, &fit)?;
        }
    }
    let n = labels.len();
    let mut scores_csv = String::from("index,detector,mode,label,is_adv,score\n");
    let mut metrics_csv = String::from("detector,mode,protocol,n_clean,n_adv");
    for m in METRIC_NAMES {
        write!(metrics_csv, ",{m},{m}_lo,{m}_hi")?;
    }
    metrics_csv.push_str(",note\n");
    println!("{:<12} {:<6} {:>30} {:>30}", "detector", "mode", "auroc successful [95% CI]", "auroc all [95% CI]");
    for &(d, mode) in &plan.pairs {
        let det = plan.detectors[d].as_ref();
        let s_clean = score_batched(det, model, subnets.as_ref(), mode, &clean, a.batch_size)?;
        let s_adv = score_batched(det, model, subnets.as_ref(), mode, &adv, a.batch_size)?;
        for (is_adv, s) in [(0, &s_clean), (1, &s_adv)] {
            for i in 0..n {
                writeln!(scores_csv, "{i},{},{mode},{},{is_adv},{}", det.name(), labels[i], s[i])?;
            }
        }
        let (ok, all) = protocol_sets(&s_clean, &s_adv, &labels, &pred_clean, &pred_adv);
        let mut cells = Vec::new();
        for (protocol, set) in [("successful", &ok), ("all", &all)] {
            let result = metrics::bootstrap(&set.labels, &set.scores, a.bootstrap, a.seed);
            metrics_row(&mut metrics_csv, det.name(), mode, protocol, set, &result)?;
            cells.push(match &result {
                Ok(ci) => {
                    format!("{:.4} [{:.4}, {:.4}] n={}", ci.point.auroc, ci.lo.auroc, ci.hi.auroc, set.counts().1)
                }
                Err(_) => format!("n/a n={}", set.counts().1),
            });
        }
        println!("{:<12} {:<6} {:>30} {:>30}", det.name(), mode, cells[0], cells[1]);
    }
    write_text(&a.out.join("scores.csv"), &scores_csv)?;
    write_text(&a.out.join("metrics.csv"), &metrics_csv)?;
    let config = serde_json::json!({
        "model": a.m.model, "arch": model.arch, "adv": a.adv, "clean": a.clean, "subnets": a.subnets,
        "images": n, "bootstrap": a.bootstrap, "seed": a.seed, "detectors": plan.cfg,
        "protocol": "negatives: clean test images classified correctly; successful: positives are their adversarial versions that are misclassified; all: every adversarial version of those images",
    });
    write_text(&a.out.join("config.json"), &(serde_json::to_string_pretty(&config)? + "\n"))?;
    let correct = (0..n).filter(|&i| pred_clean[i] == labels[i]).count();
    let flipped = (0..n).filter(|&i| pred_clean[i] == labels[i] && pred_adv[i] != labels[i]).count();
    println!("{n} images, {correct} classified correctly when clean, {flipped} of those attacked successfully");
    println!("wrote {}/scores.csv, metrics.csv, config.json", a.out.display());
    Ok(0)
}

fn metrics_row(
    out: &mut String,
    det: &str,
    mode: Mode,
    protocol: &str,
    set: &ScoredSet,
    r: &advdet::Result<WithCi>,
) -> Result<()> {
    let (n_clean, n_adv) = set.counts();
    write!(out, "{det},{mode},{protocol},{n_clean},{n_adv}")?;
    match r {
        Ok(ci) => {
            for k in 0..METRIC_NAMES.len() {
                write!(out, ",{},{},{}", ci.point.values()[k], ci.lo.values()[k], ci.hi.values()[k])?;
            }
            out.push_str(",\n");
        }
        Err(e) => {
            out.push_str(&",".repeat(3 * METRIC_NAMES.len()));
            writeln!(out, ",\"{}\"", e.to_string().replace('"', "'"))?;
        }
    }
    Ok(())
}

