//! Class-specific subnetworks (Wang et al., arXiv 1910.02673): masks, extraction, analysis and the `extract` command,
//! on the default LeNet trained on real MNIST.
mod common;

use advdet::data::{self, DatasetName, Split};
use advdet::subnet::{analysis, extract, mask, output, Binarize, ExtractConfig, Subnets};
use common::{load_lenet_mnist, TestResult};
use tch::{Device, Kind, Tensor};

fn mnist_test(per_class: usize) -> data::Dataset {
    data::load(DatasetName::Mnist, None, Split::Test).expect("MNIST is in the data cache").per_class(per_class)
}

/// The training images gate training learns from: all but the last 5000 (the suites' fit split).
fn mnist_train() -> data::Dataset {
    let all = data::load(DatasetName::Mnist, None, Split::Train).expect("MNIST is in the data cache");
    all.range(0, all.len() - 5000)
}

/// Training images that gate training does not see (the last 5000), `per_class` of each class: the analysis set.
fn mnist_held_out(per_class: usize) -> data::Dataset {
    let all = data::load(DatasetName::Mnist, None, Split::Train).expect("MNIST is in the data cache");
    all.range(all.len() - 5000, all.len()).per_class(per_class)
}

/// A small, fast configuration (the acceptance figures use the defaults through the command line).
fn small() -> ExtractConfig {
    ExtractConfig {
        steps: 30,
        images_per_class: 40,
        batch_per_class: Some(8),
        cross_images_per_class: Some(10),
        ..Default::default()
    }
}

fn subnets_from(model: &advdet::models::Model, masks: Tensor) -> Subnets {
    Subnets { layout: model.gate_layout().clone(), gates: masks.shallow_clone(), masks }
}

#[test]
fn all_ones_masks_reproduce_the_full_model() -> TestResult {
    let model = load_lenet_mnist();
    let test = mnist_test(20);
    let s = subnets_from(&model, Tensor::ones([10, model.gate_layout().units()], (Kind::Float, Device::Cpu)));
    s.validate()?;
    let _g = tch::no_grad_guard();
    let full = model.logits(&test.images);
    let sub = s.logits(&model, &test.images, &(&test.labels + 3).remainder(10));
    assert!(full.equal(&sub), "all-ones masks changed the logits");
    Ok(())
}

#[test]
fn a_mask_without_a_unit_in_some_layer_is_refused() -> TestResult {
    let model = load_lenet_mnist();
    let layout = model.gate_layout().clone();
    let masks = Tensor::ones([10, layout.units()], (Kind::Float, Device::Cpu));
    let (off, w) = layout.spans()[1];
    let _ = masks.get(4).narrow(0, off, w).fill_(0.0);
    let s = subnets_from(&model, masks);
    let err = s.validate().expect_err("an empty layer must be refused").to_string();
    assert!(err.contains("class 4") && err.contains(&layout.layers[1].name), "{err}");
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bad.safetensors");
    s.save(&path)?;
    let err = Subnets::load(&path, &layout, Device::Cpu).expect_err("load must refuse it").to_string();
    assert!(err.contains("bad.safetensors") && err.contains("class 4"), "{err}");
    Ok(())
}

