//! Energy score (Liu, Wang, Owens, Li 2020, "Energy-based out-of-distribution detection", NeurIPS): the free energy
//! E(x) = -T logsumexp(f(x) / T) of the logits; a high energy (a low log-partition) flags an input.
use super::{Detector, DetectorKind, View};
use crate::error::{Error, Result};
use tch::{Kind, Tensor};

/// `temperature` T = 1 as in Liu et al. (their parameter-free score for a pre-trained classifier).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnergyConfig {
    pub temperature: f64,
}

impl Default for EnergyConfig {
    fn default() -> Self {
        EnergyConfig { temperature: 1.0 }
    }
}

impl EnergyConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(Error::config("energy.temperature", self.temperature, "must be a positive number"));
        }
        Ok(())
    }
}

/// Score E(x) = `-T logsumexp_c(f_c / T)` itself, higher = more suspicious. Liu et al. use the negative energy as an
/// in-distribution confidence (high for a confident prediction) and flag high energy as out-of-distribution; a
/// confident clean image has a large top logit, so a large log-partition and a low (very negative) energy, and scores
/// below a flat, unconfident one.
#[derive(Debug, Clone)]
pub struct Energy {
    cfg: EnergyConfig,
}

impl Energy {
    pub fn new(cfg: EnergyConfig) -> Self {
        Energy { cfg }
    }
}

/// `-T logsumexp(logits / T)` per row, in f64, as `-(m + T log1p(sum_{c != top} exp((f_c - m) / T)))` with m the top
/// logit: the shifted exponents are <= 0, so nothing overflows whatever the logits' scale or a small T, and `log1p`
/// keeps the other classes' share when it is below 1e-16 (a plain logsumexp rounds `log(1 + 1e-34)` to 0).
pub fn energy(logits: &Tensor, temperature: f64) -> Tensor {
    let f = logits.to_kind(Kind::Double);
    let (m, top) = f.max_dim(-1, true);
    let rest = ((&f - &m) / temperature).scatter_value(-1, &top, f64::NEG_INFINITY).exp();
    -(m.squeeze_dim(-1) + rest.sum_dim_intlist(-1, false, Kind::Double).log1p() * temperature)
}

impl Detector for Energy {
    fn kind(&self) -> DetectorKind {
        DetectorKind::Energy
    }
    fn score(&self, v: &View) -> Result<Tensor> {
        Ok(energy(&v.route.logits, self.cfg.temperature))
    }
}
