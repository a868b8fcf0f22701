//! Class-specific subnetworks (Wang, Hu, Su, arXiv 1910.02673): each image goes through the binary mask of the class
//! the full model predicts for it, all images of a batch in one gated forward.
use super::{Pass, Route, RouteKind};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::subnet::Subnets;
use tch::Tensor;

pub struct ClassSubnet<'a> {
    subnets: &'a Subnets,
}

impl<'a> ClassSubnet<'a> {
    /// Fails when the subnetworks are missing or do not fit the model's gate layout.
    pub fn new(model: &Model, subnets: Option<&'a Subnets>) -> Result<Self> {
        Ok(ClassSubnet { subnets: checked_subnets(model, subnets, RouteKind::Subnet)? })
    }
}

/// The class subnetworks a route `kind` needs, present and fitting the model's gate layout.
pub(super) fn checked_subnets<'a>(model: &Model, subnets: Option<&'a Subnets>, kind: RouteKind) -> Result<&'a Subnets> {
    let subnets = subnets
        .ok_or_else(|| Error::Missing(format!("the {kind} mode needs the class subnetworks (--subnets FILE)")))?;
    if subnets.layout != *model.gate_layout() {
        return Err(Error::Model(format!(
            "the subnetworks' gate layout does not fit arch {} ({} vs {} units)",
            model.arch,
            subnets.layout.units(),
            model.gate_layout().units()
        )));
    }
    Ok(subnets)
}

impl Route for ClassSubnet<'_> {
    fn kind(&self) -> RouteKind {
        RouteKind::Subnet
    }
    fn pass(&self, model: &Model, xs: &Tensor, full: &Pass) -> Result<Option<Pass>> {
        self.pass_as(model, xs, full, &full.logits.argmax(-1, false))
    }
    fn pass_as(&self, model: &Model, xs: &Tensor, _full: &Pass, classes: &Tensor) -> Result<Option<Pass>> {
        let gates = self.subnets.gates_for(classes).to_device(model.device());
        Ok(Some(Pass::run(model, xs, Some(gates))))
    }
}
