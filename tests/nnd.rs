//! The `nnd` route (Li et al., ECCV 2020: per-image gates from architecture-controlling modules) on the default LeNet
//! trained on MNIST: soft gates in [0, 1], hard gates 0/1 on the forward pass and 1 on the fully connected units,
//! training closes gates while keeping the classifier's accuracy, the route refuses to run without its modules, and
//! path-class-dist bound to the route fits the class means of its gates.
mod common;

use advdet::data::{self, DatasetName, Split};
use advdet::detectors::path_dist::{cosine_distance, PathClassDist};
use advdet::detectors::{by_name, DetectorConfig, View};
use advdet::models::{Arch, Model};
use advdet::routes::nnd::{open_share, Nnd, NndConfig};
use advdet::routes::{self, Pass, Resources, RouteKind};
use common::{load_lenet_mnist, TestResult};
use tch::{Device, Kind, Tensor};

#[test]
fn nnd_gates_are_binary_paths_that_close_channels_and_keep_the_accuracy() -> TestResult {
    let model = load_lenet_mnist();
    let train = data::load(DatasetName::Mnist, None, Split::Train)?.range(0, 6000);
    let test = data::load(DatasetName::Mnist, None, Split::Test)?.limit(1000);
    let mut nnd = Nnd::new(&model, NndConfig::default())?;
    let before = open_share(&model, &nnd.gates(&model, &test.images)).mean(Kind::Float).double_value(&[]);
    let losses = nnd.fit(&model, &train.images, &train.labels)?;
    assert_eq!(losses.len(), 1);
    let soft = nnd.soft_gates(&model, &test.images);
    assert!(
        soft.ge(0.0).all().int64_value(&[]) == 1 && soft.le(1.0).all().int64_value(&[]) == 1,
        "soft gates in [0, 1]"
    );
    let hard = nnd.gates(&model, &test.images);
    assert!(hard.eq(0.0).logical_or(&hard.eq(1.0)).all().int64_value(&[]) == 1, "hard gates are 0 or 1");
    // LeNet's fully connected units (the last 500 columns) are not gated
    let fc = hard.narrow(1, 70, 500);
    assert!(fc.eq(1.0).all().int64_value(&[]) == 1, "fully connected units keep gate 1");
    // the route runs the gated network with exactly these gates
    let route = routes::build(RouteKind::Nnd, &model, Resources { nnd: Some(&nnd), ..Default::default() })?;
    let _guard = tch::no_grad_guard();
    let full = Pass::run(&model, &test.images, None);
    let pass = route.pass(&model, &test.images, &full)?.expect("a pass");
    assert!(pass.gates.as_ref().expect("the path").equal(&hard));
    let acc = |logits: &Tensor| {
        logits.argmax(-1, false).eq_tensor(&test.labels).to_kind(Kind::Float).mean(Kind::Float).double_value(&[])
    };
    let after = open_share(&model, &hard).mean(Kind::Float).double_value(&[]);
    let (full_acc, nnd_acc) = (acc(&full.logits), acc(&pass.logits));
    println!(
        "open conv gates {before:.3} -> {after:.3}; accuracy full {full_acc:.4}, nnd {nnd_acc:.4}; loss {losses:?}"
    );
    assert!(before > 0.95, "the modules start open: {before}");
    assert!(after < 0.9, "training closes channels: {after} open");
    assert!(nnd_acc > full_acc - 0.05, "the paths keep the accuracy: {nnd_acc} vs {full_acc}");
    // paths differ between images (input-specific, not one mask)
    let distinct = hard.narrow(1, 0, 70).to_device(Device::Cpu).unique_dim(0, false, false, false).0.size()[0];
    assert!(distinct > 10, "{distinct} distinct paths over 1000 images");
    drop(_guard);
    // path-class-dist bound to this route fits the class means of these gates on the fit images, and scores here only
    let fit = train.range(5000, 6000);
    let mut det = by_name("path-class-dist", &DetectorConfig { fit_size: 1000, ..Default::default() })?;
    assert!(det.fits_per_route() && det.runs_on(RouteKind::Cdrp) && det.runs_on(RouteKind::Nnd));
    det.for_route(RouteKind::Nnd);
    assert!(!det.runs_on(RouteKind::Cdrp) && det.runs_on(RouteKind::Nnd));
    det.fit(&model, &fit, Resources { nnd: Some(&nnd), ..Default::default() })?;
    let mut want = PathClassDist::new(1000);
    want.fit_paths(&nnd.gates(&model, &fit.images), &fit.labels, 10, &advdet::routes::cdrp::conv_columns(&model))?;
    let scores = {
        let _guard = tch::no_grad_guard();
        let v = View { model: &model, xs: &test.images, full: &full, route: &pass };
        det.score(&v)?
    };
    let pred = full.logits.argmax(-1, false);
    let columns = advdet::routes::cdrp::conv_columns(&model).to_kind(Kind::Double);
    let means = want.means().ok_or("not fitted")?;
    let expected = cosine_distance(&(hard.to_kind(Kind::Double) * columns), &means.index_select(0, &pred));
    assert!(scores.allclose(&expected, 1e-12, 1e-12, false), "the nnd route's path distance to its nnd class mean");
    let err = det.fit(&model, &fit, Resources::default()).expect_err("no modules").to_string();
    assert!(err.contains("controlling modules"), "{err}");
    Ok(())
}

