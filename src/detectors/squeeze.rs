//! Feature squeezing (Xu, Evans, Qi 2018, "Feature squeezing: detecting adversarial examples in deep neural networks",
//! NDSS): the route's softmax on the input against its softmax on squeezed copies (fewer grey levels, a median
//! filter); an adversarial input moves more than a clean one.
use super::{Detector, DetectorKind, View};
use crate::error::{Error, Result};
use crate::routes::RouteKind;
use tch::{Kind, Tensor};

/// Xu et al.'s joint detector for MNIST and CIFAR-10: bit-depth reduction to `bits` bits per channel (default, when
/// not given: 1 for one-channel images, 5 for colour, their MNIST and CIFAR-10 choices) and a `median` x `median`
/// median filter (default 2, as both). Their third CIFAR-10 squeezer, non-local means (13-3-2), is left out: it needs
/// OpenCV's `fastNlMeansDenoisingColored`, which libtorch does not have.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqueezeConfig {
    pub bits: Option<u32>,
    pub median: i64,
}

impl Default for SqueezeConfig {
    fn default() -> Self {
        SqueezeConfig { bits: None, median: 2 }
    }
}

impl SqueezeConfig {
    pub fn validate(&self) -> Result<()> {
        if let Some(b) = self.bits {
            if !(1..=8).contains(&b) {
                return Err(Error::config("squeeze.bits", b, "must be 1 to 8 (bits per channel)"));
            }
        }
        if !(2..=5).contains(&self.median) {
            return Err(Error::config("squeeze.median", self.median, "must be 2 to 5 (the median filter's width)"));
        }
        Ok(())
    }

    /// The bit depth for images with `channels` channels: `bits`, or Xu et al.'s 1 (grey) or 5 (colour).
    pub fn bits_for(&self, channels: i64) -> u32 {
        self.bits.unwrap_or(if channels == 1 { 1 } else { 5 })
    }
}

/// Score `max over squeezers s of || softmax(f(x)) - softmax(f(s(x))) ||_1`, f the route's network (its gates and
/// temperature: `Pass::forward`), higher = more suspicious. On the subnet route the squeezed copies go through the
/// subnetwork the unsqueezed image was routed to. Never on `second-model`, whose pass cannot re-run its network.
#[derive(Debug, Clone)]
pub struct Squeeze {
    cfg: SqueezeConfig,
}

impl Squeeze {
    pub fn new(cfg: SqueezeConfig) -> Self {
        Squeeze { cfg }
    }
}

/// Bit-depth reduction of images in [0, 1] to `bits` bits: `round(x (2^bits - 1)) / (2^bits - 1)`, rounding half to
/// even, as Xu et al.'s `reduce_precision_py` (`np.rint`), in the images' own kind.
pub fn bit_depth(xs: &Tensor, bits: u32) -> Tensor {
    let levels = f64::from((1u32 << bits) - 1);
    (xs * levels).round() / levels
}

/// Median filter of width `size` over the last two dimensions of `xs` `[B, C, H, W]`, each channel apart, as Xu et
/// al.'s `scipy.ndimage.median_filter(x, size=(1, size, size, 1), mode="reflect")`. scipy centres a window of width s
/// at offset s/2 (rounded down), so it covers offsets `-(s/2) ..= s - 1 - s/2`: for s = 2 the pixel and the one before
/// it (above, left); borders are extended by mirroring with the edge repeated (`d c b a | a b c d | d c b a`). The
/// value is the window's element of rank `s*s/2` (rounded down, 0-based) in ascending order: the median for odd s, the
/// upper of the two middle values for even s (of 2x2: the third smallest of four), not their mean.
pub fn median_filter(xs: &Tensor, size: i64) -> Tensor {
    let (h, w) = (xs.size()[2], xs.size()[3]);
    let before = size / 2;
    let after = size - 1 - before;
    let dev = xs.device();
    let rows = Tensor::from_slice(&reflect_indices(h, before, after)).to_device(dev);
    let cols = Tensor::from_slice(&reflect_indices(w, before, after)).to_device(dev);
    let padded = xs.index_select(2, &rows).index_select(3, &cols);
    let windows = padded.unfold(2, size, 1).unfold(3, size, 1).flatten(-2, -1);
    windows.sort(-1, false).0.select(-1, size * size / 2)
}

/// The source index of each position `-before .. n + after` of a line of `n` extended by scipy's "reflect" mode.
fn reflect_indices(n: i64, before: i64, after: i64) -> Vec<i64> {
    (-before..n + after)
        .map(|i| {
            // the extension is periodic with period 2n: n values, then the same reversed
            let j = i.rem_euclid(2 * n);
            if j < n {
                j
            } else {
                2 * n - 1 - j
            }
        })
        .collect()
}

/// `|| softmax(a) - softmax(b) ||_1` per row, in f64.
fn l1_softmax(a: &Tensor, b: &Tensor) -> Tensor {
    let p = a.to_kind(Kind::Double).softmax(-1, Kind::Double);
    let q = b.to_kind(Kind::Double).softmax(-1, Kind::Double);
    (p - q).abs().sum_dim_intlist(-1, false, Kind::Double)
}

impl Detector for Squeeze {
    fn kind(&self) -> DetectorKind {
        DetectorKind::Squeeze
    }
    fn runs_on(&self, route: RouteKind) -> bool {
        !route.other_network()
    }
    fn score(&self, v: &View) -> Result<Tensor> {
        // no guard: on a pass that carries a graph the score has its derivative in x (almost everywhere: bit-depth
        // reduction is flat between levels, a median passes on its selected pixel's)
        Ok(self.distances(v, false))
    }
    /// The same values with each squeezer the identity on the backward pass (BPDA, Athalye, Carlini, Wagner 2018):
    /// the true gradient through bit-depth reduction is zero almost everywhere, and descending it leaves squeezing
    /// unbroken even with an eps of 1.
    fn attack_score(&self, v: &View, _steer: &Tensor) -> Option<Result<Tensor>> {
        Some(Ok(self.distances(v, true)))
    }
}

impl Squeeze {
    /// The score, each squeezer straight-through (`x + (s(x) - x)` with the difference detached) with `bpda`.
    fn distances(&self, v: &View, bpda: bool) -> Tensor {
        let bits = self.cfg.bits_for(v.xs.size()[1]);
        let squeezed = [
            (format!("squeeze bit depth {bits}"), bit_depth(v.xs, bits)),
            (format!("squeeze median {}", self.cfg.median), median_filter(v.xs, self.cfg.median)),
        ];
        let distances: Vec<Tensor> = squeezed
            .iter()
            .map(|(name, s)| {
                let s = if bpda { v.xs + (s - v.xs).detach() } else { s.shallow_clone() };
                // the routes that run the full network itself share its forward of each squeezed copy
                l1_softmax(&v.route.logits, &v.route.forward_shared(v.model, v.full, name, &s).1)
            })
            .collect();
        Tensor::stack(&distances, 0).amax([0].as_slice(), false)
    }
}
