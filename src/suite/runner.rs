//! `advdet run`: a suite from data to report for the full-model vs class-subnetwork detector comparison (Wang, Su,
//! Zhang, Hu, arXiv 1910.02673): data -> model -> subnets -> attacks -> scores -> metrics -> report, every stage cached
//! by the hash of its inputs, so a warm run recomputes nothing and a killed run resumes where it stopped.
use crate::attacks::{AdaptiveSpec, AttackSpec};
use crate::cpu::CpuMode;
use crate::device::DeviceChoice;
use crate::error::{Error, Result};
use crate::eval::Scoring;
use crate::records::{JobRecord, SuiteRecord, VariantRecord};
use crate::report::manifest::{git_commit, JobTime, Manifest, StageTime};
use crate::report::tables::PaperTable;
use crate::routes::subspace::Subspaces;
use crate::routes::RouteKind;
use crate::suite::cache::Cache;
use crate::suite::schema::{Job, ModelSpec, Suite, Variant};
use crate::suite::scoring::{
    clean_scores, detector_slots, heldout_thresholds, job_record, operating_points, DetectorSlot, JobInputs,
};
use crate::suite::shard::Shard;
use crate::suite::stages::{
    attack_stage, data_stage, model_stage, subnet_stage, AttackTarget, Ctx, DataStage, ModelStage, SubnetStage,
};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::Tensor;

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Reports go to `<out>/<suite>/` (a shard's to `<out>/<suite>/shard-I-of-N/`); the cache to `<out>/<suite>/cache/`.
    pub out: PathBuf,
    /// Overrides the suite's `[suite] device`.
    pub device: Option<DeviceChoice>,
    pub shard: Shard,
    /// Drops the suite's stage cache first (the model cache is kept).
    pub fresh: bool,
    /// Overrides the suite's `[suite] cpu_mode`.
    pub cpu_mode: Option<CpuMode>,
    /// Times the scoring's model passes alone afterwards (`eval::pass_bound`) over the image sets scored in this run.
    pub bound: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            out: PathBuf::from("reports"),
            device: None,
            shard: Shard::default(),
            fresh: false,
            cpu_mode: None,
            bound: false,
        }
    }
}

/// What a run did: where the report is, per-stage times and cache use, and the AUROC tables.
#[derive(Debug)]
pub struct RunSummary {
    pub report_dir: PathBuf,
    pub stages: Vec<StageTime>,
    pub jobs: Vec<JobTime>,
    /// With `--bound`: the seconds of the scoring's model passes alone.
    pub scores_bound_seconds: Option<f64>,
    pub tables: Vec<PaperTable>,
    pub jobs_run: usize,
    pub wall_seconds: f64,
}

impl RunSummary {
    /// True when every stage came from the cache.
    pub fn all_cached(&self) -> bool {
        self.stages.iter().filter(|s| s.stage != "report").all(|s| s.computed == 0)
    }
}

/// Where a suite's report goes for a shard.
pub fn report_dir(out: &Path, suite: &str, shard: Shard) -> PathBuf {
    let base = out.join(suite);
    if shard.is_whole() {
        base
    } else {
        base.join(shard.dir_name())
    }
}

