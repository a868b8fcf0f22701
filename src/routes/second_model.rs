//! Control `second-model`: an independently trained network of the same architecture (the next seed, or a second
//! weights file) in place of the class subnetwork (Wang, Hu, Su, arXiv 1910.02673). For the two-network scores (KL,
//! disagreement) it asks whether the subnetwork beats plain disagreement between two ensemble members.
use super::{Pass, Route, RouteKind};
use crate::error::{Error, Result};
use crate::models::Model;
use tch::Tensor;

pub struct SecondModel<'a> {
    second: &'a Model,
}

impl<'a> SecondModel<'a> {
    pub fn new(model: &Model, second: Option<&'a Model>) -> Result<Self> {
        let second = second.ok_or_else(|| {
            Error::Missing("the second-model mode needs a second trained model of the same architecture".into())
        })?;
        if second.arch != model.arch {
            return Err(Error::Model(format!(
                "the second model is a {}, the model a {}: second-model needs the same architecture",
                second.arch, model.arch
            )));
        }
        if second.device() != model.device() {
            return Err(Error::Model("the second model is on another device than the model".into()));
        }
        Ok(SecondModel { second })
    }
}

impl Route for SecondModel<'_> {
    fn kind(&self) -> RouteKind {
        RouteKind::SecondModel
    }
    /// The second network's forward. Its pass cannot re-run that network on other inputs (`Pass::forward` runs the
    /// model), so detectors that perturb their input do not run on this route (`RouteKind::other_network`).
    fn pass(&self, _model: &Model, xs: &Tensor, _full: &Pass) -> Result<Option<Pass>> {
        Ok(Some(Pass::run(self.second, xs, None)))
    }
}
