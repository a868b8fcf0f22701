//! The attack library: golden vectors from torchattacks (scripts/reference/gen_attack_vectors.py), properties of every
//! attack on the trained LeNet and real MNIST test images, and clear errors on bad input.
mod common;

use advdet::attacks::{self, Attack, AttackOutcome, AttackSpec, Norm, Pgd, Targeting};
use advdet::data::{self, DatasetName, Split};
use advdet::models::{checkpoint, Arch, Model};
use common::TestResult;
use tch::{Device, Tensor};

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64, tch::TchError> {
    f64::try_from((a - b).abs().max())
}

fn tensor(named: &[(String, Tensor)], name: &str) -> Result<Tensor, String> {
    named.iter().find(|(n, _)| n == name).map(|(_, t)| t.shallow_clone()).ok_or(format!("no tensor {name}"))
}

#[test]
fn matches_torchattacks_golden_vectors() -> TestResult {
    let dir = common::fixtures().join("attacks");
    let mut model = Model::new(Arch::Lenet, Device::Cpu);
    checkpoint::load_weights(&mut model, &dir.join("lenet_small.safetensors"))?;
    model.freeze();
    let named = Tensor::read_safetensors(dir.join("vectors.safetensors"))?;
    let params: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("params.json"))?)?;
    let (images, labels, targets) = (tensor(&named, "images")?, tensor(&named, "labels")?, tensor(&named, "targets")?);
    let given = Targeting::Given(Vec::<i64>::try_from(&targets)?);
    let attacks = params["attacks"].as_object().ok_or("params.json: no attacks")?;
    assert_eq!(attacks.len(), 8, "every golden vector is checked");
    for (key, p) in attacks {
        let name = p["attack"].as_str().ok_or("no attack name")?;
        let mut fields = serde_json::json!({ "name": name });
        for key in ["eps", "alpha", "steps", "decay"] {
            if !p[key].is_null() {
                fields[key] = p[key].clone();
            }
        }
        if name.starts_with("pgd") {
            fields["random_start"] = false.into();
        }
        let spec: AttackSpec = serde_json::from_value(fields)?;
        let (eps, alpha, steps) = (p["eps"].as_f64(), p["alpha"].as_f64(), p["steps"].as_u64().map(|s| s as usize));
        let targeted = p["targeted"].as_bool().unwrap_or(false);
        let adv = match (name, targeted) {
            (_, false) => attacks::build(&spec, None)?.perturb(&model, &images, &labels)?,
            ("fgsm", true) => {
                let a = attacks::Fgsm { eps: eps.ok_or("eps")?, targeting: given.clone() };
                a.perturb(&model, &images, &labels)?
            }
            (_, true) => {
                let base = if name == "pgd-l2" { Pgd::l2() } else { Pgd::linf() };
                let a = Pgd {
                    eps: eps.ok_or("eps")?,
                    alpha: alpha.ok_or("alpha")?,
                    steps: steps.ok_or("steps")?,
                    random_start: false,
                    targeting: given.clone(),
                    ..base
                };
                a.perturb(&model, &images, &labels)?
            }
        };
        let diff = max_abs_diff(&adv, &tensor(&named, key)?)?;
        assert!(diff <= 1e-5, "{key}: max |advdet - torchattacks| = {diff}");
        let moved = max_abs_diff(&adv, &images)?;
        assert!(moved > 0.01, "{key}: the attack moved the images ({moved})");
    }
    Ok(())
}

/// The first `n` MNIST test images (file order) and the trained LeNet.
/// An attack spec from the JSON of a suite file's `[[attack]]` entry.
fn spec(json: &str) -> Result<AttackSpec, serde_json::Error> {
    serde_json::from_str(json)
}

fn mnist_and_lenet(n: usize) -> Result<(Model, Tensor, Tensor), Box<dyn std::error::Error>> {
    let ds = data::load(DatasetName::Mnist, None, Split::Test)?.limit(n);
    Ok((common::load_lenet_mnist(), ds.images, ds.labels))
}

