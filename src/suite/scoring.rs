//! The scoring and metric stages of a suite run, cached: every detector scores clean and adversarial images on each of
//! its routes (full model, class subnetwork of Wang et al., arXiv 1910.02673, ...) through `eval`, fitted lazily on
//! held-out clean training images only, and each job's metrics with bootstrap intervals become its record.
use crate::attacks::AttackSpec;
use crate::detectors::{self, Detector, DetectorKind};
use crate::error::{Error, Result};
use crate::eval::{self, ClassStats, MetricSpec, ScoreTable, Scoring};
use crate::io::{read_json, write_json};
use crate::records::{JobRecord, TargetRecord};
use crate::routes::RouteKind;
use crate::suite::cache::KeyBuilder;
use crate::suite::schema::Job;
use crate::suite::stages::{
    forget_cdrp_paths, load_tensors, save_tensors, train_attack_stage, use_cdrp_paths, AttackStage, Ctx, DataStage,
    ModelStage, SubnetStage,
};
use std::collections::BTreeMap;
use std::time::Instant;
use tch::{Kind, Tensor};

/// One detector of the suite, fitted on first use.
pub struct DetectorSlot {
    pub kind: DetectorKind,
    pub detector: Box<dyn Detector>,
    /// The suite's routes it runs on.
    pub routes: Vec<RouteKind>,
    /// Key of everything that determines its scores on given images.
    pub key: String,
    /// The training attack's label for a supervised detector (the results' `trained_on`).
    pub trained_on: Option<String>,
    fitted: bool,
}

impl DetectorSlot {
    /// The detector's name, with its route for one fitted per route.
    fn label(&self) -> String {
        match (self.detector.fits_per_route(), self.routes.first()) {
            (true, Some(r)) => format!("{} ({r})", self.kind),
            _ => self.kind.to_string(),
        }
    }

    /// Fits the detector on the clean held-out images unless done (scoring fits lazily; an attack needs it fitted); a
    /// supervised one on the first half of them, then on the second half and its versions under the training attack.
    pub fn ensure_fitted(
        &mut self,
        ctx: &mut Ctx,
        model: &ModelStage,
        data: &DataStage,
        sub: &SubnetStage,
    ) -> Result<()> {
        if !self.fitted && self.detector.needs_fit() {
            let fit_start = Instant::now();
            // the training attack and the CDRP paths are tallied under attacks and paths, not under fit
            let elsewhere = |ctx: &Ctx| ctx.tally("attacks").1 + ctx.tally("paths").1;
            let before = elsewhere(ctx);
            match (self.detector.supervised(), ctx.suite.train_attack.clone()) {
                (false, _) => {
                    if self.routes.contains(&RouteKind::Cdrp) {
                        use_cdrp_paths(ctx, model, &[&data.fit.images])?;
                    }
                    let fitted = self.detector.fit(&model.model, &data.fit, ctx.resources(model, sub));
                    forget_cdrp_paths(ctx);
                    fitted?;
                    ctx.say(&format!(
                        "{}: fitted on {} clean training images in {:.1} s",
                        self.label(),
                        data.fit.len(),
                        fit_start.elapsed().as_secs_f64()
                    ));
                }
                (true, Some(job)) => {
                    let (density, _) = eval::supervised_split(&data.fit);
                    self.detector.fit(&model.model, &density, ctx.resources(model, sub))?;
                    let (clean, adversarial) = train_attack_stage(ctx, &job, data, model)?;
                    if self.routes.contains(&RouteKind::Cdrp) {
                        // the clean half is part of the fit images
                        use_cdrp_paths(ctx, model, &[&data.fit.images, &adversarial])?;
                    }
                    let fitted =
                        self.detector.fit_supervised(&model.model, &clean, &adversarial, ctx.resources(model, sub));
                    forget_cdrp_paths(ctx);
                    fitted?;
                    let note = self.detector.fit_note().unwrap_or_else(|| format!("{}: fitted", self.kind));
                    let took = fit_start.elapsed().as_secs_f64();
                    let on = match self.detector.fits_per_route() {
                        true => format!(" on the {} paths", self.routes.first().map_or("", |r| r.as_str())),
                        false => String::new(),
                    };
                    ctx.say(&format!("{note}{on}; trained on {} ({took:.1} s)", job_label(&job)));
                }
                (true, None) => {
                    return Err(Error::Missing(format!(
                        "detector {} is supervised and the suite names no training attack ([detectors] train_attack)",
                        self.kind
                    )))
                }
            }
            let outside = elsewhere(ctx) - before;
            ctx.record_seconds("fit", 1, 0, fit_start.elapsed().as_secs_f64() - outside);
        }
        self.fitted = true;
        Ok(())
    }
}

