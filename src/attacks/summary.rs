//! What an attack achieved on a set of images: clean and adversarial accuracy, success rate among the images the
//! model classified correctly, and the perturbations' Linf and L2 norms.
use super::Norm;
use crate::error::{Error, Result};
use tch::{Device, Kind, Tensor};

/// Per-sample results, on the CPU.
#[derive(Debug, Clone, PartialEq)]
pub struct AttackOutcome {
    pub correct_clean: Vec<bool>,
    pub correct_adv: Vec<bool>,
    /// The prediction left the label (untargeted) or reached the target (targeted).
    pub success: Vec<bool>,
    pub linf: Vec<f64>,
    pub l2: Vec<f64>,
}

/// Aggregates of an `AttackOutcome`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AttackSummary {
    pub n: usize,
    pub clean_accuracy: f64,
    pub adversarial_accuracy: f64,
    /// Clean-correct images (the ones an attack is counted on).
    pub attempted: usize,
    pub succeeded: usize,
    /// `succeeded / attempted`.
    pub success_rate: f64,
    pub linf_mean: f64,
    pub linf_max: f64,
    pub l2_mean: f64,
    pub l2_max: f64,
    /// Mean norms over the successful attempts only.
    pub linf_mean_success: f64,
    pub l2_mean_success: f64,
}

fn to_vec<T: tch::kind::Element + Copy>(t: &Tensor) -> Result<Vec<T>> {
    Ok(Vec::<T>::try_from(t.to_device(Device::Cpu).contiguous().view([-1]))?)
}

impl AttackOutcome {
    /// Compares clean and adversarial images and predictions; `targets` for a targeted attack.
    pub fn new(
        clean: &Tensor,
        adv: &Tensor,
        labels: &Tensor,
        pred_clean: &Tensor,
        pred_adv: &Tensor,
        targets: Option<&Tensor>,
    ) -> Result<AttackOutcome> {
        if clean.size() != adv.size() {
            return Err(Error::Model(format!("adversarial images {:?} but clean {:?}", adv.size(), clean.size())));
        }
        let n = clean.size().first().copied().unwrap_or(0);
        let delta = (adv.to_device(Device::Cpu) - clean.to_device(Device::Cpu)).to_kind(Kind::Double).view([n, -1]);
        let labels = labels.to_device(Device::Cpu);
        let pred_adv = pred_adv.to_device(Device::Cpu);
        let hit = match targets {
            Some(t) => pred_adv.eq_tensor(&t.to_device(Device::Cpu)),
            None => pred_adv.ne_tensor(&labels),
        };
        Ok(AttackOutcome {
            correct_clean: to_vec(&pred_clean.to_device(Device::Cpu).eq_tensor(&labels))?,
            correct_adv: to_vec(&pred_adv.eq_tensor(&labels))?,
            success: to_vec(&hit)?,
            linf: to_vec(&delta.abs().amax([1i64].as_slice(), false))?,
            l2: to_vec(&delta.norm_scalaropt_dim(2, [1], false))?,
        })
    }

    /// Success rate among the clean-correct images, counting only perturbations of at most `eps` in `norm`
    /// (for minimum-norm attacks such as CW-L2 and DeepFool).
    pub fn success_within(&self, norm: Norm, eps: f64) -> f64 {
        let dist = match norm {
            Norm::Linf => &self.linf,
            Norm::L2 => &self.l2,
        };
        let attempted = self.correct_clean.iter().filter(|&&c| c).count();
        let hits =
            (0..self.success.len()).filter(|&i| self.correct_clean[i] && self.success[i] && dist[i] <= eps).count();
        hits as f64 / attempted.max(1) as f64
    }

    pub fn summary(&self) -> AttackSummary {
        let n = self.success.len();
        let frac = |k: usize, of: usize| k as f64 / of.max(1) as f64;
        let mean = |v: &[f64], pick: &dyn Fn(usize) -> bool| {
            let s: Vec<f64> = (0..v.len()).filter(|&i| pick(i)).map(|i| v[i]).collect();
            s.iter().sum::<f64>() / s.len().max(1) as f64
        };
        let attempted = self.correct_clean.iter().filter(|&&c| c).count();
        let won = |i: usize| self.correct_clean[i] && self.success[i];
        let succeeded = (0..n).filter(|&i| won(i)).count();
        AttackSummary {
            n,
            clean_accuracy: frac(attempted, n),
            adversarial_accuracy: frac(self.correct_adv.iter().filter(|&&c| c).count(), n),
            attempted,
            succeeded,
            success_rate: frac(succeeded, attempted),
            linf_mean: mean(&self.linf, &|_| true),
            linf_max: self.linf.iter().cloned().fold(0.0, f64::max),
            l2_mean: mean(&self.l2, &|_| true),
            l2_max: self.l2.iter().cloned().fold(0.0, f64::max),
            linf_mean_success: mean(&self.linf, &won),
            l2_mean_success: mean(&self.l2, &won),
        }
    }
}
