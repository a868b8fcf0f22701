//! Analysis of class-specific subnetworks (Wang et al., arXiv 1910.02673): units kept per class and layer, accuracy of
//! each subnetwork on its own and on other classes' images, and class similarity (Jaccard of masks, cosine of gates).
use super::mask;
use super::Subnets;
use crate::data::Dataset;
use crate::error::Result;
use crate::models::Model;
use tch::{Device, Kind, Tensor};

/// Every figure of the analysis, as plain numbers (reports only read these).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Analysis {
    pub layers: Vec<String>,
    /// `[class][layer]`: fraction of the layer's units in the class's subnetwork.
    pub kept_per_layer: Vec<Vec<f64>>,
    /// Per class: fraction of all gateable units kept.
    pub kept_fraction: Vec<f64>,
    /// `[subnet c][class d]`: accuracy of subnetwork c on held-out images of class d (a subset; see `analyse`).
    pub cross_accuracy: Vec<Vec<f64>>,
    /// Per class: accuracy of the class's subnetwork and of the full model on the class's held-out images.
    pub own_class_accuracy: Vec<f64>,
    pub full_model_accuracy: Vec<f64>,
    /// Per class: mean KL(full || subnet) of the softmax outputs on the class's held-out images (fidelity, lower is
    /// closer).
    pub own_class_kl: Vec<f64>,
    /// Per class: fraction of the class's held-out images on which the subnetwork predicts what the full model
    /// predicts.
    pub own_class_agreement: Vec<f64>,
    /// The held-out images per class the figures were measured on.
    pub images_per_class: Vec<usize>,
    /// `[c][d]`: Jaccard index of the masks of classes c and d.
    pub jaccard: Vec<Vec<f64>>,
    /// `[c][d]`: cosine similarity of the gate vectors of classes c and d.
    pub cosine: Vec<Vec<f64>>,
}

/// Runs every figure on `test`, images the extraction did not learn from (the suites and `advdet extract` pass held-out
/// training images): own-class accuracy and KL on all of them (each image through its own class's subnetwork, one
/// batched forward), the cross-class matrix on the first `cross_per_class` images of each class (all when `None`).
pub fn analyse(model: &Model, subnets: &Subnets, test: &Dataset, cross_per_class: Option<usize>) -> Result<Analysis> {
    let own = own_class(model, subnets, test)?;
    let cross = match cross_per_class {
        Some(k) => cross_accuracy(model, &subnets.masks, &test.per_class(k), None)?,
        None => cross_accuracy(model, &subnets.masks, test, None)?,
    };
    Ok(Analysis {
        layers: subnets.layout.layers.iter().map(|l| l.name.clone()).collect(),
        kept_per_layer: mask::kept_per_layer(&subnets.masks, &subnets.layout)?,
        kept_fraction: mask::kept_fraction(&subnets.masks)?,
        cross_accuracy: cross,
        own_class_accuracy: own.subnet_accuracy,
        full_model_accuracy: own.full_accuracy,
        own_class_kl: own.kl,
        own_class_agreement: own.agreement,
        images_per_class: test.class_counts(),
        jaccard: jaccard(&subnets.masks)?,
        cosine: cosine(&subnets.gates)?,
    })
}

/// Per class, on its own test images: accuracy of the subnetwork and of the full model, mean KL(full || subnet) of
/// the softmax outputs, and the fraction of images on which both predict the same class.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OwnClass {
    pub subnet_accuracy: Vec<f64>,
    pub full_accuracy: Vec<f64>,
    pub kl: Vec<f64>,
    pub agreement: Vec<f64>,
}

pub fn own_class(model: &Model, subnets: &Subnets, test: &Dataset) -> Result<OwnClass> {
    let _g = tch::no_grad_guard();
    let classes = test.num_classes();
    let device = model.device();
    let zeros = || Tensor::zeros([classes], (Kind::Double, device));
    let (mut tot, mut sub_hit, mut full_hit, mut kl, mut agree) = (zeros(), zeros(), zeros(), zeros(), zeros());
    for (xs, ys) in test.batches(1000, device) {
        let full = model.logits(&xs);
        let sub = subnets.logits(model, &xs, &ys);
        let (fp, sp) = (full.argmax(-1, false), sub.argmax(-1, false));
        let f = full.log_softmax(-1, Kind::Double);
        let k = (f.exp() * (&f - sub.log_softmax(-1, Kind::Double))).sum_dim_intlist(1, false, Kind::Double);
        let add = |acc: Tensor, v: &Tensor| acc.index_add(0, &ys, &v.to_kind(Kind::Double));
        tot = add(tot, &Tensor::ones_like(&ys));
        sub_hit = add(sub_hit, &sp.eq_tensor(&ys));
        full_hit = add(full_hit, &fp.eq_tensor(&ys));
        agree = add(agree, &sp.eq_tensor(&fp));
        kl = add(kl, &k);
    }
    let per = |t: &Tensor| -> Result<Vec<f64>> {
        let q = t / tot.clamp_min(1.0);
        let v = Vec::<f64>::try_from(q.to_device(Device::Cpu))?;
        let n = Vec::<f64>::try_from(tot.to_device(Device::Cpu))?;
        Ok(v.iter().zip(&n).map(|(&x, &c)| if c == 0.0 { f64::NAN } else { x }).collect())
    };
    Ok(OwnClass {
        subnet_accuracy: per(&sub_hit)?,
        full_accuracy: per(&full_hit)?,
        kl: per(&kl)?,
        agreement: per(&agree)?,
    })
}

