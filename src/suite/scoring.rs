//! The scoring and metric stages of a suite run: confidence detectors in full and class-subnetwork mode (Wang et al.,
//! arXiv 1910.02673) score clean and adversarial images, fitted lazily on held-out clean training images only, and
//! each job's metrics with bootstrap intervals become its record.
use crate::detectors::{self, protocol_sets, score_batched, Detector, Mode};
use crate::error::Result;
use crate::metrics;
use crate::io::{read_json, write_json};
use crate::suite::cache::KeyBuilder;
use crate::records::{Curve, JobRecord, MetricValue, RowRecord};
use crate::suite::schema::Job;
use crate::suite::stages::{load_tensors, save_tensors, AttackStage, Ctx, DataStage, ModelStage, SubnetStage};
use std::collections::BTreeMap;
use std::time::Instant;
use tch::{Kind, Tensor};

/// One detector of the suite, fitted on first use.
pub struct DetectorSlot {
    pub name: String,
    pub detector: Box<dyn Detector>,
    pub modes: Vec<Mode>,
    /// Key of everything that determines its scores on given images.
    pub key: String,
    fitted: bool,
}

/// Every detector of the suite with the modes it runs in (the suite's modes it supports).
pub fn detector_slots(ctx: &Ctx, data: &DataStage, model: &ModelStage, sub: &SubnetStage) -> Result<Vec<DetectorSlot>> {
    let s = ctx.suite;
    s.detectors
        .iter()
        .map(|name| {
            let detector = detectors::by_name(name, &s.detector_config)?;
            let modes: Vec<Mode> = s.modes.iter().copied().filter(|m| detector.modes().contains(m)).collect();
            let key = KeyBuilder::new("detector")
                .part("name", name)
                .json("config", &s.detector_config)
                .json("modes", &modes)
                .part("model", &model.hash)
                .part("subnets", &sub.key)
                .part("data", &data.key)
                .part("device", ctx.device_kind())
                .finish();
            Ok(DetectorSlot { name: name.clone(), detector, modes, key, fitted: false })
        })
        .collect()
}

/// Scores of `images` by one detector in each of its modes, cached under `stage`-`key`; `[mode] -> scores`.
fn scores_stage(
    ctx: &mut Ctx,
    stage_name: &str,
    key: &str,
    slot: &mut DetectorSlot,
    images: &Tensor,
    data: &DataStage,
    model: &ModelStage,
    sub: &SubnetStage,
) -> Result<Vec<Vec<f64>>> {
    let start = Instant::now();
    let stage = ctx.cache.stage(stage_name, key);
    let computed = !stage.is_done();
    if computed {
        if !slot.fitted && slot.detector.needs_fit() {
            let fit_start = Instant::now();
            slot.detector.fit(&model.model, &data.fit)?;
            ctx.record("fit", true, fit_start);
        }
        slot.fitted = true;
        stage.create()?;
        let batch = ctx.suite.batch_size as i64;
        let mut tensors = Vec::new();
        for &mode in &slot.modes {
            let s = score_batched(slot.detector.as_ref(), &model.model, Some(&sub.subnets), mode, images, batch)?;
            tensors.push((mode.as_str(), Tensor::from_slice(&s)));
        }
        let named: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
        save_tensors(&stage.file("scores.safetensors"), &named)?;
        stage.finish(&BTreeMap::from([("seconds", start.elapsed().as_secs_f64())]))?;
    }
    let names: Vec<&str> = slot.modes.iter().map(|m| m.as_str()).collect();
    let t = load_tensors(&stage.file("scores.safetensors"), &names)?;
    ctx.record("scores", computed, start);
    t.iter().map(|x| Ok(Vec::<f64>::try_from(x.to_kind(Kind::Double))?)).collect()
}

/// Clean-image scores of every detector: `[detector][mode]`, and their stage keys.
pub fn clean_scores(
    ctx: &mut Ctx,
    slots: &mut [DetectorSlot],
    data: &DataStage,
    model: &ModelStage,
    sub: &SubnetStage,
) -> Result<(Vec<Vec<Vec<f64>>>, Vec<String>)> {
    let (mut all, mut keys) = (Vec::new(), Vec::new());
    for slot in slots.iter_mut() {
        let key = KeyBuilder::new("clean-scores").part("detector", &slot.key).finish();
        all.push(scores_stage(ctx, "clean-scores", &key, slot, &data.test.images, data, model, sub)?);
        keys.push(key);
    }
    Ok((all, keys))
}

/// Everything a job's metrics are computed from.
pub struct JobInputs<'a> {
    pub job: &'a Job,
    pub attack: &'a AttackStage,
    pub labels: &'a [i64],
    pub pred_clean: &'a [i64],
    pub clean: &'a [Vec<Vec<f64>>],
    pub clean_keys: &'a [String],
}

