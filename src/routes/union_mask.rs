//! Control `union-mask`: every image through one class-agnostic mask, the union of all class masks of the class
//! subnetworks (Wang, Hu, Su, arXiv 1910.02673). If it does as well as the predicted class's subnetwork, the gain
//! comes from pruning units no class uses, not from class specificity.
use super::subnet::checked_subnets;
use super::{Pass, Route, RouteKind};
use crate::error::Result;
use crate::models::Model;
use crate::subnet::Subnets;
use tch::Tensor;

pub struct UnionMask {
    /// `[1, units]`: a unit is on when any class keeps it.
    gates: Tensor,
}

impl UnionMask {
    pub fn new(model: &Model, subnets: Option<&Subnets>) -> Result<Self> {
        let s = checked_subnets(model, subnets, RouteKind::UnionMask)?;
        Ok(UnionMask { gates: s.masks.amax([0].as_slice(), true).to_device(model.device()) })
    }
}

impl Route for UnionMask {
    fn kind(&self) -> RouteKind {
        RouteKind::UnionMask
    }
    fn pass(&self, model: &Model, xs: &Tensor, _full: &Pass) -> Result<Option<Pass>> {
        let n = xs.size()[0];
        Ok(Some(Pass::run(model, xs, Some(self.gates.expand([n, -1], false).contiguous()))))
    }
}
