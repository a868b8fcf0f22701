//! Binarisation of learned class gates into subnetwork masks (Wang et al., arXiv 1910.02673): a unit is kept when its
//! gate exceeds a threshold, or when it is among the top k% of its layer; no layer of a subnetwork is ever left empty.
use crate::error::{Error, Result};
use crate::models::GateLayout;
use tch::{Device, Kind, Tensor};

/// How gates become a binary mask.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Binarize {
    /// Keep a unit when its gate is strictly above the threshold.
    Threshold(f64),
    /// Keep the `ceil(k% x width)` units with the largest gates in each layer (ties go to the lower index).
    TopKPercent(f64),
}

impl Binarize {
    pub fn validate(&self) -> Result<()> {
        match *self {
            Binarize::Threshold(t) if !(t.is_finite() && t >= 0.0) => {
                Err(Error::config("threshold", t, "must be a finite number >= 0"))
            }
            Binarize::TopKPercent(k) if !(k.is_finite() && k > 0.0 && k <= 100.0) => {
                Err(Error::config("top-k-percent", k, "must be in (0, 100]"))
            }
            _ => Ok(()),
        }
    }
}

/// Binary masks (f32 0/1, `[classes, units]`, on the gates' device) from gates `[classes, units]`.
///
/// A layer in which a class would keep nothing keeps its unit with the largest gate instead (the lowest index on a tie),
/// so every subnetwork passes `Subnets::validate`.
pub fn binarize(gates: &Tensor, layout: &GateLayout, rule: Binarize) -> Result<Tensor> {
    rule.validate()?;
    let size = gates.size();
    let units = layout.units();
    if size.len() != 2 || size[1] != units {
        return Err(Error::Model(format!("gates of shape {size:?} do not fit the model's {units} gateable units")));
    }
    let classes = size[0] as usize;
    let g = Vec::<f32>::try_from(gates.detach().to_kind(Kind::Float).to_device(Device::Cpu).reshape([-1]))?;
    if let Some(i) = g.iter().position(|v| !v.is_finite()) {
        return Err(Error::Model(format!("gate {} of class {} is not finite", i % units as usize, i / units as usize)));
    }
    let mut mask = vec![0f32; g.len()];
    for c in 0..classes {
        for (off, w) in layout.spans() {
            let lo = c * units as usize + off as usize;
            let row = &g[lo..lo + w as usize];
            let keep = layer_mask(row, rule);
            mask[lo..lo + w as usize].copy_from_slice(&keep);
        }
    }
    Ok(Tensor::from_slice(&mask).view([classes as i64, units]).to_device(gates.device()))
}

/// The mask of one layer's gates under `rule`, never empty when the layer has a unit.
fn layer_mask(row: &[f32], rule: Binarize) -> Vec<f32> {
    let mut keep = vec![0f32; row.len()];
    if row.is_empty() {
        return keep;
    }
    // indices by decreasing gate, the lower index first on a tie (a stable sort keeps index order)
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
    let n = match rule {
        Binarize::Threshold(t) => row.iter().filter(|&&v| f64::from(v) > t).count(),
        Binarize::TopKPercent(k) => ((k / 100.0) * row.len() as f64).ceil() as usize,
    };
    for &i in order.iter().take(n.clamp(1, row.len())) {
        keep[i] = 1.0;
    }
    keep
}

/// Fraction of units kept per class and per layer: `[classes][layers]`.
pub fn kept_per_layer(masks: &Tensor, layout: &GateLayout) -> Result<Vec<Vec<f64>>> {
    let m = masks.detach().to_kind(Kind::Float).to_device(Device::Cpu);
    let mut out = Vec::new();
    for c in 0..m.size()[0] {
        let row = m.get(c);
        let mut per = Vec::new();
        for (off, w) in layout.spans() {
            per.push(f64::try_from(row.narrow(0, off, w).sum(Kind::Float))? / w.max(1) as f64);
        }
        out.push(per);
    }
    Ok(out)
}

/// Fraction of all gateable units kept, per class.
pub fn kept_fraction(masks: &Tensor) -> Result<Vec<f64>> {
    let m = masks.detach().to_kind(Kind::Float).to_device(Device::Cpu);
    Ok(Vec::<f64>::try_from(m.mean_dim(1, false, Kind::Double))?)
}
