//! Disagreement between the full model and the subnetwork of its predicted class (Wang, Hu, Su,
//! arXiv 1910.02673: the subnetwork of a class should reproduce the full model on that class's images).
use super::{Detector, DetectorKind, View};
use crate::error::Result;
use crate::routes::RouteKind;
use tch::{Kind, Tensor};

/// Score `1[argmax route != argmax full]`, 0 or 1, on every route but the full model. Its AUROC is the balanced accuracy
/// of "the two disagree" as a detector (the ROC's one inner point, ties counted one half); it is not a transform of
/// `kl`, whose score orders images within each group.
#[derive(Debug, Clone, Default)]
pub struct Disagree;

impl Detector for Disagree {
    fn kind(&self) -> DetectorKind {
        DetectorKind::Disagree
    }
    /// It compares a route with the full model: every route but the full model itself.
    fn runs_on(&self, route: RouteKind) -> bool {
        !route.is_full()
    }
    fn score(&self, v: &View) -> Result<Tensor> {
        let (full, sub) = (&v.full.logits, &v.route.logits);
        Ok(full.argmax(-1, false).ne_tensor(&sub.argmax(-1, false)).to_kind(Kind::Double))
    }
}
