//! What the adaptive attack attacks: one detector on one route at its deployed threshold, as a differentiable function
//! of the input batch. The score is the detector's own `score` (the code that scores it in evaluation) on passes run
//! with gradients on over an input that requires its gradient, so the attacked score and the evaluated score are one
//! piece of code. Where a step is not differentiable the stand-in is:
//! - the route's choice of class (the subnetwork of the predicted class, a random mask by the predicted class): fixed to
//!   the class the attack steers to (`Route::pass_as`), which is the route the image takes once it is classified so;
//! - ODIN's and Mahalanobis's input preprocessing: differentiated through with the step held constant (BPDA, the
//!   identity on the backward pass of the sign);
//! - LID's neighbours: chosen anew at each step by `topk`, the gradient flowing through their distances;
//! - `disagree` (0/1, zero gradient): the margin of the route's logits for the steered class,
//!   `max_{j != t} r_j - r_t`, which is below 0 exactly when the route agrees with a full model that predicts t;
//! - a score that is a minimum over classes (Mahalanobis): its steered class's term (`Detector::attack_score`), an
//!   upper bound that does not pull the image back to its label's class;
//! - feature squeezing's bit-depth reduction (flat between levels): each squeezer the identity on the backward pass
//!   (BPDA), the values unchanged.
use crate::detectors::{Detector, DetectorKind, View};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::routes::{Pass, Route};
use tch::{Kind, Tensor};

/// A detector on a route at threshold `threshold` (an image is flagged when its score is above it), with `scale`, the
/// spread of its clean scores, which puts the hinge of every detector in the same units.
pub struct DetectorTarget<'a> {
    pub detector: &'a dyn Detector,
    pub route: &'a dyn Route,
    pub threshold: f64,
    pub scale: f64,
}

/// One forward of the attack: per sample (all `[B]`, f64 unless said), the full model's logits (f32, with graph), the
/// detector's score (without graph), the hinge's argument `(score - threshold) / scale` or the stand-in (with graph),
/// and whether the sample evades: the full model predicts the steered class and the score is at most the threshold.
pub struct Reading {
    pub logits: Tensor,
    pub score: Tensor,
    pub excess: Tensor,
    pub success: Tensor,
    pub evaded: Tensor,
}

impl DetectorTarget<'_> {
    pub fn validate(&self) -> Result<()> {
        if !self.threshold.is_finite() {
            return Err(Error::config(
                "threshold",
                self.threshold,
                format!("detector {} has no finite threshold to attack", self.detector.name()),
            ));
        }
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return Err(Error::config("scale", self.scale, "must be a positive number"));
        }
        if !self.detector.runs_on(self.route.kind()) {
            return Err(Error::config(
                "mode",
                self.route.kind(),
                format!("detector {} does not run on this mode", self.detector.name()),
            ));
        }
        Ok(())
    }

    /// The reading at `x` (which must require its gradient, under gradients on) for images steered to `steer`.
    pub fn read(&self, model: &Model, x: &Tensor, steer: &Tensor) -> Result<Reading> {
        let full = Pass::run(model, x, None);
        let routed = match self.route.kind().is_full() {
            true => None,
            false => Some(self.route.pass_as(model, x, &full, steer)?.ok_or_else(|| {
                Error::Model(format!("route {} gave no pass for the attacked images", self.route.kind()))
            })?),
        };
        let route = routed.as_ref().unwrap_or(&full);
        let score = self.detector.score(&View { model, xs: x, full: &full, route })?.to_kind(Kind::Double);
        let steer_col = steer.view([-1, 1]);
        let success = full.logits.argmax(-1, false).eq_tensor(steer);
        let view = View { model, xs: x, full: &full, route };
        let excess = match (self.detector.kind(), self.detector.attack_score(&view, steer)) {
            (DetectorKind::Disagree, _) => margin(&route.logits, &steer_col),
            (_, Some(bound)) => (bound?.to_kind(Kind::Double) - self.threshold) / self.scale,
            (_, None) => (&score - self.threshold) / self.scale,
        };
        let evaded = success.logical_and(&score.detach().le(self.threshold));
        Ok(Reading { logits: full.logits, score: score.detach(), excess, success, evaded })
    }
}

/// `max_{j != t} z_j - z_t` per row of `logits` for the classes `t` (`[B, 1]`), f64: below 0 when the row predicts t.
pub fn margin(logits: &Tensor, t: &Tensor) -> Tensor {
    let z = logits.to_kind(Kind::Double);
    let own = z.gather(1, t, false).squeeze_dim(1);
    let others = z.scatter_value(1, t, f64::NEG_INFINITY).amax([1].as_slice(), false);
    others - own
}
