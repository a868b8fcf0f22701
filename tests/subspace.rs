//! Class-specific filter subsets (Badola et al., arXiv 2112.07719): the subset choice by hand on a small matrix, the
//! decomposed head against the model's own head and against a hand-computed sum, and the `subspace` route's forward
//! on the real LeNet.
mod common;

use advdet::data::{self, DatasetName, Split};
use advdet::eval::fit_split;
use advdet::routes::subspace::{class_subsets, top_k, Subspaces};
use advdet::routes::{self, Pass, Resources, RouteKind};
use common::{load_lenet_mnist, TestResult};
use tch::{Device, Kind, Tensor};

#[test]
fn top_k_takes_the_largest_values_ties_to_the_lower_index() {
    assert_eq!(top_k(&[0.1, 3.0, 2.0, 3.0, -1.0], 3), [1, 3, 2]);
    assert_eq!(top_k(&[0.0, 0.0, 0.0], 2), [0, 1]);
    assert_eq!(top_k(&[1.0, 2.0], 2), [1, 0]);
}

#[test]
fn class_subsets_are_each_classes_most_frequent_top_k_indices() -> TestResult {
    // 5 samples of 6 features, classes 0 (three samples) and 1 (two); k = 2
    #[rustfmt::skip]
    let f: Vec<f32> = vec![
        9.0, 8.0, 0.0, 0.0, 0.0, 0.0, // class 0: top {0, 1}
        9.0, 0.0, 8.0, 0.0, 0.0, 0.0, // class 0: top {0, 2}
        0.0, 0.0, 9.0, 0.0, 0.0, 8.0, // class 0: top {2, 5}
        0.0, 0.0, 0.0, 5.0, 7.0, 0.0, // class 1: top {4, 3}
        0.0, 0.0, 0.0, 0.0, 7.0, 1.0, // class 1: top {4, 5}
    ];
    let labels = [0i64, 0, 0, 1, 1];
    // class 0 counts: index 0 twice, 2 twice, 1 once, 5 once -> {0, 2}; class 1: 4 twice, then 3 and 5 once -> 3
    let s = class_subsets(&f, 6, &labels, 2, 2)?;
    assert_eq!(s, vec![vec![0, 2], vec![3, 4]]);
    // every subset has k distinct indices, filled up with never-named indices when a class names fewer
    let s = class_subsets(&f, 6, &labels, 2, 5)?;
    for m in &s {
        assert_eq!(m.len(), 5);
        assert!(m.windows(2).all(|w| w[0] < w[1]), "ascending and distinct: {m:?}");
    }
    // k = width takes every feature
    assert_eq!(class_subsets(&f, 6, &labels, 2, 6)?[1], [0, 1, 2, 3, 4, 5]);
    // bad k and a class with no sample are errors that say so
    for k in [0, 7] {
        let e = class_subsets(&f, 6, &labels, 2, k).expect_err("bad k").to_string();
        assert!(e.contains("subspace.k") && e.contains("6 penultimate features"), "{e}");
    }
    let e = class_subsets(&f, 6, &labels, 3, 2).expect_err("class 2 has no sample").to_string();
    assert!(e.contains("class 2"), "{e}");
    Ok(())
}

