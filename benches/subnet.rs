//! Criterion benches of the class-specific subnetworks (issue 8), LeNet on MNIST (the default trained model and its
//! extracted subnetworks) and ResNet-20 on CIFAR-10 fixture images (fresh weights, random masks keeping 20% of the
//! units: the cost of a gated forward does not depend on which units are kept):
//! - inference per batch size: the plain forward, the forward with per-sample gates (each image through the subnet
//!   of a given class), and subnet-mode scoring as the detectors do it (the plain forward for the predicted class,
//!   then the gated forward); no gradient;
//! - the extraction: 20 steps of gate learning with the default settings (240 images per step on MNIST).
//!
//!     cargo bench --bench subnet [-- FILTER]
mod common;

use advdet::data::{self, DatasetName, Split};
use advdet::models::{Arch, Model};
use advdet::subnet::{self, ExtractConfig, Subnets};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use std::time::Duration;
use tch::{Device, Kind, Tensor};

fn lenet_subnets(model: &Model) -> Subnets {
    let train = data::load(DatasetName::Mnist, None, Split::Train).expect("MNIST in the data cache (make data)");
    let cfg = ExtractConfig::default();
    let (gates, _) = subnet::extract::train_gates(model, &train, &cfg).expect("gates");
    let masks = subnet::mask::binarize(&gates, model.gate_layout(), cfg.binarize()).expect("masks");
    Subnets { layout: model.gate_layout().clone(), gates, masks }
}

fn random_subnets(model: &Model, device: Device) -> Subnets {
    tch::manual_seed(1);
    let units = model.gate_layout().units();
    let masks = Tensor::rand([10, units], (Kind::Float, device)).lt(0.2).to_kind(Kind::Float);
    Subnets { layout: model.gate_layout().clone(), gates: masks.copy(), masks }
}

fn inference(c: &mut Criterion) {
    let device = common::device();
    for (arch, name, batches) in [(Arch::Lenet, "lenet", [32, 256, 1024]), (Arch::Resnet20, "resnet20", [8, 32, 128])] {
        let max = batches[2];
        // set-up first (it may train the default LeNet and learns the gates), then no gradients for the inference
        let (model, all_x, _) = common::setup(arch, max, device);
        let subnets = match arch {
            Arch::Lenet => lenet_subnets(&model),
            _ => random_subnets(&model, device),
        };
        let _g = tch::no_grad_guard();
        let mut group = c.benchmark_group(format!("subnet-inference/{name}"));
        group.sample_size(20).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
        for n in batches {
            let xs = all_x.narrow(0, 0, n as i64);
            let pred = model.logits(&xs).argmax(-1, false);
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::new("plain", n), &n, |b, _| {
                b.iter_custom(|iters| common::timed(device, iters, || drop(model.logits(&xs))))
            });
            group.bench_with_input(BenchmarkId::new("gated", n), &n, |b, _| {
                b.iter_custom(|iters| common::timed(device, iters, || drop(subnets.logits(&model, &xs, &pred))))
            });
            group.bench_with_input(BenchmarkId::new("predict-then-gated", n), &n, |b, _| {
                b.iter_custom(|iters| common::timed(device, iters, || drop(subnets.logits_by_prediction(&model, &xs))))
            });
        }
        group.finish();
    }
}

fn extraction(c: &mut Criterion) {
    let device = common::device();
    let model = common::lenet(device);
    let train = data::load(DatasetName::Mnist, None, Split::Train).expect("MNIST in the data cache (make data)");
    let cfg = ExtractConfig { steps: 20, ..ExtractConfig::default() };
    let per_step = cfg.batch_per_class.unwrap_or(cfg.images_per_class) as u64 * 10;
    let mut group = c.benchmark_group("subnet-extraction/lenet");
    group.sampling_mode(SamplingMode::Flat).sample_size(10).measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(per_step * cfg.steps as u64));
    group.bench_function("20-steps", |b| {
        b.iter_custom(|iters| {
            common::timed(device, iters, || {
                drop(subnet::extract::train_gates(&model, &train, &cfg).expect("gates"));
            })
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    // no plots: criterion's need system fonts, and the numbers are what these benches are for
    config = Criterion::default().without_plots();
    targets = inference, extraction
}
criterion_main!(benches);
