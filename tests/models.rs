//! Models: gates of ones are the identity, PyTorch weights load and agree, shapes, training, determinism, bad input.
mod common;
use advdet::data::{Dataset, DatasetName, Split};
use advdet::models::{checkpoint, Arch, Model};
use advdet::train::{self, TrainConfig};
use common::*;
use tch::{Device, Kind, Tensor};

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    f64::try_from((a - b).abs().max()).unwrap()
}

fn io_fixture(arch: &str) -> (Tensor, Tensor) {
    let named = Tensor::read_safetensors(fixtures().join("models").join(format!("{arch}_io.safetensors"))).unwrap();
    let get = |n: &str| named.iter().find(|(k, _)| k == n).unwrap().1.shallow_clone();
    (get("inputs"), get("logits"))
}

#[test]
fn pytorch_weights_load_and_give_the_same_logits() -> TestResult {
    for arch in [Arch::Lenet, Arch::VggSmall, Arch::Resnet20] {
        let path = fixtures().join("models").join(format!("{arch}.safetensors"));
        // a bare .safetensors file from PyTorch: no sidecar, so the architecture must be named
        assert!(checkpoint::load(&path, None, Device::Cpu).unwrap_err().to_string().contains("--arch"));
        let (model, meta) = checkpoint::load(&path, Some(arch), Device::Cpu)?;
        assert!(meta.is_none());
        let (inputs, logits) = io_fixture(arch.as_str());
        let ours = tch::no_grad(|| model.logits(&inputs));
        let diff = max_abs_diff(&ours, &logits);
        assert!(diff <= 1e-4, "{arch}: max abs logit difference {diff}");
    }
    Ok(())
}

#[test]
fn gates_of_ones_give_exactly_the_ungated_logits() -> TestResult {
    let _rng = common::global_rng();
    for arch in [Arch::Lenet, Arch::VggSmall, Arch::Resnet20] {
        tch::manual_seed(1);
        let model = Model::new(arch, Device::Cpu);
        let (c, h, w) = arch.input_shape();
        let xs = Tensor::rand([5, c, h, w], (Kind::Float, Device::Cpu));
        let units = model.gate_layout().units();
        let plain = model.net.forward(&xs, None, false);
        let ones = model.net.forward(&xs, Some(&Tensor::ones([5, units], (Kind::Float, Device::Cpu))), false);
        assert!(plain.equal(&ones), "{arch}: gates of ones changed the logits");
        let feats = model.net.features(&xs, None, false);
        assert_eq!(plain.size(), [5, 10]);
        assert_eq!(feats.size()[0], 5);
        // a zero gate on a unit changes the output: the gates are wired in
        let g = Tensor::ones([5, units], (Kind::Float, Device::Cpu));
        let _ = g.narrow(1, 0, model.gate_layout().layers[0].width).fill_(0.0);
        assert!(max_abs_diff(&model.net.forward(&xs, Some(&g), false), &plain) > 0.0, "{arch}");
    }
    Ok(())
}

#[test]
fn gate_layouts_cover_every_gateable_unit() {
    let _rng = common::global_rng();
    let units = |a| Model::new(a, Device::Cpu).gate_layout().units();
    assert_eq!(units(Arch::Lenet), 20 + 50 + 500);
    assert_eq!(units(Arch::VggSmall), 64 + 64 + 128 + 128 + 256 + 256 + 256);
    assert_eq!(units(Arch::Resnet20), 16 + 2 * 3 * (16 + 32 + 64));
}

#[test]
fn cifar_models_learn_on_real_cifar_images() -> TestResult {
    let _rng = common::global_rng();
    let ds = Dataset::load(DatasetName::Cifar10, &fixtures().join("cifar10"), Split::Test)?;
    for arch in [Arch::VggSmall, Arch::Resnet20] {
        tch::manual_seed(0);
        let model = Model::new(arch, Device::Cpu);
        let mut opt = tch::nn::OptimizerConfig::build(tch::nn::Adam::default(), &model.vs, 1e-3)?;
        let loss = |m: &Model| {
            f64::try_from(m.net.forward(&ds.images, None, false).cross_entropy_for_logits(&ds.labels)).unwrap()
        };
        let before = loss(&model);
        for _ in 0..8 {
            let l = model.net.forward(&ds.images, None, true).cross_entropy_for_logits(&ds.labels);
            opt.backward_step(&l);
        }
        let after = loss(&model);
        assert!(after < before, "{arch}: loss {before} -> {after}");
    }
    Ok(())
}

