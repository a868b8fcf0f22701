//! Detectors on the default LeNet trained on MNIST: finite scores, higher on FGSM (Goodfellow et al. 2015) images than on
//! clean ones, full and subnet modes identical when every mask is all ones, fitting on training images only, and clear
//! errors on bad input.
mod common;

use advdet::data::{self, Dataset, DatasetName, Split};
use advdet::detectors::{self, build, by_name, DetectorConfig, DetectorKind};
use advdet::eval::{fit_split, protocol_sets, score, score_batched, supervised_split};
use advdet::routes::nnd::{Nnd, NndConfig};
use advdet::routes::subspace::Subspaces;
use advdet::routes::{Resources, RouteKind};

/// No resources: the full model only.
const NONE: Resources =
    Resources { subnets: None, temperature: None, second: None, subspaces: None, nnd: None, cdrp_paths: None };
use advdet::models::{Arch, Model};
use advdet::subnet::{extract, mask, Subnets};
use common::{load_lenet_mnist, TestResult};
use tch::{Device, Kind, Tensor};

/// FGSM written out here so these tests do not depend on the attack module: x + eps * sign(grad of the cross-entropy),
/// clamped to [0, 1].
fn fgsm(model: &Model, xs: &Tensor, ys: &Tensor, eps: f64) -> Tensor {
    let parts: Vec<Tensor> = (0..xs.size()[0])
        .step_by(200)
        .map(|s| {
            let n = 200.min(xs.size()[0] - s);
            let (x0, y) = (xs.narrow(0, s, n), ys.narrow(0, s, n));
            let x = x0.detach().set_requires_grad(true);
            let loss = model.net.forward(&x, None, false).cross_entropy_for_logits(&y);
            let g = Tensor::run_backward(&[loss], &[&x], false, false).remove(0);
            (x0 + g.sign() * eps).clamp(0.0, 1.0).detach()
        })
        .collect();
    Tensor::cat(&parts, 0)
}

fn to_i64(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(t.to_device(Device::Cpu).to_kind(Kind::Int64)).unwrap_or_default()
}

fn small_config() -> DetectorConfig {
    DetectorConfig { fit_size: 1000, ..Default::default() }
}

/// The last 1000 clean training images (the fitting split) and the first `n` test images.
fn fit_and_test(n: usize) -> Result<(Dataset, Dataset), advdet::Error> {
    let train = data::load(DatasetName::Mnist, None, Split::Train)?;
    let test = data::load(DatasetName::Mnist, None, Split::Test)?.limit(n);
    Ok((fit_split(&train, 1000), test))
}

/// A quick subnet extraction (few gate-training steps, top 50% of each layer kept): real subnetworks, cheaply.
fn quick_subnets(model: &Model) -> Result<Subnets, advdet::Error> {
    let train = data::load(DatasetName::Mnist, None, Split::Train)?;
    let cfg = extract::ExtractConfig {
        steps: 40,
        images_per_class: 64,
        batch_per_class: Some(16),
        top_k_percent: Some(50.0),
        ..Default::default()
    };
    let (gates, _) = extract::train_gates(model, &train, &cfg)?;
    let masks = mask::binarize(&gates, model.gate_layout(), cfg.binarize())?;
    let s = Subnets { layout: model.gate_layout().clone(), gates, masks };
    s.validate()?;
    Ok(s)
}

fn all_ones(model: &Model) -> Subnets {
    let units = model.gate_layout().units();
    Subnets {
        layout: model.gate_layout().clone(),
        gates: Tensor::ones([10, units], (Kind::Float, Device::Cpu)),
        masks: Tensor::ones([10, units], (Kind::Float, Device::Cpu)),
    }
}

