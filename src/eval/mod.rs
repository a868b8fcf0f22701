//! One evaluation path, shared by `advdet detect` and the suite runner: images are scored in batches, each batch goes
//! through the full model once and through every other route once, and every detector scores from those passes; the
//! scores of clean and adversarial images then become metric rows under the evaluation protocol.
pub mod normalise;
pub mod protocol;
mod rows;

pub use normalise::ClassStats;
pub use protocol::{fit_split, protocol_sets, supervised_split, Protocol, ScoredSet};
pub use rows::{heldout_thresholds, metric_rows, metric_values, MetricSpec, Thresholds};

use crate::detectors::{finite_scores, Detector, View};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::routes::{self, Pass, Resources, RouteKind};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// A detector and the routes it scores on.
pub struct Scoring<'a> {
    pub detector: &'a dyn Detector,
    pub routes: Vec<RouteKind>,
}

/// Scores per detector, per route of that detector, per image: `[detector][route][image]`.
pub type ScoreTable = Vec<Vec<Vec<f64>>>;

/// The scores of one image set: `scores[i][j]` for scoring `i` and its route `j`, one per image; `pred` the full model's
/// predicted class of each image.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    pub scores: ScoreTable,
    pub pred: Vec<i64>,
    /// Batched forward and backward calls of the model (and of the second model) made while scoring the set: one
    /// forward per (batch, route), plus what detectors that perturb their input (ODIN, Mahalanobis with a magnitude)
    /// add on top.
    pub forwards: usize,
    pub backwards: usize,
    /// Seconds each scoring spent on each of its routes, `[scoring][route]`, not counting the routes' passes.
    pub seconds: Vec<Vec<f64>>,
    /// Seconds of each route's own pass over the set (on a GPU, work still queued when the full model's predictions
    /// are read shows here; the rest lands on the first detector that reads the pass).
    pub pass_seconds: BTreeMap<RouteKind, f64>,
}

/// Fails unless `xs` is a float batch of images the model takes.
fn check_images(model: &Model, xs: &Tensor) -> Result<()> {
    let (c, h, w) = model.arch.input_shape();
    let size = xs.size();
    if size.len() != 4 || size[1..] != [c, h, w] {
        return Err(Error::Model(format!(
            "images of shape {size:?}, but arch {} takes [N, {c}, {h}, {w}]",
            model.arch
        )));
    }
    if !matches!(xs.kind(), Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16) {
        return Err(Error::Model(format!("images of kind {:?}, expected floats in [0, 1]", xs.kind())));
    }
    Ok(())
}

/// The error of route `route` failing to build for `detector`, naming both.
fn route_error(detector: &str, route: RouteKind, e: Error) -> Error {
    match e {
        Error::Missing(m) => Error::Missing(format!("detector {detector} in {route} mode: {m}")),
        Error::Model(m) => Error::Model(format!("detector {detector} in {route} mode: {m}")),
        other => other,
    }
}

/// Scores `images` (`[N, C, H, W]`, any device) with every scoring, in batches of `batch_size`, with a progress bar
/// labelled `label`. Each batch goes once through the full model and once through each other route asked for; every
/// detector scores from those passes. On a route where a detector wants the input gradient (ODIN, Mahalanobis with a
/// magnitude) that one pass keeps its graph, and the detector's backward runs through it. Every detector here scores each image independently of its batch.
pub fn score_images(
    model: &Model,
    res: Resources,
    scorings: &[Scoring],
    images: &Tensor,
    batch_size: i64,
    label: &str,
) -> Result<Scores> {
    check_images(model, images)?;
    let built = build_routes(model, res, scorings)?;
    let n = images.size()[0];
    let b = batch_size.max(1);
    let bar = crate::progress::bar(n.max(0) as u64, label);
    let mut out: ScoreTable = scorings.iter().map(|s| vec![Vec::with_capacity(n as usize); s.routes.len()]).collect();
    let mut pred = Vec::with_capacity(n as usize);
    let mut seconds: Vec<Vec<f64>> = scorings.iter().map(|s| vec![0.0; s.routes.len()]).collect();
    let mut pass_seconds: BTreeMap<RouteKind, f64> = BTreeMap::new();
    // the routes whose pass keeps its graph: a detector on them takes the input gradient from that forward
    let graph: BTreeSet<RouteKind> =
        scorings.iter().filter(|s| s.detector.wants_input_grad()).flat_map(|s| s.routes.iter().copied()).collect();
    // the model's calls, and the second model's (the `second-model` route) with them
    let all_calls = || {
        let (a, b) = res.second.map_or((0, 0), |m| m.calls());
        let (c, d) = model.calls();
        (a + c, b + d)
    };
    let calls_before = all_calls();
    for start in (0..n).step_by(b as usize) {
        let len = b.min(n - start);
        let xs = images.narrow(0, start, len).to_device(model.device()).to_kind(Kind::Float);
        let (full, others) = passes(model, &built, &graph, &xs, &mut pass_seconds)?;
        pred.extend(Vec::<i64>::try_from(full.logits.argmax(-1, false).to_device(Device::Cpu))?);
        for ((s, per_route), secs) in scorings.iter().zip(out.iter_mut()).zip(seconds.iter_mut()) {
            for ((r, dest), sec) in s.routes.iter().zip(per_route.iter_mut()).zip(secs.iter_mut()) {
                let t0 = Instant::now();
                let route = others.get(r).unwrap_or(&full);
                let v = View { model, xs: &xs, full: &full, route };
                let t = s.detector.score(&v)?;
                dest.extend(finite_scores(s.detector.name(), &t)?);
                *sec += t0.elapsed().as_secs_f64();
            }
        }
        bar.inc(len as u64);
    }
    bar.finish_and_clear();
    let calls = all_calls();
    Ok(Scores {
        scores: out,
        pred,
        forwards: calls.0 - calls_before.0,
        backwards: calls.1 - calls_before.1,
        seconds,
        pass_seconds,
    })
}