#[test]
fn training_is_deterministic_for_a_seed() -> TestResult {
    let _rng = common::global_rng();
    let ds = advdet::data::load(DatasetName::Mnist, None, Split::Train)?.limit(512);
    let mut cfg = TrainConfig::default_for(DatasetName::Mnist, Arch::Lenet);
    cfg.epochs = 1;
    let (a, _) = train::train(&cfg, &ds, Device::Cpu)?;
    let (b, _) = train::train(&cfg, &ds, Device::Cpu)?;
    cfg.seed = 1;
    let (c, _) = train::train(&cfg, &ds, Device::Cpu)?;
    let (va, vb, vc) = (a.vs.variables(), b.vs.variables(), c.vs.variables());
    for (name, t) in &va {
        assert!(t.equal(&vb[name]), "{name} differs between two runs with the same seed");
    }
    assert!(!va["fc1.weight"].equal(&vc["fc1.weight"]));
    Ok(())
}

#[test]
fn consistency_training_without_its_terms_is_standard_training() -> TestResult {
    use advdet::models::training::{Robust, Training};
    let _rng = common::global_rng();
    let ds = advdet::data::load(DatasetName::Mnist, None, Split::Train)?.limit(256);
    let mut cfg = TrainConfig::default_for(DatasetName::Mnist, Arch::Lenet);
    cfg.epochs = 1;
    let (standard, _) = train::train(&cfg, &ds, Device::Cpu)?;
    let off = Robust { adv_weight: 0.0, beta: 0.0, ..Robust::default_for(true, 0.0) };
    let (same, _) =
        train::train(&TrainConfig { training: Training::Consistency(off), ..cfg.clone() }, &ds, Device::Cpu)?;
    let on = Robust { steps: 2, ..Robust::default_for(true, 0.1) };
    let (robust, _) =
        train::train(&TrainConfig { training: Training::Consistency(on), ..cfg.clone() }, &ds, Device::Cpu)?;
    let (vs, vo, vr) = (standard.vs.variables(), same.vs.variables(), robust.vs.variables());
    for (name, t) in &vs {
        assert!(t.equal(&vo[name]), "{name}: beta 0 and no adversarial term changed the weights");
    }
    assert!(!vs["fc1.weight"].equal(&vr["fc1.weight"]), "the PGD and consistency terms change the weights");
    assert!(vr.values().all(|t| f64::try_from(t.isfinite().all().to_kind(tch::Kind::Float)).unwrap_or(0.0) == 1.0));
    Ok(())
}

#[test]
fn default_lenet_reaches_99_percent_on_mnist() -> TestResult {
    let (model, meta) = checkpoint::load(&lenet_mnist(), None, Device::Cpu)?;
    let meta = meta.expect("the cache writes a sidecar");
    assert_eq!((meta.arch, meta.dataset, meta.seed), (Arch::Lenet, DatasetName::Mnist, 0));
    let test = advdet::data::load(DatasetName::Mnist, None, Split::Test)?;
    let eval = train::evaluate(&model, &test, 1000);
    assert!(eval.accuracy >= 0.99, "accuracy {}", eval.accuracy);
    assert!((eval.accuracy - meta.test_accuracy).abs() < 1e-12);
    Ok(())
}

#[test]
fn saved_checkpoints_round_trip_with_their_sidecar() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("m.safetensors");
    let (model, meta) = checkpoint::load(&lenet_mnist(), None, Device::Cpu)?;
    checkpoint::save(&model, &path, meta.as_ref())?;
    let (back, meta2) = checkpoint::load(&path, None, Device::Cpu)?;
    assert_eq!(meta, meta2);
    let xs = Tensor::rand([3, 1, 28, 28], (Kind::Float, Device::Cpu));
    assert!(model.logits(&xs).equal(&back.logits(&xs)));
    let names: Vec<String> =
        std::fs::read_dir(tmp.path())?.map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names.len(), 2, "only the weights and the sidecar, no temporary files: {names:?}");
    Ok(())
}