struct Case {
    attack: Box<dyn Attack>,
    budget_check: bool,
}

fn check_properties(model: &Model, xs: &Tensor, ys: &Tensor, case: &Case) -> TestResult {
    let a = case.attack.as_ref();
    let adv = attacks::run_batched(a, model, xs, ys, 64)?;
    let name = a.name();
    let (lo, hi) = (f64::try_from(adv.min())?, f64::try_from(adv.max())?);
    assert!(lo >= 0.0 && hi <= 1.0, "{name}: output range [{lo}, {hi}]");
    let pred_clean = model.predict(xs, 256);
    let pred_adv = model.predict(&adv, 256);
    let out = AttackOutcome::new(xs, &adv, ys, &pred_clean, &pred_adv, None)?;
    let s = out.summary();
    assert!(
        s.adversarial_accuracy < s.clean_accuracy,
        "{name}: accuracy {} -> {}",
        s.clean_accuracy,
        s.adversarial_accuracy
    );
    if let (Some(eps), true) = (a.budget(), case.budget_check) {
        let worst = match a.norm() {
            Norm::Linf => s.linf_max,
            Norm::L2 => s.l2_max,
        };
        assert!(worst <= eps + 1e-6, "{name}: perturbation {worst} beyond eps {eps}");
    }
    let again = attacks::run_batched(a, model, xs, ys, 64)?;
    assert!(adv.equal(&again), "{name}: same seed, same output");
    Ok(())
}