/// Every detector of the suite with the routes it runs on (the suite's routes it supports).
pub fn detector_slots(ctx: &Ctx, data: &DataStage, model: &ModelStage, sub: &SubnetStage) -> Result<Vec<DetectorSlot>> {
    let s = ctx.suite;
    let mut slots = Vec::new();
    for &kind in &s.detectors {
        let detector = detectors::build(kind, &s.detector_config)?;
        let routes = detector.routes_of(&s.modes);
        match detector.fits_per_route() {
            // one detector per route, each fitted on its own route's passes
            true => {
                for route in routes {
                    let mut detector = detectors::build(kind, &s.detector_config)?;
                    detector.for_route(route);
                    slots.push(slot(ctx, data, model, sub, kind, detector, vec![route])?);
                }
            }
            false => slots.push(slot(ctx, data, model, sub, kind, detector, routes)?),
        }
    }
    Ok(slots)
}

/// The slot of `detector` on `routes`, with its key.
fn slot(
    ctx: &Ctx,
    data: &DataStage,
    model: &ModelStage,
    sub: &SubnetStage,
    kind: DetectorKind,
    detector: Box<dyn Detector>,
    routes: Vec<RouteKind>,
) -> Result<DetectorSlot> {
    let s = ctx.suite;
    let mut key = KeyBuilder::new("detector")
        .part("name", kind)
        .json("config", &s.detector_config)
        .json("modes", &routes)
        .part("model", model.scoring_key())
        .part("subnets", &sub.key)
        .part("data", &data.key)
        .part("device", ctx.device_kind());
    if routes.contains(&RouteKind::Subspace) {
        key = key.part("subspace_k", s.subspace_k);
    }
    if let (true, Some((_, nnd))) = (routes.contains(&RouteKind::Nnd), &ctx.nnd) {
        key = key.part("nnd", nnd);
    }
    let trained_on = match (detector.supervised(), &s.train_attack) {
        (true, Some(job)) => {
            key = key.json("train_attack", &job.attack);
            Some(job_label(job))
        }
        _ => None,
    };
    let key = key.finish();
    Ok(DetectorSlot { kind, detector, routes, key, trained_on, fitted: false })
}

/// Scores of `images` by every detector on each of its routes, `[detector][route] -> scores`, and the full model's
/// predicted class of each image, each detector's cached under `stage_name`-`keys[d]` (with the predictions beside
/// its scores). The detectors not in the cache are scored together: each batch goes through each route once, whatever
/// the number of detectors, and that full-model pass yields the predictions too.
#[allow(clippy::too_many_arguments)]
fn scores_stage(
    ctx: &mut Ctx,
    stage_name: &str,
    keys: &[String],
    slots: &mut [DetectorSlot],
    images: &Tensor,
    label: &str,
    data: &DataStage,
    model: &ModelStage,
    sub: &SubnetStage,
) -> Result<(ScoreTable, Vec<i64>)> {
    let start = Instant::now();
    let stages: Vec<_> = keys.iter().map(|k| ctx.cache.stage(stage_name, k)).collect();
    let todo: Vec<usize> = (0..slots.len()).filter(|&d| !stages[d].is_done()).collect();
    // fitting, its training attack and learning CDRP paths are tallied as their own stages, not as scoring
    let others = |ctx: &Ctx| ctx.tally("fit").1 + ctx.tally("attacks").1 + ctx.tally("paths").1;
    let before = others(ctx);
    if !todo.is_empty() {
        for &d in &todo {
            slots[d].ensure_fitted(ctx, model, data, sub)?;
        }
        if todo.iter().any(|&d| slots[d].routes.contains(&RouteKind::Cdrp)) {
            use_cdrp_paths(ctx, model, &[images])?;
        }
        let scorings: Vec<Scoring> = todo
            .iter()
            .map(|&d| Scoring { detector: slots[d].detector.as_ref(), routes: slots[d].routes.clone() })
            .collect();
        let scored = eval::score_images(
            &model.model,
            ctx.resources(model, sub),
            &scorings,
            images,
            ctx.suite.batch_size as i64,
            label,
        );
        forget_cdrp_paths(ctx);
        let scored = scored?;
        ctx.add_scoring_times(
            &todo.iter().map(|&d| (slots[d].kind, slots[d].routes.as_slice())).collect::<Vec<_>>(),
            &scored,
        );
        let pred = Tensor::from_slice(&scored.pred);
        let seconds = (start.elapsed().as_secs_f64() - (others(ctx) - before)) / todo.len() as f64;
        for (&d, per_route) in todo.iter().zip(&scored.scores) {
            let stage = &stages[d];
            stage.create()?;
            let mut tensors: Vec<(&str, Tensor)> =
                slots[d].routes.iter().zip(per_route).map(|(r, s)| (r.as_str(), Tensor::from_slice(s))).collect();
            tensors.push((PRED, pred.shallow_clone()));
            let named: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
            save_tensors(&stage.file("scores.safetensors"), &named)?;
            stage.finish(&BTreeMap::from([("seconds", seconds)]))?;
        }
    }
    let mut all = Vec::new();
    let mut pred = None;
    for (d, slot) in slots.iter().enumerate() {
        let mut names: Vec<&str> = slot.routes.iter().map(|r| r.as_str()).collect();
        names.push(PRED);
        let mut t = load_tensors(&stages[d].file("scores.safetensors"), &names)?;
        let p = t.pop().map(|p| Vec::<i64>::try_from(p.to_kind(Kind::Int64))).transpose()?;
        pred = pred.or(p);
        all.push(t.iter().map(|x| Ok(Vec::<f64>::try_from(x.to_kind(Kind::Double))?)).collect::<Result<Vec<_>>>()?);
    }
    let pred = match pred {
        Some(p) => p,
        None => Vec::<i64>::try_from(model.model.predict(images, ctx.suite.batch_size as i64).to_kind(Kind::Int64))?,
    };
    let seconds = start.elapsed().as_secs_f64() - (others(ctx) - before);
    ctx.record_seconds("scores", todo.len(), slots.len() - todo.len(), seconds);
    Ok((all, pred))
}