#[test]
fn checkpoint_of_another_architecture_is_refused_naming_tensors() {
    let path = fixtures().join("models").join("resnet20.safetensors");
    let err = checkpoint::load(&path, Some(Arch::Lenet), Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("missing tensors [conv1.bias, conv2.bias") && err.contains("layer1.0.bn1.weight"), "{err}");
}

#[test]
fn missing_extra_and_misshaped_tensors_are_refused() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let named = Tensor::read_safetensors(fixtures().join("models").join("lenet.safetensors"))?;
    let write = |name: &str, tensors: Vec<(String, Tensor)>| {
        let p = tmp.path().join(name);
        Tensor::write_safetensors(&tensors, &p).unwrap();
        p
    };
    let missing = write(
        "missing.safetensors",
        named.iter().filter(|(n, _)| n != "fc2.bias").map(|(n, t)| (n.clone(), t.shallow_clone())).collect(),
    );
    let err = checkpoint::load(&missing, Some(Arch::Lenet), Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("missing tensors [fc2.bias]") && err.contains("unexpected tensors []"), "{err}");

    let mut with_extra: Vec<(String, Tensor)> = named.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
    with_extra.push(("fc3.weight".into(), Tensor::zeros([2, 2], (Kind::Float, Device::Cpu))));
    let extra = write("extra.safetensors", with_extra);
    let err = checkpoint::load(&extra, Some(Arch::Lenet), Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("unexpected tensors [fc3.weight]"), "{err}");

    let shaped = write(
        "shape.safetensors",
        named
            .iter()
            .map(|(n, t)| {
                (
                    n.clone(),
                    if n == "fc1.weight" {
                        Tensor::zeros([500, 801], (Kind::Float, Device::Cpu))
                    } else {
                        t.shallow_clone()
                    },
                )
            })
            .collect(),
    );
    let err = checkpoint::load(&shaped, Some(Arch::Lenet), Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("tensor fc1.weight has shape [500, 801]") && err.contains("[500, 800]"), "{err}");

    std::fs::write(tmp.path().join("junk.safetensors"), b"not safetensors")?;
    let err =
        checkpoint::load(&tmp.path().join("junk.safetensors"), Some(Arch::Lenet), Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("junk.safetensors") && err.contains("not a readable .safetensors"), "{err}");
    Ok(())
}

#[test]
fn cli_bad_inputs_exit_nonzero_with_a_clear_message() {
    let (code, _, err) = run_advdet(&["train", "--dataset", "mnist", "--arch", "alexnet"]);
    assert_eq!(code, 2);
    assert!(err.contains("alexnet") && err.contains("expected lenet, vgg-small or resnet20"), "{err}");

    let (code, _, err) = run_advdet(&["train", "--dataset", "mnist", "--arch", "resnet20", "--epochs", "1"]);
    assert_eq!(code, 2);
    assert!(err.contains("arch resnet20 takes images of shape (3, 32, 32) but dataset mnist has (1, 28, 28)"), "{err}");

    let lenet = fixtures().join("models").join("lenet.safetensors");
    let (code, _, err) =
        run_advdet(&["eval", "--model", lenet.to_str().unwrap(), "--arch", "lenet", "--dataset", "cifar10"]);
    assert_eq!(code, 2);
    assert!(err.contains("dataset cifar10"), "{err}");

    if !tch::Cuda::is_available() {
        let (code, _, err) = run_advdet(&[
            "eval",
            "--model",
            lenet.to_str().unwrap(),
            "--arch",
            "lenet",
            "--dataset",
            "mnist",
            "--device",
            "cuda",
        ]);
        assert_eq!(code, 2);
        assert!(err.contains("--device cuda") && err.contains("no CUDA device"), "{err}");
    }
    let (code, _, err) = run_advdet(&["eval", "--model", "/nonexistent/m.safetensors"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/m.safetensors does not exist") && !err.contains("panicked"), "{err}");
}