#[test]
fn nnd_runs_on_every_conv_architecture() -> TestResult {
    // VGG-small and ResNet-20 (untrained, on random colour images): one module per conv layer, binary gates of the
    // gate layout's width with the fully connected units at 1, a training epoch with a finite loss, and the route's pass
    for arch in [Arch::VggSmall, Arch::Resnet20] {
        let mut model = Model::new(arch, Device::Cpu);
        model.freeze();
        let (c, h, w) = arch.input_shape();
        tch::manual_seed(1);
        let xs = Tensor::rand([64, c, h, w], (Kind::Float, Device::Cpu));
        let ys = Tensor::randint(10, [64], (Kind::Int64, Device::Cpu));
        let mut nnd = Nnd::new(&model, NndConfig { batch_size: 32, ..Default::default() })?;
        let losses = nnd.fit(&model, &xs, &ys)?;
        assert!(losses.len() == 1 && losses[0].is_finite(), "{arch}: {losses:?}");
        let gates = nnd.gates(&model, &xs);
        assert_eq!(gates.size(), [64, model.gate_layout().units()], "{arch}");
        assert!(gates.eq(0.0).logical_or(&gates.eq(1.0)).all().int64_value(&[]) == 1, "{arch}: 0/1 gates");
        let conv = advdet::routes::cdrp::conv_columns(&model).to_kind(Kind::Float);
        let others: Tensor = conv.ones_like() - &conv;
        let fc = (&gates * &others).sum(Kind::Float).double_value(&[]);
        let want = others.sum(Kind::Float).double_value(&[]) * 64.0;
        assert_eq!(fc, want, "{arch}: fully connected units keep gate 1");
        let route = routes::build(RouteKind::Nnd, &model, Resources { nnd: Some(&nnd), ..Default::default() })?;
        let _guard = tch::no_grad_guard();
        let full = Pass::run(&model, &xs, None);
        let pass = route.pass(&model, &xs, &full)?.expect("a pass");
        assert_eq!(pass.logits.size(), [64, 10], "{arch}");
        assert!(pass.gates.as_ref().expect("the path").equal(&gates), "{arch}");
    }
    Ok(())
}

#[test]
fn the_nnd_route_needs_its_modules() -> TestResult {
    let model = load_lenet_mnist();
    let err = routes::build(RouteKind::Nnd, &model, Resources::default()).err().map(|e| e.to_string());
    assert!(err.unwrap_or_default().contains("controlling modules"));
    Ok(())
}
