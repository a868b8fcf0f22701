//! `advdet train` and `advdet eval`.
use super::model_args::ModelArgs;
use advdet::data::{self, DatasetName, Split};
use advdet::device::DeviceChoice;
use advdet::models::{checkpoint, Arch};
use advdet::train::{self, TrainConfig};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct TrainArgs {
    /// mnist, fashion-mnist or cifar10
    #[arg(long, default_value = "mnist")]
    pub dataset: DatasetName,
    /// lenet, vgg-small or resnet20 (default: lenet for MNIST-like data, resnet20 for CIFAR-10)
    #[arg(long)]
    pub arch: Option<Arch>,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// auto, cpu or cuda
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Output weights (.safetensors); a JSON sidecar is written beside it.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run_train(a: TrainArgs) -> Result<i32> {
    let arch = a.arch.unwrap_or_else(|| Arch::default_for(a.dataset));
    let mut cfg = TrainConfig::default_for(a.dataset, arch);
    cfg.epochs = a.epochs.unwrap_or(cfg.epochs);
    cfg.batch_size = a.batch_size.unwrap_or(cfg.batch_size);
    cfg.lr = a.lr.unwrap_or(cfg.lr);
    cfg.seed = a.seed;
    cfg.validate()?;
    let device = a.device.resolve()?;
    let out =
        a.out.unwrap_or_else(|| PathBuf::from(format!("reports/models/{arch}-{}-s{}.safetensors", a.dataset, a.seed)));
    eprintln!(
        "training {arch} on {} for {} epochs (batch {}, lr {}, seed {}) on {}",
        a.dataset,
        cfg.epochs,
        cfg.batch_size,
        cfg.lr,
        cfg.seed,
        advdet::device::describe(device, &advdet::cpu::current())
    );
    let (meta, report) = train::train_and_save(&cfg, a.data_dir.as_deref(), device, &out)?;
    println!(
        "trained in {:.1} s ({:.0} images/s); test accuracy {:.4}; wrote {} and {}",
        report.seconds,
        report.images_per_sec,
        meta.test_accuracy,
        out.display(),
        checkpoint::sidecar_path(&out).display()
    );
    Ok(0)
}

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub m: ModelArgs,
}

pub fn run_eval(a: EvalArgs) -> Result<i32> {
    let loaded = a.m.load()?;
    let dataset = a.m.dataset(&loaded, "the dataset")?;
    let model = loaded.model;
    let test = data::load(dataset, a.m.data_dir.as_deref(), Split::Test)?;
    let eval = train::evaluate(&model, &test, 1000);
    println!("{} on {dataset} test ({} images): accuracy {:.4}", model.arch, eval.n, eval.accuracy);
    for (c, acc) in eval.per_class.iter().enumerate() {
        println!("  class {c}: {acc:.4}");
    }
    Ok(0)
}
