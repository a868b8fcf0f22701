//! A small VGG for 32x32 colour images (Simonyan & Zisserman 2015, in the reduced CIFAR-10 form): three blocks of two
//! 3x3 conv + batch norm + ReLU layers (64, 128, 256 channels) with max pooling, then FC 256 and dropout 0.5.
use super::{apply_gate, Classifier, GateLayout};
use tch::{nn, Tensor};

const WIDTHS: [(i64, i64); 6] = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256)];

#[derive(Debug)]
pub struct VggSmall {
    convs: Vec<(nn::Conv2D, nn::BatchNorm)>,
    fc1: nn::Linear,
    fc2: nn::Linear,
    layout: GateLayout,
}

impl VggSmall {
    pub fn new(p: &nn::Path, classes: i64) -> VggSmall {
        let cfg = nn::ConvConfig { padding: 1, ..Default::default() };
        let convs = WIDTHS
            .iter()
            .enumerate()
            .map(|(i, &(cin, cout))| {
                (
                    nn::conv2d(p / format!("conv{}", i + 1), cin, cout, 3, cfg),
                    nn::batch_norm2d(p / format!("bn{}", i + 1), cout, Default::default()),
                )
            })
            .collect();
        let names: Vec<(String, i64)> = WIDTHS
            .iter()
            .enumerate()
            .map(|(i, &(_, c))| (format!("conv{}", i + 1), c))
            .chain([("fc1".to_string(), 256)])
            .collect();
        let names: Vec<(&str, i64)> = names.iter().map(|(n, w)| (n.as_str(), *w)).collect();
        VggSmall {
            convs,
            fc1: nn::linear(p / "fc1", 256 * 4 * 4, 256, Default::default()),
            fc2: nn::linear(p / "fc2", 256, classes, Default::default()),
            layout: GateLayout::new(&names),
        }
    }
}

impl Classifier for VggSmall {
    fn forward_tapped(
        &self,
        xs: &Tensor,
        gates: Option<&Tensor>,
        train: bool,
        tap: &mut dyn FnMut(&Tensor),
    ) -> (Tensor, Tensor) {
        let s = self.layout.spans();
        let mut h = xs.shallow_clone();
        for (i, (conv, bn)) in self.convs.iter().enumerate() {
            h = apply_gate(h.apply(conv).apply_t(bn, train).relu(), gates, s[i]);
            tap(&h);
            if i % 2 == 1 {
                h = h.max_pool2d_default(2);
            }
        }
        let h = apply_gate(h.flatten(1, -1).apply(&self.fc1).relu(), gates, s[6]);
        let logits = h.dropout(0.5, train).apply(&self.fc2);
        (h, logits)
    }

    fn head(&self, features: &Tensor) -> Tensor {
        features.apply(&self.fc2)
    }

    fn gate_layout(&self) -> &GateLayout {
        &self.layout
    }
}
