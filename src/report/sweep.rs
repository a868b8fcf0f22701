//! The extraction sweep (`[subnet] lambda` as a list): per attack and detector, the class subnetwork's AUROC
//! difference from the full model (Wang, Hu, Su, arXiv 1910.02673) at each lambda, against the mean fraction of
//! units that extraction's subnetworks keep, so that a reader sees whether a gain needs a small or a large subnetwork.
use crate::error::Result;
use crate::report::helps::{distinct, filter_eq, Delta, HelpTable};
use crate::report::html::escape;
use crate::report::plot::SweepSeries;
use crate::report::tables::{f64_col, str_col};
use polars::prelude::DataFrame;

/// One protocol's sweep: the extractions in suite order, and per attack and detector the difference at each.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepTable {
    pub protocol: String,
    /// `(lambda as written, mean kept fraction over the seeds)` per extraction.
    pub columns: Vec<(String, f64)>,
    /// `(attack, detector, delta per column)`.
    pub rows: Vec<(String, String, Vec<Delta>)>,
    /// The seeds pooled at each lambda (`HelpTable::from_frame`).
    pub seeds: usize,
}

impl SweepTable {
    /// The sweep of `protocol`; `None` when the results hold fewer than two lambdas or no subnet route.
    pub fn from_frame(df: &DataFrame, protocol: &str) -> Result<Option<SweepTable>> {
        let lambdas = distinct(&str_col(df, "lambda")?);
        if lambdas.len() < 2 {
            return Ok(None);
        }
        let mut columns = Vec::new();
        let mut tables = Vec::new();
        for l in &lambdas {
            let at = filter_eq(df, "lambda", l)?;
            let kept: Vec<f64> = f64_col(&at, "kept_fraction")?.into_iter().flatten().collect();
            let Some(t) = HelpTable::from_frame(&at, protocol, crate::routes::RouteKind::Full)? else { continue };
            // every row of a model carries its extraction's kept fraction: the mean over rows is over the seeds
            columns.push((l.clone(), kept.iter().sum::<f64>() / kept.len().max(1) as f64));
            tables.push(t);
        }
        if tables.len() < 2 {
            return Ok(None);
        }
        let mut rows: Vec<(String, String, Vec<Delta>)> = Vec::new();
        for t in &tables {
            for r in &t.rows {
                if !rows.iter().any(|(a, d, _)| *a == r.attack && *d == r.detector) {
                    rows.push((r.attack.clone(), r.detector.clone(), Vec::new()));
                }
            }
        }
        for (a, d, cells) in rows.iter_mut() {
            for t in &tables {
                let hit = t.rows.iter().find(|r| r.attack == *a && r.detector == *d);
                cells.push(hit.map_or_else(Delta::missing, |r| r.versus.clone()));
            }
        }
        let seeds = tables.iter().map(|t| t.seeds).max().unwrap_or(1);
        Ok(Some(SweepTable { protocol: protocol.to_string(), columns, rows, seeds }))
    }

    /// The plot series of one attack: per detector, (kept fraction, delta, lo, hi) at each lambda where it has them.
    pub fn series(&self, attack: &str) -> Vec<SweepSeries> {
        self.rows
            .iter()
            .filter(|(a, _, _)| a == attack)
            .map(|(_, d, cells)| {
                let points = self
                    .columns
                    .iter()
                    .zip(cells)
                    .filter_map(|((_, kept), c)| Some((*kept, c.delta?, c.lo?, c.hi?)))
                    .collect();
                (d.clone(), points)
            })
            .collect()
    }

    /// The attacks in row order.
    pub fn attacks(&self) -> Vec<String> {
        distinct(&self.rows.iter().map(|(a, _, _)| a.as_str()).collect::<Vec<_>>())
    }

    pub fn caption(&self) -> String {
        let how = if self.seeds > 1 {
            format!("the mean over {} seeds with the pooled interval and Holm-adjusted test of \"Does the subnetwork help?\" (over each lambda's table)", self.seeds)
        } else {
            "with its paired bootstrap interval; the arrow: DeLong's test, Holm-adjusted over the whole results table"
                .into()
        };
        format!(
            "Protocol {}. delta = AUROC(subnet) - AUROC(full) per extraction (lambda, and the mean fraction of units its \
             class subnetworks keep), {how}. An arrow marks p < 0.05 after the adjustment.",
            self.protocol
        )
    }

    fn cell(d: &Delta, arrows: (&str, &str)) -> String {
        let mark = d.verdict.mark(arrows.0, arrows.1);
        match (d.delta, d.lo, d.hi) {
            (Some(x), Some(l), Some(h)) => format!("{x:+.3} [{l:+.3}, {h:+.3}]{mark}"),
            (Some(x), _, _) => format!("{x:+.3}{mark}"),
            _ => "n/a".into(),
        }
    }

    fn header(&self) -> Vec<String> {
        let mut h = vec!["attack".to_string(), "detector".to_string()];
        h.extend(self.columns.iter().map(|(l, k)| format!("lambda {l} (kept {k:.3})")));
        h
    }

    pub fn markdown(&self) -> String {
        let h = self.header();
        let mut s = format!("{}\n\n| {} |\n|{}\n", self.caption(), h.join(" | "), "---|".repeat(h.len()));
        for (a, d, cells) in &self.rows {
            let c: Vec<String> = cells.iter().map(|c| Self::cell(c, ("↑", "↓"))).collect();
            s += &format!("| {a} | {d} | {} |\n", c.join(" | "));
        }
        s
    }

    pub fn html(&self) -> String {
        let mut s = format!("<p>{}</p>\n<table>\n<tr>", escape(&self.caption()));
        for h in self.header() {
            s += &format!("<th>{}</th>", escape(&h));
        }
        s += "</tr>\n";
        for (a, d, cells) in &self.rows {
            s += &format!("<tr><td>{}</td><td>{}</td>", escape(a), escape(d));
            for c in cells {
                s += &format!("<td>{}</td>", escape(&Self::cell(c, ("\u{2191}", "\u{2193}"))));
            }
            s += "</tr>\n";
        }
        s + "</table>\n"
    }
}
