//! Regression check of a suite's results.csv against a committed baseline (the detection rates of the full-model and
//! class-subnetwork detectors of Wang, Su, Zhang, Hu, arXiv 1910.02673): rows are matched on their key columns and a
//! metric that fell by more than the tolerance, or a row present on one side only, is a regression.
use crate::error::{Error, Result};
use crate::report::tables::KEY_COLUMNS;
use polars::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub struct CheckConfig {
    /// Largest allowed fall of a metric (absolute, e.g. 0.02 AUROC).
    pub tolerance: f64,
    /// The metrics compared (default: auroc).
    pub metrics: Vec<String>,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig { tolerance: 0.02, metrics: vec!["auroc".to_string()] }
    }
}

/// Metrics where lower is better: for them a rise is the regression.
pub fn lower_is_better(metric: &str) -> bool {
    metric.starts_with("fpr_at_tpr")
}

/// One regression: a metric that fell, or a row missing on one side (`metric` empty then).
#[derive(Debug, Clone, PartialEq)]
pub struct Regression {
    pub key: String,
    pub metric: String,
    pub baseline: Option<f64>,
    pub result: Option<f64>,
    pub problem: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    /// Rows present in both files.
    pub compared_rows: usize,
    pub regressions: Vec<Regression>,
}

impl CheckReport {
    pub fn passed(&self) -> bool {
        self.regressions.is_empty()
    }

    /// The regressions as an aligned text table.
    pub fn table(&self) -> String {
        let fmt = |v: Option<f64>| v.map_or("n/a".to_string(), |x| format!("{x:.4}"));
        let rows: Vec<[String; 5]> = self
            .regressions
            .iter()
            .map(|r| [r.key.clone(), r.metric.clone(), fmt(r.baseline), fmt(r.result), r.problem.clone()])
            .collect();
        let head = ["row", "metric", "baseline", "result", "problem"].map(String::from);
        let widths: Vec<usize> =
            (0..5).map(|c| rows.iter().chain([&head]).map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
        let line = |r: &[String; 5]| {
            let cells: Vec<String> = r.iter().zip(&widths).map(|(s, w)| format!("{s:<w$}")).collect();
            cells.join("  ").trim_end().to_string() + "\n"
        };
        let mut s = line(&head);
        for r in &rows {
            s += &line(r);
        }
        s
    }
}

/// A results table read as text: key -> (line, metric -> value).
struct Table {
    path: PathBuf,
    rows: BTreeMap<String, (usize, BTreeMap<String, Option<f64>>)>,
}

fn read_table(path: &Path, metrics: &[String]) -> Result<Table> {
    if !path.is_file() {
        return Err(Error::Missing(format!("{} does not exist", path.display())));
    }
    let perr = |e: PolarsError| Error::format(path, format!("not a readable CSV file: {e}"));
    let df = CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(0))
        .try_into_reader_with_file_path(Some(path.to_path_buf()))
        .map_err(perr)?
        .finish()
        .map_err(perr)?;
    let names: Vec<String> = df.get_column_names().iter().map(|s| s.to_string()).collect();
    let missing: Vec<&str> = KEY_COLUMNS
        .iter()
        .copied()
        .chain(metrics.iter().map(String::as_str))
        .filter(|c| !names.iter().any(|n| n == c))
        .collect();
    if !missing.is_empty() {
        return Err(Error::format(
            path,
            format!("line 1: missing column(s) {} (the header has: {})", missing.join(", "), names.join(", ")),
        ));
    }
    let text = |name: &str| -> Result<Vec<Option<String>>> {
        let col = df.column(name).map_err(perr)?.str().map_err(perr)?;
        Ok(col.iter().map(|v| v.map(str::to_string)).collect())
    };
    let keys: Vec<Vec<Option<String>>> = KEY_COLUMNS.iter().map(|k| text(k)).collect::<Result<_>>()?;
    let values: Vec<Vec<Option<String>>> = metrics.iter().map(|m| text(m)).collect::<Result<_>>()?;
    let mut rows = BTreeMap::new();
    for i in 0..df.height() {
        let line = i + 2;
        let key: Vec<String> =
            KEY_COLUMNS.iter().zip(&keys).map(|(k, col)| format!("{k}={}", col[i].as_deref().unwrap_or(""))).collect();
        let key = key.join(" ");
        let mut vals = BTreeMap::new();
        for (m, col) in metrics.iter().zip(&values) {
            let v = match col[i].as_deref().map(str::trim) {
                None | Some("") => None,
                Some(s) => {
                    let x: f64 = s
                        .parse()
                        .map_err(|_| Error::format(path, format!("line {line}: column {m}: `{s}` is not a number")))?;
                    Some(x).filter(|x| !x.is_nan())
                }
            };
            vals.insert(m.clone(), v);
        }
        if let Some((first, _)) = rows.insert(key.clone(), (line, vals)) {
            return Err(Error::format(path, format!("line {line}: duplicate row key ({key}), first on line {first}")));
        }
    }
    if rows.is_empty() {
        return Err(Error::format(path, "no data rows"));
    }
    Ok(Table { path: path.to_path_buf(), rows })
}

