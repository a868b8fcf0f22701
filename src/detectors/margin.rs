//! Logit margin (top-1 logit minus top-2 logit; the quantity the C&W attack of Carlini & Wagner 2017 drives to zero):
//! a small margin flags an input.
use super::{check_call, finite_scores, mode_logits, Detector, Mode};
use crate::error::Result;
use crate::models::Model;
use crate::subnet::Subnets;
use tch::{Kind, Tensor};

/// Score `top2 - top1` of the logits (the negated margin, <= 0), higher = more suspicious.
#[derive(Debug, Clone, Copy, Default)]
pub struct Margin;

impl Detector for Margin {
    fn name(&self) -> &'static str {
        "margin"
    }
    fn modes(&self) -> &'static [Mode] {
        &Mode::ALL
    }
    fn score(&self, model: &Model, subnets: Option<&Subnets>, mode: Mode, xs: &Tensor) -> Result<Vec<f64>> {
        check_call(self.name(), self.modes(), model, mode, xs)?;
        let logits = mode_logits(self.name(), model, subnets, mode, xs)?.to_kind(Kind::Double);
        let (top, _) = logits.topk(2, -1, true, true);
        finite_scores(self.name(), &(top.select(1, 1) - top.select(1, 0)))
    }
}
