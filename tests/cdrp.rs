//! Critical data routing paths (CDRP: Wang, Su, Zhang, Hu, CVPR 2018) on the real LeNet: the paths' bounds, their
//! prediction, batched learning against one image at a time; and the path-class distance detector by hand.
mod common;

use advdet::data::{self, DatasetName, Split};
use advdet::detectors::path_dist::{cosine_distance, PathClassDist};
use advdet::routes::cdrp::{conv_columns, paths, set_paths, CdrpConfig, PathMemo};
use advdet::routes::{self, Pass, Resources, RouteKind};
use common::{load_lenet_mnist, TestResult};
use tch::{Kind, Tensor};

#[test]
fn paths_stay_in_bounds_keep_the_prediction_and_learn_per_image() -> TestResult {
    let model = load_lenet_mnist();
    let xs = data::load(DatasetName::Mnist, None, Split::Test)?.limit(24).images;
    let cfg = CdrpConfig::default();
    let p = paths(&model, &xs, &cfg)?;
    assert_eq!(p.size(), [24, model.gate_layout().units()]);
    let conv = conv_columns(&model);
    let v = Vec::<Vec<f32>>::try_from(&p)?;
    let c = Vec::<f32>::try_from(conv.view([-1]))?;
    for row in &v {
        for (g, is_conv) in row.iter().zip(&c) {
            assert!((0.0..=5.0).contains(g), "gate {g} outside [0, 5]");
            if *is_conv == 0.0 {
                assert_eq!(*g, 1.0, "fully connected units keep gate 1");
            }
        }
    }
    // the paths prune: the L1 term pulls most conv gates below 1
    let conv_gates: Vec<f32> =
        v.iter().flat_map(|r| r.iter().zip(&c).filter(|(_, k)| **k == 1.0).map(|(g, _)| *g)).collect();
    let below = conv_gates.iter().filter(|&&g| g < 1.0).count() as f64 / conv_gates.len() as f64;
    assert!(below > 0.5, "only {below} of the conv gates fell below 1");
    // the route's pass through the kept path predicts what the full model predicts, for every image
    let _guard = tch::no_grad_guard();
    let full = Pass::run(&model, &xs, None);
    let route = routes::build(RouteKind::Cdrp, &model, Resources::default())?;
    let pass = route.pass(&model, &xs, &full)?.ok_or("no pass")?;
    assert!(pass.logits.argmax(-1, false).equal(&full.logits.argmax(-1, false)));
    assert!(pass.gates.as_ref().ok_or("no path")?.equal(&p), "the pass's gates are the path");
    // learned as a batch or one image at a time: the same path (each image's loss sees only its own gates)
    for i in [0i64, 7, 23] {
        let one = paths(&model, &xs.narrow(0, i, 1), &cfg)?;
        let diff = f64::try_from((&one - p.narrow(0, i, 1)).abs().max())?;
        assert!(diff < 1e-4, "image {i}: batched and single paths differ by {diff}");
    }
    Ok(())
}

#[test]
fn the_route_reads_an_image_sets_learned_paths_and_learns_what_it_has_not() -> TestResult {
    let model = load_lenet_mnist();
    let xs = data::load(DatasetName::Mnist, None, Split::Test)?.limit(12).images;
    let cfg = CdrpConfig::default();
    // the set's paths in its own batches (one here: 12 < PATH_BATCH) are the batch's paths
    let set = set_paths(&model, &xs, &cfg)?;
    assert!(set.equal(&paths(&model, &xs, &cfg)?));
    let memo = PathMemo::default();
    memo.replace(&[(&xs, &set)])?;
    assert_eq!(memo.len(), 12);
    let route = routes::build(RouteKind::Cdrp, &model, Resources { cdrp_paths: Some(&memo), ..Default::default() })?;
    let _guard = tch::no_grad_guard();
    let part = xs.narrow(0, 3, 5);
    let full = Pass::run(&model, &part, None);
    let pass = route.pass(&model, &part, &full)?.ok_or("no pass")?;
    assert!(pass.gates.ok_or("no path")?.equal(&set.narrow(0, 3, 5)), "a sub-batch reads the set's rows");
    // images the memo does not hold (perturbed ones): learned in the pass
    let moved = (&part + 0.01).clamp(0.0, 1.0);
    assert!(memo.lookup(&moved).is_none());
    let full = Pass::run(&model, &moved, None);
    let pass = route.pass(&model, &moved, &full)?.ok_or("no pass")?;
    assert!(pass.gates.ok_or("no path")?.equal(&paths(&model, &moved, &cfg)?));
    let e = memo.replace(&[(&xs, &set.narrow(0, 0, 11))]).expect_err("11 paths for 12 images").to_string();
    assert!(e.contains("11 paths for 12 images"), "{e}");
    memo.clear();
    assert!(memo.is_empty() && memo.lookup(&part).is_none());
    Ok(())
}

#[test]
fn path_class_distance_is_the_cosine_distance_to_the_class_mean_path() -> TestResult {
    let a = Tensor::from_slice(&[1.0, 0.0, 3.0, 4.0, 0.0, 0.0]).view([3, 2]).to_kind(Kind::Double);
    let b = Tensor::from_slice(&[1.0, 0.0, 4.0, 3.0, 1.0, 1.0]).view([3, 2]).to_kind(Kind::Double);
    let d = Vec::<f64>::try_from(cosine_distance(&a, &b))?;
    // identical direction 0; (3,4)·(4,3) = 24 over 25: 1 - 0.96; a zero row: 1
    for (got, want) in d.iter().zip([0.0, 0.04, 1.0]) {
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }
    // class means by label over the kept columns
    let mut det = PathClassDist::new(10);
    let paths = Tensor::from_slice(&[1.0, 3.0, 9.0, 3.0, 1.0, 9.0, 0.0, 2.0, 9.0]).view([3, 3]).to_kind(Kind::Double);
    let labels = Tensor::from_slice(&[0i64, 0, 1]);
    let columns = Tensor::from_slice(&[1.0, 1.0, 0.0]).view([1, 3]).to_kind(Kind::Double);
    det.fit_paths(&paths, &labels, 2, &columns)?;
    let means = Vec::<Vec<f64>>::try_from(det.means().ok_or("not fitted")?)?;
    assert_eq!(means, [[2.0, 2.0, 0.0], [0.0, 2.0, 0.0]], "per label, the fully connected column zeroed");
    let e = det.fit_paths(&paths, &labels, 3, &columns).expect_err("class 2 has no path").to_string();
    assert!(e.contains("class 2"), "{e}");
    Ok(())
}