/// Compares `results` with `baseline` (both CSV files with the key columns and the metric columns).
/// Errors (exit 2): a file missing or unreadable, a missing column, a non-number, or no row key in common.
pub fn check(results: &Path, baseline: &Path, cfg: &CheckConfig) -> Result<CheckReport> {
    if !(cfg.tolerance.is_finite() && cfg.tolerance >= 0.0) {
        return Err(Error::config("tolerance", cfg.tolerance, "must be a finite number >= 0"));
    }
    if cfg.metrics.is_empty() {
        return Err(Error::config("metric", "", "name at least one metric"));
    }
    if let Some(m) = cfg.metrics.iter().find(|m| !crate::metrics::METRIC_NAMES.contains(&m.as_str())) {
        return Err(Error::config("metric", m, format!("expected one of {}", crate::metrics::METRIC_NAMES.join(", "))));
    }
    let res = read_table(results, &cfg.metrics)?;
    let base = read_table(baseline, &cfg.metrics)?;
    let common = res.rows.keys().filter(|k| base.rows.contains_key(*k)).count();
    if common == 0 {
        let example = |t: &Table| t.rows.keys().next().cloned().unwrap_or_default();
        return Err(Error::format(
            &base.path,
            format!(
                "shares no row key with {}: different keys (e.g. baseline line 2: {}; results line 2: {})",
                res.path.display(),
                example(&base),
                example(&res)
            ),
        ));
    }
    let mut regressions = Vec::new();
    for (key, (bline, bvals)) in &base.rows {
        let Some((_, rvals)) = res.rows.get(key) else {
            regressions.push(Regression {
                key: key.clone(),
                metric: String::new(),
                baseline: None,
                result: None,
                problem: format!("baseline row (line {bline}) missing from the results"),
            });
            continue;
        };
        for m in &cfg.metrics {
            let (b, r) = (bvals[m], rvals[m]);
            let problem = match (b, r) {
                (None, _) => None,
                (Some(_), None) => Some("undefined in the results".to_string()),
                (Some(b), Some(r)) if lower_is_better(m) && r > b + cfg.tolerance => {
                    Some(format!("rose by {:.4} (> {})", r - b, cfg.tolerance))
                }
                (Some(b), Some(r)) if !lower_is_better(m) && r < b - cfg.tolerance => {
                    Some(format!("fell by {:.4} (> {})", b - r, cfg.tolerance))
                }
                _ => None,
            };
            if let Some(problem) = problem {
                regressions.push(Regression { key: key.clone(), metric: m.clone(), baseline: b, result: r, problem });
            }
        }
    }
    for (key, (rline, _)) in &res.rows {
        if !base.rows.contains_key(key) {
            regressions.push(Regression {
                key: key.clone(),
                metric: String::new(),
                baseline: None,
                result: None,
                problem: format!("results row (line {rline}) has no baseline row"),
            });
        }
    }
    Ok(CheckReport { compared_rows: common, regressions })
}
