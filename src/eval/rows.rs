//! Metric rows: for each detector, route and protocol, the metrics of its clean and adversarial scores with bootstrap
//! intervals and a thinned ROC curve, and for a route other than the full model its paired difference from the full
//! model on the same images, as the records the reports render from.
use super::protocol::{protocol_sets, Protocol, ScoredSet};
use crate::error::Result;
use crate::metrics;
use crate::records::{Curve, MetricValue, RowRecord, VersusFull};
use crate::routes::RouteKind;

/// How metric rows are computed.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSpec {
    pub protocols: Vec<Protocol>,
    /// Bootstrap resamples for the 95% intervals (0: none).
    pub bootstrap: usize,
    pub seed: u64,
}

/// Every metric of `scores` (true = adversarial) with its bootstrap interval; all empty when one class is missing.
pub fn metric_values(labels: &[bool], scores: &[f64], bootstrap: usize, seed: u64) -> Result<Vec<MetricValue>> {
    let (n_adv, n) = (labels.iter().filter(|&&l| l).count(), labels.len());
    if n_adv == 0 || n_adv == n {
        let none = |m: &str| MetricValue { name: m.to_string(), point: None, lo: None, hi: None };
        return Ok(metrics::METRIC_NAMES.iter().map(|m| none(m)).collect());
    }
    let (point, ci) = if bootstrap > 0 {
        let w = metrics::bootstrap(labels, scores, bootstrap, seed)?;
        (w.point, Some((w.lo, w.hi)))
    } else {
        (metrics::compute(labels, scores)?, None)
    };
    Ok(metrics::METRIC_NAMES
        .iter()
        .map(|m| MetricValue {
            name: m.to_string(),
            point: point.get(m).filter(|v| v.is_finite()),
            lo: ci.and_then(|(lo, _)| lo.get(m)).filter(|v| v.is_finite()),
            hi: ci.and_then(|(_, hi)| hi.get(m)).filter(|v| v.is_finite()),
        })
        .collect())
}

/// Per detector and route, the score above which at most 5% of `fit` (clean held-out images' scores) lie: the 95%
/// quantile (linear interpolation, numpy's default); NaN when there are no scores.
pub fn heldout_thresholds(fit: &[Vec<Vec<f64>>]) -> Vec<Vec<f64>> {
    fit.iter()
        .map(|per_route| {
            per_route
                .iter()
                .map(|scores| {
                    let mut v = scores.clone();
                    v.sort_unstable_by(f64::total_cmp);
                    if v.is_empty() {
                        f64::NAN
                    } else {
                        metrics::quantile(&v, 0.95)
                    }
                })
                .collect()
        })
        .collect()
}

/// The thresholds rows are read at, per detector and route.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds<'a> {
    /// From `heldout_thresholds` (NaN where there is none): `tpr_at_fpr_5_heldout` and `test_fpr_at_heldout_threshold`.
    pub heldout: &'a [Vec<f64>],
    /// The operating thresholds of `evasion_at_fpr_5`.
    pub evasion: &'a [Vec<f64>],
}

