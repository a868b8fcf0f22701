//! The adaptive suite's table: per budget, rows the attacked detectors, columns the modes, each cell the share of
//! clean-correct images that evade the detector at its operating threshold under the oblivious PGD of the same budget
//! and under the adaptive attack on that detector and mode (`evasion_at_fpr_5`), with the adaptive AUROC beside; and
//! the adaptive jobs' first-descent curves as CSV.
use crate::metrics::EVASION;
use crate::records::{JobRecord, RowRecord};

/// The value of `key=` in a params string.
fn param<'a>(params: &'a str, key: &str) -> Option<&'a str> {
    params.split_whitespace().find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// (norm, eps, steer) of an adaptive job, (norm, eps) of an oblivious PGD job.
fn budget(job: &JobRecord) -> Option<(String, String)> {
    let eps = param(&job.params, "eps")?.to_string();
    match job.attack.as_str() {
        "adaptive" => Some((param(&job.params, "norm").unwrap_or("linf").to_string(), eps)),
        "pgd-linf" => Some(("linf".into(), eps)),
        "pgd-l2" => Some(("l2".into(), eps)),
        _ => None,
    }
}

fn row<'a>(job: &'a JobRecord, detector: &str, mode: &str, protocol: &str) -> Option<&'a RowRecord> {
    job.rows.iter().find(|r| r.detector == detector && r.mode == mode && r.protocol == protocol)
}

fn value(r: Option<&RowRecord>, metric: &str) -> Option<f64> {
    r.and_then(|r| r.metric(metric)).and_then(|m| m.point)
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("n/a".to_string(), |v| format!("{v:.3}"))
}

/// The markdown of the adaptive jobs among `jobs` (the first variant's), `None` without any.
pub fn evasion_markdown(jobs: &[JobRecord], protocol: &str) -> Option<String> {
    let first = jobs.first().map(|j| j.variant.clone())?;
    let jobs: Vec<&JobRecord> = jobs.iter().filter(|j| j.variant == first).collect();
    let adaptive: Vec<&JobRecord> = jobs.iter().copied().filter(|j| j.target.is_some()).collect();
    if adaptive.is_empty() {
        return None;
    }
    let mut budgets: Vec<(String, String, String)> = Vec::new();
    for j in &adaptive {
        let (norm, eps) = budget(j)?;
        let steer = j.target.as_ref().map_or(String::new(), |t| t.steer.clone());
        if !budgets.contains(&(norm.clone(), eps.clone(), steer.clone())) {
            budgets.push((norm, eps, steer));
        }
    }
    let mut md = String::from(
        "## Adaptive attacks: evasion at the operating threshold\n\nEach cell: the share of the clean-correct images \
         that are misclassified and score at or below the detector's threshold (5% FPR on clean held-out images; the \
         fitted detectors' on clean test images), under the oblivious PGD of the same budget -> under the adaptive \
         attack on that detector and mode; the adaptive AUROC in brackets. White box: the attacker knows the model, \
         the class subnetworks, the detector and its threshold.\n\n",
    );
    for (norm, eps, steer) in &budgets {
        let here: Vec<&&JobRecord> = adaptive
            .iter()
            .filter(|j| {
                budget(j) == Some((norm.clone(), eps.clone())) && j.target.as_ref().is_some_and(|t| &t.steer == steer)
            })
            .collect();
        let oblivious = jobs.iter().find(|j| j.target.is_none() && budget(j) == Some((norm.clone(), eps.clone())));
        let mut detectors: Vec<String> = Vec::new();
        let mut modes: Vec<String> = Vec::new();
        for j in &here {
            let t = j.target.as_ref()?;
            if !detectors.contains(&t.detector) {
                detectors.push(t.detector.clone());
            }
            if !modes.contains(&t.mode) {
                modes.push(t.mode.clone());
            }
        }
        md += &format!(
            "### {norm} eps {eps}, steered to the {} class (oblivious: {})\n\n| detector | {} |\n|---|{}\n",
            if steer == "random" { "random" } else { "most likely wrong" },
            oblivious.map_or("none in the suite".to_string(), |o| format!("{} {}", o.attack, o.params)),
            modes.join(" | "),
            "---|".repeat(modes.len())
        );
        for d in &detectors {
            let cells: Vec<String> = modes
                .iter()
                .map(|m| {
                    let Some(job) =
                        here.iter().find(|j| j.target.as_ref().is_some_and(|t| &t.detector == d && &t.mode == m))
                    else {
                        return String::new();
                    };
                    let adv = row(job, d, m, protocol);
                    let obl = oblivious.and_then(|o| row(o, d, m, protocol));
                    format!(
                        "{} -> {} ({})",
                        fmt(value(obl, EVASION)),
                        fmt(value(adv, EVASION)),
                        fmt(value(adv, "auroc"))
                    )
                })
                .collect();
            md += &format!("| {d} | {} |\n", cells.join(" | "));
        }
        md += "\n";
    }
    Some(md)
}

/// `job,attack,params,detector,mode,step,mean_loss,evading,evading_best` for every adaptive job's first descent;
/// `None` without adaptive jobs.
pub fn curves_csv(jobs: &[JobRecord]) -> Option<String> {
    let mut out = String::from("job,attack,params,detector,mode,step,mean_loss,evading,evading_best\n");
    let mut any = false;
    for j in jobs {
        let Some(t) = &j.target else { continue };
        any = true;
        for (step, [loss, now, best]) in t.curve.iter().enumerate() {
            out += &format!(
                "{},{},\"{}\",{},{},{step},{loss},{now},{best}\n",
                j.index, j.attack, j.params, t.detector, t.mode
            );
        }
    }
    any.then_some(out)
}

/// A plot's title and its series: a name and one value per step.
pub type CurveGroup = (String, Vec<(String, Vec<f64>)>);

/// The adaptive jobs' first-batch curves grouped by budget, for plotting: per (norm, eps, steer) a title and, per
/// attacked detector and mode, the share of the batch evading so far (the best iterate) at each step.
pub fn curve_groups(jobs: &[JobRecord]) -> Vec<CurveGroup> {
    let mut groups: Vec<CurveGroup> = Vec::new();
    for j in jobs.iter().filter(|j| j.attack == "adaptive") {
        let (Some(t), Some((norm, eps))) = (&j.target, budget(j)) else { continue };
        let steer = param(&j.params, "steer").unwrap_or("wrong");
        let title = format!("adaptive {norm} eps {eps} (steer {steer})");
        let series = (format!("{} ({})", t.detector, t.mode), t.curve.iter().map(|c| c[2]).collect());
        match groups.iter_mut().find(|(g, _)| *g == title) {
            Some((_, s)) => s.push(series),
            None => groups.push((title, vec![series])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_and_budgets_parse() {
        assert_eq!(param("detector=kl eps=0.3 mode=subnet", "eps"), Some("0.3"));
        assert_eq!(param("detector=kl eps=0.3 mode=subnet", "norm"), None);
        assert_eq!(param("epsilon=2 eps=2", "eps"), Some("2"));
    }
}
