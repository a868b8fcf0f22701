//! How a model's weights are trained: the plain cross-entropy, or with class-specific gates (CSG-CNN, `csg`). Kept
//! with the models (a checkpoint's sidecar records it) and read by `train`.
use crate::error::{Error, Result};

/// How the weights are trained: the plain cross-entropy, or with class-specific gates (CSG-CNN, `models::csg`).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Training {
    #[default]
    Standard,
    /// CSG-CNN's alternation: `warmup` epochs of the standard path, then of each `every` epochs the last one gated.
    Csg { warmup: usize, every: usize },
}

impl Training {
    pub fn is_standard(&self) -> bool {
        *self == Training::Standard
    }

    pub fn is_csg(&self) -> bool {
        matches!(self, Training::Csg { .. })
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
        Training::Csg { warmup, every }
    }

    /// Whether epoch `e` (from 0) runs the gated path.
    pub fn gated(&self, e: usize) -> bool {
        match *self {
            Training::Standard => false,
            Training::Csg { warmup, every } => e >= warmup && every > 0 && (e - warmup) % every == every - 1,
        }
    }

    /// Fails unless a CSG schedule reaches a gated epoch within `epochs`.
    pub fn validate(&self, epochs: usize) -> Result<()> {
        match *self {
            Training::Standard => Ok(()),
            Training::Csg { every: 0, .. } => Err(Error::config("csg_every", 0, "must be at least 1")),
            Training::Csg { warmup, every } if warmup + every > epochs => Err(Error::config(
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