/// The name of the full model's predictions in a scores file.
const PRED: &str = "pred";

/// The clean test images scored: every detector's scores `[detector][route]`, their stage keys, and the full model's
/// predictions.
pub struct CleanScores {
    pub scores: ScoreTable,
    pub keys: Vec<String>,
    pub pred: Vec<i64>,
}

/// Clean-image scores of every detector, and the model's predictions from the same pass.
pub fn clean_scores(
    ctx: &mut Ctx,
    slots: &mut [DetectorSlot],
    data: &DataStage,
    model: &ModelStage,
    sub: &SubnetStage,
) -> Result<CleanScores> {
    let keys: Vec<String> =
        slots.iter().map(|slot| KeyBuilder::new("clean-scores").part("detector", &slot.key).finish()).collect();
    let (scores, pred) = scores_stage(ctx, "clean-scores", &keys, slots, &data.test.images, "clean", data, model, sub)?;
    Ok(CleanScores { scores, keys, pred })
}

/// What the clean held-out fit images give each detector and route: the threshold of `tpr_at_fpr_5_heldout`, and with
/// `[detectors] class_normalise` the per-class statistics of its scores (`eval::ClassStats`).
pub struct Heldout {
    /// Per detector and route; NaN (no column value) for the detectors fitted on those same images (Mahalanobis, LID,
    /// KD+BU): their scores there are in-sample, and a threshold from them would not hold on new images.
    pub thresholds: Vec<Vec<f64>>,
    /// Per detector and route, the standard deviation of the scores the threshold comes from (NaN where it is NaN).
    pub scales: Vec<Vec<f64>>,
    /// Per detector and route, `None` for the fitted detectors (left raw) or without the option.
    pub norm: Vec<Vec<Option<ClassStats>>>,
}

/// Population standard deviation of `v` (NaN when empty).
fn spread(v: &[f64]) -> f64 {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt()
}

/// Per detector and route, the operating point that evasion is measured at and the adaptive attack is held to: the
/// threshold at 5% FPR and the spread of the clean scores it comes from (1 where they do not spread, as a 0/1 score
/// that never fires on them). They come from the clean held-out fit images, or, for the detectors fitted on those
/// images (Mahalanobis, LID, KD+BU), from the correctly classified clean test images, as `tpr_at_fpr_5` does (a
/// threshold that has seen the test negatives, which favours the detector).
pub fn operating_points(heldout: &Heldout, clean: &CleanScores, labels: &[i64]) -> Vec<Vec<(f64, f64)>> {
    let correct: Vec<bool> = clean.pred.iter().zip(labels).map(|(p, l)| p == l).collect();
    heldout
        .thresholds
        .iter()
        .zip(&heldout.scales)
        .zip(&clean.scores)
        .map(|((ts, ss), per_route)| {
            ts.iter()
                .zip(ss)
                .zip(per_route)
                .map(|((&t, &s), scores)| {
                    let (t, s) = match t.is_nan() {
                        false => (t, s),
                        true => {
                            let kept: Vec<f64> =
                                scores.iter().zip(&correct).filter(|(_, &c)| c).map(|(v, _)| *v).collect();
                            let t = eval::heldout_thresholds(&[vec![kept.clone()]])[0][0];
                            (t, spread(&kept))
                        }
                    };
                    (t, if s.is_finite() && s > 0.0 { s } else { 1.0 })
                })
                .collect()
        })
        .collect()
}

