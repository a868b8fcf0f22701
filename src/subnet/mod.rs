//! Class-specific subnetworks (Wang, Hu, Su, arXiv 1910.02673): per class, a non-negative gate per gateable
//! unit learned so the gated network reproduces the full model on that class, binarised into a mask.
pub mod analysis;
pub mod extract;
pub mod mask;
pub mod output;

pub use extract::{extract, ExtractConfig, Extraction, Gate, Summary};
pub use mask::Binarize;

use crate::error::{Error, Result};
use crate::models::{GateLayout, Model};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// The subnetworks of every class: learned gates and binary masks, `[classes, units]` each, columns in
/// `layout` order.
#[derive(Debug)]
pub struct Subnets {
    pub layout: GateLayout,
    /// Learned gate values (non-negative), f32 `[classes, units]`.
    pub gates: Tensor,
    /// Binary masks (0.0 or 1.0), f32 `[classes, units]`: a unit is in class c's subnetwork when `masks[c, u] == 1`.
    pub masks: Tensor,
}

impl Subnets {
    pub fn num_classes(&self) -> i64 {
        self.masks.size()[0]
    }

    pub fn to_device(&self, device: Device) -> Subnets {
        Subnets {
            layout: self.layout.clone(),
            gates: self.gates.to_device(device),
            masks: self.masks.to_device(device),
        }
    }

    /// Per-sample gates `[batch, units]`: row `classes[i]` of the masks for sample i.
    pub fn gates_for(&self, classes: &Tensor) -> Tensor {
        self.masks.index_select(0, &classes.to_device(self.masks.device()))
    }

    /// Logits of each sample through the subnetwork of its class `classes[i]`, in one batched forward (eval mode).
    pub fn logits(&self, model: &Model, xs: &Tensor, classes: &Tensor) -> Tensor {
        model.net.forward(xs, Some(&self.gates_for(classes)), false)
    }

    /// The full model's predicted classes and the logits of each sample through the subnetwork of that class, in two
    /// batched forwards (eval mode, no gradient).
    pub fn logits_by_prediction(&self, model: &Model, xs: &Tensor) -> (Tensor, Tensor) {
        let _g = tch::no_grad_guard();
        let pred = model.logits(xs).argmax(-1, false);
        let logits = self.logits(model, xs, &pred);
        (pred, logits)
    }

    /// Fails when a class's mask switches off every unit of some layer, or when the shape does not fit `layout`.
    pub fn validate(&self) -> Result<()> {
        let units = self.layout.units();
        if self.masks.size() != [self.num_classes(), units] || self.gates.size() != self.masks.size() {
            return Err(Error::Model(format!(
                "subnet masks {:?} / gates {:?} do not fit the model's {units} gateable units",
                self.masks.size(),
                self.gates.size()
            )));
        }
        for (l, (off, w)) in self.layout.layers.iter().zip(self.layout.spans()) {
            let kept = self.masks.narrow(1, off, w).sum_dim_intlist(1, false, Kind::Float);
            let empty = Vec::<f32>::try_from(kept.to_device(Device::Cpu)).unwrap_or_default();
            if let Some(c) = empty.iter().position(|&k| k < 0.5) {
                return Err(Error::Model(format!("subnet of class {c} keeps no unit of layer {}", l.name)));
            }
        }
        Ok(())
    }

    /// Saves `gates` and `masks` tensors to a .safetensors file (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::io::write_atomic(path, |tmp| {
            Tensor::write_safetensors(
                &[("gates", self.gates.to_device(Device::Cpu)), ("masks", self.masks.to_device(Device::Cpu))],
                tmp,
            )
            .map_err(|e| Error::format(path, format!("cannot write: {e}")))
        })
    }

    /// Loads subnetworks saved by `save` for a model with `layout`, validating them.
    pub fn load(path: &Path, layout: &GateLayout, device: Device) -> Result<Subnets> {
        if !path.is_file() {
            return Err(Error::Missing(format!("subnet file {} does not exist", path.display())));
        }
        let named = Tensor::read_safetensors(path)
            .map_err(|e| Error::format(path, format!("not a readable .safetensors file: {e}")))?;
        let get = |name: &str| {
            named
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.to_kind(Kind::Float).to_device(device))
                .ok_or_else(|| Error::format(path, format!("no tensor named {name}")))
        };
        let s = Subnets { layout: layout.clone(), gates: get("gates")?, masks: get("masks")? };
        s.validate().map_err(|e| Error::format(path, e.to_string()))?;
        Ok(s)
    }
}