pub fn run(suite: &Suite, opts: &RunOptions) -> Result<RunSummary> {
    let wall = Instant::now();
    // Before the first tensor operation: the kernels' code paths are fixed at libtorch's first use.
    let numerics = crate::cpu::pin(opts.cpu_mode.or(suite.cpu_mode).unwrap_or_default())?.clone();
    let device = opts.device.or(suite.device).unwrap_or_default().resolve()?;
    let cache = Cache::new(opts.out.join(&suite.name).join("cache"));
    if opts.fresh {
        cache.clear()?;
    }
    let variants = suite.variants();
    let suites: Vec<Suite> = variants.iter().map(|&v| suite.for_variant(v)).collect();
    let mut ctx = Ctx {
        suite: &suites[0],
        cache,
        device,
        numerics: numerics.clone(),
        stats: BTreeMap::new(),
        fgsm_signs: BTreeMap::new(),
        scoring: BTreeMap::new(),
        route_passes: BTreeMap::new(),
        scoring_calls: (0, 0),
        temperature: None,
        subspaces: None,
        nnd: None,
        cdrp_memo: Default::default(),
    };
    // a shard owns (seed, job) pairs, every lambda and k of a pair: one model per seed it touches, and each attack that
    // does not read the subnetworks computed once for all lambdas and ks
    let n_seeds = suite.seed_count();
    let owns = |v: &Variant, job: &Job| opts.shard.owns(job.index * n_seeds + v.seed_index);
    let n_units: usize = variants.iter().map(|v| suite.jobs.iter().filter(|j| owns(v, j)).count()).sum();
    let total = suite.jobs.len() * variants.len();
    ctx.say(&format!(
        "{n_units} of {total} jobs (shard {}; {} jobs x {} variants: seeds {}, lambda {}{}), {} detectors, on {}",
        opts.shard,
        suite.jobs.len(),
        variants.len(),
        if suite.seeds.is_empty() { "as [model]".to_string() } else { format!("{:?}", suite.seeds) },
        suite.lambdas.iter().map(|l| format!("{l}")).collect::<Vec<_>>().join(", "),
        match suite.modes.contains(&RouteKind::Subspace) {
            true => format!(
                ", subspace k {}",
                suite.subspace_ks.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(", ")
            ),
            false => String::new(),
        },
        suite.detectors.len(),
        crate::device::describe(device, &numerics)
    ));

    let mut data = data_stage(&mut ctx)?;
    let labels = data.test.label_vec();
    let bar = crate::progress::bar(n_units as u64, "jobs");
    // a log (CI, a batch job, `make run > log`) gets one line per finished job instead of the bar
    let log_lines = !std::io::stderr().is_terminal();
    let mut records: Vec<JobRecord> = Vec::new();
    let mut job_times: Vec<JobTime> = Vec::new();
    let mut primary: Option<(ModelStage, SubnetStage)> = None;
    let mut paths = Vec::new();
    let mut scores_bound_seconds: Option<f64> = None;
    let mut done = 0;
    for (vi, (v, vsuite)) in variants.iter().zip(&suites).enumerate() {
        let jobs: Vec<&Job> = suite.jobs.iter().filter(|j| owns(v, j)).collect();
        // the first variant describes the suite in every shard (its model and subnetworks), owned or not
        if jobs.is_empty() && vi > 0 {
            continue;
        }
        ctx.suite = vsuite;
        ctx.fgsm_signs.clear();
        ctx.temperature = None;
        ctx.subspaces = None;
        if variants.len() > 1 {
            let k = v.subspace_k.map_or(String::new(), |k| format!(", subspace k {k}"));
            ctx.say(&format!("variant {}/{}: seed {}, lambda {}{k}", vi + 1, variants.len(), seed_text(v), v.lambda));
        }
        let model = model_stage(&mut ctx, &data)?;
        let sub = subnet_stage(&mut ctx, &data, &model)?;
        ctx.nnd = match vsuite.modes.contains(&RouteKind::Nnd) {
            true => Some(crate::suite::stages::nnd_stage(&mut ctx, &data, &model)?),
            false => None,
        };
        if vi == 0 {
            paths = crate::suite::stages::path_similarity(&mut ctx, &data, &model, &sub)?;
        }
        if vi + 1 == variants.len() {
            data.train_full = None;
        }
        if !jobs.is_empty() {
            let variant = VariantRecord {
                seed: match &vsuite.model {
                    ModelSpec::Train(c) => Some(c.seed),
                    ModelSpec::Weights { .. } => None,
                },
                lambda: v.lambda,
                subspace_k: v.subspace_k,
                model: model.label.clone(),
                model_accuracy: model.accuracy,
                kept_fraction: mean(&sub.record.kept_fraction),
            };
            let base = vi * suite.jobs.len();
            let (recs, times, bound) =
                run_variant(&mut ctx, &data, &model, &sub, &jobs, &labels, opts.bound, (&bar, log_lines, &mut done))?;
            records.extend(recs.into_iter().map(|r| JobRecord {
                index: base + r.index,
                variant: Some(variant.clone()),
                ..r
            }));
            job_times.extend(times.into_iter().map(|t| JobTime { index: base + t.index, ..t }));
            scores_bound_seconds = match (scores_bound_seconds, bound) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            };
        }
        if vi == 0 {
            primary = Some((model, sub));
        }
    }
    bar.finish_and_clear();
    let (model, sub) = primary.ok_or_else(|| Error::Missing("the suite has no variant".into()))?;
    ctx.suite = suite;
    if opts.bound && scores_bound_seconds.is_none() {
        ctx.say("--bound: every score came from the cache, so there is no scoring to bound (add --fresh)");
    }

    let report_start = Instant::now();
    let dir = report_dir(&opts.out, &suite.name, opts.shard);
    let suite_record = SuiteRecord {
        suite: suite.name.clone(),
        suite_hash: suite.source_hash.clone(),
        dataset: suite.data.dataset.to_string(),
        model: model.label.clone(),
        model_accuracy: model.accuracy,
        seed: suite.seed,
        test_images: data.test.len(),
        fit_images: data.fit.len(),
        bootstrap: suite.bootstrap,
        jobs: total,
        detectors: suite.detectors.iter().map(|k| k.to_string()).collect(),
        modes: suite.modes.iter().map(|m| m.to_string()).collect(),
        protocols: suite.protocols.iter().map(|p| p.to_string()).collect(),
        subnet: sub.record.clone(),
        csg: crate::suite::stages::csg_record(&model, &data, suite.batch_size as i64)?,
        paths,
    };
    let tables = crate::report::render::render(&dir, &suite_record, &records, Some(&sub.file), true)?;
    ctx.record("report", true, report_start);

    let seeds = BTreeMap::from([
        ("suite".to_string(), suite.seed),
        (
            "model".to_string(),
            match &suites[0].model {
                ModelSpec::Train(c) => c.seed,
                ModelSpec::Weights { .. } => 0,
            },
        ),
        ("subnet".to_string(), suites[0].subnet.seed),
        ("detectors".to_string(), suite.detector_config.seed),
        ("bootstrap".to_string(), suite.seed),
    ]);
    let inputs = BTreeMap::from([
        ("suite_file".to_string(), suite.source_hash.clone()),
        (format!("{}_test", suite.data.dataset), data.test.source_hash.clone()),
        (format!("{}_train", suite.data.dataset), data.fit.source_hash.clone()),
        ("model_weights".to_string(), model.hash.clone()),
        ("subnets".to_string(), crate::io::sha256_file(&sub.file)?),
        ("advdet_binary".to_string(), crate::suite::cache::code_identity().to_string()),
    ]);
    let (scoring, route_passes) = ctx.scoring_times();
    let manifest = Manifest {
        advdet_version: env!("CARGO_PKG_VERSION").to_string(),
        git_commit: git_commit(),
        libtorch_version: crate::train::tch_version().to_string(),
        device: crate::device::describe(device, &numerics),
        cpu: numerics,
        suite: suite.name.clone(),
        suite_file: suite.path.display().to_string(),
        shards: vec![opts.shard.to_string()],
        seeds,
        inputs,
        stages: ctx.stage_times(),
        jobs: job_times,
        scores_bound_seconds,
        scoring_calls: ctx.scoring_calls(),
        scoring,
        route_passes,
        wall_seconds: wall.elapsed().as_secs_f64(),
        detectors_oblivious_to_attacks: suite.train_attack.is_none(),
        train_attack: suite.train_attack.as_ref().map(crate::suite::scoring::job_label),
        protocol: crate::report::manifest::PROTOCOL_NOTE.to_string(),
    };
    manifest.write_into(&dir)?;
    if records.is_empty() && n_units > 0 {
        return Err(Error::Missing("no job produced a record".into()));
    }
    Ok(RunSummary {
        report_dir: dir,
        stages: manifest.stages,
        jobs: manifest.jobs,
        scores_bound_seconds: manifest.scores_bound_seconds,
        tables,
        jobs_run: n_units,
        wall_seconds: manifest.wall_seconds,
    })
}

