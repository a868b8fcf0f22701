//! `advdet detect`: scores clean and adversarial images with each detector in the full and the subnet mode (the
//! comparison of Wang, Hu, Su, arXiv 1910.02673) and writes per-image scores and the metric table.
use super::model_args::ModelArgs;
use advdet::data::{self, Split};
use advdet::detectors::{self, Detector, DetectorConfig, DetectorKind};
use advdet::eval::{self, fit_split, MetricSpec, Protocol, Scoring};
use advdet::io::write_text;
use advdet::metrics::METRIC_NAMES;
use advdet::models::Arch;
use advdet::records::RowRecord;
use advdet::routes::subspace::Subspaces;
use advdet::routes::{Resources, RouteKind};
use advdet::subnet::Subnets;
use advdet::Error;
use anyhow::Result;
use clap::Args;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

#[derive(Args)]
pub struct DetectArgs {
    #[command(flatten)]
    pub m: ModelArgs,
    /// Class subnetworks (.safetensors with gates and masks), needed for the subnet mode
    #[arg(long)]
    pub subnets: Option<PathBuf>,
    /// An independently trained model of the same architecture (.safetensors), needed for the second-model mode
    #[arg(long)]
    pub second_model: Option<PathBuf>,
    /// The file `advdet attack` writes: tensors adversarial, labels and (unless --clean is given) clean
    #[arg(long)]
    pub adv: PathBuf,
    /// Clean images (tensor `clean` or `images`), in the same order as --adv's adversarial images
    #[arg(long)]
    pub clean: Option<PathBuf>,
    /// Comma-separated detector names (default: all of msp, entropy, margin, odin, kl, disagree, mahalanobis, lid,
    /// kdbu, energy, maxlogit, gen, react, squeeze, path-class-dist; the README's "Detectors" lists their papers and
    /// defaults)
    #[arg(long, value_delimiter = ',')]
    pub detectors: Option<Vec<DetectorKind>>,
    /// Comma-separated routes (the `mode` column): full, subnet, subspace, csg, csg-binary, cdrp, and the controls
    /// random-mask, union-mask, wrong-class, temperature, second-model (nnd runs in suites only: its modules are
    /// trained there)
    #[arg(long, value_delimiter = ',', default_value = "full,subnet")]
    pub modes: Vec<RouteKind>,
    /// The subspace mode's filter subset size per class (Badola et al.: 5 on ResNet-20's 64 pooled channels), chosen
    /// on the fitting images
    #[arg(long, default_value_t = advdet::routes::subspace::DEFAULT_K)]
    pub subspace_k: usize,
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

/// The validated plan: configuration, and the detectors with the routes each scores on.
struct Plan {
    cfg: DetectorConfig,
    detectors: Vec<(Box<dyn Detector>, Vec<RouteKind>)>,
}

impl Plan {
    fn uses(&self, route: RouteKind) -> bool {
        self.detectors.iter().any(|(_, r)| r.contains(&route))
    }

