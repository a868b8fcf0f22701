//! The records a suite run produces, one per job plus one for the suite: every report file is rendered from them
//! alone, so merged shard records render exactly the report of an unsharded run (Wang et al., arXiv 1910.02673).
use crate::error::{Error, Result};
use crate::io::{read_json, write_json};
use std::path::Path;

/// One metric with its bootstrap 95% interval; `None` where it is undefined (e.g. no successful adversarial image).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MetricValue {
    pub name: String,
    #[serde(with = "exact_opt")]
    pub point: Option<f64>,
    #[serde(with = "exact_opt")]
    pub lo: Option<f64>,
    #[serde(with = "exact_opt")]
    pub hi: Option<f64>,
}

/// f64 stored as its shortest round-trip decimal text, parsed back exactly by Rust (JSON number parsing may be off by
/// one unit in the last place), so records read back from disk hold the very values that were computed.
mod exact {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:?}"))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(|_| D::Error::custom(format!("`{s}` is not a number")))
    }
}

mod exact_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(x) => super::exact::serialize(x, s),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        #[derive(Deserialize)]
        struct W(#[serde(with = "super::exact")] f64);
        Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
    }
}

/// A ROC curve thinned for plotting (at most about `ROC_POINTS` points, end points kept).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Curve {
    pub fpr: Vec<f64>,
    pub tpr: Vec<f64>,
}

pub const ROC_POINTS: usize = 400;

impl Curve {
    /// Keeps a point when it moved at least 1/ROC_POINTS from the last kept one (in FPR or TPR), and the last point.
    pub fn thinned(fpr: &[f64], tpr: &[f64]) -> Curve {
        let step = 1.0 / ROC_POINTS as f64;
        let (mut f, mut t) = (Vec::new(), Vec::new());
        for (i, (&x, &y)) in fpr.iter().zip(tpr).enumerate() {
            let last = i + 1 == fpr.len();
            let moved = f.last().is_none_or(|&lx: &f64| (x - lx).abs() >= step)
                || t.last().is_none_or(|&ly: &f64| (y - ly).abs() >= step);
            if moved || last {
                f.push(x);
                t.push(y);
            }
        }
        Curve { fpr: f, tpr: t }
    }
}

/// One row of results.csv: a detector in one mode under one evaluation protocol, for one job.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RowRecord {
    pub detector: String,
    pub mode: String,
    pub protocol: String,
    pub n_pos: usize,
    pub n_neg: usize,
    pub metrics: Vec<MetricValue>,
    pub roc: Option<Curve>,
    /// This route against the same detector on the full model, over the same images (`metrics::paired`); absent on
    /// full-model rows and where a class is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versus_full: Option<VersusFull>,
    /// For a supervised detector, the attack it was trained on (`attack params`, as the job is named): the rows of
    /// that job are its seen attack, every other row an unseen one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trained_on: Option<String>,
    /// Which of the clean-correct images evade the detector at its operating threshold (`evasion_at_fpr_5`'s
    /// numerator), image by image, so that two routes' evasion can be compared as paired data; absent where no
    /// operating threshold was set and in older records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaded: Option<Bits>,
}

/// A bit per image: `n` bits as lowercase hex, four images per digit, the first image in the first digit's highest
/// bit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Bits {
    pub n: usize,
    pub hex: String,
}

impl Bits {
    pub fn from_flags(flags: &[bool]) -> Bits {
        let hex = flags
            .chunks(4)
            .map(|c| {
                let v = c.iter().enumerate().fold(0u32, |v, (i, &f)| v | (u32::from(f) << (3 - i)));
                char::from_digit(v, 16).unwrap_or('0')
            })
            .collect();
        Bits { n: flags.len(), hex }
    }

    /// The flags back; `None` when the hex does not hold exactly `n` bits.
    pub fn flags(&self) -> Option<Vec<bool>> {
        if self.hex.len() != self.n.div_ceil(4) {
            return None;
        }
        let mut out = Vec::with_capacity(self.n);
        for c in self.hex.chars() {
            let v = c.to_digit(16)?;
            out.extend((0..4).map(|i| v & (1 << (3 - i)) != 0));
        }
        // the padding bits of the last digit must be zero
        if out[self.n..].iter().any(|&f| f) {
            return None;
        }
        out.truncate(self.n);
        Some(out)
    }
}