/// The seed of a variant as printed.
fn seed_text(v: &Variant) -> String {
    v.seed.map_or("as [model]".to_string(), |s| s.to_string())
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// The progress bar, whether to print a line per job instead, and the jobs finished so far.
type Progress<'a> = (&'a indicatif::ProgressBar, bool, &'a mut usize);

/// One variant's jobs: its detectors scored on the clean and fit images, then each job's attack, scores and metrics.
/// Returns the records (indexed by job), their times, and with `bound` the scoring's bound over the sets scored here.
#[allow(clippy::too_many_arguments)]
fn run_variant(
    ctx: &mut Ctx,
    data: &DataStage,
    model: &ModelStage,
    sub: &SubnetStage,
    jobs: &[&Job],
    labels: &[i64],
    bound: bool,
    progress: Progress,
) -> Result<(Vec<JobRecord>, Vec<JobTime>, Option<f64>)> {
    let (bar, log_lines, done) = progress;
    if ctx.suite.modes.contains(&RouteKind::Temperature) {
        let t =
            crate::routes::temperature::fit(&model.model, &sub.subnets, &data.fit.images, ctx.suite.batch_size as i64)?;
        ctx.say(&format!("temperature control: T = {t:.6} gives the subnetworks' mean max-softmax on the fit images"));
        ctx.temperature = Some(t);
    }
    if let Some((nnd, _)) = &ctx.nnd {
        let batch = ctx.suite.batch_size as i64;
        let (acc, full, open) =
            crate::routes::nnd::summary(&model.model, nnd, &data.test.images, &data.test.labels, batch)?;
        ctx.say(&format!(
            "nnd route: {:.1}% of conv channels open per test image; clean accuracy on the test images {acc:.4} \
             through the paths, {full:.4} through the full model",
            100.0 * open
        ));
    }
    if ctx.suite.modes.contains(&RouteKind::Subspace) {
        let (k, batch) = (ctx.suite.subspace_k, ctx.suite.batch_size as i64);
        let s = Subspaces::fit(&model.model, &data.fit.images, &data.fit.labels, k, batch)?;
        let (acc, full) = s.decomposed_accuracy(&model.model, &data.test.images, &data.test.labels, batch)?;
        ctx.say(&format!(
            "subspace route: {k} penultimate features per class from the fit images; clean accuracy on the test \
             images {acc:.4} with the decomposed head, {full:.4} with the full one"
        ));
        ctx.subspaces = Some(s);
    }
    let mut slots = detector_slots(ctx, data, model, sub)?;
    let mut clean = clean_scores(ctx, &mut slots, data, model, sub)?;
    let heldout = heldout_thresholds(ctx, &mut slots, data, model, sub)?;
    heldout.normalise(&mut clean.scores, &clean.pred)?;
    let operating = operating_points(&heldout, &clean, labels);
    // the image sets scored here, for the bound
    let mut scored: Vec<Tensor> = Vec::new();
    if bound && ctx.tally("scores").0 > 0 {
        scored.push(data.test.images.shallow_clone());
    }
    let mut records = Vec::new();
    let mut times = Vec::new();
    for job in jobs {
        bar.set_message(format!("{} {}", job.name, job.params));
        let before = ["attacks", "scores", "metrics"].map(|st| ctx.tally(st));
        let attack = match &job.attack {
            AttackSpec::Adaptive(spec) => {
                let (d, r) = target_of(&slots, spec)?;
                slots[d].ensure_fitted(ctx, model, data, sub)?;
                let (threshold, scale) = operating[d][r];
                let slot = &slots[d];
                let target = AttackTarget {
                    detector: slot.detector.as_ref(),
                    mode: slot.routes[r],
                    threshold,
                    scale,
                    key: &slot.key,
                };
                attack_stage(ctx, job, data, model, sub, Some(&target))?
            }
            _ => attack_stage(ctx, job, data, model, sub, None)?,
        };
        let inputs =
            JobInputs { job, attack: &attack, labels, clean: &clean, heldout: &heldout, operating: &operating };
        records.push(job_record(ctx, &mut slots, &inputs, data, model, sub)?);
        let after = ["attacks", "scores", "metrics"].map(|st| ctx.tally(st));
        let t = JobTime {
            index: job.index,
            attack: job.name.clone(),
            params: job.params.clone(),
            computed: after[2].0 > before[2].0,
            attack_seconds: after[0].1 - before[0].1,
            scores_seconds: after[1].1 - before[1].1,
            metrics_seconds: after[2].1 - before[2].1,
        };
        if bound && after[1].0 > before[1].0 {
            scored.push(attack.adversarial.shallow_clone());
        }
        *done += 1;
        if log_lines {
            ctx.say(&format!("job {}/{} {}", done, bar.length().unwrap_or(0), t.line()));
        }
        times.push(t);
        bar.inc(1);
    }
    let bound = match (bound, scored.is_empty()) {
        (true, false) => Some(scores_bound(ctx, &slots, model, sub, &scored)?),
        _ => None,
    };
    Ok((records, times, bound))
}

/// The slot and route index of an adaptive job's detector and mode (the suite checked both at parse time).
fn target_of(slots: &[DetectorSlot], spec: &AdaptiveSpec) -> Result<(usize, usize)> {
    let (det, mode) = (spec.detector.as_deref().unwrap_or(""), spec.mode.as_deref().unwrap_or(""));
    // a detector fitted per route (path detectors) has one slot per route
    let of_kind: Vec<usize> = (0..slots.len()).filter(|&d| slots[d].kind.as_str() == det).collect();
    if of_kind.is_empty() {
        return Err(Error::Missing(format!("the adaptive attack's detector {det} is not scored by the suite")));
    }
    of_kind
        .iter()
        .find_map(|&d| slots[d].routes.iter().position(|m| m.as_str() == mode).map(|r| (d, r)))
        .ok_or_else(|| Error::Missing(format!("the adaptive attack's detector {det} is not scored on mode {mode}")))
}

/// The seconds of only the model passes the scoring made over `sets` (every detector on its routes).
fn scores_bound(
    ctx: &Ctx,
    slots: &[DetectorSlot],
    model: &ModelStage,
    sub: &SubnetStage,
    sets: &[Tensor],
) -> Result<f64> {
    ctx.say(&format!("timing the scoring's model passes alone over {} image sets (--bound)", sets.len()));
    let scorings: Vec<Scoring> =
        slots.iter().map(|s| Scoring { detector: s.detector.as_ref(), routes: s.routes.clone() }).collect();
    let res = ctx.resources(model, sub);
    let batch = ctx.suite.batch_size as i64;
    sets.iter().map(|xs| crate::eval::pass_bound(&model.model, res, &scorings, xs, batch)).sum()
}

/// How many of the slowest computed jobs the summary names.
const SLOWEST: usize = 3;

/// The one-screen summary printed at the end of a run.
pub fn summary_text(s: &RunSummary) -> String {
    let mut out = format!("{:<10} {:>9} {:>7} {:>10}\n", "stage", "computed", "cached", "seconds");
    for st in &s.stages {
        out += &format!("{:<10} {:>9} {:>7} {:>10.1}\n", st.stage, st.computed, st.cached, st.seconds);
    }
    if let (Some(bound), Some(scores)) = (s.scores_bound_seconds, s.stages.iter().find(|st| st.stage == "scores")) {
        out += &format!(
            "\nscores {:.1} s; the same model passes alone (warm) {bound:.1} s: {:.2}x the bound\n",
            scores.seconds,
            scores.seconds / bound
        );
    }
    let mut slow: Vec<&JobTime> = s.jobs.iter().filter(|j| j.computed).collect();
    slow.sort_by(|a, b| b.seconds().total_cmp(&a.seconds()));
    if !slow.is_empty() {
        out += "\nslowest jobs:\n";
        for j in slow.iter().take(SLOWEST) {
            out += &format!("  {}\n", j.line());
        }
    }
    if let Some(t) = s.tables.first() {
        out += &format!("\nAUROC ({} protocol), best detector per attack:\n", t.protocol);
        for (label, asr, cells) in &t.rows {
            let best = cells
                .iter()
                .zip(&t.columns)
                .filter(|(c, _)| c.best)
                .map(|(c, (d, m))| format!("{d} ({m}) {:.3}", c.auroc.unwrap_or(f64::NAN)));
            let best: Vec<String> = best.collect();
            out += &format!(
                "  {label:<32} ASR {asr:.3}  {}\n",
                if best.is_empty() { "n/a".into() } else { best.join(", ") }
            );
        }
    }
    out += &format!(
        "\n{} jobs in {:.1} s{}; report: {}\n",
        s.jobs_run,
        s.wall_seconds,
        if s.all_cached() { " (everything from the cache)" } else { "" },
        s.report_dir.join("index.html").display()
    );
    out
}
