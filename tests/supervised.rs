//! The supervised detectors (Lee et al.'s multi-layer Mahalanobis, Ma et al.'s multi-layer LID, Feinman et al.'s KD+BU,
//! each a logistic regression) on the default LeNet trained on MNIST: each beats chance on its training attack and on an
//! attack it has not seen, is fitted on training images only, and the suite refuses a missing or unusable training
//! attack with file, key and line.
mod common;

use advdet::attacks::{build, run_batched, AttackSpec, FgsmSpec, PgdSpec};
use advdet::data::{self, DatasetName, Split};
use advdet::detectors::supervised::{Forest, Logistic, MAGNITUDES};
use advdet::detectors::{by_name, DetectorConfig};
use advdet::eval::{fit_split, protocol_sets, score_batched, supervised_split};
use advdet::routes::{Resources, RouteKind};
use advdet::suite::schema;
use common::{load_lenet_mnist, TestResult};
use std::path::Path;
use tch::{Device, Kind, Tensor};

const NONE: Resources =
    Resources { subnets: None, temperature: None, second: None, subspaces: None, nnd: None, cdrp_paths: None };

fn to_i64(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(t.to_device(Device::Cpu).to_kind(Kind::Int64)).unwrap_or_default()
}

fn attack(spec: AttackSpec, model: &advdet::models::Model, xs: &Tensor, ys: &Tensor) -> advdet::Result<Tensor> {
    let a = build(&spec, None)?;
    run_batched(a.as_ref(), model, xs, ys, 250)
}

fn fgsm(eps: f64) -> AttackSpec {
    AttackSpec::Fgsm(FgsmSpec { eps: Some(eps), ..Default::default() })
}

#[test]
fn each_supervised_detector_beats_chance_on_its_training_attack_and_an_unseen_one() -> TestResult {
    let model = load_lenet_mnist();
    let train = data::load(DatasetName::Mnist, None, Split::Train)?;
    let test = data::load(DatasetName::Mnist, None, Split::Test)?.limit(400);
    let fit = fit_split(&train, 2000);
    let (density, clean) = supervised_split(&fit);
    let train_adv = attack(fgsm(0.1), &model, &clean.images, &clean.labels)?;
    let seen = attack(fgsm(0.1), &model, &test.images, &test.labels)?;
    let pgd = AttackSpec::PgdLinf(PgdSpec { eps: Some(0.2), steps: Some(20), ..Default::default() });
    let unseen = attack(pgd, &model, &test.images, &test.labels)?;
    let labels = test.label_vec();
    let pred_clean = to_i64(&model.predict(&test.images, 500));
    let cfg = DetectorConfig { fit_size: 2000, ..Default::default() };
    for name in ["mahalanobis-sup", "lid-sup", "kdbu-sup", "path-rf"] {
        let mut det = by_name(name, &cfg)?;
        assert!(det.supervised() && det.needs_fit(), "{name}");
        // the forest reads per-image paths (CDRP's or NND's, one detector per route: here CDRP's); the regressions,
        // the full model's features
        let route = if name == "path-rf" { RouteKind::Cdrp } else { RouteKind::Full };
        let want: &[RouteKind] = if name == "path-rf" { &[RouteKind::Cdrp, RouteKind::Nnd] } else { &[route] };
        assert_eq!(det.routes_of(&RouteKind::ALL), want, "{name}");
        assert_eq!(det.fits_per_route(), name == "path-rf", "{name}");
        det.for_route(route);
        assert_eq!(det.routes_of(&RouteKind::ALL), [route], "{name}: bound to one route");
        det.fit(&model, &density, Default::default())?;
        let err = score_batched(det.as_ref(), &model, NONE, route, &test.images.narrow(0, 0, 4), 4)
            .expect_err("scored before the supervised fit")
            .to_string();
        assert!(err.contains("adversarial examples") && err.contains(name), "{name}: {err}");
        det.fit_supervised(&model, &clean, &train_adv, Default::default())?;
        let clean_scores = score_batched(det.as_ref(), &model, NONE, route, &test.images, 200)?;
        for (which, adv, floor) in [("seen fgsm 0.1", &seen, 0.8), ("unseen pgd 0.2", &unseen, 0.6)] {
            let adv_scores = score_batched(det.as_ref(), &model, NONE, route, adv, 200)?;
            let pred_adv = to_i64(&model.predict(adv, 500));
            let (ok, _) = protocol_sets(&clean_scores, &adv_scores, &labels, &pred_clean, &pred_adv);
            let auroc = advdet::metrics::auroc(&ok.labels, &ok.scores)?;
            println!("{name:>16} {which}: auroc {auroc:.4} ({:?} clean, adversarial)", ok.counts());
            assert!(auroc > floor, "{name} on {which}: auroc {auroc:.4}, expected above {floor}");
        }
    }
    Ok(())
}

