//! How a model's weights are trained: the plain cross-entropy, with class-specific gates (CSG-CNN, `csg`), or on PGD
//! examples with or without a consistency term (Dong, Su, Zhu, Bao, arXiv 1708.05493). Kept with the models (a
//! checkpoint's sidecar records it) and read by `train`.
use crate::error::{Error, Result};

/// The gate matrix's learning rate (constant): ten times the weights' initial rate. The reference code's value is not
/// public; at the weights' own decayed rate the gates of LeNet/MNIST stay within a few percent of uniform.
pub const CSG_GATE_LR: f64 = 1e-2;

/// How the weights are trained: the plain cross-entropy, with class-specific gates (CSG-CNN, `models::csg`), or on
/// adversarial examples (`Adversarial`, `Consistency`: `Robust`).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Training {
    #[default]
    Standard,
    /// CSG-CNN's alternation: `warmup` epochs of the standard path, then of each `every` epochs the last one gated;
    /// the gate matrix's own Adam at the constant learning rate `gate_lr`.
    Csg { warmup: usize, every: usize, gate_lr: f64 },
    /// Adversarial training: cross-entropy on the clean batch and on its PGD examples (`Robust` with `beta` 0).
    Adversarial(Robust),
    /// Adversarial training with a consistency term pulling each PGD example's penultimate features towards its clean
    /// image's (`Robust`).
    Consistency(Robust),
}

/// Adversarial and consistency training: per batch, PGD-Linf examples `x_adv` of the current weights (`steps` steps of
/// size `alpha` within `eps`, from a uniform random start, the model in eval mode, no weight gradient), then the loss
/// `CE(x) + adv_weight * CE(x_adv) + beta * mean over the batch of ||f(x) - f(x_adv)||^2`, f the penultimate features
/// (the reading of Dong, Su, Zhu, Bao, arXiv 1708.05493 and 1901.09035 documented in the README: their exact form is
/// not public). With `adv_weight` and `beta` both 0 no PGD runs and the step is the standard one.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Robust {
    pub eps: f64,
    pub steps: usize,
    pub alpha: f64,
    pub adv_weight: f64,
    pub beta: f64,
}

impl Robust {
    /// MNIST-like defaults for 28x28 grey images: eps 0.3 (Madry et al.'s MNIST budget) with 7 steps of 0.1
    /// (2.5 eps / steps, a budget fit for a CPU: Madry et al. take 40 steps of 0.01); CIFAR-10: eps 8/255, 7 steps
    /// of 2/255. `beta` 0.1 for consistency training (a documented choice, not the paper's, which is not public).
    pub fn default_for(grey: bool, beta: f64) -> Robust {
        if grey {
            Robust { eps: 0.3, steps: 7, alpha: 0.1, adv_weight: 1.0, beta }
        } else {
            Robust { eps: 8.0 / 255.0, steps: 7, alpha: 2.0 / 255.0, adv_weight: 1.0, beta }
        }
    }

    /// Whether the step needs adversarial examples at all.
    pub fn attacks(&self) -> bool {
        self.adv_weight != 0.0 || self.beta != 0.0
    }

    pub fn validate(&self) -> Result<()> {
        if !(self.eps.is_finite() && self.eps > 0.0 && self.eps <= 1.0) {
            return Err(Error::config("adv_eps", self.eps, "must be in (0, 1]"));
        }
        if self.steps == 0 {
            return Err(Error::config("adv_steps", 0, "must be at least 1"));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(Error::config("adv_alpha", self.alpha, "must be a positive number"));
        }
        if !(self.adv_weight.is_finite() && self.adv_weight >= 0.0) {
            return Err(Error::config("adv_weight", self.adv_weight, "must be a number >= 0"));
        }
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return Err(Error::config("consistency_beta", self.beta, "must be a number >= 0"));
        }
        Ok(())
    }
}

impl Training {
    pub fn is_standard(&self) -> bool {
        *self == Training::Standard
    }

    pub fn is_csg(&self) -> bool {
        matches!(self, Training::Csg { .. })
    }

    /// The adversarial-example settings of adversarial and consistency training.
    pub fn robust(&self) -> Option<&Robust> {
        match self {
            Training::Adversarial(r) | Training::Consistency(r) => Some(r),
            _ => None,
        }
    }

    /// One line for progress messages: the training and its settings.
    pub fn describe(&self) -> String {
        match self {
            Training::Standard => "standard training".into(),
            Training::Csg { warmup, every, gate_lr } => format!(
                "class-specific gates: {warmup} warm-up epochs, then one gated epoch in every {every}, gate lr {gate_lr}"
            ),
            Training::Adversarial(r) => {
                format!("adversarial training: PGD-Linf eps {}, {} steps of {}", r.eps, r.steps, r.alpha)
            }
            Training::Consistency(r) => format!(
                "consistency training: PGD-Linf eps {}, {} steps of {}, beta {}",
                r.eps, r.steps, r.alpha, r.beta
            ),
        }
    }

    /// The part of a model's name that says how it was trained (nothing for standard training).
    pub fn tag(&self) -> &'static str {
        match self {
            Training::Standard => "",
            Training::Csg { .. } => "-csg",
            Training::Adversarial(_) => "-adv",
            Training::Consistency(_) => "-cons",
        }
    }

    /// CSG-CNN's schedule for `epochs` epochs, in the reference code's shape (warm-up on the standard path, then every
    /// third epoch gated): the longest warm-up of at most a third of the epochs after which the last epoch is gated
    /// (LeNet/MNIST: 9 epochs, warm-up 3, gated epochs 5 and 8, counted from 0; ResNet-20: 30, warm-up 9, gated 11,
    /// 14, ..., 29). Under 3 epochs, no warm-up and only the last epoch gated.
    pub fn csg_for(epochs: usize) -> Training {
        let mut warmup = epochs / 3;
        while warmup > 0 && !(epochs - warmup).is_multiple_of(3) {
            warmup -= 1;
        }
        let every = if (epochs - warmup).is_multiple_of(3) { 3 } else { (epochs - warmup).max(1) };
        Training::Csg { warmup, every, gate_lr: CSG_GATE_LR }
    }

    /// Whether epoch `e` (from 0) runs the gated path.
    pub fn gated(&self, e: usize) -> bool {
        match *self {
            Training::Standard | Training::Adversarial(_) | Training::Consistency(_) => false,
            Training::Csg { warmup, every, .. } => e >= warmup && every > 0 && (e - warmup) % every == every - 1,
        }
    }

    /// Fails unless a CSG schedule reaches a gated epoch within `epochs`.
    pub fn validate(&self, epochs: usize) -> Result<()> {
        match *self {
            Training::Standard => Ok(()),
            Training::Adversarial(ref r) | Training::Consistency(ref r) => r.validate(),
            Training::Csg { every: 0, .. } => Err(Error::config("csg_every", 0, "must be at least 1")),
            Training::Csg { gate_lr, .. } if !(gate_lr.is_finite() && gate_lr > 0.0) => {
                Err(Error::config("csg_gate_lr", gate_lr, "must be a positive number"))
            }
            Training::Csg { warmup, every, .. } if warmup + every > epochs => Err(Error::config(
                "csg_warmup",
                warmup,
                format!(
                    "with csg_every {every} the first gated epoch is epoch {} (from 1), after the {epochs} epochs: \
                     the gates would never train",
                    warmup + every
                ),
            )),
            Training::Csg { .. } => Ok(()),
        }
    }
}
