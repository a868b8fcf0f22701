//! Class-specific gates learned in training (CSG-CNN, Liang et al., arXiv 2007.08194): the gate step's invariants, the
//! sparsity term, the schedule, a short real training run on MNIST, the saved gate matrix, and the `csg` routes'
//! forward against the LeNet layers applied by hand.
mod common;

use advdet::data::{DatasetName, Split};
use advdet::models::{checkpoint, csg, Arch, Model};
use advdet::routes::{self, Pass, Resources, RouteKind};
use advdet::train::{self, TrainConfig, Training};
use common::TestResult;
use tch::{Device, Kind, Tensor};

fn rows(t: &Tensor) -> Vec<Vec<f64>> {
    Vec::<Vec<f64>>::try_from(t.to_kind(Kind::Double)).unwrap_or_default()
}

#[test]
fn after_a_gate_step_every_row_peaks_at_one_or_is_zero() -> TestResult {
    let mut g = Tensor::from_slice(&[
        0.2f32, 0.4, 0.1, // max 0.4 -> 0.5, 1, 0.25
        3.0, -1.0, 1.5, // max 3 -> 1, 0 (clamped), 0.5
        0.0, 0.0, 0.0, // zero row stays zero
        -0.5, -0.2, -0.1, // no positive entry: zero
    ])
    .view([4, 3]);
    csg::normalise_(&mut g);
    let want = [[0.5, 1.0, 0.25], [1.0, 0.0, 0.5], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]];
    for (r, w) in rows(&g).iter().zip(want) {
        for (a, b) in r.iter().zip(w) {
            assert!((a - b).abs() < 1e-7, "{r:?} vs {w:?}");
        }
    }
    // on any matrix: entries in [0, 1], each row's maximum 1 or the row all zero
    tch::manual_seed(3);
    let mut g = Tensor::randn([50, 10], (Kind::Float, Device::Cpu)) * 2.0;
    csg::normalise_(&mut g);
    for r in rows(&g) {
        assert!(r.iter().all(|x| (0.0..=1.0).contains(x)));
        let max = r.iter().cloned().fold(0.0, f64::max);
        assert!(max == 1.0 || r.iter().all(|&x| x == 0.0), "{r:?}");
    }
    Ok(())
}

#[test]
fn the_sparsity_term_is_zero_within_the_budget_and_linear_above_it() -> TestResult {
    // 50 x 10 = 500 entries: a budget of 0.2 * 500 = 100
    let within = Tensor::full([50, 10], 0.19, (Kind::Float, Device::Cpu));
    assert_eq!(f64::try_from(csg::sparsity_loss(&within))?, 0.0);
    let at_init = Tensor::full([50, 10], csg::INIT, (Kind::Float, Device::Cpu));
    let want = 1e-3 * (250.0 - 100.0);
    assert!((f64::try_from(csg::sparsity_loss(&at_init))? - want).abs() < 1e-6);
    Ok(())
}

#[test]
fn the_schedule_warms_up_then_gates_every_third_epoch() -> TestResult {
    let t = Training::csg_for(9);
    assert_eq!(t, Training::Csg { warmup: 3, every: 3, gate_lr: 0.01 });
    assert_eq!((0..9).filter(|&e| t.gated(e)).collect::<Vec<_>>(), [5, 8]);
    let resnet = Training::csg_for(30);
    assert_eq!(resnet, Training::Csg { warmup: 9, every: 3, gate_lr: 0.01 });
    assert_eq!((0..30).filter(|&e| resnet.gated(e)).collect::<Vec<_>>(), [11, 14, 17, 20, 23, 26, 29]);
    // every length ends on a gated epoch
    for n in 1..40 {
        let t = Training::csg_for(n);
        assert!(t.gated(n - 1) && t.validate(n).is_ok(), "{n} epochs: {t:?}");
    }
    assert!(!(0..9).any(|e| Training::Standard.gated(e)));
    let never = Training::Csg { warmup: 5, every: 3, gate_lr: 0.01 };
    let e = never.validate(7).expect_err("first gated epoch 8 of 7").to_string();
    assert!(e.contains("never train"), "{e}");
    assert!(Training::Csg { warmup: 0, every: 0, gate_lr: 0.01 }.validate(9).is_err());
    // standard training keeps its serialisation, so the models of the cache keep their keys
    let cfg = TrainConfig::default_for(DatasetName::Mnist, Arch::Lenet);
    assert!(!serde_json::to_string(&cfg)?.contains("training"));
    let csg = TrainConfig { training: t, ..cfg.clone() };
    assert_ne!(csg.cache_key("d", Device::Cpu), cfg.cache_key("d", Device::Cpu));
    Ok(())
}

