//! Who an attack aims at: away from the label (untargeted), a given label per sample, a seeded random other class,
//! or the clean image's least likely class (the modes of Kurakin et al. 2017 and torchattacks).
use crate::error::{Error, Result};
use crate::models::Model;
use crate::rng::Rng;
use tch::{Device, Tensor};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Targeting {
    #[default]
    Untargeted,
    /// One target per sample of the whole set the attack runs over (indexed by the batch offset + position).
    Given(Vec<i64>),
    /// For sample i, a class other than its label drawn from stream i of `seed` (independent of batching).
    Random { seed: u64 },
    /// The class with the lowest clean logit.
    LeastLikely,
}

pub(crate) static UNTARGETED: Targeting = Targeting::Untargeted;

impl Targeting {
    pub fn is_targeted(&self) -> bool {
        !matches!(self, Targeting::Untargeted)
    }

    /// `untargeted`, `given`, `random` or `least-likely`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Targeting::Untargeted => "untargeted",
            Targeting::Given(_) => "given",
            Targeting::Random { .. } => "random",
            Targeting::LeastLikely => "least-likely",
        }
    }

    /// The targets of samples `offset..offset + B` (`xs`, `ys` on the model's device), or `None` when untargeted.
    pub fn targets(
        &self,
        model: &Model,
        xs: &Tensor,
        ys: &Tensor,
        offset: usize,
        classes: i64,
    ) -> Result<Option<Tensor>> {
        let n = ys.size()[0] as usize;
        let device = ys.device();
        match self {
            Targeting::Untargeted => Ok(None),
            Targeting::Given(all) => {
                let slice = all.get(offset..offset + n).ok_or_else(|| {
                    Error::config(
                        "targets",
                        format!("{} labels", all.len()),
                        format!("samples {offset}..{} need a target each", offset + n),
                    )
                })?;
                if let Some((i, t)) = slice.iter().enumerate().find(|(_, &t)| t < 0 || t >= classes) {
                    return Err(Error::config(
                        format!("targets[{}]", offset + i),
                        t,
                        format!("a target must be a class in 0..{classes}"),
                    ));
                }
                Ok(Some(Tensor::from_slice(slice).to_device(device)))
            }
            Targeting::Random { seed } => {
                if classes < 2 {
                    return Err(Error::config("classes", classes, "a random target needs at least 2 classes"));
                }
                let labels = Vec::<i64>::try_from(ys.to_device(Device::Cpu))?;
                let t: Vec<i64> = labels
                    .iter()
                    .enumerate()
                    .map(|(i, &y)| {
                        let r = Rng::stream(*seed, (offset + i) as u64).below(classes as usize - 1) as i64;
                        if r >= y {
                            r + 1
                        } else {
                            r
                        }
                    })
                    .collect();
                Ok(Some(Tensor::from_slice(&t).to_device(device)))
            }
            Targeting::LeastLikely => {
                let logits = tch::no_grad(|| model.logits(xs));
                Ok(Some(logits.argmin(-1, false)))
            }
        }
    }
}