#[test]
fn every_detector_scores_fgsm_images_higher_than_clean_ones() -> TestResult {
    let model = load_lenet_mnist();
    let (fit, test) = fit_and_test(400)?;
    let adv = fgsm(&model, &test.images, &test.labels, 0.25);
    let labels = test.label_vec();
    let (pred_clean, pred_adv) = (to_i64(&model.predict(&test.images, 500)), to_i64(&model.predict(&adv, 500)));
    let subnets = quick_subnets(&model)?;
    let cfg = small_config();
    let mut weak = Vec::new();
    let mut all: Vec<(String, RouteKind, Vec<f64>)> = Vec::new();
    let temperature = Some(advdet::routes::temperature::fit(&model, &subnets, &fit.images, 256)?);
    let second = common::load_lenet_mnist_one_epoch(1);
    let subspaces = Subspaces::fit(&model, &fit.images, &fit.labels, 40, 256)?;
    // NND's modules after one short epoch on the fit images (tests/nnd.rs trains them as the suite does)
    let mut nnd = Nnd::new(&model, NndConfig::default())?;
    nnd.fit(&model, &fit.images, &fit.labels)?;
    let res = Resources {
        subnets: Some(&subnets),
        temperature,
        second: Some(&second),
        subspaces: Some(&subspaces),
        nnd: Some(&nnd),
        cdrp_paths: None,
    };
    for kind in DetectorKind::ALL {
        let name = kind.as_str();
        let mut det = build(kind, &cfg)?;
        if det.supervised() {
            // the supervised protocol: the first half of the fit images fits the density, the second half, clean and
            // under FGSM eps 0.1 (the default training attack), the regression
            let (density, clean) = supervised_split(&fit);
            det.fit(&model, &density, Default::default())?;
            det.fit_supervised(&model, &clean, &fgsm(&model, &clean.images, &clean.labels, 0.1), Default::default())?;
        } else {
            det.fit(&model, &fit, Default::default())?;
        }
        // the csg routes need a model trained with class-specific gates (tests/csg.rs and tests/suite.rs run them);
        // cdrp learns its paths anew for every (detector, image set) here (a suite shares one pass per route), so it
        // is scored by the path detector and two others only
        let on_cdrp = ["msp", "disagree", "path-class-dist", "path-rf"].contains(&name);
        let routes: Vec<RouteKind> = RouteKind::ALL
            .into_iter()
            .filter(|r| !r.needs_class_gates() && (*r != RouteKind::Cdrp || on_cdrp))
            .collect();
        for mode in det.routes_of(&routes) {
            let clean = score_batched(det.as_ref(), &model, res, mode, &test.images, 128)?;
            let advs = score_batched(det.as_ref(), &model, res, mode, &adv, 128)?;
            assert_eq!((clean.len(), advs.len()), (400, 400));
            assert!(clean.iter().chain(&advs).all(|s| s.is_finite()), "{name}/{mode}: non-finite score");
            let (ok, _) = protocol_sets(&clean, &advs, &labels, &pred_clean, &pred_adv);
            let (n_clean, n_adv) = ok.counts();
            assert!(n_clean > 300 && n_adv > 100, "{name}/{mode}: {n_clean} clean, {n_adv} adversarial");
            let auroc = advdet::metrics::auroc(&ok.labels, &ok.scores)?;
            let mean = |pos: bool| {
                let v: Vec<f64> =
                    ok.labels.iter().zip(&ok.scores).filter(|(l, _)| **l == pos).map(|(_, s)| *s).collect();
                v.iter().sum::<f64>() / v.len() as f64
            };
            println!(
                "{name:>12} {mode:>6}: auroc {auroc:.4}, mean clean {:.4}, mean adv {:.4}",
                mean(false),
                mean(true)
            );
            // the controls need not detect anything: that is what they test
            if auroc <= 0.5 && RouteKind::DEFAULT.contains(&mode) {
                weak.push(format!("{name}/{mode}: auroc {auroc:.4}"));
            }
            if (name, mode) == ("disagree", RouteKind::Cdrp) {
                assert!(clean.iter().chain(&advs).all(|&s| s == 0.0), "a CDRP path keeps the full model's prediction");
            }
            all.push((name.to_string(), mode, clean.into_iter().chain(advs).collect()));
        }
    }
    // no detector is another's score in disguise (a monotone transform has the same ROC by construction): for every
    // two detectors, on some route they share (the controls included), neither score vector over these 800 images is
    // a monotone, rising or falling, function of the other. One route can fail by chance: on the subnet route the
    // subnetwork disagrees with the full model on a handful of images only, all with high margins.
    let names: Vec<&str> = DetectorKind::ALL.iter().map(|k| k.as_str()).collect();
    for (i, a_name) in names.iter().enumerate() {
        for b_name in &names[i + 1..] {
            let get = |n: &str, r: RouteKind| all.iter().find(|(m, q, _)| m == n && *q == r).map(|(_, _, v)| v);
            // a score constant on a route (disagree on cdrp: a CDRP path never changes the prediction) is a function
            // of any other there and tells nothing about it
            let varies = |v: &[f64]| v.iter().any(|x| *x != v[0]);
            let shared: Vec<RouteKind> = RouteKind::ALL
                .into_iter()
                .filter(|&r| match (get(a_name, r), get(b_name, r)) {
                    (Some(a), Some(b)) => varies(a) && varies(b),
                    _ => false,
                })
                .collect();
            let distinct = shared.iter().any(|&r| match (get(a_name, r), get(b_name, r)) {
                (Some(a), Some(b)) => !monotone_function_of(a, b) && !monotone_function_of(b, a),
                _ => false,
            });
            assert!(shared.is_empty() || distinct, "{a_name} and {b_name}: a monotone transform on every shared route");
        }
    }
    // Mahalanobis on LeNet's penultimate features is the measured exception: FGSM (like Fashion-MNIST) images get
    // small-norm features that lie closer to the class means than clean digits do (auroc about 0.4 here; the same
    // distances as scikit-learn's EmpiricalCovariance/LedoitWolf on the same features). Every other detector must
    // rank FGSM images above clean ones.
    assert_eq!(weak.iter().filter(|w| !w.starts_with("mahalanobis/")).count(), 0, "{weak:?}");
    Ok(())
}

