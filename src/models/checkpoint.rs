//! Checkpoints: weights in .safetensors (the tensor names PyTorch's `state_dict` of scripts/reference/models.py uses)
//! and a JSON sidecar describing how they were made. Loading is strict: every tensor present, none extra, shapes equal.
//! A model trained with class-specific gates keeps its gate matrix in a third file (`csg::gates_path`).
use super::{Arch, Model};
use crate::data::DatasetName;
use crate::error::{Error, Result};
use crate::io::write_atomic;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// How a checkpoint was made (the sidecar `FILE.json` next to `FILE.safetensors`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelMeta {
    pub arch: Arch,
    pub dataset: DatasetName,
    pub seed: u64,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub test_accuracy: f64,
    pub advdet_version: String,
    /// sha256 of the training split's source bytes.
    pub data_hash: String,
    /// How it was trained, when not the standard way.
    #[serde(default, skip_serializing_if = "super::training::Training::is_standard")]
    pub training: super::training::Training,
}

pub fn sidecar_path(weights: &Path) -> PathBuf {
    weights.with_extension("json")
}

/// Saves the weights (and the sidecar when `meta` is given), each atomically.
pub fn save(model: &Model, path: &Path, meta: Option<&ModelMeta>) -> Result<()> {
    write_atomic(path, |tmp| model.vs.save(tmp).map_err(|e| Error::format(path, format!("cannot write: {e}"))))?;
    if let Some(g) = &model.csg {
        super::csg::save(g, path)?;
    }
    if let Some(meta) = meta {
        let side = sidecar_path(path);
        let json = serde_json::to_string_pretty(meta).map_err(|e| Error::format(&side, e.to_string()))?;
        write_atomic(&side, |tmp| std::fs::write(tmp, json + "\n").map_err(|e| Error::io(tmp, e)))?;
    }
    Ok(())
}

pub fn read_meta(weights: &Path) -> Result<Option<ModelMeta>> {
    let side = sidecar_path(weights);
    if !side.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&side).map_err(|e| Error::io(&side, e))?;
    serde_json::from_str(&text).map(Some).map_err(|e| Error::format(&side, format!("invalid sidecar: {e}")))
}

/// Loads a checkpoint. The architecture comes from `arch` or the sidecar; when both are present they must agree.
pub fn load(path: &Path, arch: Option<Arch>, device: Device) -> Result<(Model, Option<ModelMeta>)> {
    if !path.is_file() {
        return Err(Error::Missing(format!("model file {} does not exist", path.display())));
    }
    let meta = read_meta(path)?;
    let arch = match (arch, &meta) {
        (Some(a), Some(m)) if a != m.arch => {
            return Err(Error::Model(format!(
                "{}: --arch {a} but its sidecar {} says {}",
                path.display(),
                sidecar_path(path).display(),
                m.arch
            )))
        }
        (Some(a), _) => a,
        (None, Some(m)) => m.arch,
        (None, None) => {
            return Err(Error::Model(format!(
                "{}: no sidecar {} to say which architecture it is; pass --arch (lenet, vgg-small or resnet20)",
                path.display(),
                sidecar_path(path).display()
            )))
        }
    };
    let mut model = Model::new(arch, device);
    load_weights(&mut model, path)?;
    model.csg = super::csg::load(path, model.gate_layout(), model.num_classes(), device)?;
    if meta.as_ref().is_some_and(|m| m.training.is_csg()) && model.csg.is_none() {
        return Err(Error::Missing(format!(
            "{} was trained with class-specific gates but its gate matrix {} is missing",
            path.display(),
            super::csg::gates_path(path).display()
        )));
    }
    Ok((model, meta))
}

/// Copies the tensors of a .safetensors file into the model, strictly. `num_batches_tracked` buffers that PyTorch
/// writes for batch norm are ignored (libtorch's batch norm has no such buffer and momentum does not use it).
pub fn load_weights(model: &mut Model, path: &Path) -> Result<()> {
    let named = Tensor::read_safetensors(path)
        .map_err(|e| Error::format(path, format!("not a readable .safetensors file: {e}")))?;
    let mut file: HashMap<String, Tensor> =
        named.into_iter().filter(|(n, _)| !n.ends_with("num_batches_tracked")).collect();
    let vars = model.vs.variables();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    let missing: Vec<&str> = names.iter().filter(|n| !file.contains_key(n.as_str())).map(|n| n.as_str()).collect();
    let mut extra: Vec<&str> = file.keys().filter(|n| !vars.contains_key(*n)).map(String::as_str).collect();
    extra.sort();
    if !missing.is_empty() || !extra.is_empty() {
        return Err(Error::Model(format!(
            "{} does not fit arch {}: missing tensors [{}], unexpected tensors [{}]",
            path.display(),
            model.arch,
            missing.join(", "),
            extra.join(", ")
        )));
    }
    let _guard = tch::no_grad_guard();
    for name in names {
        let var = &vars[name];
        let src = file.remove(name).expect("checked above");
        if src.size() != var.size() {
            return Err(Error::Model(format!(
                "{}: tensor {name} has shape {:?}, arch {} needs {:?}",
                path.display(),
                src.size(),
                model.arch,
                var.size()
            )));
        }
        let mut var = var.shallow_clone();
        var.copy_(&src.to_kind(var.kind()).to_device(var.device()));
    }
    Ok(())
}