#[test]
fn supervised_detectors_fit_on_training_images_only() -> TestResult {
    let model = load_lenet_mnist();
    let train = data::load(DatasetName::Mnist, None, Split::Train)?;
    let test = data::load(DatasetName::Mnist, None, Split::Test)?.limit(200);
    let fit = fit_split(&train, 400);
    // both halves are the last 400 training images, in order: no test image can reach a supervised fit
    let (density, clean) = supervised_split(&fit);
    assert_eq!((density.len(), clean.len()), (200, 200));
    assert_eq!((density.split, clean.split), (Split::Train, Split::Train));
    let n = train.len() as i64;
    assert!(density.images.equal(&train.images.narrow(0, n - 400, 200)));
    assert!(clean.images.equal(&train.images.narrow(0, n - 200, 200)));
    let adv = attack(fgsm(0.1), &model, &test.images, &test.labels)?;
    for name in ["mahalanobis-sup", "lid-sup", "kdbu-sup"] {
        let mut det = by_name(name, &DetectorConfig { fit_size: 400, ..Default::default() })?;
        let err = det.fit(&model, &test, Default::default()).expect_err("fitting on test images must fail").to_string();
        assert!(err.contains("training"), "{name}: {err}");
        det.fit(&model, &density, Default::default())?;
        let err = det
            .fit_supervised(&model, &test, &adv, Default::default())
            .expect_err("test images must be refused")
            .to_string();
        assert!(err.contains("training") && err.contains(name), "{name}: {err}");
        // an attack that fools nothing leaves no positive to fit on
        let err = det
            .fit_supervised(&model, &clean, &clean.images, Default::default())
            .expect_err("no adversarial example")
            .to_string();
        assert!(err.contains("fooled none"), "{name}: {err}");
    }
    Ok(())
}

#[test]
fn the_logistic_regression_separates_a_toy_set_and_refuses_one_class() -> TestResult {
    // two 10 x 10 grids centred at (-1, 3) and (1, 3), mirror images of each other with x1 uncorrelated with x0 in
    // each: by symmetry the fitted boundary is x0 = 0 and x1 gets no weight
    let rows: Vec<f64> = (0..200)
        .flat_map(|i| {
            let side = if i < 100 { -1.0 } else { 1.0 };
            let (a, b) = ((i % 100 / 10) as f64, (i % 10) as f64);
            [side + 0.05 * (a - 4.5), 3.0 + 0.1 * (b - 4.5)]
        })
        .collect();
    let x = Tensor::from_slice(&rows).view([200, 2]);
    let y: Vec<bool> = (0..200).map(|i| i >= 100).collect();
    let lr = Logistic::fit(&x, &y, 1.0)?;
    let d = Vec::<f64>::try_from(lr.decision(&x))?;
    assert!(d.iter().zip(&y).all(|(s, &l)| (*s > 0.0) == l), "every toy row on its side");
    let w = Vec::<f64>::try_from(&lr.weight)?;
    assert!(w[0] > 0.0 && w[1].abs() < 1e-3 * w[0], "weights {w:?}");
    let boundary = -(lr.bias + 3.0 * w[1]) / w[0];
    assert!(boundary.abs() < 1e-3, "boundary at x0 = {boundary}");
    let err = Logistic::fit(&x, &[false; 200], 1.0).expect_err("one class").to_string();
    assert!(err.contains("needs both"), "{err}");
    let nan = x.copy().index_fill(0, &Tensor::from_slice(&[3i64]), f64::NAN);
    assert!(Logistic::fit(&nan, &y, 1.0).expect_err("NaN").to_string().contains("not finite"));
    assert_eq!(MAGNITUDES[0], 0.0, "no preprocessing is among Lee et al.'s choices");
    Ok(())
}