/// One row per (detector, route, protocol), in that order. `routes[d]` are detector `d`'s routes, `clean[d][r]` and
/// `adv[d][r]` its scores on them; image `i` has true class `labels[i]` and predictions `pred_clean[i]`,
/// `pred_adv[i]`. With `thresholds`, each row also gets `tpr_at_fpr_5_heldout` and `test_fpr_at_heldout_threshold`
/// (the shares of its positives and of its negatives scoring above the held-out threshold) and `evasion_at_fpr_5`
/// (over every clean-correct image, whatever the protocol).
#[allow(clippy::too_many_arguments)]
pub fn metric_rows(
    detectors: &[&str],
    routes: &[Vec<RouteKind>],
    clean: &[Vec<Vec<f64>>],
    adv: &[Vec<Vec<f64>>],
    labels: &[i64],
    pred_clean: &[i64],
    pred_adv: &[i64],
    spec: &MetricSpec,
    thresholds: Option<Thresholds>,
) -> Result<Vec<RowRecord>> {
    let correct: Vec<usize> = (0..labels.len()).filter(|&i| pred_clean[i] == labels[i]).collect();
    let mut rows = Vec::new();
    for (d, name) in detectors.iter().enumerate() {
        let pairs: Vec<_> = (0..routes[d].len())
            .map(|r| protocol_sets(&clean[d][r], &adv[d][r], labels, pred_clean, pred_adv))
            .collect();
        // the reference of the paired differences: the full model, or the subnet for a detector without a full row
        let full = routes[d]
            .iter()
            .position(|&r| r == RouteKind::Full)
            .or_else(|| routes[d].iter().position(|&r| r == RouteKind::Subnet));
        // the reference's side of the paired comparisons, per protocol, computed once for all the detector's routes
        let mut references: Vec<(Protocol, metrics::Reference)> = Vec::new();
        for (r, route) in routes[d].iter().enumerate() {
            // evasion at the operating threshold: over every clean-correct image, the same for each protocol
            let evasion = thresholds.map(|h| h.evasion[d][r]).filter(|t| !t.is_nan()).map(|t| {
                let scores = &adv[d][r];
                let flags: Vec<bool> = correct.iter().map(|&i| pred_adv[i] != labels[i] && scores[i] <= t).collect();
                let evaded = flags.iter().filter(|&&f| f).count();
                let point = (!correct.is_empty()).then(|| evaded as f64 / correct.len() as f64);
                (point, crate::records::Bits::from_flags(&flags))
            });
            for &protocol in &spec.protocols {
                let set: &ScoredSet = ScoredSet::pick(&pairs[r], protocol);
                let (n_neg, n_pos) = set.counts();
                let mut metrics = metric_values(&set.labels, &set.scores, spec.bootstrap, spec.seed)?;
                if let Some(t) = thresholds.map(|h| h.heldout[d][r]).filter(|t| !t.is_nan()) {
                    let above = |class: bool, n: usize| {
                        let k = set.labels.iter().zip(&set.scores).filter(|(&l, &s)| l == class && s > t).count();
                        (n > 0).then(|| k as f64 / n as f64)
                    };
                    for (name, point) in
                        [(metrics::HELDOUT_TPR, above(true, n_pos)), (metrics::HELDOUT_FPR, above(false, n_neg))]
                    {
                        metrics.push(MetricValue { name: name.to_string(), point, lo: None, hi: None });
                    }
                }
                if let Some((point, _)) = &evasion {
                    metrics.push(MetricValue { name: metrics::EVASION.to_string(), point: *point, lo: None, hi: None });
                }
                let roc = match n_pos > 0 && n_neg > 0 {
                    true => metrics::roc_curve(&set.labels, &set.scores).ok().map(|r| Curve::thinned(&r.fpr, &r.tpr)),
                    false => None,
                };
                let versus_full = match full.filter(|&f| f != r && n_pos > 0 && n_neg > 0) {
                    Some(f) => {
                        let reference_set = ScoredSet::pick(&pairs[f], protocol);
                        let i = match references.iter().position(|(p, _)| *p == protocol) {
                            Some(i) => i,
                            None => {
                                let (labels, scores) = (&reference_set.labels, &reference_set.scores);
                                let reference = metrics::Reference::new(labels, scores, spec.bootstrap, spec.seed)?;
                                references.push((protocol, reference));
                                references.len() - 1
                            }
                        };
                        Some(versus(routes[d][f], reference_set, &references[i].1, set)?)
                    }
                    None => None,
                };
                rows.push(RowRecord {
                    detector: name.to_string(),
                    mode: route.to_string(),
                    protocol: protocol.to_string(),
                    n_pos,
                    n_neg,
                    metrics,
                    roc,
                    versus_full,
                    trained_on: None,
                    evaded: evasion.as_ref().map(|(_, bits)| bits.clone()),
                });
            }
        }
    }
    Ok(rows)
}

/// `route` against `full` (the route `against`, whose paired side is `reference`): one detector's scores of the same
/// images on two routes (protocol_sets picks the images by the full model's predictions, so both sets hold the same
/// images in the same order).
fn versus(
    against: RouteKind,
    full: &ScoredSet,
    reference: &metrics::Reference,
    route: &ScoredSet,
) -> Result<VersusFull> {
    if full.labels != route.labels {
        return Err(crate::error::Error::Model("a route's image set differs from the full model's".into()));
    }
    let p = reference.against(&route.labels, &route.scores)?;
    Ok(VersusFull {
        against,
        delta_auroc: p.delong.delta,
        delta_auroc_lo: p.delta_auroc_lo,
        delta_auroc_hi: p.delta_auroc_hi,
        delta_auroc_p: p.delong.p,
        delta_auroc_se: Some(p.delong.variance.max(0.0).sqrt()),
        delta_tpr_at_fpr_5: p.delta_tpr_at_fpr_5,
        delta_tpr_at_fpr_5_lo: p.delta_tpr_at_fpr_5_lo,
        delta_tpr_at_fpr_5_hi: p.delta_tpr_at_fpr_5_hi,
    })
}