/// Whether `a` is a monotone function of `b`: equal `b` give equal `a`, and `a` never falls (or never rises) as `b`
/// rises.
fn monotone_function_of(a: &[f64], b: &[f64]) -> bool {
    let mut order: Vec<usize> = (0..b.len()).collect();
    order.sort_by(|&i, &j| b[i].total_cmp(&b[j]));
    let steps: Vec<(f64, f64)> = order.windows(2).map(|w| (b[w[1]] - b[w[0]], a[w[1]] - a[w[0]])).collect();
    let function = steps.iter().all(|&(db, da)| db != 0.0 || da == 0.0);
    function && (steps.iter().all(|&(_, da)| da >= 0.0) || steps.iter().all(|&(_, da)| da <= 0.0))
}

#[test]
fn the_monotone_check_finds_a_transform_and_clears_a_reordering() {
    let b = [0.3, 0.1, 0.2, 0.2, 0.9];
    let disguised: Vec<f64> = b.iter().map(|v| -(v * 7.0f64).exp()).collect();
    assert!(monotone_function_of(&disguised, &b));
    // the 0/1 indicator plus a tiny multiple of b, as disagree was: a transform of b
    let old_disagree: Vec<f64> = b.iter().map(|v| f64::from(*v > 0.25) + 1e-6 * v).collect();
    assert!(monotone_function_of(&old_disagree, &b));
    assert!(!monotone_function_of(&[1.0, 0.0, 1.0, 0.0, 0.0], &b), "0.3 -> 1 but 0.9 -> 0");
    assert!(!monotone_function_of(&[0.0, 0.0, 1.0, 0.0, 1.0], &b), "two equal b, two values");
}

#[test]
fn full_and_subnet_modes_agree_exactly_when_every_mask_is_all_ones() -> TestResult {
    let model = load_lenet_mnist();
    let (fit, test) = fit_and_test(150)?;
    let xs = Tensor::cat(&[test.images.shallow_clone(), fgsm(&model, &test.images, &test.labels, 0.3)], 0);
    let ones = all_ones(&model);
    let cfg = DetectorConfig::default();
    for name in ["msp", "entropy", "margin", "odin", "energy", "maxlogit", "gen", "squeeze", "react"] {
        let mut det = by_name(name, &small_config())?;
        det.fit(&model, &fit, Default::default())?;
        let full = score(det.as_ref(), &model, NONE, RouteKind::Full, &xs)?;
        let sub = score(
            det.as_ref(),
            &model,
            Resources { subnets: Some(&ones), ..Default::default() },
            RouteKind::Subnet,
            &xs,
        )?;
        assert_eq!(full, sub, "{name}: full and all-ones subnet scores differ");
        assert!(full.windows(2).any(|w| w[0] != w[1]), "{name}: constant scores");
    }
    for name in ["kl", "disagree"] {
        let s = score(
            by_name(name, &cfg)?.as_ref(),
            &model,
            Resources { subnets: Some(&ones), ..Default::default() },
            RouteKind::Subnet,
            &xs,
        )?;
        assert!(s.iter().all(|&v| v == 0.0), "{name}: non-zero score with all-ones masks");
    }
    Ok(())
}

