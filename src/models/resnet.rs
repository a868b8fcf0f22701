//! ResNet-20 for 32x32 colour images (He et al. 2016, the CIFAR-10 variant: 3 stages of 3 basic blocks with 16, 32 and
//! 64 channels; projection shortcuts, 1x1 conv + batch norm, where the shape changes).
//! Gates: the stem's channels, and in each block the first conv's channels and the block's output channels.
use super::{apply_gate, Classifier, GateLayout};
use tch::{nn, Tensor};

#[derive(Debug)]
struct Block {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
    shortcut: Option<(nn::Conv2D, nn::BatchNorm)>,
}

fn conv3(p: nn::Path, cin: i64, cout: i64, stride: i64) -> nn::Conv2D {
    nn::conv2d(p, cin, cout, 3, nn::ConvConfig { stride, padding: 1, bias: false, ..Default::default() })
}

impl Block {
    fn new(p: &nn::Path, cin: i64, cout: i64, stride: i64) -> Block {
        let shortcut = (stride != 1 || cin != cout).then(|| {
            let cfg = nn::ConvConfig { stride, bias: false, ..Default::default() };
            (
                nn::conv2d(p / "shortcut" / "0", cin, cout, 1, cfg),
                nn::batch_norm2d(p / "shortcut" / "1", cout, Default::default()),
            )
        });
        Block {
            conv1: conv3(p / "conv1", cin, cout, stride),
            bn1: nn::batch_norm2d(p / "bn1", cout, Default::default()),
            conv2: conv3(p / "conv2", cout, cout, 1),
            bn2: nn::batch_norm2d(p / "bn2", cout, Default::default()),
            shortcut,
        }
    }

    fn forward(&self, xs: &Tensor, gates: Option<&Tensor>, spans: (&(i64, i64), &(i64, i64)), train: bool) -> Tensor {
        let h = apply_gate(xs.apply(&self.conv1).apply_t(&self.bn1, train).relu(), gates, *spans.0);
        let h = h.apply(&self.conv2).apply_t(&self.bn2, train);
        let short = match &self.shortcut {
            Some((c, b)) => xs.apply(c).apply_t(b, train),
            None => xs.shallow_clone(),
        };
        apply_gate((h + short).relu(), gates, *spans.1)
    }
}

#[derive(Debug)]
pub struct Resnet20 {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    blocks: Vec<Block>,
    fc: nn::Linear,
    layout: GateLayout,
}

impl Resnet20 {
    pub fn new(p: &nn::Path, classes: i64) -> Resnet20 {
        let mut blocks = Vec::new();
        let mut names = vec![("conv1".to_string(), 16)];
        let mut cin = 16;
        for (stage, &cout) in [16i64, 32, 64].iter().enumerate() {
            for j in 0..3 {
                let stride = if stage > 0 && j == 0 { 2 } else { 1 };
                let bp = p / format!("layer{}", stage + 1) / j.to_string();
                blocks.push(Block::new(&bp, cin, cout, stride));
                names.push((format!("layer{}.{j}.conv1", stage + 1), cout));
                names.push((format!("layer{}.{j}.out", stage + 1), cout));
                cin = cout;
            }
        }
        let names: Vec<(&str, i64)> = names.iter().map(|(n, w)| (n.as_str(), *w)).collect();
        Resnet20 {
            conv1: conv3(p / "conv1", 3, 16, 1),
            bn1: nn::batch_norm2d(p / "bn1", 16, Default::default()),
            blocks,
            fc: nn::linear(p / "fc", 64, classes, Default::default()),
            layout: GateLayout::new(&names),
        }
    }
}

impl Classifier for Resnet20 {
    fn forward_tapped(
        &self,
        xs: &Tensor,
        gates: Option<&Tensor>,
        train: bool,
        tap: &mut dyn FnMut(&Tensor),
    ) -> (Tensor, Tensor) {
        let s = self.layout.spans();
        let mut h = apply_gate(xs.apply(&self.conv1).apply_t(&self.bn1, train).relu(), gates, s[0]);
        tap(&h);
        for (i, b) in self.blocks.iter().enumerate() {
            h = b.forward(&h, gates, (&s[1 + 2 * i], &s[2 + 2 * i]), train);
            // the last block's output, pooled, is the penultimate features
            if i + 1 < self.blocks.len() {
                tap(&h);
            }
        }
        let feats = h.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        let logits = feats.apply(&self.fc);
        (feats, logits)
    }

    fn head(&self, features: &Tensor) -> Tensor {
        features.apply(&self.fc)
    }

    fn gate_layout(&self) -> &GateLayout {
        &self.layout
    }
}
