//! Feature squeezing (Xu, Evans, Qi 2018) and ReAct (Sun, Guo, Li 2021) against NumPy/SciPy values
//! (tests/fixtures/metrics/squeeze.json from scripts/reference/gen_squeeze_vectors.py): the bit-depth and median
//! squeezers on small hand-made images with their borders, ReAct's percentile threshold and clipped energy on committed
//! features and last-layer weights; plus what they reduce to at the edges and their config checks.
mod common;

use advdet::detectors::react::{React, ReactConfig};
use advdet::detectors::squeeze::{bit_depth, median_filter};
use advdet::detectors::{build, by_name, energy, Detector, DetectorConfig, DetectorKind, View};
use advdet::models::{Arch, Model};
use advdet::routes::{Pass, RouteKind};
use common::{fixtures, TestResult};
use serde_json::Value;
use tch::{Device, Kind, Tensor};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn doc() -> Res<Value> {
    let path = fixtures().join("metrics").join("squeeze.json");
    Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
}

/// A nested JSON list of numbers as a flat vector and its shape.
fn flat(v: &Value) -> Res<(Vec<f64>, Vec<i64>)> {
    match v {
        Value::Array(items) => {
            let mut out = Vec::new();
            let mut inner = None;
            for it in items {
                let (vals, shape) = flat(it)?;
                if inner.as_ref().is_some_and(|s| s != &shape) {
                    return Err("ragged list".into());
                }
                inner = Some(shape);
                out.extend(vals);
            }
            let mut shape = vec![items.len() as i64];
            shape.extend(inner.unwrap_or_default());
            Ok((out, shape))
        }
        _ => Ok((vec![v.as_f64().ok_or("not a number")?], vec![])),
    }
}

/// A nested JSON list as a tensor of `kind`.
fn tensor(v: &Value, kind: Kind) -> Res<Tensor> {
    let (vals, shape) = flat(v)?;
    Ok(Tensor::from_slice(&vals).view(shape.as_slice()).to_kind(kind))
}

fn values(t: &Tensor) -> Res<Vec<f64>> {
    Ok(Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1))?)
}

#[test]
fn squeezers_match_scipy_and_the_authors_rounding() -> TestResult {
    let doc = doc()?;
    let blocks = doc["squeeze"].as_array().ok_or("squeeze")?;
    assert_eq!(blocks.len(), 2);
    for b in blocks {
        let x = tensor(&b["images"], Kind::Float)?;
        for case in b["bit_depth"].as_array().ok_or("bit_depth")? {
            let bits = case["bits"].as_u64().ok_or("bits")? as u32;
            let got = values(&bit_depth(&x, bits))?;
            let want = values(&tensor(&case["images"], Kind::Float)?)?;
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!((g - w).abs() <= 1e-6, "{} bits {bits}: pixel {i} is {g}, reference {w}", b["name"]);
            }
        }
        let sizes: Vec<i64> =
            b["median"].as_array().ok_or("median")?.iter().filter_map(|c| c["size"].as_i64()).collect();
        assert_eq!(sizes, [2, 3, 4, 5]);
        for case in b["median"].as_array().ok_or("median")? {
            let s = case["size"].as_i64().ok_or("size")?;
            let got = median_filter(&x, s);
            assert_eq!(got.size(), x.size());
            // a median picks one of the window's values: the same float, no rounding
            assert_eq!(values(&got)?, values(&tensor(&case["images"], Kind::Float)?)?, "{} median {s}", b["name"]);
        }
    }
    Ok(())
}

/// A ResNet-20 in f64 whose last layer (64 -> 10) holds the fixture's weights.
fn resnet_with_head(weight: &Tensor, bias: &Tensor) -> Res<Model> {
    let mut model = Model::new(Arch::Resnet20, Device::Cpu);
    model.vs.double();
    let vars = model.vs.variables();
    tch::no_grad(|| -> Res<()> {
        vars.get("fc.weight").ok_or("fc.weight")?.shallow_clone().copy_(weight);
        vars.get("fc.bias").ok_or("fc.bias")?.shallow_clone().copy_(bias);
        Ok(())
    })?;
    Ok(model)
}