/// LeNet trained for 3 epochs on 1,280 MNIST images, the third gated.
fn short_csg_model() -> Result<(Model, TrainConfig), advdet::Error> {
    let ds = advdet::data::load(DatasetName::Mnist, None, Split::Train)?.limit(1280);
    let mut cfg = TrainConfig::default_for(DatasetName::Mnist, Arch::Lenet);
    cfg.epochs = 3;
    cfg.training = Training::Csg { warmup: 1, every: 2, gate_lr: 0.01 };
    let (model, _) = train::train(&cfg, &ds, Device::Cpu)?;
    Ok((model, cfg))
}

#[test]
fn csg_training_learns_a_gate_matrix_saved_beside_the_weights() -> TestResult {
    let _rng = common::global_rng();
    let (model, _) = short_csg_model()?;
    let g = model.csg.as_ref().ok_or("no gates")?;
    assert_eq!(g.size(), [50, 10], "LeNet's last conv layer (conv2) has 50 channels");
    let r = rows(g);
    assert!(r.iter().flatten().all(|x| (0.0..=1.0).contains(x)));
    assert!(r.iter().all(|row| row.iter().cloned().fold(0.0, f64::max) == 1.0 || row.iter().all(|&x| x == 0.0)));
    assert!(r.iter().flatten().any(|&x| x != 0.5 && x != 1.0), "the gated epoch moved the gates");
    let spec = csg::specificity(g)?;
    assert!(spec.mean_max_share > 0.1 && spec.mean_max_share <= 1.0, "{spec:?}");
    // saved and loaded with the weights; a csg sidecar without its gate matrix is an error that names the file
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("m.safetensors");
    checkpoint::save(&model, &path, None)?;
    assert!(csg::gates_path(&path).is_file());
    let (back, _) = checkpoint::load(&path, Some(Arch::Lenet), Device::Cpu)?;
    assert!(back.csg.as_ref().ok_or("gates not loaded")?.equal(g));
    std::fs::write(dir.path().join("m.json"), {
        let meta = serde_json::json!({"arch": "lenet", "dataset": "mnist", "seed": 0, "epochs": 3, "batch_size": 64,
            "lr": 0.001, "test_accuracy": 0.9, "advdet_version": "x", "data_hash": "d",
            "training": {"kind": "csg", "warmup": 1, "every": 2, "gate_lr": 0.01}});
        meta.to_string()
    })?;
    std::fs::remove_file(csg::gates_path(&path))?;
    let e = checkpoint::load(&path, None, Device::Cpu).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("m.csg.safetensors") && e.contains("class-specific gates"), "{e}");
    Ok(())
}

#[test]
fn the_csg_routes_gate_conv2_by_the_predicted_class_as_by_hand() -> TestResult {
    let _rng = common::global_rng();
    tch::manual_seed(7);
    let mut model = Model::new(Arch::Lenet, Device::Cpu);
    let g = (Tensor::rand([50, 10], (Kind::Float, Device::Cpu)) * 1.2).clamp(0.0, 1.0);
    model.csg = Some(g.shallow_clone());
    let xs = advdet::data::load(DatasetName::Mnist, None, Split::Test)?.limit(8).images;
    let _guard = tch::no_grad_guard();
    let full = Pass::run(&model, &xs, None);
    let pred = full.logits.argmax(-1, false);
    // LeNet by hand: conv1, relu, pool, conv2, relu, x G[:, pred] per channel, pool, fc1, relu, fc2
    let v = model.vs.variables();
    let by_hand = |gate: &Tensor| {
        let h = xs.conv2d(&v["conv1.weight"], Some(&v["conv1.bias"]), [1, 1], [0, 0], [1, 1], 1).relu();
        let h = h.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
        let h = h.conv2d(&v["conv2.weight"], Some(&v["conv2.bias"]), [1, 1], [0, 0], [1, 1], 1).relu();
        let h = (h * gate.index_select(1, &pred).transpose(0, 1).view([8, 50, 1, 1])).max_pool2d(
            [2, 2],
            [2, 2],
            [0, 0],
            [1, 1],
            false,
        );
        let h = h.flatten(1, -1).linear(&v["fc1.weight"], Some(&v["fc1.bias"])).relu();
        h.linear(&v["fc2.weight"], Some(&v["fc2.bias"]))
    };
    for (kind, gate) in [(RouteKind::Csg, g.shallow_clone()), (RouteKind::CsgBinary, g.gt(0.5).to_kind(Kind::Float))] {
        let route = routes::build(kind, &model, Resources::default())?;
        let pass = route.pass(&model, &xs, &full)?.ok_or("no pass")?;
        let diff = f64::try_from((&pass.logits - by_hand(&gate)).abs().max())?;
        assert!(diff < 1e-4, "{kind}: {diff}");
    }
    // a model trained without gates cannot run them
    let plain = Model::new(Arch::Lenet, Device::Cpu);
    let e = routes::build(RouteKind::Csg, &plain, Resources::default()).err().map(|e| e.to_string());
    assert!(e.unwrap_or_default().contains("training = \"csg\""));
    Ok(())
}
