//! ODIN (Liang, Li, Srikant 2018, "Enhancing the reliability of out-of-distribution image detection in neural
//! networks"): maximum softmax probability after temperature scaling and a small input perturbation that raises it.
use super::msp::one_minus_max_softmax;
use super::{Detector, DetectorKind, View};
use crate::error::{Error, Result};
use tch::{Kind, Tensor};

/// `temperature` T = 1000 as in Liang et al. `epsilon` is the input perturbation in pixel units of [0, 1] images.
/// Liang et al. tune it on validation out-of-distribution data; a detector oblivious to the attack cannot, so the
/// default is their published CIFAR-10 value 0.0014, which in their code is also a step in pixel units (the sign of the
/// gradient with respect to normalised inputs, divided by the normalisation's std). On MNIST's 8-bit pixels it is a
/// third of one grey level: a gentle nudge that cannot by itself flip a LeNet decision.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OdinConfig {
    pub temperature: f64,
    pub epsilon: f64,
}

impl Default for OdinConfig {
    fn default() -> Self {
        OdinConfig { temperature: 1000.0, epsilon: 0.0014 }
    }
}

impl OdinConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(Error::config("odin.temperature", self.temperature, "must be a positive number"));
        }
        if !(self.epsilon.is_finite() && (0.0..=1.0).contains(&self.epsilon)) {
            return Err(Error::config("odin.epsilon", self.epsilon, "must be in [0, 1]"));
        }
        Ok(())
    }
}

/// Score `1 - max_c softmax(f(x~) / T)_c` with `x~ = x + epsilon * sign(grad_x log softmax(f(x) / T)_y^)`, y^ the
/// network's own top class, f the route's network (for the subnet route: the subnetwork of the class the full
/// model predicts for the clean input x). Gradients are taken with respect to the input only, never the parameters.
/// On a pass that carries a graph (the adaptive attack) the score is differentiable in x, the step held constant.
#[derive(Debug, Clone)]
pub struct Odin {
    cfg: OdinConfig,
}

impl Odin {
    pub fn new(cfg: OdinConfig) -> Self {
        Odin { cfg }
    }
}

impl Detector for Odin {
    fn kind(&self) -> DetectorKind {
        DetectorKind::Odin
    }
    fn wants_input_grad(&self) -> bool {
        self.cfg.epsilon != 0.0
    }
    fn score(&self, v: &View) -> Result<Tensor> {
        let t = self.cfg.temperature;
        if self.cfg.epsilon == 0.0 {
            return Ok(one_minus_max_softmax(&(v.route.logits.to_kind(Kind::Double) / t)));
        }
        let g = v.route.input_grad(v.model, v.xs, |_, logits| {
            let logits = logits / t;
            let top = logits.argmax(-1, true);
            logits.log_softmax(-1, Kind::Float).gather(1, &top, false).sum(Kind::Float)
        })?;
        // the step is a constant (BPDA: the identity on the backward pass), so an attack differentiates through f(x~)
        let x = v.xs + (g.sign() * self.cfg.epsilon).detach();
        let logits = v.route.forward(v.model, &x).1.to_kind(Kind::Double) / t;
        Ok(one_minus_max_softmax(&logits))
    }
}
