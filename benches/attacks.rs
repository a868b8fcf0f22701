//! Criterion benches of the attacks (issue 8): FGSM, PGD-Linf at 10 and 40 steps and CW-L2 (10 Adam steps, one search
//! step) on LeNet (MNIST, the default trained model) and ResNet-20 (CIFAR-10 fixture images, fresh weights) per batch
//! size, next to their lower bound: one forward+backward pass of the model for the input gradient. Throughput is
//! images/s; `ADVDET_BENCH_DEVICE=cuda` runs them on the GPU.
//!
//!     cargo bench --bench attacks [-- FILTER]
mod common;

use advdet::attacks::{Attack, CwL2, Fgsm, Pgd};
use advdet::models::Arch;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use std::time::Duration;
use tch::Tensor;

fn cases(arch: Arch) -> (&'static str, Vec<usize>, f64) {
    match arch {
        Arch::Lenet => ("lenet", vec![32, 256, 1024], 0.3),
        _ => ("resnet20", vec![8, 32], 8.0 / 255.0),
    }
}

fn attacks(eps: f64) -> Vec<(&'static str, Box<dyn Attack>)> {
    let pgd = |steps| Pgd { eps, alpha: eps / 4.0, steps, ..Pgd::linf() };
    vec![
        ("fgsm", Box::new(Fgsm { eps, ..Fgsm::default() })),
        ("pgd-linf-10", Box::new(pgd(10))),
        ("pgd-linf-40", Box::new(pgd(40))),
        // early abort off, so every batch makes all 10 Adam steps (with it on, 10 steps check every step and stop at the first)
        ("cw-l2-10x1", Box::new(CwL2 { steps: 10, binary_steps: 1, abort_early: false, ..CwL2::default() })),
    ]
}

/// One forward+backward pass for the input gradient of the mean cross-entropy: the bound of every gradient step.
fn forward_backward(model: &advdet::models::Model, xs: &Tensor, ys: &Tensor) {
    let x = xs.detach().set_requires_grad(true);
    let loss = model.net.forward(&x, None, false).cross_entropy_for_logits(ys);
    let _ = Tensor::run_backward(&[&loss], &[&x], false, false);
}

fn bench(c: &mut Criterion) {
    let device = common::device();
    for arch in [Arch::Lenet, Arch::Resnet20] {
        let (name, batches, eps) = cases(arch);
        let max = *batches.iter().max().unwrap();
        let (model, all_x, all_y) = common::setup(arch, max, device);
        let mut group = c.benchmark_group(format!("attack/{name}"));
        group.sampling_mode(SamplingMode::Flat).sample_size(10).warm_up_time(Duration::from_millis(300));
        group.measurement_time(Duration::from_secs(2));
        for &n in &batches {
            let (xs, ys) = (all_x.narrow(0, 0, n as i64), all_y.narrow(0, 0, n as i64));
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::new("forward-backward", n), &n, |b, _| {
                b.iter_custom(|iters| common::timed(device, iters, || forward_backward(&model, &xs, &ys)))
            });
            for (label, attack) in attacks(eps) {
                group.bench_with_input(BenchmarkId::new(label, n), &n, |b, _| {
                    b.iter_custom(|iters| {
                        common::timed(device, iters, || {
                            drop(attack.perturb(&model, &xs, &ys).expect("the attack runs"));
                        })
                    })
                });
            }
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    // no plots: criterion's need system fonts, and the numbers are what these benches are for
    config = Criterion::default().without_plots();
    targets = bench
}
criterion_main!(benches);
