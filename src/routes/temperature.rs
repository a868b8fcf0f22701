//! Control `temperature`: the full model with its logits divided by one temperature, fitted so that its mean
//! max-softmax on clean held-out training images equals that of the class subnetworks (Wang, Hu, Su, arXiv
//! 1910.02673) on the same images. If it detects as well as the subnetwork, the subnetwork acts on confidence detectors
//! as a change of temperature and nothing more.
use super::{Pass, Route, RouteKind};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::subnet::Subnets;
use tch::{Kind, Tensor};

pub struct Temperature {
    t: f64,
}

impl Temperature {
    pub fn new(t: Option<f64>) -> Result<Self> {
        match t {
            Some(t) if t.is_finite() && t > 0.0 => Ok(Temperature { t }),
            Some(t) => Err(Error::config("temperature", t, "must be a positive number")),
            None => Err(Error::Missing(
                "the temperature mode needs a temperature fitted on clean held-out training images".into(),
            )),
        }
    }
}

impl Route for Temperature {
    fn kind(&self) -> RouteKind {
        RouteKind::Temperature
    }
    /// Its own forward (so that a detector taking the input gradient has a graph through it), logits over `t`.
    fn pass(&self, model: &Model, xs: &Tensor, _full: &Pass) -> Result<Option<Pass>> {
        Ok(Some(Pass::run_tempered(model, xs, self.t)))
    }
}

/// Mean max-softmax of `logits / t`.
fn confidence(logits: &Tensor, t: f64) -> Result<f64> {
    let p = (logits.to_kind(Kind::Double) / t).softmax(-1, Kind::Double);
    Ok(f64::try_from(p.amax([-1].as_slice(), false).mean(Kind::Double))?)
}

/// The temperature whose full-model mean max-softmax over `images` equals the class subnetworks' (each image through
/// its predicted class's subnetwork), found by bisection on log T in [1e-2, 1e3] to 1e-10 relative; the mean
/// max-softmax falls as T rises. Errors when the target lies outside what that range reaches.
pub fn fit(model: &Model, subnets: &Subnets, images: &Tensor, batch_size: i64) -> Result<f64> {
    let _guard = tch::no_grad_guard();
    let (mut full, mut sub) = (Vec::new(), Vec::new());
    let n = images.size()[0];
    for start in (0..n).step_by(batch_size.max(1) as usize) {
        let xs = images.narrow(0, start, batch_size.min(n - start)).to_device(model.device()).to_kind(Kind::Float);
        let p = Pass::run(model, &xs, None);
        let gates = subnets.gates_for(&p.logits.argmax(-1, false)).to_device(model.device());
        sub.push(Pass::run(model, &xs, Some(gates)).logits);
        full.push(p.logits);
    }
    if full.is_empty() {
        return Err(Error::config("temperature", "no images", "needs clean images to fit on"));
    }
    let (full, sub) = (Tensor::cat(&full, 0), Tensor::cat(&sub, 0));
    let target = confidence(&sub, 1.0)?;
    let (mut lo, mut hi) = (1e-2f64.ln(), 1e3f64.ln());
    let (at_lo, at_hi) = (confidence(&full, lo.exp())?, confidence(&full, hi.exp())?);
    if !(at_hi..=at_lo).contains(&target) {
        return Err(Error::Model(format!(
            "no temperature in [0.01, 1000] gives the subnetworks' mean confidence {target:.6} (the full model gives \
             {at_lo:.6} to {at_hi:.6})"
        )));
    }
    while hi - lo > 1e-10 {
        let mid = 0.5 * (lo + hi);
        if confidence(&full, mid.exp())? > target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok((0.5 * (lo + hi)).exp())
}