#[test]
fn the_forest_votes_a_separable_toy_set_apart_and_refuses_one_class() -> TestResult {
    // 3-d rows: class 1 has x2 above 0.5, class 0 below; x0 and x1 are noise
    let rows: Vec<f64> = (0..300)
        .flat_map(|i| [((i * 37) % 100) as f64 / 100.0, ((i * 53) % 100) as f64 / 100.0, (i as f64) / 300.0])
        .collect();
    let x = Tensor::from_slice(&rows).view([300, 3]);
    let y: Vec<bool> = (0..300).map(|i| i >= 150).collect();
    let forest = Forest::fit(&x, &y, 50, 7)?;
    let votes = Vec::<f64>::try_from(forest.votes(&x)?)?;
    assert!(votes.iter().all(|v| (0.0..=1.0).contains(v)), "vote shares in [0, 1]");
    assert_eq!(advdet::metrics::auroc(&y, &votes)?, 1.0, "the training rows are told apart");
    // new rows far on either side of the split get (nearly) every tree's vote
    let probe = Tensor::from_slice(&[0.5, 0.5, 0.05, 0.5, 0.5, 0.95]).view([2, 3]);
    let p = Vec::<f64>::try_from(forest.votes(&probe)?)?;
    assert!(p[0] < 0.2 && p[1] > 0.8, "votes {p:?}");
    assert!(Forest::fit(&x, &y, 50, 7)?.votes(&x)?.equal(&forest.votes(&x)?), "a seed gives the same forest");
    let err = Forest::fit(&x, &[true; 300], 50, 7).expect_err("one class").to_string();
    assert!(err.contains("needs both"), "{err}");
    Ok(())
}

const SUITE: &str = r#"[suite]
name = "tiny"

[data]
dataset = "mnist"
test_limit = 64
fit_size = 100

[[attack]]
name = "fgsm"
eps = [0.1, 0.3]

[[attack]]
name = "pgd-linf"
eps = 0.2
steps = 5

[detectors]
names = ["msp", "lid-sup"]
modes = ["full"]
"#;

fn parse(text: &str) -> advdet::Result<schema::Suite> {
    schema::parse(Path::new("attacks/x.toml"), text, String::new())
}

#[test]
fn the_suite_names_the_training_attack_and_refuses_a_missing_one() -> TestResult {
    let s = parse(SUITE)?;
    let job = s.train_attack.as_ref().expect("the default training attack");
    assert_eq!((job.name.as_str(), job.params.as_str()), ("fgsm", "eps=0.1"));
    let named = SUITE.replace("modes = [\"full\"]", "modes = [\"full\"]\ntrain_attack = \"pgd-linf eps=0.2 steps=5\"");
    assert_eq!(parse(&named)?.train_attack.map(|j| j.name), Some("pgd-linf".to_string()));
    assert!(parse(&SUITE.replace("\"msp\", \"lid-sup\"", "\"msp\""))?.train_attack.is_none());
    // `names = "all"` drops the supervised detectors when the suite has no default training attack
    let all = SUITE.replace("[\"msp\", \"lid-sup\"]", "\"all\"").replace("eps = [0.1, 0.3]", "eps = 0.3");
    assert!(parse(&all)?.detectors.iter().all(|d| d.family() != "supervised"));
    let bad = |text: &str, parts: &[&str]| {
        let msg = parse(text).map(|_| ()).expect_err("accepted").to_string();
        for p in parts {
            assert!(msg.contains(p), "`{p}` not in: {msg}");
        }
    };
    let no_default = SUITE.replace("eps = [0.1, 0.3]", "eps = 0.3");
    bad(&no_default, &["attacks/x.toml", "detectors.train_attack", "lid-sup", "fgsm eps=0.1", "fgsm eps=0.3"]);
    let absent = SUITE.replace("modes = [\"full\"]", "modes = [\"full\"]\ntrain_attack = \"bim eps=0.1\"");
    bad(&absent, &["detectors.train_attack", "bim eps=0.1 is not among the suite's attacks", "line 21"]);
    let unused = SUITE
        .replace("\"msp\", \"lid-sup\"", "\"msp\"")
        .replace("modes = [\"full\"]", "modes = [\"full\"]\ntrain_attack = \"fgsm eps=0.1\"");
    bad(&unused, &["detectors.train_attack", "no supervised detector"]);
    let number = SUITE.replace("modes = [\"full\"]", "modes = [\"full\"]\ntrain_attack = 3");
    bad(&number, &["detectors.train_attack", "expected an attack"]);
    Ok(())
}
