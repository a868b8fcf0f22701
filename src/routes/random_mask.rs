//! Control `random-mask`: each image through a random mask that keeps, in every layer, as many units as the mask of
//! its predicted class does (class subnetworks of Wang, Hu, Su, arXiv 1910.02673), drawn once per class from a fixed
//! seed. If it does as well as the class subnetwork, any pruning of that size would.
use super::subnet::checked_subnets;
use super::{Pass, Route, RouteKind};
use crate::error::Result;
use crate::models::Model;
use crate::rng::Rng;
use crate::subnet::Subnets;
use tch::{Device, Kind, Tensor};

/// The seed of the random masks (one stream per class).
pub const SEED: u64 = 0x5eed_3a5c;

pub struct RandomMask {
    /// `[classes, units]`, 0/1.
    masks: Tensor,
}

impl RandomMask {
    pub fn new(model: &Model, subnets: Option<&Subnets>) -> Result<Self> {
        let s = checked_subnets(model, subnets, RouteKind::RandomMask)?;
        Ok(RandomMask { masks: random_masks(s, SEED)?.to_device(model.device()) })
    }
}

/// For each class `c`, a 0/1 row keeping `k` units drawn uniformly from each layer, `k` the number that class `c`'s
/// mask keeps in that layer; class `c` draws from `Rng::stream(seed, c)`.
pub fn random_masks(s: &Subnets, seed: u64) -> Result<Tensor> {
    let masks = Vec::<Vec<f32>>::try_from(s.masks.to_device(Device::Cpu).to_kind(Kind::Float))?;
    let spans = s.layout.spans();
    let out: Vec<f32> = masks
        .iter()
        .enumerate()
        .flat_map(|(c, row)| {
            let mut rng = Rng::stream(seed, c as u64);
            let mut drawn = vec![0f32; row.len()];
            for &(off, width) in &spans {
                let (off, width) = (off as usize, width as usize);
                let kept = row[off..off + width].iter().filter(|&&m| m > 0.5).count();
                for &u in &rng.permutation(width)[..kept] {
                    drawn[off + u as usize] = 1.0;
                }
            }
            drawn
        })
        .collect();
    Ok(Tensor::from_slice(&out).view([s.masks.size()[0], s.layout.units()]))
}

impl Route for RandomMask {
    fn kind(&self) -> RouteKind {
        RouteKind::RandomMask
    }
    fn pass(&self, model: &Model, xs: &Tensor, full: &Pass) -> Result<Option<Pass>> {
        self.pass_as(model, xs, full, &full.logits.argmax(-1, false))
    }
    fn pass_as(&self, model: &Model, xs: &Tensor, _full: &Pass, classes: &Tensor) -> Result<Option<Pass>> {
        let classes = classes.to_device(self.masks.device());
        Ok(Some(Pass::run(model, xs, Some(self.masks.index_select(0, &classes).to_device(model.device())))))
    }
}
