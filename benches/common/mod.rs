//! Shared set-up of the model benches: the device (`ADVDET_BENCH_DEVICE`, default cpu), the models and real input
//! batches, and a timer that synchronises CUDA before reading the clock.
#![allow(dead_code)]
use advdet::data::{self, DatasetName, Split};
use advdet::device::DeviceChoice;
use advdet::models::{checkpoint, Arch, Model};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tch::{Device, Tensor};

/// `ADVDET_BENCH_DEVICE` = cpu (default), cuda or auto. The CPU mode is set first, as advdet's commands do:
/// `ADVDET_BENCH_CPU_MODE` = native (the default: libtorch's own kernels, as the peers in `make compare` run) or
/// reproducible.
pub fn device() -> Device {
    let mode: advdet::cpu::CpuMode = std::env::var("ADVDET_BENCH_CPU_MODE")
        .unwrap_or_else(|_| "native".into())
        .parse()
        .expect("ADVDET_BENCH_CPU_MODE");
    advdet::cpu::pin(mode).expect("the CPU mode can be set");
    let choice: DeviceChoice =
        std::env::var("ADVDET_BENCH_DEVICE").unwrap_or_else(|_| "cpu".into()).parse().expect("ADVDET_BENCH_DEVICE");
    choice.resolve().expect("ADVDET_BENCH_DEVICE names a device libtorch sees")
}

pub fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Times `iters` calls of `f`, synchronising CUDA before each clock read (for criterion's `iter_custom`).
pub fn timed(device: Device, iters: u64, mut f: impl FnMut()) -> Duration {
    sync(device);
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    sync(device);
    start.elapsed()
}

/// The default LeNet trained on MNIST (from the model cache, trained there on first use), frozen.
pub fn lenet(device: Device) -> Model {
    let cfg = advdet::train::TrainConfig::default_for(DatasetName::Mnist, Arch::Lenet);
    let path: PathBuf =
        advdet::train::cached_model(&cfg, None, Device::Cpu).expect("the default LeNet (make data first)");
    let (mut model, _) = checkpoint::load(&path, None, device).expect("loads");
    model.freeze();
    model
}

/// A freshly initialised ResNet-20 (seed 0), frozen: its cost does not depend on what it learned.
pub fn resnet20(device: Device) -> Model {
    tch::manual_seed(0);
    let mut model = Model::new(Arch::Resnet20, device);
    model.freeze();
    model
}

/// The first `n` MNIST test images and labels on `device`.
pub fn mnist(n: usize, device: Device) -> (Tensor, Tensor) {
    let ds = data::load(DatasetName::Mnist, None, Split::Test).expect("MNIST in the data cache (make data)").limit(n);
    (ds.images.to_device(device), ds.labels.to_device(device))
}

/// `n` real CIFAR-10 images: the 20 of the committed fixture, repeated.
pub fn cifar(n: usize, device: Device) -> (Tensor, Tensor) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cifar10");
    let ds = data::dataset::Dataset::load(DatasetName::Cifar10, &dir, Split::Test).expect("the CIFAR-10 fixture");
    let reps = (n as i64 + 19) / 20;
    let xs = ds.images.repeat([reps, 1, 1, 1]).narrow(0, 0, n as i64);
    let ys = ds.labels.repeat([reps]).narrow(0, 0, n as i64);
    (xs.to_device(device), ys.to_device(device))
}

/// The model and a batch of `n` real images for `arch` (LeNet on MNIST, ResNet-20 on CIFAR-10).
pub fn setup(arch: Arch, n: usize, device: Device) -> (Model, Tensor, Tensor) {
    match arch {
        Arch::Lenet => {
            let (xs, ys) = mnist(n, device);
            (lenet(device), xs, ys)
        }
        _ => {
            let (xs, ys) = cifar(n, device);
            (resnet20(device), xs, ys)
        }
    }
}