#[test]
fn binarisation_never_empties_a_layer_and_top_k_keeps_k_percent() -> TestResult {
    let model = load_lenet_mnist();
    let layout = model.gate_layout().clone();
    tch::manual_seed(7);
    let gates = Tensor::rand([10, layout.units()], (Kind::Float, Device::Cpu));
    let none = mask::binarize(&gates, &layout, Binarize::Threshold(2.0))?;
    for row in mask::kept_per_layer(&none, &layout)? {
        for (kept, l) in row.iter().zip(&layout.layers) {
            assert!(
                (kept * l.width as f64 - 1.0).abs() < 1e-9,
                "threshold above every gate must keep exactly one unit"
            );
        }
    }
    // the one unit kept is the layer's largest gate
    let (off, w) = layout.spans()[0];
    let top = gates.narrow(1, off, w).argmax(1, false);
    assert!(none.narrow(1, off, w).argmax(1, false).equal(&top));
    let k = mask::binarize(&gates, &layout, Binarize::TopKPercent(25.0))?;
    for row in mask::kept_per_layer(&k, &layout)? {
        for (kept, l) in row.iter().zip(&layout.layers) {
            assert_eq!((kept * l.width as f64).round() as i64, (0.25 * l.width as f64).ceil() as i64);
        }
    }
    let half = mask::binarize(&gates, &layout, Binarize::Threshold(0.5))?;
    assert!(half.eq_tensor(&gates.gt(0.5).to_kind(Kind::Float)).all().int64_value(&[]) == 1);
    assert!(mask::binarize(&gates, &layout, Binarize::TopKPercent(0.0)).is_err());
    assert!(mask::binarize(&gates.narrow(1, 0, 5), &layout, Binarize::Threshold(0.1)).is_err());
    Ok(())
}

#[test]
fn per_sample_subnets_in_one_batch_equal_each_sample_alone() -> TestResult {
    let model = load_lenet_mnist();
    let layout = model.gate_layout().clone();
    tch::manual_seed(3);
    let masks = mask::binarize(
        &Tensor::rand([10, layout.units()], (Kind::Float, Device::Cpu)),
        &layout,
        Binarize::Threshold(0.5),
    )?;
    let s = subnets_from(&model, masks);
    let test = mnist_test(3);
    let classes = Tensor::randint(10, [test.len() as i64], (Kind::Int64, Device::Cpu));
    let _g = tch::no_grad_guard();
    let batched = s.logits(&model, &test.images, &classes);
    for i in 0..test.len() as i64 {
        let c = classes.int64_value(&[i]);
        let alone = model.net.forward(&test.images.narrow(0, i, 1), Some(&s.masks.narrow(0, c, 1)), false);
        let diff = (batched.narrow(0, i, 1) - alone).abs().max().double_value(&[]);
        assert!(diff < 1e-4, "sample {i} (class {c}): batched and alone differ by {diff}");
    }
    let (pred, by_pred) = s.logits_by_prediction(&model, &test.images);
    assert!(by_pred.equal(&s.logits(&model, &test.images, &pred)));
    Ok(())
}

#[test]
fn extraction_is_deterministic_and_leaves_the_model_untouched() -> TestResult {
    let model = load_lenet_mnist();
    let (train, test) = (mnist_train(), mnist_held_out(30));
    let before: Vec<(String, Tensor)> = model.vs.variables().into_iter().map(|(n, t)| (n, t.copy())).collect();
    let a = extract(&model, &train, &test, &small())?;
    let b = extract(&model, &train, &test, &small())?;
    assert!(a.subnets.gates.equal(&b.subnets.gates), "same seed, different gates");
    assert!(a.subnets.masks.equal(&b.subnets.masks));
    let c = extract(&model, &train, &test, &ExtractConfig { seed: 1, ..small() })?;
    assert!(!a.subnets.gates.equal(&c.subnets.gates), "the seed must pick the batches");
    for (name, t) in &before {
        let now = &model.vs.variables()[name];
        assert!(now.equal(t), "parameter {name} changed");
        assert!(!now.grad().defined(), "parameter {name} received a gradient");
    }
    Ok(())
}

#[test]
fn extraction_under_a_no_grad_guard_learns_the_same_gates() -> TestResult {
    let model = load_lenet_mnist();
    let train = mnist_train();
    let (free, _) = extract::train_gates(&model, &train, &small())?;
    let (guarded, _) = {
        let _g = tch::no_grad_guard();
        extract::train_gates(&model, &train, &small())?
    };
    assert!(free.equal(&guarded), "a caller's no-grad guard changed the gates");
    assert!(f64::try_from(free.mean(Kind::Double))? < 1.0, "the gates did not move from their start");
    Ok(())
}