/// Per-class accuracy of the model on `test`, through `gates` (`[1, units]`, every sample the same) or the full model.
pub fn per_class_accuracy(model: &Model, gates: Option<&Tensor>, test: &Dataset) -> Result<Vec<f64>> {
    let _g = tch::no_grad_guard();
    let classes = test.num_classes();
    let device = model.device();
    let gates = gates.map(|g| g.to_device(device));
    let (mut hit, mut tot) =
        (Tensor::zeros([classes], (Kind::Int64, device)), Tensor::zeros([classes], (Kind::Int64, device)));
    for (xs, ys) in test.batches(1000, device) {
        let pred = model.net.forward(&xs, gates.as_ref(), false).argmax(-1, false);
        let ones = Tensor::ones_like(&ys);
        tot = tot.index_add(0, &ys, &ones);
        hit = hit.index_add(0, &ys, &pred.eq_tensor(&ys).to_kind(Kind::Int64));
    }
    let hit = Vec::<i64>::try_from(hit.to_device(Device::Cpu))?;
    let tot = Vec::<i64>::try_from(tot.to_device(Device::Cpu))?;
    Ok(hit.iter().zip(&tot).map(|(&h, &t)| if t == 0 { f64::NAN } else { h as f64 / t as f64 }).collect())
}

/// `[c][d]`: accuracy of subnetwork c (mask row c) on the test images of class d. `only` restricts the rows computed.
pub fn cross_accuracy(model: &Model, masks: &Tensor, test: &Dataset, only: Option<&[usize]>) -> Result<Vec<Vec<f64>>> {
    let rows: Vec<usize> = match only {
        Some(r) => r.to_vec(),
        None => (0..masks.size()[0] as usize).collect(),
    };
    rows.iter().map(|&c| per_class_accuracy(model, Some(&masks.get(c as i64).unsqueeze(0)), test)).collect()
}

/// Jaccard index |A and B| / |A or B| of every pair of binary mask rows (1 on the diagonal).
pub fn jaccard(masks: &Tensor) -> Result<Vec<Vec<f64>>> {
    let m = masks.detach().to_kind(Kind::Double).to_device(Device::Cpu);
    let inter = m.matmul(&m.tr());
    let sizes = m.sum_dim_intlist(1, false, Kind::Double);
    let union = sizes.unsqueeze(1) + sizes.unsqueeze(0) - &inter;
    let j = inter / union.clamp_min(1.0);
    to_matrix(&j)
}

/// Cosine similarity of every pair of gate rows (0 where a row is all zeros).
pub fn cosine(gates: &Tensor) -> Result<Vec<Vec<f64>>> {
    let g = gates.detach().to_kind(Kind::Double).to_device(Device::Cpu);
    let norms = g.square().sum_dim_intlist(1, false, Kind::Double).sqrt().clamp_min(1e-30);
    let dots = g.matmul(&g.tr());
    to_matrix(&(dots / (norms.unsqueeze(1) * norms.unsqueeze(0))))
}

fn to_matrix(t: &Tensor) -> Result<Vec<Vec<f64>>> {
    let n = t.size()[0];
    (0..n).map(|i| Ok(Vec::<f64>::try_from(t.get(i))?)).collect()
}

/// A matrix as CSV: a header `corner,col0,col1,...` then one row per `row_labels` entry.
pub fn matrix_csv(corner: &str, row_labels: &[String], col_labels: &[String], m: &[Vec<f64>]) -> String {
    let mut s = String::from(corner);
    for c in col_labels {
        s.push(',');
        s.push_str(c);
    }
    s.push('\n');
    for (label, row) in row_labels.iter().zip(m) {
        s.push_str(label);
        for v in row {
            s.push_str(&format!(",{v:.6}"));
        }
        s.push('\n');
    }
    s
}