#[test]
fn react_matches_numpys_percentile_and_clipped_energy() -> TestResult {
    let doc = doc()?;
    let r = &doc["react"];
    let fit = tensor(&r["fit_features"], Kind::Double)?;
    let feats = tensor(&r["features"], Kind::Double)?;
    let model = resnet_with_head(&tensor(&r["weight"], Kind::Double)?, &tensor(&r["bias"], Kind::Double)?)?;
    let n = feats.size()[0];
    let xs = Tensor::zeros([n, 3, 32, 32], (Kind::Double, Device::Cpu));
    let pass = Pass::from_outputs(Tensor::zeros([n, 10], (Kind::Double, Device::Cpu)), feats);
    let cases = r["cases"].as_array().ok_or("cases")?;
    assert_eq!(cases.len(), 5);
    for case in cases {
        let p = case["percentile"].as_f64().ok_or("percentile")?;
        let mut det = React::new(ReactConfig { percentile: p }, 20);
        let c = det.fit_features(&fit)?;
        let want_c = case["threshold"].as_f64().ok_or("threshold")?;
        assert!((c - want_c).abs() <= 1e-12 * want_c.abs(), "p {p}: threshold {c}, reference {want_c}");
        let v = View { model: &model, xs: &xs, full: &pass, route: &pass };
        let got = advdet::detectors::finite_scores("react", &det.score(&v)?)?;
        let want: Vec<f64> = case["scores"].as_array().ok_or("scores")?.iter().filter_map(|s| s.as_f64()).collect();
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() <= 1e-9 * w.abs(), "p {p}: row {i} scores {g}, reference {w}");
        }
    }
    Ok(())
}

#[test]
fn the_head_of_the_features_is_the_logits_in_every_architecture() {
    for arch in [Arch::Lenet, Arch::VggSmall, Arch::Resnet20] {
        let model = Model::new(arch, Device::Cpu);
        let (c, h, w) = arch.input_shape();
        let xs = Tensor::rand([3, c, h, w], (Kind::Float, Device::Cpu));
        let _guard = tch::no_grad_guard();
        let (f, l) = model.forward_eval(&xs, None);
        assert!(model.head(&f).equal(&l), "{arch}");
    }
}

#[test]
fn react_without_clipping_is_the_energy_on_the_full_and_the_tempered_route() -> TestResult {
    let model = Model::new(Arch::Lenet, Device::Cpu);
    let xs = Tensor::rand([6, 1, 28, 28], (Kind::Float, Device::Cpu));
    let mut react = React::new(ReactConfig::default(), 20);
    // a threshold above every activation clips nothing
    react.fit_features(&Tensor::full([20, 4], 1e6, (Kind::Double, Device::Cpu)))?;
    let plain = build(DetectorKind::Energy, &DetectorConfig::default())?;
    let _guard = tch::no_grad_guard();
    for pass in [Pass::run(&model, &xs, None), Pass::run_tempered(&model, &xs, 2.5)] {
        let v = View { model: &model, xs: &xs, full: &pass, route: &pass };
        let r = values(&react.score(&v)?)?;
        let e = values(&plain.score(&v)?)?;
        assert_eq!(r, e);
    }
    // and clipping everything leaves the bias alone: one score for every image
    react.fit_features(&Tensor::zeros([20, 4], (Kind::Double, Device::Cpu)))?;
    let pass = Pass::run(&model, &xs, None);
    let v = View { model: &model, xs: &xs, full: &pass, route: &pass };
    let r = values(&react.score(&v)?)?;
    let bias = model.vs.variables().get("fc2.bias").ok_or("fc2.bias")?.unsqueeze(0);
    let want = values(&energy::energy(&bias, 1.0))?[0];
    assert!(r.iter().all(|&s| s == want), "{r:?} vs {want}");
    Ok(())
}

#[test]
fn squeezing_an_image_the_squeezers_leave_alone_scores_zero() -> TestResult {
    let model = Model::new(Arch::Lenet, Device::Cpu);
    let det = by_name("squeeze", &DetectorConfig::default())?;
    let own: Vec<RouteKind> = RouteKind::ALL.into_iter().filter(|&r| r != RouteKind::SecondModel).collect();
    assert_eq!(det.routes_of(&RouteKind::ALL), own, "every route but second-model");
    // constant 0/1 images: 1 bit and the median keep them; random images move
    let xs = Tensor::cat(
        &[
            Tensor::zeros([2, 1, 28, 28], (Kind::Float, Device::Cpu)),
            Tensor::ones([1, 1, 28, 28], (Kind::Float, Device::Cpu)),
            Tensor::rand([3, 1, 28, 28], (Kind::Float, Device::Cpu)),
        ],
        0,
    );
    let _guard = tch::no_grad_guard();
    let pass = Pass::run(&model, &xs, None);
    let v = View { model: &model, xs: &xs, full: &pass, route: &pass };
    let s = values(&det.score(&v)?)?;
    assert_eq!(s[..3], [0.0, 0.0, 0.0]);
    assert!(s[3..].iter().all(|&d| d > 0.0 && d <= 2.0), "{s:?}");
    Ok(())
}