#[test]
fn trained_lenet_subnets_are_sparse_and_keep_own_class_accuracy() -> TestResult {
    let model = load_lenet_mnist();
    let cfg = ExtractConfig {
        steps: 100,
        batch_per_class: Some(12),
        lambda: 0.02,
        cross_images_per_class: Some(50),
        ..Default::default()
    };
    let ex = extract(&model, &mnist_train(), &mnist_held_out(300), &cfg)?;
    assert_eq!(ex.summary.analysis.images_per_class, vec![300; 10], "the analysis runs on the held-out images");
    let s = &ex.summary;
    assert!(s.mean_kept_fraction < 0.6, "mean kept fraction {}", s.mean_kept_fraction);
    for c in &s.classes {
        assert!(c.kept_fraction < 1.0, "class {} keeps every unit", c.class);
        assert!(c.own_class_accuracy >= c.full_model_accuracy - 0.03, "class {}: {:?}", c.class, c);
    }
    // a subnetwork rejects other classes: its mean accuracy off the diagonal is far below its own-class accuracy
    let a = &s.analysis;
    for c in 0..10 {
        let off: f64 = (0..10).filter(|&d| d != c).map(|d| a.cross_accuracy[c][d]).sum::<f64>() / 9.0;
        assert!(off < a.own_class_accuracy[c], "subnet {c}: {off} on other classes");
        assert_eq!(a.jaccard[c][c], 1.0);
        assert!((a.cosine[c][c] - 1.0).abs() < 1e-9);
        for d in 0..10 {
            assert!((a.jaccard[c][d] - a.jaccard[d][c]).abs() < 1e-12 && (0.0..=1.0).contains(&a.jaccard[c][d]));
        }
    }
    Ok(())
}

#[test]
fn conv_scope_gates_only_conv_channels_and_keeps_every_fully_connected_unit() -> TestResult {
    let model = load_lenet_mnist();
    let layout = model.gate_layout().clone();
    let cfg = ExtractConfig { lambda: 0.05, gate: advdet::subnet::Gate::Conv, ..small() };
    let conv = extract(&model, &mnist_train(), &mnist_held_out(10), &cfg)?;
    let all = extract(&model, &mnist_train(), &mnist_held_out(10), &ExtractConfig { gate: Default::default(), ..cfg })?;
    for (l, (off, w)) in layout.layers.iter().zip(layout.spans()) {
        let (g, m) = (conv.subnets.gates.narrow(1, off, w), conv.subnets.masks.narrow(1, off, w));
        if l.is_conv() {
            assert!(f64::try_from(m.mean(Kind::Double))? < 1.0, "layer {}: nothing pruned", l.name);
        } else {
            assert!(g.eq(1.0).all().int64_value(&[]) == 1, "layer {}: a fully connected gate moved", l.name);
            assert!(m.eq(1.0).all().int64_value(&[]) == 1, "layer {}: a fully connected unit was dropped", l.name);
            let pruned = all.subnets.masks.narrow(1, off, w);
            assert!(f64::try_from(pruned.mean(Kind::Double))? < 1.0, "layer {}: the `all` scope prunes it", l.name);
        }
    }
    // the top-k rule would keep only k% of a layer: the conv scope still keeps every fully connected unit
    let top =
        extract(&model, &mnist_train(), &mnist_held_out(10), &ExtractConfig { top_k_percent: Some(10.0), ..cfg })?;
    let fc = layout.layers.iter().position(|l| !l.is_conv()).expect("LeNet has a hidden fully connected layer");
    let (off, w) = layout.spans()[fc];
    assert_eq!(top.subnets.masks.narrow(1, off, w).eq(1.0).all().int64_value(&[]), 1);
    Ok(())
}

