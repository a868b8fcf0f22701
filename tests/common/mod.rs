//! Shared helpers for the integration tests: where the real data lives and how to run the binary.
#![allow(dead_code)]
use std::path::PathBuf;
use std::process::Command;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Every test process computes in advdet's default reproducible CPU mode, as the binary does, so that the models the
/// tests train in-process are the ones the suites take from the model cache. It runs before main, so before libtorch's
/// first kernel and before any test thread (`cpu::pin` must).
#[ctor::ctor(unsafe)]
fn pin_cpu_numerics() {
    advdet::cpu::pin(advdet::cpu::CpuMode::Reproducible).expect("the reproducible CPU mode can be set");
}

/// The MNIST folder `make test` fetched into (the default data cache, or $ADVDET_DATA_DIR).
pub fn mnist_dir() -> PathBuf {
    advdet::data::default_data_dir(advdet::data::DatasetName::Mnist)
}

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures")
}

pub fn advdet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_advdet"))
}

/// Runs the binary and returns (exit code, stdout, stderr).
pub fn run_advdet(args: &[&str]) -> (i32, String, String) {
    let out = advdet().args(args).output().expect("the advdet binary starts");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// libtorch's global random generator (weight initialisation, dropout, `manual_seed`) is one per process, and the tests
/// of a file run on parallel threads: a test that seeds it and expects a fixed stream holds this lock, and so does every
/// test that draws from it, or a neighbour's draws interleave with its own.
pub fn global_rng() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The default LeNet trained on full MNIST (6 epochs, seed 0), trained once and then taken from the model cache,
/// the same checkpoint the suites use.
pub fn lenet_mnist() -> PathBuf {
    let _guard = global_rng();
    let cfg = advdet::train::TrainConfig::default_for(advdet::data::DatasetName::Mnist, advdet::models::Arch::Lenet);
    advdet::train::cached_model(&cfg, None, tch::Device::Cpu).expect("the default LeNet trains on MNIST")
}

/// A LeNet trained for one epoch on full MNIST with `seed`, from the model cache (trained on first use): a cheap,
/// independently trained second network for the `second-model` control (the suite tests' `epochs = 1` models).
pub fn load_lenet_mnist_one_epoch(seed: u64) -> advdet::models::Model {
    let _guard = global_rng();
    let mut cfg =
        advdet::train::TrainConfig::default_for(advdet::data::DatasetName::Mnist, advdet::models::Arch::Lenet);
    cfg.epochs = 1;
    cfg.seed = seed;
    let path = advdet::train::cached_model(&cfg, None, tch::Device::Cpu).expect("a one-epoch LeNet trains on MNIST");
    let (mut model, _) = advdet::models::checkpoint::load(&path, None, tch::Device::Cpu).expect("loads");
    model.freeze();
    model
}

/// Loads `lenet_mnist()` on the CPU with frozen parameters.
pub fn load_lenet_mnist() -> advdet::models::Model {
    let (mut model, _) = advdet::models::checkpoint::load(&lenet_mnist(), None, tch::Device::Cpu).expect("loads");
    model.freeze();
    model
}

/// Real (if crude) subnetworks: conv layers whole, a seeded half of fc1's units per class.
pub fn half_fc_subnets(model: &advdet::models::Model) -> advdet::subnet::Subnets {
    let layout = model.gate_layout().clone();
    let units = layout.units() as usize;
    let fc_off = units - 500;
    let mut masks = vec![1f32; 10 * units];
    for c in 0..10 {
        let mut rng = advdet::rng::Rng::stream(7, c as u64);
        for u in 0..500 {
            masks[c * units + fc_off + u] = (rng.below(2) as f32).min(1.0);
        }
    }
    let masks = tch::Tensor::from_slice(&masks).view([10, units as i64]);
    advdet::subnet::Subnets { layout, gates: masks.copy(), masks }
}
