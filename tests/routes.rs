//! The control routes beside the class subnetwork (Wang, Hu, Su, arXiv 1910.02673): each mask is the one its
//! definition says, on the real LeNet and MNIST images.
mod common;

use advdet::data::{self, DatasetName, Split};
use advdet::routes::{self, random_mask, Pass, Resources, RouteKind};
use advdet::subnet::Subnets;
use common::{load_lenet_mnist, TestResult};
use tch::{Device, Kind, Tensor};

/// Class masks with a different number of units kept per class and layer (every layer keeps at least one).
fn masks(model: &advdet::models::Model) -> Subnets {
    let layout = model.gate_layout().clone();
    let units = layout.units();
    let rows: Vec<f32> =
        (0..10i64).flat_map(|c| (0..units).map(move |u| f32::from((u * 7 + c * 13) % 10 < 2 + c % 5))).collect();
    let m = Tensor::from_slice(&rows).view([10, units]);
    Subnets { layout, gates: m.shallow_clone(), masks: m }
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    Vec::<Vec<f32>>::try_from(t.to_device(Device::Cpu).to_kind(Kind::Float)).unwrap_or_default()
}

/// Per image, the gates a route applied; and the full model's logits.
type Applied = (Vec<Vec<f32>>, Tensor);

/// The gates each route applied to the first 64 test images, and the full model's logits.
fn gates_of(kind: RouteKind, s: &Subnets) -> Result<Applied, Box<dyn std::error::Error>> {
    let model = load_lenet_mnist();
    let xs = data::load(DatasetName::Mnist, None, Split::Test)?.limit(64).images;
    let _guard = tch::no_grad_guard();
    let full = Pass::run(&model, &xs, None);
    let route =
        routes::build(kind, &model, Resources { subnets: Some(s), temperature: Some(2.0), ..Default::default() })?;
    let pass = route.pass(&model, &xs, &full)?.ok_or("no pass")?;
    Ok((rows(pass.gates.as_ref().ok_or("no gates")?), full.logits))
}

#[test]
fn random_mask_keeps_each_classes_count_per_layer_elsewhere() -> TestResult {
    let model = load_lenet_mnist();
    let s = masks(&model);
    let drawn = random_mask::random_masks(&s, random_mask::SEED)?;
    assert_eq!(rows(&drawn), rows(&random_mask::random_masks(&s, random_mask::SEED)?), "seeded");
    let (own, random) = (rows(&s.masks), rows(&drawn));
    for c in 0..10 {
        for (off, w) in s.layout.spans() {
            let span = off as usize..(off + w) as usize;
            let kept = |r: &[f32]| r[span.clone()].iter().filter(|&&m| m == 1.0).count();
            assert_eq!(kept(&random[c]), kept(&own[c]), "class {c}, layer at {off}");
            assert!(random[c][span.clone()].iter().all(|&m| m == 0.0 || m == 1.0));
        }
        assert_ne!(random[c], own[c], "class {c}: the random mask is the class mask");
    }
    // the route applies the random mask of each image's predicted class
    let (gates, logits) = gates_of(RouteKind::RandomMask, &s)?;
    let pred = Vec::<i64>::try_from(logits.argmax(-1, false))?;
    for (g, p) in gates.iter().zip(&pred) {
        assert_eq!(g, &random[*p as usize]);
    }
    Ok(())
}

#[test]
fn union_mask_is_every_class_masks_union_for_every_image() -> TestResult {
    let model = load_lenet_mnist();
    let s = masks(&model);
    let own = rows(&s.masks);
    let union: Vec<f32> = (0..own[0].len()).map(|u| if own.iter().any(|r| r[u] == 1.0) { 1.0 } else { 0.0 }).collect();
    assert!(union.iter().filter(|&&m| m == 1.0).count() > own[9].iter().filter(|&&m| m == 1.0).count());
    let (gates, _) = gates_of(RouteKind::UnionMask, &s)?;
    assert_eq!(gates.len(), 64);
    assert!(gates.iter().all(|g| *g == union));
    Ok(())
}

#[test]
fn wrong_class_takes_the_second_most_likely_classes_subnetwork() -> TestResult {
    let model = load_lenet_mnist();
    let s = masks(&model);
    let own = rows(&s.masks);
    let (gates, logits) = gates_of(RouteKind::WrongClass, &s)?;
    let top2 = Vec::<Vec<i64>>::try_from(logits.topk(2, -1, true, true).1)?;
    for (g, t) in gates.iter().zip(&top2) {
        assert_ne!(t[0], t[1]);
        assert_eq!(g, &own[t[1] as usize]);
    }
    Ok(())
}

#[test]
fn control_routes_parse_and_say_what_they_miss() {
    for kind in RouteKind::ALL {
        assert_eq!(kind.as_str().parse::<RouteKind>().ok(), Some(kind));
    }
    let e = "random_mask".parse::<RouteKind>().err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("random-mask, union-mask, wrong-class"), "{e}");
    let model = load_lenet_mnist();
    for kind in [RouteKind::RandomMask, RouteKind::UnionMask, RouteKind::WrongClass] {
        // (the temperature control needs no subnetworks to run, only its fitted temperature)
        let e = routes::build(kind, &model, Resources::default()).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains(&format!("the {kind} mode needs the class subnetworks")), "{e}");
    }
}

#[test]
fn the_temperature_control_matches_the_subnetworks_confidence_and_scales_every_forward() -> TestResult {
    let model = load_lenet_mnist();
    let s = masks(&model);
    let fit = data::load(DatasetName::Mnist, None, Split::Train)?.range(59_000, 60_000).images;
    let t = routes::temperature::fit(&model, &s, &fit, 256)?;
    let _guard = tch::no_grad_guard();
    let full = Pass::run(&model, &fit, None);
    let gates = s.gates_for(&full.logits.argmax(-1, false));
    let sub = Pass::run(&model, &fit, Some(gates));
    let conf = |l: &Tensor| f64::try_from(l.softmax(-1, Kind::Double).amax([-1].as_slice(), false).mean(Kind::Double));
    let (target, tempered) = (conf(&sub.logits)?, conf(&(full.logits.to_kind(Kind::Double) / t))?);
    assert!((tempered - target).abs() < 1e-6, "T {t}: {tempered} vs the subnetworks' {target}");
    // the route's pass and its forward on other inputs are the full model's logits over T
    let route =
        routes::build(RouteKind::Temperature, &model, Resources { temperature: Some(t), ..Default::default() })?;
    let xs = fit.narrow(0, 0, 32);
    let p = route.pass(&model, &xs, &Pass::run(&model, &xs, None))?.ok_or("no pass")?;
    let plain = model.forward_eval(&xs, None).1;
    assert_eq!(rows(&p.logits), rows(&(&plain / t)));
    assert_eq!(rows(&p.forward(&model, &xs).1), rows(&(&plain / t)));
    let e = routes::build(RouteKind::Temperature, &model, Resources::default()).err().map(|e| e.to_string());
    assert!(e.is_some_and(|e| e.contains("needs a temperature fitted")));
    Ok(())
}
