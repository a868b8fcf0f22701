//! The logit-only confidence detectors energy (Liu et al. 2020), maxlogit (Hendrycks et al. 2022) and GEN (Liu, Lochman,
//! Zach 2023) against values from their definitions in 500-digit decimal arithmetic (tests/fixtures/metrics/
//! confidence.json from scripts/reference/gen_confidence_vectors.py), their orientation (a confident prediction scores
//! below a flat one) and their config checks.
mod common;

use advdet::detectors::{build, DetectorConfig, DetectorKind, View};
use advdet::models::{Arch, Model};
use advdet::routes::{Pass, RouteKind};
use common::{fixtures, TestResult};
use serde_json::Value;
use tch::{Device, Kind, Tensor};

fn floats(v: &Value) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
    v.as_array().ok_or("not a list")?.iter().map(|x| x.as_f64().ok_or_else(|| "not a number".into())).collect()
}

/// The scores of detector `name` with `cfg` on the rows of `logits` `[N, C]`, through `detectors::build` and a `View`
/// of a pass holding those logits (the model and images are placeholders: these detectors read the logits only).
fn scores(name: &str, cfg: &DetectorConfig, logits: &Tensor) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
    let det = build(name.parse()?, cfg)?;
    assert_eq!(det.routes_of(&RouteKind::ALL), RouteKind::ALL, "{name} reads logits only: every route");
    let n = logits.size()[0];
    let model = Model::new(Arch::Lenet, Device::Cpu);
    let xs = Tensor::zeros([n, 1, 28, 28], (Kind::Float, Device::Cpu));
    let pass = Pass::from_outputs(logits.shallow_clone(), Tensor::zeros([n, 1], (Kind::Float, Device::Cpu)));
    let v = View { model: &model, xs: &xs, full: &pass, route: &pass };
    Ok(advdet::detectors::finite_scores(name, &det.score(&v)?)?)
}

#[test]
fn scores_match_the_decimal_reference() -> TestResult {
    let path = fixtures().join("metrics").join("confidence.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let blocks = doc["blocks"].as_array().ok_or("no blocks")?;
    assert_eq!(blocks.len(), 2);
    let mut seen = std::collections::BTreeSet::new();
    for b in blocks {
        let rows = b["logits"].as_array().ok_or("logits")?;
        let flat: Vec<f64> = rows.iter().map(floats).collect::<Result<Vec<_>, _>>()?.concat();
        let logits = Tensor::from_slice(&flat).view([rows.len() as i64, -1]);
        let variants = b["variants"].as_array().ok_or("variants")?;
        assert_eq!(variants.len(), 7);
        for v in variants {
            let name = v["detector"].as_str().ok_or("detector")?;
            seen.insert(name.to_string());
            let cfg: DetectorConfig = serde_json::from_value(v["config"].clone())?;
            let what = format!("{}/{name} {}", b["name"], v["config"]);
            let want = floats(&v["scores"])?;
            let got = scores(name, &cfg, &logits)?;
            assert_eq!(got.len(), want.len(), "{what}");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!((g - w).abs() <= 1e-9 * w.abs(), "{what}: row {i} scores {g:e}, reference {w:e}");
            }
        }
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["energy", "gen", "maxlogit"]);
    Ok(())
}

