//! "Does the subnetwork help?": per attack and detector, the full model's and the class subnetwork's AUROC (Wang, Su,
//! Zhang, Hu, arXiv 1910.02673), their paired difference with its interval and Holm-adjusted DeLong p, the verdict,
//! and beside it each control route's difference from the full model, so a reader sees at once whether any gain is
//! the subnetwork's class specificity or something a random, class-agnostic or wrong-class mask does as well.
use crate::error::Result;
use crate::report::html::escape;
use crate::report::tables::{f64_col, row_keys, str_col, Verdict, VERDICT_LEVEL};
use crate::routes::RouteKind;
use polars::prelude::DataFrame;

/// A route's difference from the full model: `delta_auroc`, its interval, and the verdict of its Holm-adjusted p.
/// Pooled over seeds: the mean difference, the pooled interval and test, and the between-seed spread.
#[derive(Debug, Clone, PartialEq)]
pub struct Delta {
    pub delta: Option<f64>,
    pub lo: Option<f64>,
    pub hi: Option<f64>,
    pub p_holm: Option<f64>,
    pub verdict: Verdict,
    /// DeLong's standard error (one seed) or the pooled one (several).
    pub se: Option<f64>,
    /// Several seeds: the between-seed standard deviation of the difference, the seeds pooled, and how many of them
    /// have a difference of the mean's sign.
    pub spread: Option<(f64, usize, usize)>,
}

impl Delta {
    /// No difference to show (no such row).
    pub fn missing() -> Delta {
        Delta { delta: None, lo: None, hi: None, p_holm: None, verdict: Verdict::None, se: None, spread: None }
    }
}

/// z of the 95% two-sided normal interval.
const Z95: f64 = 1.959963984540054;

/// One attack and detector.
#[derive(Debug, Clone, PartialEq)]
pub struct HelpRow {
    pub attack: String,
    pub detector: String,
    pub full: Option<f64>,
    pub subnet: Option<f64>,
    pub versus: Delta,
    /// Each control route of the suite, in `RouteKind` order.
    pub controls: Vec<Delta>,
}

/// The table for one protocol: its rows and the control routes that have columns.
#[derive(Debug, Clone, PartialEq)]
pub struct HelpTable {
    pub protocol: String,
    /// What every delta subtracts: `full` ("Does the subnetwork help?"), or `subnet` for the two-network scores (KL,
    /// disagreement), which have no full-model row: their table puts the subnetwork against the other second networks.
    pub reference: RouteKind,
    pub controls: Vec<RouteKind>,
    pub rows: Vec<HelpRow>,
    /// The models (seeds) pooled: 1 for a single model.
    pub seeds: usize,
}

/// The distinct values of a column, in order of first appearance.
pub(crate) fn distinct(col: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in col {
        if !out.iter().any(|o| o == v) {
            out.push(v.to_string());
        }
    }
    out
}

/// The rows of `df` whose text column `name` equals `value`.
pub(crate) fn filter_eq(df: &DataFrame, name: &str, value: &str) -> Result<DataFrame> {
    let keep: Vec<bool> = str_col(df, name)?.iter().map(|v| *v == value).collect();
    let mask: polars::prelude::BooleanChunked = keep.into_iter().map(Some).collect();
    df.filter(&mask).map_err(|e| crate::error::Error::Model(format!("results frame: {e}")))
}