#[test]
fn scores_do_not_depend_on_the_batch_an_image_is_in() -> TestResult {
    let model = load_lenet_mnist();
    let (fit, test) = fit_and_test(90)?;
    let cfg = small_config();
    for name in ["odin", "mahalanobis", "lid", "kdbu", "react", "squeeze"] {
        let mut det = by_name(name, &cfg)?;
        det.fit(&model, &fit, Default::default())?;
        let whole = score_batched(det.as_ref(), &model, NONE, RouteKind::Full, &test.images, 1000)?;
        let pieces = score_batched(det.as_ref(), &model, NONE, RouteKind::Full, &test.images, 7)?;
        // libtorch's f32 kernels may round differently for another batch size; the empirical covariance's
        // pseudo-inverse amplifies that to about 1e-6 relative in the Mahalanobis distance
        for (i, (a, b)) in whole.iter().zip(&pieces).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * a.abs().max(1.0),
                "{name}: image {i} scores {a} in one batch, {b} in batches of 7"
            );
        }
    }
    Ok(())
}

#[test]
fn fitting_takes_training_images_only() -> TestResult {
    let model = load_lenet_mnist();
    let (fit, test) = fit_and_test(500)?;
    for name in ["mahalanobis", "lid", "kdbu", "react"] {
        let mut det = by_name(name, &small_config())?;
        assert!(det.needs_fit(), "{name}");
        let err = det.fit(&model, &test, Default::default()).expect_err("fitting on test images must fail").to_string();
        assert!(err.contains("training") && err.contains(name), "{name}: {err}");
        let err = score(det.as_ref(), &model, NONE, RouteKind::Full, &test.images.narrow(0, 0, 4))
            .expect_err("not fitted")
            .to_string();
        assert!(err.contains("not fitted"), "{name}: {err}");
        det.fit(&model, &fit, Default::default())?;
    }
    assert!(!by_name("msp", &small_config())?.needs_fit());
    Ok(())
}

#[test]
fn bad_input_gives_a_clear_error() -> TestResult {
    let model = load_lenet_mnist();
    let xs = Tensor::rand([4, 1, 28, 28], (Kind::Float, Device::Cpu));
    let cfg = DetectorConfig::default();
    for name in ["msp", "odin", "kl", "disagree"] {
        let err = score(by_name(name, &cfg)?.as_ref(), &model, NONE, RouteKind::Subnet, &xs)
            .expect_err("no subnets")
            .to_string();
        assert!(err.contains(name) && err.contains("subnet"), "{name}: {err}");
    }
    let err = score(by_name("kl", &cfg)?.as_ref(), &model, NONE, RouteKind::Full, &xs)
        .expect_err("kl is subnet-only")
        .to_string();
    assert!(err.contains("kl") && err.contains("subnet"), "{err}");
    let err = score(by_name("mahalanobis", &cfg)?.as_ref(), &model, NONE, RouteKind::Subnet, &xs)
        .expect_err("full only")
        .to_string();
    assert!(err.contains("mahalanobis") && err.contains("full"), "{err}");
    let err = by_name("nope", &cfg).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("nope") && err.contains("msp"), "{err}");
    let err = score(
        by_name("msp", &cfg)?.as_ref(),
        &model,
        NONE,
        RouteKind::Full,
        &Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu)),
    );
    assert!(err.expect_err("wrong shape").to_string().contains("[2, 3, 32, 32]"));
    let bad =
        DetectorConfig { odin: detectors::odin::OdinConfig { temperature: 0.0, epsilon: 0.0 }, ..Default::default() };
    assert!(by_name("msp", &bad).err().map(|e| e.to_string()).unwrap_or_default().contains("odin.temperature"));
    let parsed: Result<DetectorConfig, _> = serde_json::from_str(r#"{"lid": {"k": 20, "neighbours": 3}}"#);
    assert!(parsed.expect_err("unknown field").to_string().contains("neighbours"));
    let resnet = Model::new(Arch::Resnet20, Device::Cpu);
    let err = score(
        by_name("kdbu", &cfg)?.as_ref(),
        &resnet,
        NONE,
        RouteKind::Full,
        &Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu)),
    );
    assert!(err.expect_err("no dropout").to_string().contains("resnet20"));
    Ok(())
}

