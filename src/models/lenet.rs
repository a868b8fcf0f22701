//! LeNet for 28x28 grey images, in the Caffe LeNet shape (LeCun et al. 1998; conv 20 and 50 5x5, FC 500) with ReLU,
//! max pooling and dropout 0.5 before the output layer (the dropout KD+BU of Feinman et al. 2017 samples).
use super::{apply_gate, Classifier, GateLayout};
use tch::{nn, Tensor};

#[derive(Debug)]
pub struct Lenet {
    conv1: nn::Conv2D,
    conv2: nn::Conv2D,
    fc1: nn::Linear,
    fc2: nn::Linear,
    layout: GateLayout,
}

impl Lenet {
    pub fn new(p: &nn::Path, classes: i64) -> Lenet {
        Lenet {
            conv1: nn::conv2d(p / "conv1", 1, 20, 5, Default::default()),
            conv2: nn::conv2d(p / "conv2", 20, 50, 5, Default::default()),
            fc1: nn::linear(p / "fc1", 800, 500, Default::default()),
            fc2: nn::linear(p / "fc2", 500, classes, Default::default()),
            layout: GateLayout::new(&[("conv1", 20), ("conv2", 50), ("fc1", 500)]),
        }
    }
}

impl Classifier for Lenet {
    fn forward_tapped(
        &self,
        xs: &Tensor,
        gates: Option<&Tensor>,
        train: bool,
        tap: &mut dyn FnMut(&Tensor),
    ) -> (Tensor, Tensor) {
        let s = self.layout.spans();
        let h = apply_gate(xs.apply(&self.conv1).relu(), gates, s[0]);
        tap(&h);
        let h = apply_gate(h.max_pool2d_default(2).apply(&self.conv2).relu(), gates, s[1]);
        tap(&h);
        let h = h.max_pool2d_default(2);
        let h = apply_gate(h.flatten(1, -1).apply(&self.fc1).relu(), gates, s[2]);
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