fn metric_values(labels: &[bool], scores: &[f64], bootstrap: usize, seed: u64) -> Result<Vec<MetricValue>> {
    let (n_adv, n) = (labels.iter().filter(|&&l| l).count(), labels.len());
    if n_adv == 0 || n_adv == n {
        let none = |m: &str| MetricValue { name: m.to_string(), point: None, lo: None, hi: None };
        return Ok(metrics::METRIC_NAMES.iter().map(|m| none(m)).collect());
    }
    let (point, ci) = if bootstrap > 0 {
        let w = metrics::bootstrap(labels, scores, bootstrap, seed)?;
        (w.point, Some((w.lo, w.hi)))
    } else {
        (metrics::compute(labels, scores)?, None)
    };
    Ok(metrics::METRIC_NAMES
        .iter()
        .map(|m| MetricValue {
            name: m.to_string(),
            point: point.get(m).filter(|v| v.is_finite()),
            lo: ci.and_then(|(lo, _)| lo.get(m)).filter(|v| v.is_finite()),
            hi: ci.and_then(|(_, hi)| hi.get(m)).filter(|v| v.is_finite()),
        })
        .collect())
}

/// Adversarial scores and metrics of one job, cached as its record.
pub fn job_record(
    ctx: &mut Ctx,
    slots: &mut [DetectorSlot],
    inp: &JobInputs,
    data: &DataStage,
    model: &ModelStage,
    sub: &SubnetStage,
) -> Result<JobRecord> {
    let mut adv_keys = Vec::new();
    for slot in slots.iter() {
        adv_keys.push(KeyBuilder::new("scores").part("detector", &slot.key).part("attack", &inp.attack.key).finish());
    }
    let s = ctx.suite;
    let mut kb = KeyBuilder::new("metrics")
        .part("attack", &inp.attack.key)
        .part("bootstrap", s.bootstrap)
        .part("seed", s.seed)
        .json("protocols", &s.protocols)
        .part("job", format!("{} {} {}", inp.job.index, inp.job.name, inp.job.params));
    for (slot, (ck, ak)) in slots.iter().zip(inp.clean_keys.iter().zip(&adv_keys)) {
        kb = kb.part("detector", &slot.name).part("clean", ck).part("adv", ak);
    }
    let stage = ctx.cache.stage("metrics", &kb.finish());
    if stage.is_done() {
        let start = Instant::now();
        let rec: JobRecord = read_json(&stage.file("record.json"))?;
        ctx.record("metrics", false, start);
        return Ok(rec);
    }
    let mut adv_scores = Vec::new();
    for (slot, key) in slots.iter_mut().zip(&adv_keys) {
        adv_scores.push(scores_stage(ctx, "scores", key, slot, &inp.attack.adversarial, data, model, sub)?);
    }
    let start = Instant::now();
    let mut rows = Vec::new();
    for (d, slot) in slots.iter().enumerate() {
        for (m, mode) in slot.modes.iter().enumerate() {
            let (succ, all) =
                protocol_sets(&inp.clean[d][m], &adv_scores[d][m], inp.labels, inp.pred_clean, &inp.attack.pred_adv);
            for protocol in &s.protocols {
                let set = if protocol == "all" { &all } else { &succ };
                let (n_neg, n_pos) = set.counts();
                let metrics = metric_values(&set.labels, &set.scores, s.bootstrap, s.seed)?;
                let roc = match n_pos > 0 && n_neg > 0 {
                    true => metrics::roc_curve(&set.labels, &set.scores).ok().map(|r| Curve::thinned(&r.fpr, &r.tpr)),
                    false => None,
                };
                rows.push(RowRecord {
                    detector: slot.name.clone(),
                    mode: mode.to_string(),
                    protocol: protocol.clone(),
                    n_pos,
                    n_neg,
                    metrics,
                    roc,
                });
            }
        }
    }
    let rec = JobRecord {
        index: inp.job.index,
        attack: inp.job.name.clone(),
        params: inp.job.params.clone(),
        rows,
        ..attack_figures(inp, &data.test.images)?
    };
    stage.create()?;
    write_json(&stage.file("record.json"), &rec)?;
    stage.finish(&BTreeMap::from([("seconds", start.elapsed().as_secs_f64())]))?;
    let rec = read_json(&stage.file("record.json"))?;
    ctx.record("metrics", true, start);
    Ok(rec)
}

/// Clean accuracy, attack success rate and mean perturbation norms of a job (rows left empty).
fn attack_figures(inp: &JobInputs, clean: &Tensor) -> Result<JobRecord> {
    let n = inp.labels.len().max(1) as f64;
    let correct: Vec<usize> = (0..inp.labels.len()).filter(|&i| inp.pred_clean[i] == inp.labels[i]).collect();
    let flipped = correct.iter().filter(|&&i| inp.attack.pred_adv[i] != inp.labels[i]).count();
    let delta = (&inp.attack.adversarial - clean).flatten(1, -1).to_kind(Kind::Double);
    let linf = f64::try_from(delta.abs().amax([1].as_slice(), false).mean(Kind::Double))?;
    let l2 = f64::try_from(delta.norm_scalaropt_dim(2.0, [1].as_slice(), false).mean(Kind::Double))?;
    Ok(JobRecord {
        index: 0,
        attack: String::new(),
        params: String::new(),
        clean_accuracy: correct.len() as f64 / n,
        attack_success_rate: flipped as f64 / correct.len().max(1) as f64,
        mean_linf: linf,
        mean_l2: l2,
        rows: Vec::new(),
    })
}
