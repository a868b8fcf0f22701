//! `advdet run`: a suite from data to report for the full-model vs class-subnetwork detector comparison (Wang, Su,
//! Zhang, Hu, arXiv 1910.02673): data -> model -> subnets -> attacks -> scores -> metrics -> report, every stage cached
//! by the hash of its inputs, so a warm run recomputes nothing and a killed run resumes where it stopped.
use crate::cpu::CpuMode;
use crate::device::DeviceChoice;
use crate::error::{Error, Result};
use crate::eval::Scoring;
use crate::models::Model;
use crate::records::{JobRecord, SuiteRecord};
use crate::report::manifest::{git_commit, JobTime, Manifest, StageTime};
use crate::report::tables::PaperTable;
use crate::routes::{Resources, RouteKind};
use crate::suite::cache::Cache;
use crate::suite::schema::Suite;
use crate::suite::scoring::{clean_scores, detector_slots, heldout_thresholds, job_record, DetectorSlot, JobInputs};
use crate::suite::shard::Shard;
use crate::suite::stages::{attack_stage, data_stage, model_stage, subnet_stage, Ctx, SubnetStage};
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
    let mut ctx = Ctx {
        suite,
        cache,
        device,
        numerics: numerics.clone(),
        stats: BTreeMap::new(),
        fgsm_signs: BTreeMap::new(),
        scoring: BTreeMap::new(),
        route_passes: BTreeMap::new(),
        scoring_calls: (0, 0),
        temperature: None,
    };
    let jobs: Vec<_> = suite.jobs.iter().filter(|j| opts.shard.owns(j.index)).collect();
    ctx.say(&format!(
        "{} of {} jobs (shard {}), {} detectors, on {}",
        jobs.len(),
        suite.jobs.len(),
        opts.shard,
        suite.detectors.len(),
        crate::device::describe(device, &numerics)
    ));

    let mut data = data_stage(&mut ctx)?;
    let model = model_stage(&mut ctx, &data)?;
    let sub = subnet_stage(&mut ctx, &mut data, &model)?;
    if suite.modes.contains(&RouteKind::Temperature) {
        let t = crate::routes::temperature::fit(&model.model, &sub.subnets, &data.fit.images, suite.batch_size as i64)?;
        ctx.say(&format!("temperature control: T = {t:.6} gives the subnetworks' mean max-softmax on the fit images"));
        ctx.temperature = Some(t);
    }
    let labels = data.test.label_vec();
    let mut slots = detector_slots(&ctx, &data, &model, &sub)?;
    let clean = clean_scores(&mut ctx, &mut slots, &data, &model, &sub)?;
    let heldout = heldout_thresholds(&mut ctx, &mut slots, &data, &model, &sub)?;
    // the image sets scored in this run, for the bound
    let mut scored: Vec<Tensor> = Vec::new();
    if opts.bound && ctx.tally("scores").0 > 0 {
        scored.push(data.test.images.shallow_clone());
    }

    let bar = crate::progress::bar(jobs.len() as u64, "jobs");
    // a log (CI, a batch job, `make run > log`) gets one line per finished job instead of the bar
    let log_lines = !std::io::stderr().is_terminal();
    let mut records: Vec<JobRecord> = Vec::new();
    let mut job_times: Vec<JobTime> = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        bar.set_message(format!("{} {}", job.name, job.params));
        let before = ["attacks", "scores", "metrics"].map(|st| ctx.tally(st));
        let attack = attack_stage(&mut ctx, job, &data, &model, &sub)?;
        let inputs = JobInputs { job, attack: &attack, labels: &labels, clean: &clean, heldout: &heldout };
        records.push(job_record(&mut ctx, &mut slots, &inputs, &data, &model, &sub)?);
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
        if opts.bound && after[1].0 > before[1].0 {
            scored.push(attack.adversarial.shallow_clone());
        }
        if log_lines {
            ctx.say(&format!("job {}/{} {}", i + 1, jobs.len(), t.line()));
        }
        job_times.push(t);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let scores_bound_seconds = match (opts.bound, scored.is_empty()) {
        (true, false) => Some(scores_bound(&ctx, &slots, &sub, &model.model, &scored)?),
        (true, true) => {
            ctx.say("--bound: every score came from the cache, so there is no scoring to bound (add --fresh)");
            None
        }
        (false, _) => None,
    };

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
        jobs: suite.jobs.len(),
        detectors: slots.iter().map(|s| s.kind.to_string()).collect(),
        modes: suite.modes.iter().map(|m| m.to_string()).collect(),
        protocols: suite.protocols.iter().map(|p| p.to_string()).collect(),
        subnet: sub.record.clone(),
    };
    let tables = crate::report::render::render(&dir, &suite_record, &records, Some(&sub.file), true)?;
    ctx.record("report", true, report_start);

    let seeds = BTreeMap::from([
        ("suite".to_string(), suite.seed),
        (
            "model".to_string(),
            match &suite.model {
                crate::suite::schema::ModelSpec::Train(c) => c.seed,
                crate::suite::schema::ModelSpec::Weights { .. } => 0,
            },
        ),
        ("subnet".to_string(), suite.subnet.seed),
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
        detectors_oblivious_to_attacks: true,
        protocol: crate::report::manifest::PROTOCOL_NOTE.to_string(),
    };
    manifest.write_into(&dir)?;
    if records.is_empty() && !jobs.is_empty() {
        return Err(Error::Missing("no job produced a record".into()));
    }
    Ok(RunSummary {
        report_dir: dir,
        stages: manifest.stages,
        jobs: manifest.jobs,
        scores_bound_seconds: manifest.scores_bound_seconds,
        tables,
        jobs_run: jobs.len(),
        wall_seconds: manifest.wall_seconds,
    })
}

/// The seconds of only the model passes the scoring made over `sets` (every detector on its routes).
fn scores_bound(ctx: &Ctx, slots: &[DetectorSlot], sub: &SubnetStage, model: &Model, sets: &[Tensor]) -> Result<f64> {
    ctx.say(&format!("timing the scoring's model passes alone over {} image sets (--bound)", sets.len()));
    let scorings: Vec<Scoring> =
        slots.iter().map(|s| Scoring { detector: s.detector.as_ref(), routes: s.routes.clone() }).collect();
    let res = Resources { subnets: Some(&sub.subnets), temperature: ctx.temperature };
    let batch = ctx.suite.batch_size as i64;
    sets.iter().map(|xs| crate::eval::pass_bound(model, res, &scorings, xs, batch)).sum()
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
