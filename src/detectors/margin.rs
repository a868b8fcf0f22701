//! Logit margin (top-1 logit minus top-2 logit; the quantity the C&W attack of Carlini & Wagner 2017 drives to zero):
//! a small margin flags an input.
use super::{Detector, DetectorKind, View};
use crate::error::Result;
use tch::{Kind, Tensor};

/// Score `top2 - top1` of the logits (the negated margin, <= 0), higher = more suspicious.
#[derive(Debug, Clone, Copy, Default)]
pub struct Margin;

impl Detector for Margin {
    fn kind(&self) -> DetectorKind {
        DetectorKind::Margin
    }
    fn score(&self, v: &View) -> Result<Tensor> {
        let (top, _) = v.route.logits.to_kind(Kind::Double).topk(2, -1, true, true);
        Ok(top.select(1, 1) - top.select(1, 0))
    }
}