/// Every route the scorings ask for except the full model (which every batch goes through anyway), built once.
fn build_routes<'a>(
    model: &Model,
    res: Resources<'a>,
    scorings: &[Scoring],
) -> Result<BTreeMap<RouteKind, Box<dyn routes::Route + 'a>>> {
    let mut built: BTreeMap<RouteKind, Box<dyn routes::Route + 'a>> = BTreeMap::new();
    for s in scorings {
        let name = s.detector.name();
        for &r in &s.routes {
            if !s.detector.runs_on(r) {
                let ok: Vec<&str> = s.detector.routes_of(&RouteKind::ALL).iter().map(|r| r.as_str()).collect();
                return Err(Error::config("mode", r, format!("detector {name} runs only on {}", ok.join(", "))));
            }
            if let std::collections::btree_map::Entry::Vacant(slot) = built.entry(r) {
                slot.insert(routes::build(r, model, res).map_err(|e| route_error(name, r, e))?);
            }
        }
    }
    Ok(built)
}

/// The batch `xs` through the full model and through every other route once (a route in `graph` keeping its graph for
/// input gradients), each pass's seconds added to `seconds`.
fn passes(
    model: &Model,
    built: &BTreeMap<RouteKind, Box<dyn routes::Route + '_>>,
    graph: &BTreeSet<RouteKind>,
    xs: &Tensor,
    seconds: &mut BTreeMap<RouteKind, f64>,
) -> Result<(Pass, BTreeMap<RouteKind, Pass>)> {
    let pass_of = |kind: RouteKind, f: &dyn Fn(&Tensor) -> Result<Option<Pass>>| -> Result<Option<Pass>> {
        match graph.contains(&kind) {
            true => Pass::with_graph(xs, f),
            false => {
                let _guard = tch::no_grad_guard();
                f(xs)
            }
        }
    };
    let t0 = Instant::now();
    let full = pass_of(RouteKind::Full, &|x| Ok(Some(Pass::run(model, x, None))))?
        .ok_or_else(|| Error::Model("the full model gave no pass".into()))?;
    *seconds.entry(RouteKind::Full).or_default() += t0.elapsed().as_secs_f64();
    let mut others = BTreeMap::new();
    for (kind, route) in built {
        let t0 = Instant::now();
        if let Some(p) = pass_of(*kind, &|x| route.pass(model, x, &full))? {
            others.insert(*kind, p);
        }
        *seconds.entry(*kind).or_default() += t0.elapsed().as_secs_f64();
    }
    Ok((full, others))
}

/// Seconds of only the model passes that `score_images` makes for `scorings` over `images`: each route's pass per
/// batch, and for each detector that takes the input gradient one backward and one forward on each of its routes;
/// none of the detectors' own arithmetic. The scoring stage's lower bound, as `attack --bound` is an attack's:
/// measured warm (the first batch runs once untimed), the same calls as scoring (tests/detectors.rs counts them).
pub fn pass_bound(
    model: &Model,
    res: Resources,
    scorings: &[Scoring],
    images: &Tensor,
    batch_size: i64,
) -> Result<f64> {
    check_images(model, images)?;
    let built = build_routes(model, res, scorings)?;
    // one backward and one forward per gradient-taking detector and route; those routes keep their graph
    let grads: Vec<RouteKind> =
        scorings.iter().filter(|s| s.detector.wants_input_grad()).flat_map(|s| s.routes.iter().copied()).collect();
    let graph: BTreeSet<RouteKind> = grads.iter().copied().collect();
    let device = model.device();
    let batch = |xs: &Tensor| -> Result<()> {
        let (full, others) = passes(model, &built, &graph, xs, &mut BTreeMap::new())?;
        for r in &grads {
            let p = others.get(r).unwrap_or(&full);
            let g = p.input_grad(model, xs, |_, logits| logits.sum(Kind::Float))?;
            let _guard = tch::no_grad_guard();
            let _ = p.forward(model, &(xs + g.sign() * 1e-3));
        }
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
        Ok(())
    };
    let (n, b) = (images.size()[0], batch_size.max(1));
    let on_device = |start: i64| images.narrow(0, start, b.min(n - start)).to_device(device).to_kind(Kind::Float);
    if n > 0 {
        batch(&on_device(0))?;
    }
    let t0 = Instant::now();
    for start in (0..n).step_by(b as usize) {
        batch(&on_device(start))?;
    }
    Ok(t0.elapsed().as_secs_f64())
}

/// The scores of one detector on one route over `xs`, in batches of `batch_size`.
pub fn score_batched(
    det: &dyn Detector,
    model: &Model,
    res: Resources,
    route: RouteKind,
    xs: &Tensor,
    batch_size: i64,
) -> Result<Vec<f64>> {
    let label = format!("{}/{}", det.name(), route);
    let mut s = score_images(model, res, &[Scoring { detector: det, routes: vec![route] }], xs, batch_size, &label)?;
    Ok(s.scores.pop().and_then(|mut r| r.pop()).unwrap_or_default())
}

/// The scores of one detector on one route over one batch `xs`.
pub fn score(det: &dyn Detector, model: &Model, res: Resources, route: RouteKind, xs: &Tensor) -> Result<Vec<f64>> {
    let n = xs.size().first().copied().unwrap_or(1).max(1);
    score_batched(det, model, res, route, xs, n)
}