impl Heldout {
    /// Normalises `scores[d][r]` of images with predictions `pred` in place, where the detector and route have
    /// statistics.
    pub fn normalise(&self, scores: &mut ScoreTable, pred: &[i64]) -> Result<()> {
        for (per_route, stats) in scores.iter_mut().zip(&self.norm) {
            for (v, st) in per_route.iter_mut().zip(stats) {
                if let Some(st) = st {
                    *v = st.apply(v, pred)?;
                }
            }
        }
        Ok(())
    }
}

/// The held-out figures of every detector (`Heldout`): its scores on the fit images (scored and cached), the
/// per-class statistics over all of them, and the threshold over the correctly classified ones (as the test set's
/// negatives are), of the normalised scores when the suite normalises.
pub fn heldout_thresholds(
    ctx: &mut Ctx,
    slots: &mut Vec<DetectorSlot>,
    data: &DataStage,
    model: &ModelStage,
    sub: &SubnetStage,
) -> Result<Heldout> {
    let (free, fitted): (Vec<_>, Vec<_>) =
        std::mem::take(slots).into_iter().enumerate().partition(|(_, s)| !s.detector.needs_fit());
    let order: Vec<usize> = free.iter().map(|(i, _)| *i).collect();
    let mut picked: Vec<DetectorSlot> = free.into_iter().map(|(_, s)| s).collect();
    let keys: Vec<String> =
        picked.iter().map(|slot| KeyBuilder::new("fit-scores").part("detector", &slot.key).finish()).collect();
    let scored = match picked.is_empty() {
        true => Ok((Vec::new(), Vec::new())),
        false => scores_stage(ctx, "fit-scores", &keys, &mut picked, &data.fit.images, "fit", data, model, sub),
    };
    let mut back: Vec<(usize, DetectorSlot)> = order.iter().copied().zip(picked).chain(fitted).collect();
    back.sort_by_key(|(i, _)| *i);
    *slots = back.into_iter().map(|(_, s)| s).collect();
    let (mut scores, pred) = scored?;
    let norm: Vec<Vec<Option<ClassStats>>> = if ctx.suite.detector_config.class_normalise {
        let classes = data.fit.num_classes() as usize;
        let stats: Vec<Vec<Option<ClassStats>>> = scores
            .iter()
            .map(|per_route| per_route.iter().map(|v| ClassStats::fit(v, &pred, classes).map(Some)).collect())
            .collect::<Result<_>>()?;
        for (per_route, st) in scores.iter_mut().zip(&stats) {
            for (v, s) in per_route.iter_mut().zip(st).filter_map(|(v, s)| s.as_ref().map(|s| (v, s))) {
                *v = s.apply(v, &pred)?;
            }
        }
        stats
    } else {
        scores.iter().map(|per_route| vec![None; per_route.len()]).collect()
    };
    let labels = data.fit.label_vec();
    let correct: Vec<bool> = pred.iter().zip(&labels).map(|(p, l)| p == l).collect();
    let kept: ScoreTable = scores
        .iter()
        .map(|per_route| {
            per_route.iter().map(|v| v.iter().zip(&correct).filter(|(_, &c)| c).map(|(s, _)| *s).collect()).collect()
        })
        .collect();
    let mut thresholds = eval::heldout_thresholds(&kept).into_iter();
    let mut scales = kept.iter().map(|per_route| per_route.iter().map(|v| spread(v)).collect::<Vec<f64>>());
    let mut norm = norm.into_iter();
    let mut out = Heldout { thresholds: Vec::new(), scales: Vec::new(), norm: Vec::new() };
    for (i, s) in slots.iter().enumerate() {
        let nan = vec![f64::NAN; s.routes.len()];
        match order.contains(&i) {
            true => {
                out.thresholds.push(thresholds.next().unwrap_or_default());
                out.scales.push(scales.next().unwrap_or_default());
                out.norm.push(norm.next().unwrap_or_default());
            }
            false => {
                out.thresholds.push(nan.clone());
                out.scales.push(nan);
                out.norm.push(vec![None; s.routes.len()]);
            }
        }
    }
    Ok(out)
}

