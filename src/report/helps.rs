//! "Does the subnetwork help?": per attack and detector, the full model's and the class subnetwork's AUROC (Wang, Su,
//! Zhang, Hu, arXiv 1910.02673), their paired difference with its interval and Holm-adjusted DeLong p, the verdict,
//! and beside it each control route's difference from the full model, so a reader sees at once whether any gain is
//! the subnetwork's class specificity or something a random, class-agnostic or wrong-class mask does as well.
use crate::error::Result;
use crate::report::html::escape;
use crate::report::tables::{f64_col, row_keys, Verdict, VERDICT_LEVEL};
use crate::routes::RouteKind;
use polars::prelude::DataFrame;

/// A route's difference from the full model: `delta_auroc`, its interval, and the verdict of its Holm-adjusted p.
#[derive(Debug, Clone, PartialEq)]
pub struct Delta {
    pub delta: Option<f64>,
    pub lo: Option<f64>,
    pub hi: Option<f64>,
    pub p_holm: Option<f64>,
    pub verdict: Verdict,
}

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
    pub controls: Vec<RouteKind>,
    pub rows: Vec<HelpRow>,
}

impl HelpTable {
    /// The table of `protocol` from the results frame; `None` when the suite has no subnet route.
    pub fn from_frame(df: &DataFrame, protocol: &str) -> Result<Option<HelpTable>> {
        let [attack, params, det, mode, prot] = row_keys(df)?;
        let (auroc, delta, lo, hi, p) = (
            f64_col(df, "auroc")?,
            f64_col(df, "delta_auroc")?,
            f64_col(df, "delta_auroc_lo")?,
            f64_col(df, "delta_auroc_hi")?,
            f64_col(df, "delta_auroc_p_holm")?,
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
        let controls: Vec<RouteKind> = RouteKind::ALL
            .into_iter()
            .filter(|r| !matches!(r, RouteKind::Full | RouteKind::Subnet))
            .filter(|&r| rows_of(r).next().is_some())
            .collect();
        let find = |route: RouteKind, l: &str, d: &str| rows_of(route).find(|&i| label(i) == l && det[i] == d);
        let delta_at = |i: Option<usize>| match i {
            Some(i) => {
                Delta { delta: delta[i], lo: lo[i], hi: hi[i], p_holm: p[i], verdict: Verdict::of(delta[i], p[i]) }
            }
            None => Delta { delta: None, lo: None, hi: None, p_holm: None, verdict: Verdict::None },
        };
        let rows: Vec<HelpRow> = rows_of(RouteKind::Subnet)
            .map(|i| {
                let (l, d) = (label(i), det[i].to_string());
                HelpRow {
                    full: find(RouteKind::Full, &l, &d).and_then(|f| auroc[f]),
                    subnet: auroc[i],
                    versus: delta_at(Some(i)),
                    controls: controls.iter().map(|&r| delta_at(find(r, &l, &d))).collect(),
                    attack: l,
                    detector: d,
                }
            })
            .filter(|r| r.full.is_some())
            .collect();
        Ok((!rows.is_empty()).then(|| HelpTable { protocol: protocol.to_string(), controls, rows }))
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

    fn caption(&self) -> String {
        let controls = if self.controls.is_empty() {
            "No control routes in this suite (add random-mask, union-mask or wrong-class to [detectors] modes).".into()
        } else {
            format!(
                "Beside it, each control's delta from the full model ({}), marked the same way.",
                self.controls.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
            )
        };
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
        let p =
            r.versus
                .p_holm
                .map_or("n/a".to_string(), |x| if x < 1e-4 { format!("{x:.1e}") } else { format!("{x:.4}") });
        let mut c = vec![
            r.attack.clone(),
            r.detector.clone(),
            num(r.full),
            num(r.subnet),
            Self::delta_text(&r.versus, arrows),
            p,
            Self::verdict_text(r.versus.verdict).to_string(),
        ];
        c.extend(r.controls.iter().map(|d| Self::delta_text(d, arrows)));
        c
    }

    fn header(&self) -> Vec<String> {
        let mut h: Vec<String> = ["attack", "detector", "full", "subnet", "delta", "Holm p", "verdict"]
            .iter()
            .map(|s| s.to_string())
            .collect();
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