#[test]
fn a_confident_prediction_scores_below_a_flat_one_and_extremes_stay_finite() -> TestResult {
    let cfg = DetectorConfig::default();
    // confident, less confident, flat; then logits at f32's extremes and a margin no softmax in f64 resolves
    let rows = [
        [12.0f32, 0.0, 0.0, 0.0],
        [3.0, 1.0, 0.0, 0.0],
        [1.0, 1.0, 1.0, 1.0],
        [3.0e38, -3.0e38, 0.0, 1.0],
        [-3.0e38, -3.0e38, -3.0e38, -3.0e38],
        [2000.0, 0.0, 0.0, 0.0],
    ];
    let logits = Tensor::from_slice(&rows.concat()).view([6, 4]);
    for kind in [DetectorKind::Energy, DetectorKind::Maxlogit, DetectorKind::Gen] {
        let s = scores(kind.as_str(), &cfg, &logits)?;
        println!("{kind:>8}: {s:?}");
        assert!(s[0] < s[1] && s[1] < s[2], "{kind}: {s:?} not rising from confident to flat");
    }
    // GEN keeps the others' share of a 2000-logit margin: 3 (exp(-2000))^0.1 and the top class's as much, not 0
    let g = scores("gen", &cfg, &logits)?[5];
    let want = 3f64.powf(0.1) * (-200f64).exp() + 3.0 * (-200f64).exp();
    assert!((g - want).abs() <= 1e-12 * want, "gen at margin 2000: {g:e}, want {want:e}");
    // energy at T = 1 on a row with logits 0 and others 80 below: -log1p(3 exp(-80)), not a rounded 0
    let e = scores("energy", &cfg, &Tensor::from_slice(&[0.0f64, -80.0, -80.0, -80.0]).view([1, 4]))?[0];
    let want = -(3.0 * (-80f64).exp()).ln_1p();
    assert!((e - want).abs() <= 1e-12 * want.abs(), "energy {e:e}, want {want:e}");
    Ok(())
}

#[test]
fn bad_parameters_are_rejected_naming_the_field() -> TestResult {
    let cases = [
        (r#"{"energy": {"temperature": 0.0}}"#, "energy.temperature"),
        (r#"{"energy": {"temperature": -1.0}}"#, "energy.temperature"),
        (r#"{"gen": {"gamma": 0.0}}"#, "gen.gamma"),
        (r#"{"gen": {"gamma": 1.5}}"#, "gen.gamma"),
        (r#"{"gen": {"gamma": -0.1}}"#, "gen.gamma"),
        (r#"{"gen": {"m": 0}}"#, "gen.m"),
        (r#"{"gen": {"gamma": 1.0, "m": 0}}"#, "gen.m"),
        (r#"{"energy": {"temperature": 0.001}, "gen": {"gamma": 2.0, "m": 1}}"#, "gen.gamma"),
    ];
    let mut configs = Vec::new();
    for (json, field) in cases {
        configs.push((json.to_string(), serde_json::from_str::<DetectorConfig>(json)?, field));
    }
    // JSON has no infinity or NaN: set them by hand
    for t in [f64::INFINITY, f64::NAN] {
        let energy = advdet::detectors::energy::EnergyConfig { temperature: t };
        configs.push((
            format!("temperature {t}"),
            DetectorConfig { energy, ..Default::default() },
            "energy.temperature",
        ));
    }
    let gen = advdet::detectors::gen::GenConfig { gamma: f64::NAN, m: 10 };
    configs.push(("gamma NaN".into(), DetectorConfig { gen, ..Default::default() }, "gen.gamma"));
    for (json, cfg, field) in configs {
        let err = cfg.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains(field), "{json}: {err:?} does not name {field}");
        // every detector's build validates the whole config, so a bad GEN gamma stops msp too
        assert!(build(DetectorKind::Msp, &cfg).is_err(), "{json}");
    }
    // the edges that are allowed, and the defaults
    let ok: DetectorConfig =
        serde_json::from_str(r#"{"energy": {"temperature": 1e-6}, "gen": {"gamma": 1.0, "m": 1}}"#)?;
    ok.validate()?;
    let d = DetectorConfig::default();
    assert_eq!((d.energy.temperature, d.gen.gamma, d.gen.m), (1.0, 0.1, 10));
    let parsed: Result<DetectorConfig, _> = serde_json::from_str(r#"{"gen": {"gamma": 0.1, "top": 3}}"#);
    assert!(parsed.expect_err("unknown field").to_string().contains("top"));
    Ok(())
}