    /// Whether any route asked for reads the class subnetworks.
    fn needs_subnets(&self) -> bool {
        self.detectors.iter().any(|(_, r)| r.iter().any(|k| k.reads_subnets()))
    }
}

fn plan(a: &DetectArgs) -> Result<Plan> {
    let mut cfg: DetectorConfig = match &a.config {
        None => DetectorConfig::default(),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
            serde_json::from_str(&text).map_err(|e| Error::format(p, format!("invalid detector config: {e}")))?
        }
    };
    if cfg.class_normalise {
        return Err(Error::config(
            "class_normalise",
            true,
            "runs in suites only (`advdet run`, [detectors] class_normalise = true): it needs the held-out fit images' \
             scores",
        )
        .into());
    }
    if a.modes.contains(&RouteKind::Nnd) {
        return Err(Error::config(
            "--modes",
            RouteKind::Nnd,
            "needs the architecture-controlling modules that a suite trains and caches per model (`advdet run` with \
             nnd in [detectors] modes); `advdet detect` does not train them",
        )
        .into());
    }
    cfg.fit_size = a.fit_size.unwrap_or(cfg.fit_size);
    cfg.seed = a.seed;
    cfg.validate()?;
    if a.batch_size < 1 {
        return Err(Error::config("--batch-size", a.batch_size, "must be at least 1").into());
    }
    let explicit = a.detectors.is_some();
    // the supervised detectors need a training attack's images, which only a suite names
    let kinds: Vec<DetectorKind> = a
        .detectors
        .clone()
        .unwrap_or_else(|| DetectorKind::ALL.into_iter().filter(|k| k.family() != "supervised").collect());
    if let Some(k) = kinds.iter().find(|k| k.family() == "supervised") {
        return Err(Error::config(
            "--detectors",
            k,
            "is supervised: it runs in suites (`advdet run`), which name the attack it is trained on ([detectors] \
             train_attack)",
        )
        .into());
    }
    if kinds.is_empty() {
        return Err(Error::config("--detectors", "", "name at least one detector").into());
    }
    let mut dets: Vec<(Box<dyn Detector>, Vec<RouteKind>)> = Vec::new();
    for kind in kinds {
        if dets.iter().any(|(d, _)| d.kind() == kind) {
            continue;
        }
        let det = detectors::build(kind, &cfg)?;
        let routes = det.routes_of(&a.modes);
        if routes.is_empty() {
            if explicit {
                let ok: Vec<&str> = det.routes_of(&RouteKind::ALL).iter().map(|r| r.as_str()).collect();
                return Err(Error::config(
                    "--modes",
                    format!("{:?}", a.modes),
                    format!("detector {kind} runs only on {}", ok.join(", ")),
                )
                .into());
            }
            continue;
        }
        dets.push((det, routes));
    }
    if dets.is_empty() {
        return Err(Error::config("--modes", format!("{:?}", a.modes), "no detector supports these modes").into());
    }
    let plan = Plan { cfg, detectors: dets };
    if a.subnets.is_none() && plan.needs_subnets() {
        return Err(Error::Missing(
            "the modes other than full need --subnets FILE (or pass --modes full and full-mode detectors)".into(),
        )
        .into());
    }
    Ok(plan)
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
struct Sets {
    clean: Tensor,
    adv: Tensor,
    labels: Vec<i64>,
    file_pred: Option<Vec<i64>>,
}

fn load_sets(a: &DetectArgs, arch: Arch, classes: i64) -> Result<Sets> {
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
    if let Some((i, l)) = labels.iter().enumerate().find(|(_, &l)| !(0..classes).contains(&l)) {
        return Err(Error::format(&a.adv, format!("label {l} of image {i} is not a class 0..{}", classes - 1)).into());
    }
    let file_pred = match tensor(&adv_all, &["pred_adv"]) {
        Some(t) => Some(Vec::<i64>::try_from(t.to_kind(Kind::Int64).flatten(0, -1))?),
        None => None,
    };
    Ok(Sets { clean: clean.to_kind(Kind::Float), adv: adv.to_kind(Kind::Float), labels, file_pred })
}

pub fn run(a: DetectArgs) -> Result<i32> {
    let mut plan = plan(&a)?;
    let loaded = a.m.load()?;
    let (model, device) = (&loaded.model, loaded.device);
    let Sets { clean, adv, labels, file_pred } = load_sets(&a, model.arch, model.num_classes())?;
    let subnets = match &a.subnets {
        Some(p) if plan.needs_subnets() => Some(Subnets::load(p, model.gate_layout(), device)?),
        _ => None,
    };
    let (mut temperature, mut subspaces) = (None, None);
    let fits_route = plan.uses(RouteKind::Temperature) || plan.uses(RouteKind::Subspace);
    if plan.detectors.iter().any(|(d, _)| d.needs_fit()) || fits_route {
        let dataset = a.m.dataset(&loaded, "the dataset of the fitting split")?;
        let fit = fit_split(&data::load(dataset, a.m.data_dir.as_deref(), Split::Train)?, plan.cfg.fit_size);
        eprintln!("fitting on the last {} clean {dataset} training images", fit.len());
        for (det, _) in plan.detectors.iter_mut().filter(|(d, _)| d.needs_fit()) {
            det.fit(model, &fit, Default::default())?;
        }
        if let (true, Some(s)) = (plan.uses(RouteKind::Temperature), subnets.as_ref()) {
            let t = advdet::routes::temperature::fit(model, s, &fit.images, a.batch_size)?;
            eprintln!("temperature control: T = {t:.6} gives the subnetworks' mean max-softmax on those images");
            temperature = Some(t);
        }
        if plan.uses(RouteKind::Subspace) {
            let s = Subspaces::fit(model, &fit.images, &fit.labels, a.subspace_k, a.batch_size)?;
            eprintln!("subspace mode: {} penultimate features per class from those images", s.k);
            subspaces = Some(s);
        }
    }
    let second = match (&a.second_model, plan.uses(RouteKind::SecondModel)) {
        (Some(p), true) => {
            let (mut m, _) = advdet::models::checkpoint::load(p, Some(model.arch), device)?;
            m.freeze();
            Some(m)
        }
        (None, true) => {
            return Err(Error::Missing(
                "the second-model mode needs --second-model FILE: an independently trained model of the same \
                 architecture"
                    .into(),
            )
            .into())
        }
        _ => None,
    };
    let res = Resources {
        subnets: subnets.as_ref(),
        temperature,
        second: second.as_ref(),
        subspaces: subspaces.as_ref(),
        nnd: None,
        cdrp_paths: None,
    };
    let scorings: Vec<Scoring> =
        plan.detectors.iter().map(|(d, r)| Scoring { detector: d.as_ref(), routes: r.clone() }).collect();
    let s_clean = eval::score_images(model, res, &scorings, &clean, a.batch_size, "clean")?;
    let s_adv = eval::score_images(model, res, &scorings, &adv, a.batch_size, "adversarial")?;
    let (pred_clean, pred_adv) = (&s_clean.pred, &s_adv.pred);
    if let Some(fp) = file_pred.filter(|fp| fp != pred_adv) {
        let differ = fp.iter().zip(pred_adv).filter(|(x, y)| x != y).count() + fp.len().abs_diff(pred_adv.len());
        eprintln!("warning: this model's predictions differ from the attack file's pred_adv on {differ} images (a transfer attack?); using this model's");
    }
    let names: Vec<&str> = plan.detectors.iter().map(|(d, _)| d.name()).collect();
    let routes: Vec<Vec<RouteKind>> = plan.detectors.iter().map(|(_, r)| r.clone()).collect();
    let spec = MetricSpec { protocols: Protocol::BOTH.to_vec(), bootstrap: a.bootstrap, seed: a.seed };
    let rows =
        eval::metric_rows(&names, &routes, &s_clean.scores, &s_adv.scores, &labels, pred_clean, pred_adv, &spec, None)?;

    let n = labels.len();
    let mut scores_csv = String::from("index,detector,mode,label,is_adv,score\n");
    for (d, name) in names.iter().enumerate() {
        for (r, route) in routes[d].iter().enumerate() {
            for (is_adv, s) in [(0, &s_clean.scores[d][r]), (1, &s_adv.scores[d][r])] {
                for i in 0..n {
                    writeln!(scores_csv, "{i},{name},{route},{},{is_adv},{}", labels[i], s[i])?;
                }
            }
        }
    }
    let mut metrics_csv = String::from("detector,mode,protocol,n_clean,n_adv");
    for m in METRIC_NAMES {
        write!(metrics_csv, ",{m},{m}_lo,{m}_hi")?;
    }
    metrics_csv.push_str(",note\n");
    println!("{:<12} {:<6} {:>30} {:>30}", "detector", "mode", "auroc successful [95% CI]", "auroc all [95% CI]");
    for pair in rows.chunks(spec.protocols.len()) {
        let cells: Vec<String> = pair.iter().map(auroc_cell).collect();
        for row in pair {
            metrics_row(&mut metrics_csv, row)?;
        }
        println!("{:<12} {:<6} {:>30} {:>30}", pair[0].detector, pair[0].mode, cells[0], cells[1]);
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

/// `auroc [lo, hi] n=positives` of a row, or `n/a` when it has no AUROC.
fn auroc_cell(row: &RowRecord) -> String {
    let auroc = row.metrics.iter().find(|m| m.name == "auroc");
    let f = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.4}"));
    match auroc.and_then(|m| m.point) {
        Some(p) => {
            let (lo, hi) = (auroc.and_then(|m| m.lo), auroc.and_then(|m| m.hi));
            format!("{p:.4} [{}, {}] n={}", f(lo), f(hi), row.n_pos)
        }
        None => format!("n/a n={}", row.n_pos),
    }
}

/// One line of metrics.csv: counts, then each metric with its interval (empty cells where there is none).
fn metrics_row(out: &mut String, row: &RowRecord) -> Result<()> {
    write!(out, "{},{},{},{},{}", row.detector, row.mode, row.protocol, row.n_neg, row.n_pos)?;
    let cell = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
    for m in &row.metrics {
        write!(out, ",{},{},{}", cell(m.point), cell(m.lo), cell(m.hi))?;
    }
    let note = match row.metrics.iter().all(|m| m.point.is_none()) {
        true => "no metric: the set needs both clean and adversarial images",
        false => "",
    };
    writeln!(out, ",{note}")?;
    Ok(())
}