#[test]
fn every_attack_keeps_budget_range_and_lowers_accuracy() -> TestResult {
    let (model, xs, ys) = mnist_and_lenet(96)?;
    let subnets = common::half_fc_subnets(&model);
    let specs = [
        spec(r#"{"name": "fgsm", "eps": 0.3}"#)?,
        spec(r#"{"name": "bim", "eps": 0.2, "alpha": 0.03, "steps": 10}"#)?,
        spec(r#"{"name": "pgd-linf", "eps": 0.2, "steps": 10, "restarts": 2, "seed": 3}"#)?,
        spec(r#"{"name": "pgd-l2", "eps": 1.5, "steps": 10, "seed": 5}"#)?,
        spec(r#"{"name": "mifgsm", "eps": 0.2}"#)?,
        spec(r#"{"name": "cw-l2", "c": 10.0, "steps": 30, "binary_steps": 1}"#)?,
        spec(r#"{"name": "deepfool", "steps": 10}"#)?,
        spec(r#"{"name": "subnet-ce", "eps": 0.2, "steps": 10, "kappa": 1.0}"#)?,
    ];
    for s in &specs {
        let start = std::time::Instant::now();
        let case = Case { attack: attacks::build(s, Some(&subnets))?, budget_check: true };
        check_properties(&model, &xs, &ys, &case)?;
        eprintln!("{}: {:.1} s", s.name(), start.elapsed().as_secs_f64());
    }
    Ok(())
}

#[test]
fn subnet_ce_with_zero_weight_is_pgd_and_with_weight_keeps_the_subnet_confident() -> TestResult {
    let (model, xs, ys) = mnist_and_lenet(64)?;
    let subnets = common::half_fc_subnets(&model);
    let zero_weight = spec(r#"{"name": "subnet-ce", "eps": 0.2, "steps": 10, "kappa": 0.0}"#)?;
    let zero = attacks::build(&zero_weight, Some(&subnets))?.perturb(&model, &xs, &ys)?;
    let pgd = Pgd { eps: 0.2, steps: 10, ..Pgd::linf() }.perturb(&model, &xs, &ys)?;
    assert!(zero.equal(&pgd), "kappa 0 is plain PGD-Linf");
    let weighted = spec(r#"{"name": "subnet-ce", "eps": 0.2, "steps": 10, "kappa": 5.0}"#)?;
    let adaptive = attacks::build(&weighted, Some(&subnets))?.perturb(&model, &xs, &ys)?;
    let subnet_ce = |adv: &Tensor| -> Result<f64, tch::TchError> {
        let _g = tch::no_grad_guard();
        let pred = model.logits(adv).argmax(-1, false);
        f64::try_from(subnets.logits(&model, adv, &pred).cross_entropy_for_logits(&pred))
    };
    let (plain, adapted) = (subnet_ce(&pgd)?, subnet_ce(&adaptive)?);
    assert!(adapted < plain, "subnet CE on the predicted class: subnet-ce {adapted} vs PGD {plain}");
    Ok(())
}

#[test]
fn targeted_attacks_reach_their_targets_more_often_than_chance() -> TestResult {
    let (model, xs, ys) = mnist_and_lenet(64)?;
    let labels = Vec::<i64>::try_from(&ys)?;
    for targeting in [Targeting::Random { seed: 11 }, Targeting::LeastLikely] {
        let a = Pgd { eps: 0.3, steps: 20, targeting: targeting.clone(), ..Pgd::linf() };
        let adv = attacks::run_batched(&a, &model, &xs, &ys, 24)?;
        let targets = targeting.targets(&model, &xs, &ys, 0, 10)?.ok_or("targeted")?;
        let t = Vec::<i64>::try_from(&targets)?;
        assert!(t.iter().zip(&labels).all(|(t, y)| t != y), "{targeting:?}: a target differs from the label");
        let pred = Vec::<i64>::try_from(&model.predict(&adv, 64))?;
        let hit = pred.iter().zip(&t).filter(|(p, t)| p == t).count() as f64 / t.len() as f64;
        assert!(hit > 0.1 + 0.2, "{targeting:?}: target hit rate {hit}");
    }
    // random targets depend on the sample's index, not on the batching
    let r = Targeting::Random { seed: 11 };
    let whole = r.targets(&model, &xs, &ys, 0, 10)?.ok_or("targeted")?;
    let tail = r.targets(&model, &xs.narrow(0, 40, 24), &ys.narrow(0, 40, 24), 40, 10)?.ok_or("targeted")?;
    assert!(whole.narrow(0, 40, 24).equal(&tail));
    Ok(())
}

fn config_error(result: advdet::Result<Box<dyn Attack>>, field: &str) -> TestResult {
    match result {
        Err(advdet::Error::Config { field: f, .. }) if f == field => Ok(()),
        Err(e) => Err(format!("expected an error naming {field}, got: {e}").into()),
        Ok(a) => Err(format!("expected an error naming {field}, built {}", a.name()).into()),
    }
}

#[test]
fn bad_input_gives_clear_errors() -> TestResult {
    let with = |json: &str| attacks::build(&spec(json).expect("parses"), None);
    config_error(with(r#"{"name": "pgd-linf", "eps": -0.1}"#), "eps")?;
    config_error(
        attacks::build(&AttackSpec::Fgsm(attacks::FgsmSpec { eps: Some(f64::NAN), ..Default::default() }), None),
        "eps",
    )?;
    config_error(with(r#"{"name": "bim", "steps": 0}"#), "steps")?;
    config_error(with(r#"{"name": "pgd-l2", "restarts": 3, "random_start": false}"#), "restarts")?;
    assert!(matches!(with(r#"{"name": "subnet-ce"}"#), Err(advdet::Error::Missing(_))), "subnet-ce needs subnetworks");
    // the adaptive attack needs a fitted detector and its threshold: only a suite builds it
    config_error(with(r#"{"name": "adaptive", "detector": "msp", "mode": "full"}"#), "attack")?;
    for bad in [r#"{"name": "adaptive", "weights": []}"#, r#"{"name": "adaptive", "weights": [1.0, -1.0]}"#] {
        match spec(bad)?.validate() {
            Err(advdet::Error::Config { field, .. }) if field == "weights" => {}
            other => return Err(format!("{bad}: expected an error naming weights, got {other:?}").into()),
        }
    }
    // a key the attack does not take, an unknown value or attack: parse errors naming them, by construction
    let parse_error = |json: &str| spec(json).err().map(|e| e.to_string()).unwrap_or_default();
    for (json, words) in [
        (r#"{"name": "fgsm", "epsilon": 0.3}"#, &["epsilon", "eps"][..]),
        (r#"{"name": "fgsm", "c": 1.0}"#, &["`c`"]),
        (r#"{"name": "deepfool", "targeted": "random"}"#, &["targeted", "overshoot"]),
        (r#"{"name": "mifgsm", "targeted": "sideways"}"#, &["sideways", "least-likely"]),
        (r#"{"name": "pgd-lnf"}"#, &["pgd-lnf", "pgd-linf"]),
        (r#"{"eps": 0.3}"#, &["name"]),
    ] {
        let e = parse_error(json);
        assert!(words.iter().all(|w| e.contains(w)), "{json}: {e}");
    }

    let (model, xs, ys) = mnist_and_lenet(8)?;
    let given = attacks::Fgsm { eps: 0.1, targeting: Targeting::Given(vec![1, 2, 3, 4, 5, 6, 7, 10]) };
    let e = given.perturb(&model, &xs, &ys).err().ok_or("target 10")?.to_string();
    assert!(e.contains("targets[7]") && e.contains("10"), "{e}");
    let short = attacks::Fgsm { eps: 0.1, targeting: Targeting::Given(vec![1, 2]) };
    assert!(short.perturb(&model, &xs, &ys).is_err(), "too few targets");
    let fgsm = attacks::Fgsm::default();
    let empty = attacks::run_batched(&fgsm, &model, &xs.narrow(0, 0, 0), &ys.narrow(0, 0, 0), 8);
    assert!(empty.err().ok_or("empty")?.to_string().contains("empty"));
    let e = fgsm.perturb(&model, &xs, &(&ys + 10)).err().ok_or("label 10+")?.to_string();
    assert!(e.contains("labels"), "{e}");
    let e = fgsm.perturb(&model, &(&xs * 2.0), &ys).err().ok_or("pixels > 1")?.to_string();
    assert!(e.contains("[0, 1]"), "{e}");
    Ok(())
}

#[test]
fn cli_writes_the_five_tensors_and_rejects_bad_eps() -> TestResult {
    let model = common::lenet_mnist();
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("fgsm.safetensors");
    let (m, o) = (model.to_string_lossy().into_owned(), out.to_string_lossy().into_owned());
    let args = ["attack", "--model", &m, "--limit", "32", "--attack", "fgsm", "--eps", "0.2", "--device", "cpu"];
    let (code, stdout, stderr) = common::run_advdet(&[&args[..], &["--out", &o]].concat());
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("success rate") && stdout.contains("images/s"), "{stdout}");
    let named = Tensor::read_safetensors(&out)?;
    let mut names: Vec<&str> = named.iter().map(|(n, _)| n.as_str()).collect();
    names.sort();
    assert_eq!(names, ["adversarial", "clean", "labels", "pred_adv", "pred_clean"]);
    let (clean, adv) = (tensor(&named, "clean")?, tensor(&named, "adversarial")?);
    assert_eq!(clean.size(), [32, 1, 28, 28]);
    assert!(max_abs_diff(&clean, &adv)? <= 0.2 + 1e-6);
    let bad = ["attack", "--model", &m, "--attack", "pgd-linf", "--eps=-1", "--out", &o];
    let (code, _, stderr) = common::run_advdet(&bad);
    assert_eq!(code, 2);
    assert!(stderr.contains("eps") && stderr.contains("-1"), "{stderr}");
    // the flags map onto the same typed spec: one the attack does not take, an unknown attack or target
    for (extra, words) in [
        (&["--attack", "fgsm", "--c", "1"][..], &["--c", "does not apply to attack fgsm"][..]),
        (&["--attack", "deepfool", "--seed", "3"], &["--seed", "deepfool"]),
        (&["--attack", "pgd-lnf"], &["--attack", "pgd-lnf", "pgd-linf"]),
        (&["--attack", "bim", "--targeted", "sideways"], &["--targeted", "sideways", "least-likely"]),
    ] {
        let (code, _, stderr) = common::run_advdet(&[&["attack", "--model", &m, "--out", &o][..], extra].concat());
        assert_eq!(code, 2, "{extra:?}: {stderr}");
        assert!(words.iter().all(|w| stderr.contains(w)), "{extra:?}: {stderr}");
    }
    Ok(())
}

#[test]
fn gradient_passes_and_the_bound_follow_the_attack() -> TestResult {
    let passes = |json: &str| -> Result<Option<usize>, Box<dyn std::error::Error>> {
        Ok(attacks::build(&spec(json)?, None)?.gradient_passes())
    };
    assert_eq!(passes(r#"{"name": "fgsm"}"#)?, Some(1));
    assert_eq!(passes(r#"{"name": "pgd-linf", "steps": 7}"#)?, Some(7));
    assert_eq!(passes(r#"{"name": "pgd-l2", "steps": 5}"#)?, Some(5));
    assert_eq!(passes(r#"{"name": "bim", "steps": 3}"#)?, Some(3));
    assert_eq!(passes(r#"{"name": "mifgsm", "steps": 4}"#)?, Some(4));
    assert_eq!(passes(r#"{"name": "pgd-linf", "steps": 7, "restarts": 2}"#)?, None, "restarts stop early");
    assert_eq!(passes(r#"{"name": "cw-l2"}"#)?, None, "CW aborts early");
    assert_eq!(passes(r#"{"name": "deepfool"}"#)?, None, "DeepFool takes per-class gradients");

    let (model, xs, ys) = mnist_and_lenet(64)?;
    let one = attacks::gradient_bound(&model, &xs, &ys, 32, 1)?;
    assert!(one.is_finite() && one > 0.0, "{one}");
    assert!(attacks::gradient_bound(&model, &xs, &ys, 0, 1).is_err(), "batch size 0 must be refused");

    let m = common::lenet_mnist().to_string_lossy().into_owned();
    let dir = tempfile::tempdir()?;
    let o = dir.path().join("a.safetensors").to_string_lossy().into_owned();
    let base = ["attack", "--model", &m, "--limit", "64", "--device", "cpu", "--bound", "--out", &o];
    let (code, stdout, stderr) = common::run_advdet(&[&base[..], &["--attack", "pgd-linf", "--steps", "3"]].concat());
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("(3 passes per batch of 256); attack time / bound"), "{stdout}");
    let refused = dir.path().join("cw.safetensors").to_string_lossy().into_owned();
    let cw = ["--attack", "cw-l2", "--steps", "3", "--out", &refused];
    let (code, _, stderr) = common::run_advdet(&[&base[..base.len() - 2], &cw[..]].concat());
    assert_eq!(code, 2);
    assert!(stderr.contains("--bound") && stderr.contains("cw-l2"), "{stderr}");
    assert!(!dir.path().join("cw.safetensors").exists(), "a refused --bound must write nothing");
    Ok(())
}

#[test]
fn one_fgsm_gradient_serves_every_eps_with_the_bytes_of_separate_runs() -> TestResult {
    let (model, xs, ys) = mnist_and_lenet(300)?;
    for targeted in ["", r#", "targeted": "random", "seed": 3"#] {
        let base = spec(&format!(r#"{{"name": "fgsm"{targeted}}}"#))?;
        let AttackSpec::Fgsm(base) = base else { return Err("not fgsm".into()) };
        // batches of 128 (128, 128, 44): a random target depends on the image's index in the whole set
        let signs = base.build()?.gradient_signs(&model, &xs, &ys, 128)?;
        for eps in [0.0, 0.1, 0.2, 0.3] {
            let one = advdet::attacks::FgsmSpec { eps: Some(eps), ..base.clone() }.build()?;
            let separate = attacks::run_batched(&one, &model, &xs, &ys, 128)?;
            let shared = one.step(&xs, &signs);
            assert!(shared.equal(&separate), "eps {eps}{targeted}: the shared gradient changed the bytes");
        }
    }
    Ok(())
}