/// Several seeds' tables (the same protocol) as one: per attack and detector, the mean AUROCs and, for each route,
/// the mean difference `d` over the seeds that have it, with the pooled standard error `se = mean(se_s)`, the
/// interval `d -/+ 1.96 se`, the two-sided normal p of `d / se` and Holm's adjustment over every pooled test of the
/// table. The seeds' differences are measured on the same test images and so correlated; the variance of their mean is
/// at most the square of their mean standard error (Cauchy-Schwarz), equal when they are perfectly correlated, so the
/// pooled test is conservative about the images' sampling noise. It treats the seeds' models as fixed: the spread
/// column (the between-seed standard deviation, and how many seeds share the mean's sign) shows how much the
/// difference moves from one trained model to the next.
pub fn pool(tables: &[HelpTable]) -> Option<HelpTable> {
    let first = tables.first()?;
    if tables.len() == 1 {
        return Some(first.clone());
    }
    let mut controls: Vec<RouteKind> = Vec::new();
    for r in RouteKind::ALL {
        if tables.iter().any(|t| t.controls.contains(&r)) {
            controls.push(r);
        }
    }
    let mut keys: Vec<(String, String)> = Vec::new();
    for t in tables {
        for r in &t.rows {
            let k = (r.attack.clone(), r.detector.clone());
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let mut rows: Vec<HelpRow> = keys
        .iter()
        .map(|(a, d)| {
            let found: Vec<(&HelpTable, &HelpRow)> = tables
                .iter()
                .filter_map(|t| t.rows.iter().find(|r| &r.attack == a && &r.detector == d).map(|r| (t, r)))
                .collect();
            let rows: Vec<&HelpRow> = found.iter().map(|(_, r)| *r).collect();
            let avg = |f: &dyn Fn(&HelpRow) -> Option<f64>| {
                let v: Vec<f64> = rows.iter().filter_map(|r| f(r)).collect();
                (!v.is_empty()).then(|| mean(&v))
            };
            let pooled = |ds: Vec<&Delta>| -> Delta {
                let pairs: Vec<(f64, f64)> = ds.iter().filter_map(|x| Some((x.delta?, x.se?))).collect();
                if pairs.is_empty() {
                    return Delta::missing();
                }
                let d = mean(&pairs.iter().map(|p| p.0).collect::<Vec<_>>());
                let se = mean(&pairs.iter().map(|p| p.1).collect::<Vec<_>>());
                let n = pairs.len();
                let sd = if n > 1 {
                    (pairs.iter().map(|p| (p.0 - d).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
                } else {
                    f64::NAN
                };
                let sign = |x: f64| (x > 0.0) as i8 - (x < 0.0) as i8;
                let same = pairs.iter().filter(|p| sign(p.0) == sign(d)).count();
                let p = crate::metrics::normal_test(d, se).1;
                Delta {
                    delta: Some(d),
                    lo: Some(d - Z95 * se),
                    hi: Some(d + Z95 * se),
                    // the raw pooled p until the Holm pass below
                    p_holm: Some(p),
                    verdict: Verdict::None,
                    se: Some(se),
                    spread: Some((sd, n, same)),
                }
            };
            let controls_of = |route: RouteKind| {
                let ds: Vec<&Delta> = found
                    .iter()
                    .filter_map(|(t, r)| t.controls.iter().position(|&c| c == route).map(|i| &r.controls[i]))
                    .collect();
                pooled(ds)
            };
            HelpRow {
                attack: a.clone(),
                detector: d.clone(),
                full: avg(&|r| r.full),
                subnet: avg(&|r| r.subnet),
                versus: pooled(rows.iter().map(|r| &r.versus).collect()),
                controls: controls.iter().map(|&c| controls_of(c)).collect(),
            }
        })
        .collect();
    // Holm over every pooled test of the table
    let raw: Vec<f64> = rows
        .iter()
        .flat_map(|r| std::iter::once(&r.versus).chain(&r.controls))
        .map(|d| d.p_holm.unwrap_or(f64::NAN))
        .collect();
    let mut adjusted = crate::metrics::holm(&raw).into_iter();
    for r in rows.iter_mut() {
        for d in std::iter::once(&mut r.versus).chain(r.controls.iter_mut()) {
            let p = adjusted.next().filter(|p| !p.is_nan());
            d.p_holm = p;
            d.verdict = Verdict::of(d.delta, p);
        }
    }
    Some(HelpTable {
        protocol: first.protocol.clone(),
        reference: first.reference,
        controls,
        rows,
        seeds: tables.len(),
    })
}

impl HelpTable {
    /// The table of `protocol` from the results frame of one extraction per seed (`[subnet] lambda` filtered by the
    /// caller); `None` when the suite has no subnet route. With one model, each row's own DeLong test and interval;
    /// with several (the seeds), their pooled test (`pool`).
    pub fn from_frame(df: &DataFrame, protocol: &str, reference: RouteKind) -> Result<Option<HelpTable>> {
        let models = distinct(&str_col(df, "model")?);
        if models.len() <= 1 {
            return Self::one_model(df, protocol, reference);
        }
        let mut tables = Vec::new();
        for m in &models {
            if let Some(t) = Self::one_model(&filter_eq(df, "model", m)?, protocol, reference)? {
                tables.push(t);
            }
        }
        Ok(pool(&tables))
    }

    fn one_model(df: &DataFrame, protocol: &str, reference: RouteKind) -> Result<Option<HelpTable>> {
        let against = str_col(df, "delta_against")?;
        let [attack, params, det, mode, prot] = row_keys(df)?;
        let (auroc, delta, lo, hi, p, se) = (
            f64_col(df, "auroc")?,
            f64_col(df, "delta_auroc")?,
            f64_col(df, "delta_auroc_lo")?,
            f64_col(df, "delta_auroc_hi")?,
            f64_col(df, "delta_auroc_p_holm")?,
            f64_col(df, "delta_auroc_se")?,
        );
        let label = |i: usize| {
            if params[i].is_empty() {
                attack[i].to_string()
            } else {
                format!("{} {}", attack[i], params[i])
            }
        };
        let (prot, mode) = (&prot, &mode);
        let rows_of =
            |route: RouteKind| (0..df.height()).filter(move |&i| prot[i] == protocol && mode[i] == route.as_str());
        // the routes compared with `reference`, each a column
        let against = &against;
        let compared = move |route: RouteKind| rows_of(route).filter(move |&i| against[i] == reference.as_str());
        let controls: Vec<RouteKind> = RouteKind::ALL
            .into_iter()
            .filter(|r| !matches!(r, RouteKind::Full | RouteKind::Subnet))
            .filter(|&r| compared(r).next().is_some())
            .collect();
        let find = |route: RouteKind, l: &str, d: &str| rows_of(route).find(|&i| label(i) == l && det[i] == d);
        let find_compared = |route: RouteKind, l: &str, d: &str| {
            let mut hits = compared(route);
            hits.find(|&i| label(i) == l && det[i] == d)
        };
        let delta_at = |i: Option<usize>| match i {
            Some(i) => Delta {
                delta: delta[i],
                lo: lo[i],
                hi: hi[i],
                p_holm: p[i],
                verdict: Verdict::of(delta[i], p[i]),
                se: se[i],
                spread: None,
            },
            None => Delta::missing(),
        };
        let rows: Vec<HelpRow> = rows_of(RouteKind::Subnet)
            .filter_map(|i| {
                let (l, d) = (label(i), det[i].to_string());
                let full = find(RouteKind::Full, &l, &d);
                let controls: Vec<Delta> = controls.iter().map(|&r| delta_at(find_compared(r, &l, &d))).collect();
                let row = match reference {
                    RouteKind::Full => HelpRow {
                        full: auroc[full?],
                        subnet: auroc[i],
                        versus: delta_at(Some(i)),
                        controls,
                        attack: l,
                        detector: d,
                    },
                    _ if full.is_some() || controls.iter().all(|c| c.delta.is_none()) => return None,
                    _ => HelpRow {
                        full: None,
                        subnet: auroc[i],
                        versus: Delta::missing(),
                        controls,
                        attack: l,
                        detector: d,
                    },
                };
                (reference != RouteKind::Full || row.full.is_some()).then_some(row)
            })
            .collect();
        Ok((!rows.is_empty()).then(|| HelpTable {
            protocol: protocol.to_string(),
            reference,
            controls,
            rows,
            seeds: 1,
        }))
    }

    /// Whether the rows pool several seeds.
    pub fn pooled(&self) -> bool {
        self.seeds > 1
    }

    /// The subnet rows with a difference and its interval, for the forest plot.
    pub fn forest_rows(&self) -> Vec<crate::report::plot::ForestRow> {
        self.rows
            .iter()
            .filter_map(|r| {
                let (delta, lo, hi) = (r.versus.delta?, r.versus.lo?, r.versus.hi?);
                let sign = match r.versus.verdict {
                    Verdict::Better => 1,
                    Verdict::Worse => -1,
                    _ => 0,
                };
                Some(crate::report::plot::ForestRow {
                    label: format!("{} | {}", r.attack, r.detector),
                    delta,
                    lo,
                    hi,
                    sign,
                })
            })
            .collect()
    }

    /// Whether this is the two-network table (the subnet against the other second networks of KL and disagreement).
    pub fn two_network(&self) -> bool {
        self.reference != RouteKind::Full
    }

    fn caption(&self) -> String {
        if self.two_network() {
            let seeds = if self.pooled() {
                format!(
                    "Means over {} seeds; each delta pooled as in the table above (conservative interval and test, Holm over \
                     this table). ",
                    self.seeds
                )
            } else {
                "Paired bootstrap 95% intervals; DeLong's p, Holm-adjusted over every paired row of the results. "
                    .into()
            };
            return format!(
                "Protocol {}. The two-network scores (KL, disagreement) compare a second network with the full model, \
                 so they have no full-model row: here the subnetwork is the reference. subnet: its AUROC; delta <route> = \
                 AUROC(route as the second network) - AUROC(subnet) on the same images: negative (down arrow where \
                 significant) means the subnetwork detects better than that second network (second-model: an \
                 independently trained model, plain ensemble disagreement). {seeds}",
                self.protocol
            );
        }
        let controls = if self.controls.is_empty() {
            "No other routes in this suite (add subspace, or the controls random-mask, union-mask or wrong-class, to \
             [detectors] modes)."
                .into()
        } else {
            format!(
                "Beside it, each other route's delta from the full model ({}: the other class-specific methods and \
                 the subnetwork's controls), marked the same way.",
                self.controls.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
            )
        };
        if self.pooled() {
            return format!(
                "Protocol {}, {} seeds (one model and one extraction each). full, subnet: mean AUROC over the seeds. \
                 delta = AUROC(subnet) - AUROC(full) on the same images, the mean over the seeds, with the pooled \
                 95% interval delta -/+ 1.96 se, se the mean of the seeds' DeLong standard errors (conservative: the \
                 seeds share the test images); p: the pooled normal test of delta / se, Holm-adjusted over every \
                 pooled test of this table. seeds: the between-seed standard deviation of delta and how many seeds \
                 share its sign (the pooled test holds the models fixed; this shows how far a retrained model moves \
                 it). Verdict: better or worse where that p is below {VERDICT_LEVEL}, otherwise no evidence either \
                 way. {controls}",
                self.protocol, self.seeds
            );
        }
        format!(
            "Protocol {}. delta = AUROC(subnet) - AUROC(full) on the same images, with its paired bootstrap 95% \
             interval; p: DeLong's test, Holm-adjusted over every route-vs-full row of the results. Verdict: better or \
             worse where that p is below {VERDICT_LEVEL}, otherwise no evidence either way. {controls}",
            self.protocol
        )
    }

    fn verdict_text(v: Verdict) -> &'static str {
        match v {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::NoEvidence => "no evidence",
            Verdict::None => "n/a",
        }
    }

    fn delta_text(d: &Delta, arrows: (&str, &str)) -> String {
        match (d.delta, d.lo, d.hi) {
            (Some(x), Some(l), Some(h)) => format!("{x:+.3} [{l:+.3}, {h:+.3}]{}", d.verdict.mark(arrows.0, arrows.1)),
            (Some(x), _, _) => format!("{x:+.3}{}", d.verdict.mark(arrows.0, arrows.1)),
            _ => "n/a".into(),
        }
    }

    /// The cells of a row, as text: attack, detector, full, subnet, delta, p, verdict, then the controls' deltas.
    fn cells(&self, r: &HelpRow, arrows: (&str, &str)) -> Vec<String> {
        let num = |v: Option<f64>| v.map_or("n/a".to_string(), |x| format!("{x:.3}"));
        let p = r.versus.p_holm.map_or("n/a".to_string(), crate::report::tables::p_text);
        if self.two_network() {
            let mut c = vec![r.attack.clone(), r.detector.clone(), num(r.subnet)];
            c.extend(r.controls.iter().map(|d| Self::delta_text(d, arrows)));
            return c;
        }
        let mut c = vec![
            r.attack.clone(),
            r.detector.clone(),
            num(r.full),
            num(r.subnet),
            Self::delta_text(&r.versus, arrows),
            p,
            Self::verdict_text(r.versus.verdict).to_string(),
        ];
        if self.pooled() {
            c.push(match r.versus.spread {
                Some((sd, n, same)) => format!("sd {sd:.3}, {same}/{n} same sign"),
                None => "n/a".into(),
            });
        }
        c.extend(r.controls.iter().map(|d| Self::delta_text(d, arrows)));
        c
    }

    fn header(&self) -> Vec<String> {
        if self.two_network() {
            let mut h = vec!["attack".to_string(), "detector".to_string(), "subnet".to_string()];
            h.extend(self.controls.iter().map(|r| format!("delta {r}")));
            return h;
        }
        let mut h: Vec<String> = ["attack", "detector", "full", "subnet", "delta", "Holm p", "verdict"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if self.pooled() {
            h.push("seeds".into());
        }
        h.extend(self.controls.iter().map(|r| format!("delta {r}")));
        h
    }

    /// GitHub-flavoured markdown: the caption, then the table.
    pub fn markdown(&self) -> String {
        let h = self.header();
        let mut s = format!("{}\n\n| {} |\n|{}\n", self.caption(), h.join(" | "), "---|".repeat(h.len()));
        for r in &self.rows {
            s += &format!("| {} |\n", self.cells(r, ("↑", "↓")).join(" | "));
        }
        s
    }

    /// An HTML table with its caption.
    pub fn html(&self) -> String {
        let mut s = format!("<p>{}</p>\n<table>\n<tr>", escape(&self.caption()));
        for h in self.header() {
            s += &format!("<th>{}</th>", escape(&h));
        }
        s += "</tr>\n";
        for r in &self.rows {
            s += "<tr>";
            for c in self.cells(r, ("\u{2191}", "\u{2193}")) {
                s += &format!("<td>{}</td>", escape(&c));
            }
            s += "</tr>\n";
        }
        s + "</table>\n"
    }
}