#[test]
fn protocol_keeps_correct_clean_images_and_successful_attacks() {
    let clean = [0.1, 0.2, 0.3, 0.4];
    let adv = [0.9, 0.8, 0.7, 0.6];
    let labels = [0, 1, 2, 3];
    let pred_clean = [0, 1, 2, 0]; // image 3 is misclassified when clean: left out
    let pred_adv = [5, 1, 7, 3]; // the attack on image 1 failed
    let (ok, all) = protocol_sets(&clean, &adv, &labels, &pred_clean, &pred_adv);
    assert_eq!(ok.labels, [false, true, false, false, true]);
    assert_eq!(ok.scores, [0.1, 0.9, 0.2, 0.3, 0.7]);
    assert_eq!(all.labels, [false, true, false, true, false, true]);
    assert_eq!(all.scores, [0.1, 0.9, 0.2, 0.8, 0.3, 0.7]);
    assert_eq!((ok.counts(), all.counts()), ((3, 2), (3, 3)));
}

#[test]
fn detect_command_writes_scores_and_metrics_and_rejects_bad_input() -> TestResult {
    let model = load_lenet_mnist();
    let (_, test) = fit_and_test(200)?;
    let adv = fgsm(&model, &test.images, &test.labels, 0.2);
    let dir = tempfile::tempdir()?;
    let p = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    Tensor::write_safetensors(
        &[
            ("clean", test.images.shallow_clone()),
            ("adversarial", adv.shallow_clone()),
            ("labels", test.labels.shallow_clone()),
            ("pred_adv", model.predict(&adv, 200)),
        ],
        p("adv.safetensors"),
    )?;
    Tensor::write_safetensors(
        &[("adversarial", adv), ("labels", test.labels.shallow_clone())],
        p("no-clean.safetensors"),
    )?;
    all_ones(&model).save(std::path::Path::new(&p("subnets.safetensors")))?;
    let model_path = common::lenet_mnist().to_string_lossy().into_owned();
    let base = ["detect", "--model", &model_path, "--subnets", &p("subnets.safetensors"), "--device", "cpu"];
    let run = |extra: &[&str]| common::run_advdet(&[&base[..], extra].concat());
    let (code, out, err) = run(&[
        "--adv",
        &p("adv.safetensors"),
        "--detectors",
        "msp,kl,mahalanobis",
        "--fit-size",
        "500",
        "--bootstrap",
        "20",
        "--out",
        &p("out"),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("msp") && out.contains("mahalanobis"), "{out}");
    let scores = std::fs::read_to_string(p("out/scores.csv"))?;
    let lines: Vec<&str> = scores.lines().collect();
    assert_eq!(lines[0], "index,detector,mode,label,is_adv,score");
    assert_eq!(lines.len(), 1 + 4 * 2 * 200, "msp full+subnet, kl subnet, mahalanobis full; clean+adversarial");
    assert!(lines
        .iter()
        .skip(1)
        .all(|l| l.split(',').count() == 6 && l.split(',').nth(5).is_some_and(|s| s.parse::<f64>().is_ok())));
    let metrics = std::fs::read_to_string(p("out/metrics.csv"))?;
    assert_eq!(metrics.lines().count(), 1 + 4 * 2, "{metrics}");
    assert!(metrics.lines().any(|l| l.starts_with("msp,full,successful,")), "{metrics}");
    assert!(dir.path().join("out/config.json").is_file());
    // the controls: the mask controls read the subnetworks, the temperature control is fitted on the fit split
    let (code, out, err) = run(&[
        "--adv",
        &p("adv.safetensors"),
        "--detectors",
        "msp",
        "--modes",
        "full,union-mask,wrong-class,temperature",
        "--fit-size",
        "300",
        "--bootstrap",
        "0",
        "--out",
        &p("controls"),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("temperature control: T = "), "{err}");
    let metrics = std::fs::read_to_string(p("controls/metrics.csv"))?;
    for mode in ["full", "union-mask", "wrong-class", "temperature"] {
        assert!(metrics.lines().any(|l| l.starts_with(&format!("msp,{mode},successful,"))), "{mode}: {metrics}");
    }
    // bad input: a file without clean images, a missing subnet file, an unknown detector
    let (code, _, err) = run(&["--adv", &p("no-clean.safetensors"), "--detectors", "msp", "--out", &p("bad")]);
    assert!(code == 2 && err.contains("clean") && err.contains("no-clean.safetensors"), "{code} {err}");
    let (code, _, err) = common::run_advdet(&[
        "detect",
        "--model",
        &model_path,
        "--adv",
        &p("adv.safetensors"),
        "--detectors",
        "kl",
        "--out",
        &p("bad"),
    ]);
    assert!(code == 2 && err.contains("--subnets"), "{code} {err}");
    let (code, _, err) =
        run(&["--adv", &p("adv.safetensors"), "--detectors", "msp,feature-squeeze", "--out", &p("bad")]);
    assert!(code == 2 && err.contains("feature-squeeze"), "{code} {err}");
    // NND's modules are trained by a suite: refused before any model or data is read
    let (code, _, err) =
        run(&["--adv", &p("adv.safetensors"), "--detectors", "msp", "--modes", "full,nnd", "--out", &p("bad")]);
    assert!(code == 2 && err.contains("--modes") && err.contains("nnd") && err.contains("advdet run"), "{code} {err}");
    // an empty set: a clear error, not libtorch's abort on the min of no values
    let empty = Tensor::zeros([0, 1, 28, 28], (Kind::Float, Device::Cpu));
    Tensor::write_safetensors(
        &[
            ("clean", empty.shallow_clone()),
            ("adversarial", empty),
            ("labels", Tensor::zeros([0], (Kind::Int64, Device::Cpu))),
        ],
        p("empty.safetensors"),
    )?;
    let (code, _, err) = run(&["--adv", &p("empty.safetensors"), "--detectors", "msp", "--out", &p("bad")]);
    assert!(code == 2 && err.contains("empty.safetensors") && err.contains("holds no images"), "{code} {err}");
    assert!(!dir.path().join("bad").exists(), "nothing written on bad input");
    Ok(())
}

#[test]
fn route_registry_names_builds_and_refuses_what_it_cannot_run() -> TestResult {
    let model = load_lenet_mnist();
    // names round-trip, the suite's spelling; an unknown name lists the known ones
    for r in RouteKind::ALL {
        assert_eq!(r.as_str().parse::<RouteKind>()?, r);
        assert_eq!(serde_json::to_string(&r)?, format!("\"{r}\""));
    }
    let err = "gated".parse::<RouteKind>().expect_err("unknown route").to_string();
    assert!(err.contains("gated") && err.contains("full") && err.contains("subnet"), "{err}");
    assert!(serde_json::from_str::<RouteKind>("\"Full\"").is_err(), "names are lowercase");
    // the full route needs nothing; the subnet route needs subnetworks of the model's layout
    assert_eq!(advdet::routes::build(RouteKind::Full, &model, NONE)?.kind(), RouteKind::Full);
    let err = advdet::routes::build(RouteKind::Subnet, &model, NONE).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("--subnets"), "{err}");
    let resnet = Model::new(Arch::Resnet20, Device::Cpu);
    let ones = all_ones(&model);
    let wrong =
        advdet::routes::build(RouteKind::Subnet, &resnet, Resources { subnets: Some(&ones), ..Default::default() });
    assert!(wrong.err().map(|e| e.to_string()).unwrap_or_default().contains("gate layout"));
    assert_eq!(
        advdet::routes::build(RouteKind::Subnet, &model, Resources { subnets: Some(&ones), ..Default::default() })?
            .kind(),
        RouteKind::Subnet
    );
    // which detector runs where: confidence scores everywhere, fitted ones on the full model, comparisons elsewhere
    let cfg = DetectorConfig::default();
    let on =
        |k: DetectorKind| -> Result<Vec<RouteKind>, advdet::Error> { Ok(build(k, &cfg)?.routes_of(&RouteKind::ALL)) };
    // ODIN perturbs its input through the route's network: not on the second model's route, whose pass cannot re-run it
    let own_network: Vec<RouteKind> = RouteKind::ALL.into_iter().filter(|&r| r != RouteKind::SecondModel).collect();
    assert_eq!(on(DetectorKind::Odin)?, own_network);
    // ReAct applies the model's last layer and squeezing re-runs the route's network: not on the second model's either
    for k in [DetectorKind::React, DetectorKind::Squeeze] {
        assert_eq!(on(k)?, own_network, "{k}");
    }
    for k in [DetectorKind::Msp, DetectorKind::Energy, DetectorKind::Maxlogit, DetectorKind::Gen] {
        assert_eq!(on(k)?, RouteKind::ALL, "{k}");
    }
    assert_eq!(on(DetectorKind::Lid)?, [RouteKind::Full]);
    assert_eq!(on(DetectorKind::Disagree)?, RouteKind::ALL[1..]);
    for k in DetectorKind::ALL {
        assert_eq!(k.as_str().parse::<DetectorKind>()?, k);
        assert_eq!(build(k, &cfg)?.kind(), k);
    }
    Ok(())
}

#[test]
fn each_route_runs_once_per_batch_whatever_the_number_of_detectors() -> TestResult {
    let mut model = load_lenet_mnist();
    // a gate matrix of ones, so the csg routes run (as the full model)
    model.csg = Some(Tensor::ones([50, 10], (Kind::Float, Device::Cpu)));
    let (_, test) = fit_and_test(100)?;
    let ones = all_ones(&model);
    let second = common::load_lenet_mnist_one_epoch(1);
    let (fit, _) = fit_and_test(1)?;
    let subspaces = Subspaces::fit(&model, &fit.images, &fit.labels, 40, 256)?;
    let nnd = Nnd::new(&model, NndConfig::default())?;
    let res = Resources {
        subnets: Some(&ones),
        temperature: Some(1.5),
        second: Some(&second),
        subspaces: Some(&subspaces),
        nnd: Some(&nnd),
        cdrp_paths: None,
    };
    let cfg = DetectorConfig::default();
    let dets: Vec<_> =
        ["msp", "entropy", "margin", "kl", "disagree"].iter().map(|n| by_name(n, &cfg)).collect::<Result<_, _>>()?;
    let s = advdet::eval::score_images(&model, res, &scorings(&dets, &RouteKind::ALL), &test.images, 40, "count")?;
    // 3 batches (40, 40, 20), each through each of the 12 routes (full, subnet, subspace, csg, csg-binary, cdrp, nnd,
    // the five controls) once: 36 forwards, not one per batch, detector and route (3 x 58); the second model's forward
    // counts as the model's, and neither CDRP's 30 path-learning steps per batch nor NND's ungated pass for its
    // modules is the route's forward (they call the network directly)
    assert_eq!((s.forwards, s.backwards), (3 * 12, 0));
    assert_eq!(s.scores.iter().map(|r| r.len()).collect::<Vec<_>>(), [12, 12, 12, 11, 11]);
    assert!(s.scores.iter().flatten().all(|v| v.len() == 100));
    assert_eq!(s.pred, to_i64(&model.predict(&test.images, 100)));
    // the full route alone: one pass per batch
    let s =
        advdet::eval::score_images(&model, res, &scorings(&dets[..3], &[RouteKind::Full]), &test.images, 40, "count")?;
    assert_eq!((s.forwards, s.backwards), (3, 0));
    Ok(())
}

#[test]
fn squeezing_shares_the_full_networks_forward_of_each_squeezed_copy_and_changes_no_score() -> TestResult {
    // the full model, the temperature control and the feature subspace run the full network itself: squeezing's two
    // squeezed copies go through it once per batch for all three, and each route's scores are the bytes it gets alone
    let model = load_lenet_mnist();
    let (fit, test) = fit_and_test(100)?;
    let ones = all_ones(&model);
    let subspaces = Subspaces::fit(&model, &fit.images, &fit.labels, 40, 256)?;
    let res =
        Resources { subnets: Some(&ones), temperature: Some(1.5), subspaces: Some(&subspaces), ..Default::default() };
    let dets = vec![by_name("squeeze", &DetectorConfig::default())?];
    let routes = [RouteKind::Full, RouteKind::Subspace, RouteKind::Temperature, RouteKind::Subnet];
    let all = advdet::eval::score_images(&model, res, &scorings(&dets, &routes), &test.images, 40, "all")?;
    // per batch (3): four route passes, two squeezed forwards of the full network, two of the subnet's
    assert_eq!(all.forwards, 3 * (4 + 2 + 2));
    for (j, &r) in routes.iter().enumerate() {
        let alone = advdet::eval::score_images(&model, res, &scorings(&dets, &[r]), &test.images, 40, "one")?;
        assert_eq!(alone.scores[0][0], all.scores[0][j], "squeeze on {r}");
    }
    Ok(())
}

/// The scorings of `dets` on the routes of `routes` each runs on.
fn scorings<'a>(dets: &'a [Box<dyn detectors::Detector>], routes: &[RouteKind]) -> Vec<advdet::eval::Scoring<'a>> {
    dets.iter().map(|d| advdet::eval::Scoring { detector: d.as_ref(), routes: d.routes_of(routes) }).collect()
}

