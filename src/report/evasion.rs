//! The adaptive suite's table: per budget, rows the attacked detectors, columns the modes, each cell the share of
//! clean-correct images that evade the detector at its operating threshold under the oblivious PGD of the same budget
//! and under the adaptive attack on that detector and mode (`evasion_at_fpr_5`), with the adaptive AUROC beside; and
//! the adaptive jobs' first-descent curves as CSV.
use crate::metrics::proportions::PairedRates;
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

/// The settings of an adaptive job other than what it attacked (`detector=`, `mode=`): jobs with equal settings share
/// a table, so two copies of a budget at different step counts get a table each.
fn settings(params: &str) -> String {
    params
        .split_whitespace()
        .filter(|kv| !kv.starts_with("detector=") && !kv.starts_with("mode="))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The evasion flags of a row, if it has them.
fn flags(r: Option<&RowRecord>) -> Option<Vec<bool>> {
    r.and_then(|r| r.evaded.as_ref()).and_then(|b| b.flags())
}

/// One paired comparison: a mode's adaptive evasion against the full model's, for one detector and budget.
struct Pair {
    section: usize,
    detector: String,
    mode: String,
    rates: PairedRates,
}

/// The markdown of the adaptive jobs among `jobs` (the first variant's), `None` without any. Beside the cells, each
/// mode's adaptive evasion against the full model's, image by image (`metrics::proportions`: Newcombe's interval,
/// McNemar's exact test, Holm over every such comparison of the table).
pub fn evasion_markdown(jobs: &[JobRecord], protocol: &str) -> Option<String> {
    let first = jobs.first().map(|j| j.variant.clone())?;
    let jobs: Vec<&JobRecord> = jobs.iter().filter(|j| j.variant == first).collect();
    let adaptive: Vec<&JobRecord> = jobs.iter().copied().filter(|j| j.target.is_some()).collect();
    if adaptive.is_empty() {
        return None;
    }
    let mut sections: Vec<String> = Vec::new();
    for j in &adaptive {
        budget(j)?;
        let s = settings(&j.params);
        if !sections.contains(&s) {
            sections.push(s);
        }
    }
    struct Section<'a> {
        title: String,
        modes: Vec<String>,
        detectors: Vec<String>,
        here: Vec<&'a JobRecord>,
        oblivious: Option<&'a JobRecord>,
    }
    let mut built: Vec<Section> = Vec::new();
    let mut pairs: Vec<Pair> = Vec::new();
    for (k, set) in sections.iter().enumerate() {
        let here: Vec<&JobRecord> = adaptive.iter().copied().filter(|j| settings(&j.params) == *set).collect();
        let (norm, eps) = budget(here.first()?)?;
        let steer = here.first().and_then(|j| j.target.as_ref()).map_or(String::new(), |t| t.steer.clone());
        let oblivious =
            jobs.iter().copied().find(|j| j.target.is_none() && budget(j) == Some((norm.clone(), eps.clone())));
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
        let cell_job = |d: &str, m: &str| {
            here.iter().copied().find(|j| j.target.as_ref().is_some_and(|t| t.detector == d && t.mode == m))
        };
        for d in &detectors {
            let full = cell_job(d, "full").and_then(|j| flags(row(j, d, "full", protocol)));
            for m in modes.iter().filter(|m| *m != "full") {
                let other = cell_job(d, m).and_then(|j| flags(row(j, d, m, protocol)));
                if let (Some(a), Some(b)) = (&full, other) {
                    if let Ok(rates) = crate::metrics::proportions::paired_rates(a, &b) {
                        pairs.push(Pair { section: k, detector: d.clone(), mode: m.clone(), rates });
                    }
                }
            }
        }
        let extra: Vec<&str> = set
            .split_whitespace()
            .filter(|kv| !["eps=", "norm=", "steer="].iter().any(|p| kv.starts_with(p)))
            .collect();
        let title = format!(
            "{norm} eps {eps}, steered to the {} class{} (oblivious: {})",
            if steer == "random" { "random" } else { "most likely wrong" },
            if extra.is_empty() { String::new() } else { format!(", {}", extra.join(" ")) },
            oblivious.map_or("none in the suite".to_string(), |o| format!("{} {}", o.attack, o.params)),
        );
        built.push(Section { title, modes, detectors, here, oblivious });
    }
    let holm = crate::metrics::holm(&pairs.iter().map(|p| p.rates.p).collect::<Vec<_>>());
    let mut md = String::from(
        "## Adaptive attacks: evasion at the operating threshold\n\nEach cell: the share of the clean-correct images \
         that are misclassified and score at or below the detector's threshold (5% FPR on clean held-out images; the \
         fitted detectors' on clean test images), under the oblivious PGD of the same budget -> under the adaptive \
         attack on that detector and mode; the adaptive AUROC in brackets. White box: the attacker knows the model, \
         the class subnetworks, the detector and its threshold.\n\n",
    );
    if !pairs.is_empty() {
        md += "Mode - full: the adaptive evasion on that mode minus the adaptive evasion on the full model, over the \
               same images (each attacked once per mode), with Newcombe's 95% interval for paired rates and McNemar's \
               exact p, Holm-adjusted over every such comparison in this file; more / less where that p is below \
               0.05 (more: the attacker gets more images past the detector on that mode), otherwise no evidence \
               either way.\n\n";
    }
    for (k, sec) in built.iter().enumerate() {
        // the modes compared with full in this table (a pair exists only where full has flags too)
        let paired_modes: Vec<&String> =
            sec.modes.iter().filter(|m| pairs.iter().any(|p| p.section == k && &p.mode == *m)).collect();
        let headers: Vec<String> =
            sec.modes.iter().cloned().chain(paired_modes.iter().map(|m| format!("{m} - full"))).collect();
        md += &format!(
            "### {}\n\n| detector | {} |\n|---|{}\n",
            sec.title,
            headers.join(" | "),
            "---|".repeat(headers.len())
        );
        for d in &sec.detectors {
            let mut cells: Vec<String> = sec
                .modes
                .iter()
                .map(|m| {
                    let Some(job) =
                        sec.here.iter().find(|j| j.target.as_ref().is_some_and(|t| &t.detector == d && &t.mode == m))
                    else {
                        return String::new();
                    };
                    let adv = row(job, d, m, protocol);
                    let obl = sec.oblivious.and_then(|o| row(o, d, m, protocol));
                    format!(
                        "{} -> {} ({})",
                        fmt(value(obl, EVASION)),
                        fmt(value(adv, EVASION)),
                        fmt(value(adv, "auroc"))
                    )
                })
                .collect();
            for m in &paired_modes {
                let hit = pairs.iter().position(|p| p.section == k && p.detector == *d && &p.mode == *m);
                cells.push(hit.map_or(String::new(), |i| paired_cell(&pairs[i].rates, holm[i])));
            }
            md += &format!("| {d} | {} |\n", cells.join(" | "));
        }
        md += "\n";
    }
    Some(md)
}

/// `+0.203 [+0.160, +0.246], p 3.1e-12, more`: the paired difference, its interval, the Holm-adjusted p and the verdict.
fn paired_cell(r: &PairedRates, p_holm: f64) -> String {
    use crate::report::tables::{p_text, Verdict};
    let verdict = match Verdict::of(Some(r.delta), Some(p_holm)) {
        Verdict::Better => "more",
        Verdict::Worse => "less",
        Verdict::NoEvidence | Verdict::None => "no evidence",
    };
    format!("{:+.3} [{:+.3}, {:+.3}], p {}, {verdict}", r.delta, r.lo, r.hi, p_text(p_holm))
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