#[test]
fn on_a_pass_with_a_graph_both_scores_have_the_gradient_of_their_finite_differences() -> TestResult {
    let mut model = Model::new(Arch::Lenet, Device::Cpu);
    model.freeze();
    model.vs.double();
    let _guard = common::global_rng();
    tch::manual_seed(5);
    // inside (0, 1), no two pixels equal: off the ties where a median or a max-pool has no derivative
    let xs = Tensor::rand([3, 1, 28, 28], (Kind::Double, Device::Cpu)) * 0.8 + 0.1;
    let dir = Tensor::randn([3, 1, 28, 28], (Kind::Double, Device::Cpu));
    let mut react = React::new(ReactConfig::default(), 20);
    react.fit_features(&tch::no_grad(|| model.forward_eval(&xs, None).0))?;
    let squeeze = by_name("squeeze", &DetectorConfig::default())?;
    let dets: [&dyn Detector; 2] = [&react, squeeze.as_ref()];
    let total = |det: &dyn Detector, x: &Tensor| -> Res<f64> {
        let pass = Pass::run(&model, x, None);
        Ok(det.score(&View { model: &model, xs: x, full: &pass, route: &pass })?.sum(Kind::Double).double_value(&[]))
    };
    for det in dets {
        let (grad, traced) = tch::with_grad(|| -> Res<(Tensor, Vec<f64>)> {
            let x = xs.detach().set_requires_grad(true);
            let pass = Pass::run(&model, &x, None);
            let s = det.score(&View { model: &model, xs: &x, full: &pass, route: &pass })?;
            let traced = values(&s.detach())?;
            Ok((model.input_grad(&s.sum(Kind::Double), &x, false)?, traced))
        })?;
        let _guard = tch::no_grad_guard();
        let analytic = (&grad * &dir).sum(Kind::Double).double_value(&[]);
        let h = 1e-6;
        let numeric = (total(det, &(&xs + &dir * h))? - total(det, &(&xs - &dir * h))?) / (2.0 * h);
        println!("{}: directional derivative {analytic:.9e}, finite differences {numeric:.9e}", det.name());
        assert!(analytic != 0.0, "{}: no gradient", det.name());
        assert!(
            (analytic - numeric).abs() <= 1e-5 * analytic.abs().max(1e-3),
            "{}: {analytic} vs {numeric}",
            det.name()
        );
        // a pass with a graph scores as a plain one
        let pass = Pass::run(&model, &xs, None);
        let plain = values(&det.score(&View { model: &model, xs: &xs, full: &pass, route: &pass })?)?;
        assert_eq!(plain, traced, "{}", det.name());
    }
    Ok(())
}

#[test]
fn bad_parameters_are_rejected_naming_the_field() -> TestResult {
    let cases = [
        (r#"{"react": {"percentile": 0.0}}"#, "react.percentile"),
        (r#"{"react": {"percentile": 100.0}}"#, "react.percentile"),
        (r#"{"react": {"percentile": -5.0}}"#, "react.percentile"),
        (r#"{"squeeze": {"bits": 0}}"#, "squeeze.bits"),
        (r#"{"squeeze": {"bits": 9}}"#, "squeeze.bits"),
        (r#"{"squeeze": {"median": 1}}"#, "squeeze.median"),
        (r#"{"squeeze": {"median": 6}}"#, "squeeze.median"),
    ];
    let mut configs = Vec::new();
    for (json, field) in cases {
        configs.push((json.to_string(), serde_json::from_str::<DetectorConfig>(json)?, field));
    }
    for p in [f64::NAN, f64::INFINITY] {
        let react = ReactConfig { percentile: p };
        configs.push((format!("percentile {p}"), DetectorConfig { react, ..Default::default() }, "react.percentile"));
    }
    for (json, cfg, field) in configs {
        let err = cfg.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains(field), "{json}: {err:?} does not name {field}");
        assert!(build(DetectorKind::Msp, &cfg).is_err(), "{json}");
    }
    let ok: DetectorConfig =
        serde_json::from_str(r#"{"react": {"percentile": 99.9}, "squeeze": {"bits": 8, "median": 5}}"#)?;
    ok.validate()?;
    let d = DetectorConfig::default();
    assert_eq!((d.react.percentile, d.squeeze.bits, d.squeeze.median), (90.0, None, 2));
    assert_eq!((d.squeeze.bits_for(1), d.squeeze.bits_for(3), ok.squeeze.bits_for(1)), (1, 5, 8));
    let parsed: Result<DetectorConfig, _> = serde_json::from_str(r#"{"squeeze": {"bits": 4, "nlm": true}}"#);
    assert!(parsed.expect_err("unknown field").to_string().contains("nlm"));
    Ok(())
}
