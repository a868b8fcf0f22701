//! Routes `csg` and `csg-binary`: a model trained with class-specific gates (CSG-CNN, Liang, Wang, Hu, Zhang, ECCV
//! 2020, arXiv 2007.08194; `models::csg`) run with the gate column of the class the full path predicts, its learned
//! values (`csg`) or thresholded at 0.5 (`csg-binary`). The full path of the same model is `full`.
use super::{Pass, Route, RouteKind};
use crate::error::{Error, Result};
use crate::models::{csg, Model};
use tch::Tensor;

pub struct ClassGates {
    kind: RouteKind,
    /// `[channels, classes]`: the learned matrix, or its binary form.
    g: Tensor,
}

impl ClassGates {
    /// Fails unless the model was trained with class-specific gates.
    pub fn new(model: &Model, binary: bool) -> Result<Self> {
        let kind = if binary { RouteKind::CsgBinary } else { RouteKind::Csg };
        let g = model.csg.as_ref().ok_or_else(|| {
            Error::Model(format!(
                "the {kind} mode needs a model trained with class-specific gates ([model] training = \"csg\", or a \
                 weights file with its .csg.safetensors gate matrix beside it)"
            ))
        })?;
        let g = if binary { csg::binary(g) } else { g.shallow_clone() };
        Ok(ClassGates { kind, g })
    }
}

impl Route for ClassGates {
    fn kind(&self) -> RouteKind {
        self.kind
    }
    fn pass(&self, model: &Model, xs: &Tensor, full: &Pass) -> Result<Option<Pass>> {
        self.pass_as(model, xs, full, &full.logits.argmax(-1, false))
    }
    fn pass_as(&self, model: &Model, xs: &Tensor, _full: &Pass, classes: &Tensor) -> Result<Option<Pass>> {
        let gates = csg::per_image(&self.g, model.gate_layout(), classes)?;
        Ok(Some(Pass::run(model, xs, Some(gates))))
    }
}
