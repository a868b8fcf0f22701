//! The full model: every unit on.
use super::{Pass, Route, RouteKind};
use crate::error::Result;
use crate::models::Model;
use tch::Tensor;

pub struct Full;

impl Route for Full {
    fn kind(&self) -> RouteKind {
        RouteKind::Full
    }
    /// The full model's own pass: `None` tells the caller to use `full` itself (computed once, never twice).
    fn pass(&self, _model: &Model, _xs: &Tensor, _full: &Pass) -> Result<Option<Pass>> {
        Ok(None)
    }
}
