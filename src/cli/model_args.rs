//! The arguments every command that reads a trained model shares (`--model --arch --dataset --data-dir --device`), and
//! the one way they are turned into a frozen model and its dataset.
use advdet::data::DatasetName;
use advdet::device::DeviceChoice;
use advdet::models::{checkpoint, checkpoint::ModelMeta, Arch, Model};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use tch::Device;

#[derive(Args)]
pub struct ModelArgs {
    /// Weights (.safetensors)
    #[arg(long)]
    pub model: PathBuf,
    /// Architecture, needed when the weights have no sidecar (e.g. exported from PyTorch)
    #[arg(long)]
    pub arch: Option<Arch>,
    /// Dataset (default: the sidecar's)
    #[arg(long)]
    pub dataset: Option<DatasetName>,
    /// Folder with the dataset's files (default: the data cache)
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// auto, cpu or cuda
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
}

/// A model loaded from `ModelArgs`, with its parameters frozen (every command takes gradients with respect to inputs
/// only).
pub struct Loaded {
    pub model: Model,
    pub meta: Option<ModelMeta>,
    pub device: Device,
}

impl ModelArgs {
    pub fn load(&self) -> Result<Loaded> {
        let device = self.device.resolve()?;
        let (mut model, meta) = checkpoint::load(&self.model, self.arch, device)?;
        model.freeze();
        Ok(Loaded { model, meta, device })
    }

    /// `--dataset`, else the sidecar's; checked against the architecture. `what` names the data in the error
    /// ("the dataset", "the dataset of the fitting split").
    pub fn dataset(&self, loaded: &Loaded, what: &str) -> Result<DatasetName> {
        let dataset = match (self.dataset, &loaded.meta) {
            (Some(d), _) => d,
            (None, Some(m)) => m.dataset,
            (None, None) => anyhow::bail!("{}: no sidecar names {what}; pass --dataset", self.model.display()),
        };
        loaded.model.arch.check_dataset(dataset)?;
        Ok(dataset)
    }
}