#[test]
fn the_decomposed_head_is_the_full_head_with_every_feature_and_the_hand_sum_otherwise() -> TestResult {
    let model = load_lenet_mnist();
    let xs = data::load(DatasetName::Mnist, None, Split::Test)?.limit(16).images;
    let _guard = tch::no_grad_guard();
    let (features, logits) = model.forward_eval(&xs, None);
    let everything = Subspaces::new(500, vec![(0..500).collect(); 10], 500, Device::Cpu);
    assert!(everything.decomposed_logits(&model, &features).equal(&logits), "S_c = all features is the full head");
    // a subset per class: logit_c = sum over j in S_c of W[c, j] x_j + b_c, summed here in f64
    let members: Vec<Vec<usize>> = (0..10).map(|c| (0..500).filter(|j| (j * 3 + c) % 7 < 2).collect()).collect();
    let s = Subspaces::new(0, members.clone(), 500, Device::Cpu);
    let got = Vec::<Vec<f64>>::try_from(s.decomposed_logits(&model, &features).to_kind(Kind::Double))?;
    let vars = model.vs.variables();
    let w = Vec::<Vec<f64>>::try_from(vars["fc2.weight"].to_kind(Kind::Double))?;
    let b = Vec::<f64>::try_from(vars["fc2.bias"].to_kind(Kind::Double))?;
    let x = Vec::<Vec<f64>>::try_from(features.to_kind(Kind::Double))?;
    for (i, row) in got.iter().enumerate() {
        for (c, m) in members.iter().enumerate() {
            let want: f64 = m.iter().map(|&j| w[c][j] * x[i][j]).sum::<f64>() + b[c];
            assert!((row[c] - want).abs() < 1e-4 * (1.0 + want.abs()), "image {i} class {c}: {} vs {want}", row[c]);
        }
    }
    Ok(())
}

#[test]
fn the_subspace_route_masks_the_full_models_features_by_the_predicted_class() -> TestResult {
    let model = load_lenet_mnist();
    let train = data::load(DatasetName::Mnist, None, Split::Train)?;
    let fit = fit_split(&train, 1000);
    let s = Subspaces::fit(&model, &fit.images, &fit.labels, 40, 256)?;
    assert_eq!(s.members.len(), 10);
    assert!(s.members.iter().all(|m| m.len() == 40 && m.windows(2).all(|w| w[0] < w[1])));
    assert_eq!(Vec::<f32>::try_from(s.masks.sum_dim_intlist([1].as_slice(), false, Kind::Float))?, vec![40.0; 10]);
    // the classes do not all pick the same features
    assert!(s.members.iter().any(|m| m != &s.members[0]));
    let xs = data::load(DatasetName::Mnist, None, Split::Test)?.limit(64).images;
    let _guard = tch::no_grad_guard();
    let full = Pass::run(&model, &xs, None);
    let route = routes::build(RouteKind::Subspace, &model, Resources { subspaces: Some(&s), ..Default::default() })?;
    let pass = route.pass(&model, &xs, &full)?.ok_or("no pass")?;
    let pred = full.logits.argmax(-1, false);
    let mask = s.masks.index_select(0, &pred);
    assert!(pass.features.equal(&(&full.features * &mask)), "the predicted class's subset of the full features");
    assert!(pass.logits.equal(&model.head(&pass.features)), "the model's own last layer on them");
    // a detector re-running the route's network on other inputs gets the same masked forward
    let (f2, l2) = pass.forward(&model, &xs);
    assert!(f2.equal(&pass.features) && l2.equal(&pass.logits));
    // steering: pass_as with a fixed class uses that class's subset
    let ones = Tensor::ones([64], (Kind::Int64, Device::Cpu));
    let as1 = route.pass_as(&model, &xs, &full, &ones)?.ok_or("no pass")?;
    assert!(as1.features.equal(&(&full.features * s.masks.get(1))));
    // the decomposed head still classifies digits (it reads 8% of the features; 0.98 on 2000 test images)
    let test = data::load(DatasetName::Mnist, None, Split::Test)?.limit(500);
    let (acc, full) = s.decomposed_accuracy(&model, &test.images, &test.labels, 250)?;
    assert!(acc > 0.9 && full > 0.97, "decomposed head accuracy {acc}, full {full}");
    Ok(())
}

#[test]
fn the_subspace_route_says_what_it_misses() {
    let model = load_lenet_mnist();
    let e = routes::build(RouteKind::Subspace, &model, Resources::default()).err().map(|e| e.to_string());
    assert!(e.unwrap_or_default().contains("filter subsets"));
    let narrow = Subspaces::new(5, vec![vec![0, 1, 2, 3, 4]; 10], 64, Device::Cpu);
    let e = routes::build(RouteKind::Subspace, &model, Resources { subspaces: Some(&narrow), ..Default::default() })
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("64 features") && e.contains("lenet"), "{e}");
}
