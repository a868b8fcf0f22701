//! The sweeps: the extraction sweep (`[subnet] lambda` as a list): per attack and detector, the class subnetwork's
//! AUROC difference from the full model (Wang, Hu, Su, arXiv 1910.02673) at each lambda, against the mean fraction of
//! units that extraction's subnetworks keep, so that a reader sees whether a gain needs a small or a large subnetwork;
//! and the subset sweep (`[subspace] k` as a list): the `subspace` route's difference from the full model (Badola et
//! al., arXiv 2112.07719) at each k.
use crate::error::Result;
use crate::report::helps::{distinct, filter_eq, Delta, HelpTable};
use crate::report::html::escape;
use crate::report::plot::SweepSeries;
use crate::report::tables::{f64_col, str_col};
use crate::routes::RouteKind;
use polars::prelude::DataFrame;

/// What a sweep varies, and the route it compares with the full model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepOver {
    /// `[subnet] lambda`: the class subnetworks (`subnet`), plotted against the fraction of units they keep.
    Lambda,
    /// `[subspace] k`: the class filter subsets (`subspace`), plotted against k.
    SubspaceK,
}

impl SweepOver {
    /// The results column that names the value.
    pub fn column(self) -> &'static str {
        match self {
            SweepOver::Lambda => "lambda",
            SweepOver::SubspaceK => "subspace_k",
        }
    }

    /// The route each delta puts against the full model.
    pub fn route(self) -> RouteKind {
        match self {
            SweepOver::Lambda => RouteKind::Subnet,
            SweepOver::SubspaceK => RouteKind::Subspace,
        }
    }

    /// The section title in the report.
    pub fn title(self) -> &'static str {
        match self {
            SweepOver::Lambda => "Extraction sweep",
            SweepOver::SubspaceK => "Subset sweep",
        }
    }

    /// The plot's x axis.
    pub fn x_desc(self) -> &'static str {
        match self {
            SweepOver::Lambda => "mean fraction of units the class subnetworks keep",
            SweepOver::SubspaceK => "k, the penultimate features in each class's subset",
        }
    }
}

/// One protocol's sweep: the values in suite order, and per attack and detector the difference at each.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepTable {
    pub protocol: String,
    pub over: SweepOver,
    /// `(value as written, x)` per column: x is the mean kept fraction over the seeds for lambda, k itself for k.
    pub columns: Vec<(String, f64)>,
    /// `(attack, detector, delta per column)`.
    pub rows: Vec<(String, String, Vec<Delta>)>,
    /// The seeds pooled at each value (`HelpTable::from_frame`).
    pub seeds: usize,
}

impl SweepTable {
    /// The sweep of `protocol` over `over`'s column of `df` (the caller holds the other sweep's value fixed); `None`
    /// when the results hold fewer than two values, or lack the subnet route (whose rows key "Does the subnetwork
    /// help?") or the swept route.
    pub fn from_frame(df: &DataFrame, protocol: &str, over: SweepOver) -> Result<Option<SweepTable>> {
        let mut values: Vec<String> =
            distinct(&str_col(df, over.column())?).into_iter().filter(|v| !v.is_empty()).collect();
        // lambdas in suite order; ks by size (a suite lists its reference k first)
        if over == SweepOver::SubspaceK {
            values.sort_by_key(|v| v.parse::<usize>().unwrap_or(usize::MAX));
        }
        if values.len() < 2 {
            return Ok(None);
        }
        let mut columns = Vec::new();
        let mut tables = Vec::new();
        for v in &values {
            let at = filter_eq(df, over.column(), v)?;
            let Some(t) = HelpTable::from_frame(&at, protocol, RouteKind::Full)? else { continue };
            let x = match over {
                // every row of a model carries its extraction's kept fraction: the mean over rows is over the seeds
                SweepOver::Lambda => {
                    let kept: Vec<f64> = f64_col(&at, "kept_fraction")?.into_iter().flatten().collect();
                    kept.iter().sum::<f64>() / kept.len().max(1) as f64
                }
                SweepOver::SubspaceK => v.parse::<f64>().unwrap_or(f64::NAN),
            };
            columns.push((v.clone(), x));
            tables.push(t);
        }
        if tables.len() < 2 {
            return Ok(None);
        }
        // the swept route's delta in one table's row: the subnet's own, or the subspace control's
        let delta_of = |t: &HelpTable, r: &crate::report::helps::HelpRow| -> Option<Delta> {
            match over.route() {
                RouteKind::Subnet => Some(r.versus.clone()),
                route => t.controls.iter().position(|&c| c == route).and_then(|i| r.controls.get(i).cloned()),
            }
        };
        if over == SweepOver::SubspaceK && !tables.iter().any(|t| t.controls.contains(&RouteKind::Subspace)) {
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
                cells.push(hit.and_then(|r| delta_of(t, r)).unwrap_or_else(Delta::missing));
            }
        }
        let seeds = tables.iter().map(|t| t.seeds).max().unwrap_or(1);
        Ok(Some(SweepTable { protocol: protocol.to_string(), over, columns, rows, seeds }))
    }

    /// The plot series of one attack: per detector, (x, delta, lo, hi) at each value where it has them.
    pub fn series(&self, attack: &str) -> Vec<SweepSeries> {
        self.rows
            .iter()
            .filter(|(a, _, _)| a == attack)
            .map(|(_, d, cells)| {
                let points = self
                    .columns
                    .iter()
                    .zip(cells)
                    .filter_map(|((_, x), c)| Some((*x, c.delta?, c.lo?, c.hi?)))
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
        let value = self.over.column();
        let how = if self.seeds > 1 {
            format!("the mean over {} seeds with the pooled interval and Holm-adjusted test of \"Does the subnetwork help?\" (over each {value}'s table)", self.seeds)
        } else {
            "with its paired bootstrap interval; the arrow: DeLong's test, Holm-adjusted over the whole results table"
                .into()
        };
        let what = match self.over {
            SweepOver::Lambda => {
                "AUROC(subnet) - AUROC(full) per extraction (lambda, and the mean fraction of units its \
                                  class subnetworks keep)"
            }
            SweepOver::SubspaceK => {
                "AUROC(subspace) - AUROC(full) per k (the penultimate features in each class's \
                                     subset)"
            }
        };
        format!("Protocol {}. delta = {what}, {how}. An arrow marks p < 0.05 after the adjustment.", self.protocol)
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
        h.extend(self.columns.iter().map(|(v, x)| match self.over {
            SweepOver::Lambda => format!("lambda {v} (kept {x:.3})"),
            SweepOver::SubspaceK => format!("k {v}"),
        }));
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
