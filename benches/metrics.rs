//! Criterion benches of the ROC metrics (issue 8): auroc alone and all six metrics on 1e4, 1e5 and 1e6 scores, and
//! the bootstrap, on Gaussian scores of a middling detector as in the evaluation of Wang, Hu, Su (arXiv 1910.02673).
use advdet::metrics;
use advdet::rng::Rng;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;

/// `n` scores, a third adversarial and shifted by one standard deviation (Box-Muller on the crate's seeded generator).
fn scores(n: usize, seed: u64) -> (Vec<bool>, Vec<f64>) {
    let mut rng = Rng::new(seed);
    let mut unit = move || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    (0..n)
        .map(|i| {
            let adv = i % 3 == 0;
            let z = (-2.0 * (1.0 - unit()).ln()).sqrt() * (std::f64::consts::TAU * unit()).cos();
            (adv, z + f64::from(u8::from(adv)))
        })
        .unzip()
}

fn sizes(c: &mut Criterion) {
    for (name, all) in [("auroc", false), ("all_metrics", true)] {
        let mut group = c.benchmark_group(name);
        group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
        for n in [10_000, 100_000, 1_000_000] {
            let (labels, s) = scores(n, 1);
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
                if all {
                    b.iter(|| metrics::compute(black_box(&labels), black_box(&s)).map(|m| m.auroc).ok());
                } else {
                    b.iter(|| metrics::auroc(black_box(&labels), black_box(&s)).ok());
                }
            });
        }
        group.finish();
    }
}

fn bootstrap(c: &mut Criterion) {
    let mut group = c.benchmark_group("bootstrap_1000_resamples");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(5));
    for n in [1_000, 10_000, 100_000] {
        let (labels, s) = scores(n, 2);
        group.throughput(Throughput::Elements(n as u64 * 1000));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| metrics::bootstrap(black_box(&labels), black_box(&s), 1000, 7).map(|c| c.lo.auroc).ok())
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // no plots: criterion's need system fonts, and the numbers are what these benches are for
    config = Criterion::default().without_plots();
    targets = sizes, bootstrap
}
criterion_main!(benches);