#[test]
fn jaccard_and_cosine_match_hand_computed_values() -> TestResult {
    let m = Tensor::from_slice(&[1f32, 1., 0., 0., 0., 1., 1., 1.]).view([2, 4]);
    let j = analysis::jaccard(&m)?;
    assert_eq!(j, vec![vec![1.0, 1.0 / 4.0], vec![1.0 / 4.0, 1.0]]);
    let g = Tensor::from_slice(&[3f32, 4., 0., 0., 4., 3.]).view([2, 3]);
    let c = analysis::cosine(&g)?;
    assert!((c[0][1] - 16.0 / 25.0).abs() < 1e-12, "{c:?}");
    Ok(())
}

#[test]
fn config_validation_names_the_field() {
    for (cfg, field) in [
        (ExtractConfig { lambda: -1.0, ..Default::default() }, "lambda"),
        (ExtractConfig { steps: 0, ..Default::default() }, "steps"),
        (ExtractConfig { momentum: 1.0, ..Default::default() }, "momentum"),
        (ExtractConfig { top_k_percent: Some(150.0), ..Default::default() }, "top-k-percent"),
        (ExtractConfig { threshold: f64::NAN, ..Default::default() }, "threshold"),
        (ExtractConfig { batch_per_class: Some(0), ..Default::default() }, "batch-per-class"),
    ] {
        let err = cfg.validate().expect_err(field).to_string();
        assert!(err.contains(field), "{err}");
    }
    assert!(serde_json::from_str::<ExtractConfig>(r#"{"lambda": 0.1, "lamda": 1}"#).is_err());
    let partial: ExtractConfig = serde_json::from_str(r#"{"lambda": 0.1}"#).expect("defaults fill the rest");
    assert_eq!(partial, ExtractConfig { lambda: 0.1, ..Default::default() });
}

#[test]
fn extract_command_writes_subnets_summary_and_analysis() -> TestResult {
    let model = common::lenet_mnist();
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("css.safetensors");
    let args = ["extract", "--model", model.to_str().ok_or("path")?, "--steps", "20", "--images-per-class", "30"];
    let rest = ["--batch-per-class", "8", "--cross-images-per-class", "10", "--device", "cpu", "--out"];
    let mut all: Vec<&str> = args.iter().chain(&rest).copied().collect();
    all.push(out.to_str().ok_or("path")?);
    let (code, stdout, stderr) = common::run_advdet(&all);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(output::sibling(&out, "json"))?)?;
    assert!(json["mean_kept_fraction"].as_f64().is_some_and(|k| k > 0.0 && k <= 1.0));
    let classes = json["classes"].as_array().ok_or("classes")?;
    assert_eq!(classes.len(), 10);
    for key in ["kept_fraction", "own_class_accuracy", "full_model_accuracy"] {
        assert!(classes.iter().all(|c| c[key].is_number()), "{key}");
    }
    for suffix in
        ["kept.csv", "accuracy.csv", "cross-accuracy.csv", "jaccard.csv", "cosine.csv", "jaccard.png", "jaccard.svg"]
    {
        let p = output::sibling(&out, suffix);
        assert!(p.is_file() && std::fs::metadata(&p)?.len() > 0, "{} missing", p.display());
    }
    let csv = std::fs::read_to_string(output::sibling(&out, "jaccard.csv"))?;
    assert_eq!(csv.lines().count(), 11);
    let png = std::fs::read(output::sibling(&out, "jaccard.png"))?;
    assert_eq!(&png[1..4], b"PNG");
    let loaded = Subnets::load(&out, load_lenet_mnist().gate_layout(), Device::Cpu)?;
    assert_eq!(loaded.masks.size(), vec![10, 570]);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    let (code, _, stderr) = common::run_advdet(&[
        "extract",
        "--model",
        model.to_str().ok_or("path")?,
        "--lambda=-2",
        "--out",
        "x.safetensors",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("lambda"), "{stderr}");
    Ok(())
}