/// A route's paired difference from the full model (route minus full) for one detector and protocol: DeLong's
/// two-sided p of the AUROC difference, and paired, stratified bootstrap intervals (95%, percentile). A detector that
/// does not run on the full model (KL, disagreement: they compare a second network with it) is compared with its
/// `subnet` row instead (`against`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VersusFull {
    /// The route subtracted: `full`, or `subnet` for a detector without a full-model row.
    #[serde(default = "full_route")]
    pub against: crate::routes::RouteKind,
    pub delta_auroc: f64,
    pub delta_auroc_lo: f64,
    pub delta_auroc_hi: f64,
    pub delta_auroc_p: f64,
    /// DeLong's standard error of `delta_auroc` (what pools the seeds' tests); absent in older records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_auroc_se: Option<f64>,
    pub delta_tpr_at_fpr_5: f64,
    pub delta_tpr_at_fpr_5_lo: f64,
    pub delta_tpr_at_fpr_5_hi: f64,
}

fn full_route() -> crate::routes::RouteKind {
    crate::routes::RouteKind::Full
}

impl RowRecord {
    pub fn metric(&self, name: &str) -> Option<&MetricValue> {
        self.metrics.iter().find(|m| m.name == name)
    }
}

/// Everything one job (one attack with one parameter set) measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JobRecord {
    /// Position in the expanded suite (the shard assignment and the row order).
    pub index: usize,
    pub attack: String,
    /// The attack's parameters as written in the suite, `key=value` joined by spaces, keys sorted.
    pub params: String,
    #[serde(with = "exact")]
    pub clean_accuracy: f64,
    /// Among correctly classified clean images, the fraction whose adversarial version is misclassified.
    #[serde(with = "exact")]
    pub attack_success_rate: f64,
    #[serde(with = "exact")]
    pub mean_linf: f64,
    #[serde(with = "exact")]
    pub mean_l2: f64,
    pub rows: Vec<RowRecord>,
    /// The model and extraction the job ran on (`[suite] seeds` x `[subnet] lambda` x `[subspace] k`); absent in records written before
    /// suites had variants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<VariantRecord>,
    /// The detector and mode an adaptive attack attacked, and the operating point it was held to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetRecord>,
}

/// What an adaptive job attacked: the detector on the mode, at `threshold` with the clean scores' `scale`; `curve` is
/// the first batch's first descent per step: mean loss, share evading at the iterate, share evading at its best.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TargetRecord {
    pub detector: String,
    pub mode: String,
    pub steer: String,
    #[serde(with = "exact")]
    pub threshold: f64,
    #[serde(with = "exact")]
    pub scale: f64,
    pub curve: Vec<[f64; 3]>,
}

/// One (seed, lambda, k) of a suite: its model, its extraction and the `subspace` route's k.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VariantRecord {
    /// The model's training seed (`None` for a weights file).
    pub seed: Option<u64>,
    #[serde(with = "exact")]
    pub lambda: f64,
    /// The size of each class's filter subset on the `subspace` route (`None` without that route).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subspace_k: Option<usize>,
    /// The model's label (`lenet-s1-e6`), its clean test accuracy, and the mean over classes of the fraction of
    /// gateable units the class subnetworks keep.
    pub model: String,
    #[serde(with = "exact")]
    pub model_accuracy: f64,
    #[serde(with = "exact")]
    pub kept_fraction: f64,
}

impl JobRecord {
    /// The label of the job in tables and file names: `attack params`.
    pub fn label(&self) -> String {
        if self.params.is_empty() {
            self.attack.clone()
        } else {
            format!("{} {}", self.attack, self.params)
        }
    }

    /// A file-name-safe label, prefixed by the index so names stay unique and ordered (a suite with several
    /// variants numbers its records variant by variant: `index = variant * jobs + job`).
    pub fn slug(&self) -> String {
        let s: String = self
            .label()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' })
            .collect();
        format!("{:03}-{s}", self.index)
    }
}

/// Per-class share of each layer's units kept by the class's subnetwork, and the pairwise mask similarity.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SubnetRecord {
    pub layers: Vec<String>,
    /// `[class][layer]`, fraction of units kept.
    pub kept: Vec<Vec<f64>>,
    /// Per class, fraction of all gateable units kept.
    pub kept_fraction: Vec<f64>,
    /// Per class, accuracy of the class's subnetwork and of the full model on the class's test images.
    pub own_class_accuracy: Vec<f64>,
    pub full_model_accuracy: Vec<f64>,
    /// `[class][class]`, Jaccard similarity of the binary masks.
    pub similarity: Vec<Vec<f64>>,
}

