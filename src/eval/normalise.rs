//! Per-class normalisation of detector scores (`[detectors] class_normalise`): the class subnetworks of Wang, Su,
//! Zhang, Hu (arXiv 1910.02673) each have their own confidence scale, and one threshold over all images mixes them.
//! Each score is z-scored within the class the full model predicts for its image, with the mean and standard deviation
//! of the same detector's scores on the same route over the clean held-out fit images predicted as that class.
use crate::error::{Error, Result};

/// Per class, the mean and standard deviation (population, ddof 0) of clean held-out scores.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassStats {
    pub mean: Vec<f64>,
    pub sd: Vec<f64>,
}

/// A class needs this many held-out images predicted as it for its own statistics; below, it takes those of all the
/// held-out images.
pub const MIN_PER_CLASS: usize = 2;

impl ClassStats {
    /// The statistics of `scores` (one per held-out image) grouped by `pred`, the full model's predicted class of each
    /// image, for `classes` classes. A class with fewer than `MIN_PER_CLASS` images takes the pooled mean and standard
    /// deviation; a standard deviation of 0 becomes 1 (the scores are then only centred).
    pub fn fit(scores: &[f64], pred: &[i64], classes: usize) -> Result<ClassStats> {
        if scores.len() != pred.len() || scores.is_empty() {
            return Err(Error::Model(format!(
                "class normalisation: {} held-out scores for {} predictions",
                scores.len(),
                pred.len()
            )));
        }
        if let Some(s) = scores.iter().find(|s| !s.is_finite()) {
            return Err(Error::Model(format!("class normalisation: a held-out score is {s}")));
        }
        let moments = |v: &[f64]| {
            let n = v.len() as f64;
            let m = v.iter().sum::<f64>() / n;
            let sd = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n).sqrt();
            (m, if sd > 0.0 { sd } else { 1.0 })
        };
        let pooled = moments(scores);
        let mut by_class: Vec<Vec<f64>> = vec![Vec::new(); classes];
        for (&s, &p) in scores.iter().zip(pred) {
            let c = usize::try_from(p).ok().filter(|&c| c < classes).ok_or_else(|| {
                Error::Model(format!("class normalisation: predicted class {p} outside 0..{classes}"))
            })?;
            by_class[c].push(s);
        }
        let (mean, sd) = by_class.iter().map(|v| if v.len() < MIN_PER_CLASS { pooled } else { moments(v) }).unzip();
        Ok(ClassStats { mean, sd })
    }

    /// `(score - mean[c]) / sd[c]` of each score, `c` its image's predicted class.
    pub fn apply(&self, scores: &[f64], pred: &[i64]) -> Result<Vec<f64>> {
        if scores.len() != pred.len() {
            return Err(Error::Model(format!(
                "class normalisation: {} scores for {} predictions",
                scores.len(),
                pred.len()
            )));
        }
        scores
            .iter()
            .zip(pred)
            .map(|(&s, &p)| {
                let c = usize::try_from(p).ok().filter(|&c| c < self.mean.len()).ok_or_else(|| {
                    Error::Model(format!("class normalisation: predicted class {p} outside 0..{}", self.mean.len()))
                })?;
                Ok((s - self.mean[c]) / self.sd[c])
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_z_scored_within_their_predicted_class() -> Result<()> {
        // class 0: 1, 3 (mean 2, sd 1); class 1: 10, 10, 10 (sd 0 -> 1); class 2: one image -> pooled
        let scores = [1.0, 3.0, 10.0, 10.0, 10.0, 4.0];
        let pred = [0, 0, 1, 1, 1, 2];
        let st = ClassStats::fit(&scores, &pred, 3)?;
        let pooled_mean = 38.0 / 6.0;
        let pooled_sd = (scores.iter().map(|x| (x - pooled_mean).powi(2)).sum::<f64>() / 6.0).sqrt();
        assert_eq!(st.mean[..2], [2.0, 10.0]);
        assert_eq!(st.sd[..2], [1.0, 1.0]);
        assert!((st.mean[2] - pooled_mean).abs() < 1e-12 && (st.sd[2] - pooled_sd).abs() < 1e-12);
        let z = st.apply(&[2.0, 4.0, 12.0], &[0, 0, 1])?;
        assert_eq!(z, [0.0, 2.0, 2.0]);
        // the same score ranks differently in two classes: the point of the option
        let z = st.apply(&[3.0, 3.0], &[0, 1])?;
        assert!(z[0] > z[1]);
        Ok(())
    }

    #[test]
    fn bad_input_is_an_error_naming_it() {
        let e = |r: Result<ClassStats>| r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e(ClassStats::fit(&[1.0], &[0, 1], 2)).contains("1 held-out scores for 2"));
        assert!(e(ClassStats::fit(&[f64::NAN, 1.0], &[0, 1], 2)).contains("NaN"));
        assert!(e(ClassStats::fit(&[1.0, 2.0], &[0, 5], 2)).contains("predicted class 5"));
        let st = ClassStats { mean: vec![0.0], sd: vec![1.0] };
        assert!(st.apply(&[1.0], &[3]).is_err());
    }
}