/// Everything a job's metrics are computed from.
pub struct JobInputs<'a> {
    pub job: &'a Job,
    pub attack: &'a AttackStage,
    pub labels: &'a [i64],
    pub clean: &'a CleanScores,
    /// Per detector and route, the threshold at 5% FPR on the clean held-out fit images, and the per-class
    /// normalisation.
    pub heldout: &'a Heldout,
    /// Per detector and route, the operating threshold and the clean scores' spread (`operating_points`).
    pub operating: &'a [Vec<(f64, f64)>],
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
    for (slot, (ck, ak)) in slots.iter().zip(inp.clean.keys.iter().zip(&adv_keys)) {
        kb = kb.part("detector", slot.kind).part("clean", ck).part("adv", ak);
    }
    let stage = ctx.cache.stage("metrics", &kb.finish());
    if stage.is_done() {
        let start = Instant::now();
        let rec: JobRecord = read_json(&stage.file("record.json"))?;
        ctx.record("metrics", false, start);
        return Ok(rec);
    }
    let label = format!("{} {}", inp.job.name, inp.job.params);
    let (mut adv_scores, pred_adv) =
        scores_stage(ctx, "scores", &adv_keys, slots, &inp.attack.adversarial, &label, data, model, sub)?;
    inp.heldout.normalise(&mut adv_scores, &pred_adv)?;
    let start = Instant::now();
    let evasion: Vec<Vec<f64>> = inp.operating.iter().map(|r| r.iter().map(|(t, _)| *t).collect()).collect();
    let names: Vec<&str> = slots.iter().map(|slot| slot.kind.as_str()).collect();
    let routes: Vec<Vec<RouteKind>> = slots.iter().map(|slot| slot.routes.clone()).collect();
    let spec = MetricSpec { protocols: s.protocols.clone(), bootstrap: s.bootstrap, seed: s.seed };
    let rows = eval::metric_rows(
        &names,
        &routes,
        &inp.clean.scores,
        &adv_scores,
        inp.labels,
        &inp.clean.pred,
        &pred_adv,
        &spec,
        Some(eval::Thresholds { heldout: &inp.heldout.thresholds, evasion: &evasion }),
    )?;
    let mut rows = rows;
    for row in rows.iter_mut() {
        row.trained_on =
            slots.iter().find(|slot| slot.kind.as_str() == row.detector).and_then(|s| s.trained_on.clone());
    }
    let rec = JobRecord {
        index: inp.job.index,
        attack: inp.job.name.clone(),
        params: inp.job.params.clone(),
        rows,
        target: target_record(inp, slots),
        ..attack_figures(inp, &pred_adv, &data.test.images)?
    };
    stage.create()?;
    write_json(&stage.file("record.json"), &rec)?;
    stage.finish(&BTreeMap::from([("seconds", start.elapsed().as_secs_f64())]))?;
    let rec = read_json(&stage.file("record.json"))?;
    ctx.record("metrics", true, start);
    Ok(rec)
}

/// A job as the results name it: the attack, then its parameters.
pub fn job_label(job: &Job) -> String {
    match job.params.is_empty() {
        true => job.name.clone(),
        false => format!("{} {}", job.name, job.params),
    }
}

/// What an adaptive job attacked (`None` for any other job).
fn target_record(inp: &JobInputs, slots: &[DetectorSlot]) -> Option<TargetRecord> {
    let AttackSpec::Adaptive(spec) = &inp.job.attack else { return None };
    let (detector, mode) = (spec.detector.clone()?, spec.mode.clone()?);
    let d = slots.iter().position(|s| s.kind.as_str() == detector)?;
    let r = slots[d].routes.iter().position(|m| m.as_str() == mode)?;
    let (threshold, scale) = inp.operating[d][r];
    let steer = spec.steer.unwrap_or(crate::attacks::Steer::Wrong).as_str().to_string();
    Some(TargetRecord { detector, mode, steer, threshold, scale, curve: inp.attack.curve.clone().unwrap_or_default() })
}

/// Clean accuracy, attack success rate and mean perturbation norms of a job (rows left empty).
fn attack_figures(inp: &JobInputs, pred_adv: &[i64], clean: &Tensor) -> Result<JobRecord> {
    let n = inp.labels.len().max(1) as f64;
    let correct: Vec<usize> = (0..inp.labels.len()).filter(|&i| inp.clean.pred[i] == inp.labels[i]).collect();
    let flipped = correct.iter().filter(|&&i| pred_adv[i] != inp.labels[i]).count();
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
        variant: None,
        target: None,
    })
}
