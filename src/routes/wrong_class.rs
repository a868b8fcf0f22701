//! Control `wrong-class`: each image through the subnetwork of the full model's second most likely class, not its
//! predicted one (class subnetworks of Wang, Hu, Su, arXiv 1910.02673). If it detects as well as the predicted class's
//! subnetwork, the subnetwork's class does not matter.
use super::subnet::checked_subnets;
use super::{Pass, Route, RouteKind};
use crate::error::Result;
use crate::models::Model;
use crate::subnet::Subnets;
use tch::Tensor;

pub struct WrongClass<'a> {
    subnets: &'a Subnets,
}

impl<'a> WrongClass<'a> {
    pub fn new(model: &Model, subnets: Option<&'a Subnets>) -> Result<Self> {
        Ok(WrongClass { subnets: checked_subnets(model, subnets, RouteKind::WrongClass)? })
    }
}

impl Route for WrongClass<'_> {
    fn kind(&self) -> RouteKind {
        RouteKind::WrongClass
    }
    fn pass(&self, model: &Model, xs: &Tensor, full: &Pass) -> Result<Option<Pass>> {
        let (_, top) = full.logits.topk(2, -1, true, true);
        let gates = self.subnets.gates_for(&top.select(1, 1)).to_device(model.device());
        Ok(Some(Pass::run(model, xs, Some(gates))))
    }
}