/// A model trained with class-specific gates (CSG-CNN): its gate matrix, how class-specific it is, and the clean
/// accuracy per class of its full path, its gated path with the true label's gates, and with the predicted class's.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CsgRecord {
    /// `[channel][class]`, in [0, 1].
    pub gates: Vec<Vec<f64>>,
    pub mean_max_share: f64,
    pub mean_entropy: f64,
    pub dead_channels: usize,
    pub kept_fraction: f64,
    pub full_accuracy: Vec<f64>,
    pub label_gated_accuracy: Vec<f64>,
    pub predicted_gated_accuracy: Vec<f64>,
}

/// What describes the whole run: identical in every shard of a suite.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SuiteRecord {
    pub suite: String,
    /// sha256 of the suite file's bytes.
    pub suite_hash: String,
    pub dataset: String,
    pub model: String,
    pub model_accuracy: f64,
    pub seed: u64,
    pub test_images: usize,
    pub fit_images: usize,
    pub bootstrap: usize,
    /// Total number of jobs of the suite (all shards).
    pub jobs: usize,
    pub detectors: Vec<String>,
    pub modes: Vec<String>,
    pub protocols: Vec<String>,
    pub subnet: SubnetRecord,
    /// The first variant's model's class-specific gates, when it was trained with them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csg: Option<CsgRecord>,
    /// The class similarity of the per-image paths of each path route the suite runs (`cdrp`, `nnd`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<PathSimilarity>,
}

/// How alike the classes' per-image paths are on one path route: each class's path is the set of conv channels open
/// (gate above 0.5) in at least half of its clean images, and `similarity[c][d]` the Jaccard similarity of two
/// classes' paths, as the CSS heatmap compares class masks.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PathSimilarity {
    pub route: String,
    /// The clean training images (the first of the fit split) the paths come from.
    pub images: usize,
    /// The mean share of conv channels open per image.
    pub open_share: f64,
    pub similarity: Vec<Vec<f64>>,
}

/// Writes the records into `<dir>/records/`.
pub fn save(dir: &Path, suite: &SuiteRecord, jobs: &[JobRecord]) -> Result<()> {
    let rec = dir.join("records");
    write_json(&rec.join("suite.json"), suite)?;
    for j in jobs {
        write_json(&rec.join(format!("job-{}.json", j.slug())), j)?;
    }
    Ok(())
}

/// Reads `<dir>/records/`: the suite record and the job records, sorted by index.
pub fn load(dir: &Path) -> Result<(SuiteRecord, Vec<JobRecord>)> {
    let rec = dir.join("records");
    if !rec.is_dir() {
        return Err(Error::Missing(format!(
            "{} holds no records/ folder: not the output of `advdet run`",
            dir.display()
        )));
    }
    let suite: SuiteRecord = read_json(&rec.join("suite.json"))?;
    let mut jobs = Vec::new();
    let entries = std::fs::read_dir(&rec).map_err(|e| Error::io(&rec, e))?;
    for entry in entries {
        let path = entry.map_err(|e| Error::io(&rec, e))?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with("job-") && name.ends_with(".json") {
            jobs.push(read_json::<JobRecord>(&path)?);
        }
    }
    jobs.sort_by_key(|j| j.index);
    Ok((suite, jobs))
}

#[cfg(test)]
mod tests {
    use super::Bits;

    #[test]
    fn bits_round_trip_and_reject_bad_hex() {
        for n in [0usize, 1, 3, 4, 5, 32, 497] {
            let flags: Vec<bool> = (0..n).map(|i| (i * 7 + i / 3) % 5 < 2).collect();
            let b = Bits::from_flags(&flags);
            assert_eq!(b.hex.len(), n.div_ceil(4));
            assert_eq!(b.flags(), Some(flags));
        }
        assert_eq!(Bits::from_flags(&[true, false, false, true, true]).hex, "98");
        assert_eq!(Bits { n: 5, hex: "9".into() }.flags(), None, "too short");
        assert_eq!(Bits { n: 5, hex: "9c".into() }.flags(), None, "padding bits set");
        assert_eq!(Bits { n: 4, hex: "g".into() }.flags(), None, "not hex");
    }
}