#[test]
fn detectors_that_take_the_input_gradient_reuse_the_routes_forward_and_change_no_score() -> TestResult {
    let model = load_lenet_mnist();
    let (fit, test) = fit_and_test(100)?;
    let ones = all_ones(&model);
    let res = Resources { subnets: Some(&ones), ..Default::default() };
    let mut cfg = small_config();
    cfg.mahalanobis.magnitude = 0.002;
    let mut dets: Vec<Box<dyn detectors::Detector>> =
        ["msp", "odin", "mahalanobis"].iter().map(|n| by_name(n, &cfg)).collect::<Result<_, _>>()?;
    for d in dets.iter_mut() {
        d.fit(&model, &fit, Default::default())?;
    }
    let both = [RouteKind::Full, RouteKind::Subnet];
    let all = advdet::eval::score_images(&model, res, &scorings(&dets, &both), &test.images, 40, "count")?;
    // per batch (3 of them): the full and the subnet pass, each kept with its graph (2 forwards); ODIN's backward
    // through each of them and its forward on the perturbed images (2 + 2); Mahalanobis (full route only) the same
    // (1 + 1). A detector running its own forward for the gradient would add 3 per batch.
    assert_eq!((all.forwards, all.backwards), (3 * (2 + 2 + 1), 3 * (2 + 1)));
    // each detector alone (no graph for msp) gives the same bytes as in company, and ODIN and Mahalanobis on a pass
    // without a graph (their own forward) the same as through the shared one
    for (i, d) in dets.iter().enumerate() {
        let alone = advdet::eval::score_images(&model, res, &scorings(&dets[i..=i], &both), &test.images, 40, "one")?;
        assert_eq!(alone.scores[0], all.scores[i], "{}", d.name());
        let routes = d.routes_of(&both);
        for (j, &r) in routes.iter().enumerate() {
            let xs = test.images.narrow(0, 40, 40);
            let route = advdet::routes::build(r, &model, res)?;
            let _guard = tch::no_grad_guard();
            let full = advdet::routes::Pass::run(&model, &xs, None);
            let own = route.pass(&model, &xs, &full)?;
            let v = detectors::View { model: &model, xs: &xs, full: &full, route: own.as_ref().unwrap_or(&full) };
            let plain = Vec::<f64>::try_from(d.score(&v)?.to_kind(Kind::Double))?;
            assert_eq!(plain[..], all.scores[i][j][40..80], "{} on {r}", d.name());
        }
    }
    let msp_only = advdet::eval::score_images(&model, res, &scorings(&dets[..1], &both), &test.images, 40, "msp")?;
    assert_eq!((msp_only.forwards, msp_only.backwards), (6, 0));
    // the bound makes the scoring's calls and nothing else (plus its untimed warm-up batch)
    for (set, per_batch) in [(&dets[..], (2 + 2 + 1, 2 + 1)), (&dets[..1], (2, 0))] {
        let before = model.calls();
        let bound = advdet::eval::pass_bound(&model, res, &scorings(set, &both), &test.images, 40)?;
        let after = model.calls();
        assert_eq!((after.0 - before.0, after.1 - before.1), (4 * per_batch.0, 4 * per_batch.1));
        assert!(bound > 0.0);
    }
    Ok(())
}
