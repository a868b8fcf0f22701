//! Regression check of a suite's results.csv against a committed baseline (the detection rates of the full-model and
//! class-subnetwork detectors of Wang, Hu, Su, arXiv 1910.02673): rows are matched on their key columns; a row
//! present on one side only is a regression, and so is a metric that fell by more than the tolerance *and* whose 95%
//! bootstrap interval lies wholly below the baseline's (`<metric>_lo`, `<metric>_hi`; results without interval
//! columns: whose value lies below the baseline's interval). Non-overlapping intervals, not the result's point value
//! against the baseline's interval, because the noise to let through is a differently trained model's (another CPU,
//! the native mode, a GPU), which moved subnet-mode AUROCs on the smoke suite by up to 0.032, beyond the baseline's
//! own interval, while the intervals still overlapped. A baseline without interval columns falls back to the tolerance
//! alone, with a warning.
use crate::error::{Error, Result};
use crate::report::tables::{KEY_COLUMNS, OPTIONAL_KEYS};
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

/// One CSV column as text, a missing cell `None`.
type Column = Vec<Option<String>>;

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
    /// Falls beyond the tolerance that stay inside the baseline's interval: noise, reported but not failed.
    pub within_interval: Vec<Regression>,
    /// What the check could not do as asked (an old baseline without interval columns, rows without an interval).
    pub warnings: Vec<String>,
}

impl CheckReport {
    pub fn passed(&self) -> bool {
        self.regressions.is_empty()
    }

    /// The regressions as an aligned text table.
    pub fn table(&self) -> String {
        table_of(&self.regressions)
    }

    /// The falls beyond the tolerance that stayed inside the baseline's interval, as an aligned text table.
    pub fn within_interval_table(&self) -> String {
        table_of(&self.within_interval)
    }
}

fn table_of(regressions: &[Regression]) -> String {
    let fmt = |v: Option<f64>| v.map_or("n/a".to_string(), |x| format!("{x:.4}"));
    let rows: Vec<[String; 5]> = regressions
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

/// One metric of one row: its value and, where the file has them, its interval bounds.
#[derive(Debug, Clone, Copy, Default)]
struct Cell {
    value: Option<f64>,
    lo: Option<f64>,
    hi: Option<f64>,
}

/// A results table read as text: key -> (line, metric -> cell); `intervals` names the metrics that have both
/// interval columns.
struct Table {
    path: PathBuf,
    rows: BTreeMap<String, (usize, BTreeMap<String, Cell>)>,
    intervals: Vec<String>,
}

/// The key columns both files can be matched on: `KEY_COLUMNS`, less each of `OPTIONAL_KEYS` that a header lacks.
fn key_columns(a: &Path, b: &Path) -> Vec<&'static str> {
    let header = |p: &Path| -> Vec<String> {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|t| t.lines().next().map(|h| h.split(',').map(|c| c.trim_matches('"').to_string()).collect()))
            .unwrap_or_default()
    };
    let (ha, hb) = (header(a), header(b));
    let both = |k: &str| ha.iter().any(|c| c == k) && hb.iter().any(|c| c == k);
    KEY_COLUMNS.iter().copied().filter(|&k| !OPTIONAL_KEYS.contains(&k) || both(k)).collect()
}

fn read_table(path: &Path, metrics: &[String], key_columns: &[&str]) -> Result<Table> {
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
    let missing: Vec<&str> = key_columns
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
    let keys: Vec<Column> = key_columns.iter().map(|k| text(k)).collect::<Result<_>>()?;
    let values: Vec<Column> = metrics.iter().map(|m| text(m)).collect::<Result<_>>()?;
    let has = |c: &str| names.iter().any(|n| n == c);
    let mut intervals = Vec::new();
    let mut bounds: Vec<Option<(Column, Column)>> = Vec::new();
    for m in metrics {
        let (lo, hi) = (format!("{m}_lo"), format!("{m}_hi"));
        bounds.push(match (has(&lo), has(&hi)) {
            (true, true) => {
                intervals.push(m.clone());
                Some((text(&lo)?, text(&hi)?))
            }
            (false, false) => None,
            _ => {
                let absent = if has(&lo) { hi } else { lo };
                return Err(Error::format(
                    path,
                    format!("line 1: column {absent} missing: an interval needs both its bounds (or neither)"),
                ));
            }
        });
    }
    let number = |m: &str, line: usize, v: Option<&str>| -> Result<Option<f64>> {
        match v.map(str::trim) {
            None | Some("") => Ok(None),
            Some(s) => {
                let x: f64 = s
                    .parse()
                    .map_err(|_| Error::format(path, format!("line {line}: column {m}: `{s}` is not a number")))?;
                Ok(Some(x).filter(|x| !x.is_nan()))
            }
        }
    };
    let mut rows = BTreeMap::new();
    for i in 0..df.height() {
        let line = i + 2;
        let key: Vec<String> =
            key_columns.iter().zip(&keys).map(|(k, col)| format!("{k}={}", col[i].as_deref().unwrap_or(""))).collect();
        let key = key.join(" ");
        let mut vals = BTreeMap::new();
        for ((m, col), b) in metrics.iter().zip(&values).zip(&bounds) {
            let mut cell = Cell { value: number(m, line, col[i].as_deref())?, ..Cell::default() };
            if let Some((lo, hi)) = b {
                cell.lo = number(&format!("{m}_lo"), line, lo[i].as_deref())?;
                cell.hi = number(&format!("{m}_hi"), line, hi[i].as_deref())?;
                // A percentile bootstrap interval may miss its own point estimate, but never runs backwards.
                if let (Some(l), Some(h)) = (cell.lo, cell.hi) {
                    if l > h {
                        return Err(Error::format(
                            path,
                            format!("line {line}: {m}'s interval runs backwards: {m}_lo {l} > {m}_hi {h}"),
                        ));
                    }
                }
            }
            vals.insert(m.clone(), cell);
        }
        if let Some((first, _)) = rows.insert(key.clone(), (line, vals)) {
            // an optional key this file has and the other lacks: rows that differ only in it share a key
            let dropped: Vec<&str> =
                OPTIONAL_KEYS.iter().copied().filter(|k| has(k) && !key_columns.contains(k)).collect();
            let why = match dropped.is_empty() {
                true => String::new(),
                false => format!(
                    "; the other file has no {} column, so rows that differ only in it share a key: compare against \
                     a file written by this advdet",
                    dropped.join(" or ")
                ),
            };
            return Err(Error::format(
                path,
                format!("line {line}: duplicate row key ({key}), first on line {first}{why}"),
            ));
        }
    }
    if rows.is_empty() {
        return Err(Error::format(path, "no data rows"));
    }
    Ok(Table { path: path.to_path_buf(), rows, intervals })
}

/// The manifest written beside a results file (`DIR/manifest.json` for `DIR/results.csv`) or a baseline
/// (`NAME.manifest.json` for `NAME.csv`), if there is one.
pub fn manifest_path(csv: &Path) -> Option<PathBuf> {
    let beside = csv.with_file_name("manifest.json");
    let named = csv.with_extension("manifest.json");
    [named, beside].into_iter().find(|p| p.is_file())
}

/// Where both files have a manifest: a different suite is an error; a different CPU mode or set of pins is a warning
/// (the results cannot be expected to equal the baseline then, only to stay within its noise).
fn compare_manifests(results: &Path, baseline: &Path) -> Result<Vec<String>> {
    let (Some(rm), Some(bm)) = (manifest_path(results), manifest_path(baseline)) else { return Ok(Vec::new()) };
    let read = |p: &Path| -> Result<serde_json::Value> {
        let bytes = std::fs::read(p).map_err(|e| Error::io(p, e))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::format(p, format!("not a manifest: {e}")))
    };
    let (r, b) = (read(&rm)?, read(&bm)?);
    if r["suite"] != b["suite"] {
        return Err(Error::format(
            baseline,
            format!(
                "is the baseline of suite {} ({}), the results come from suite {} ({})",
                b["suite"],
                bm.display(),
                r["suite"],
                rm.display()
            ),
        ));
    }
    let mut warnings = Vec::new();
    if r["cpu"]["mode"] != b["cpu"]["mode"] || r["cpu"]["pinned"] != b["cpu"]["pinned"] {
        warnings.push(format!(
            "the results were computed in CPU mode {} on {} {}, the baseline in mode {} on {} {}: expect noise, \
             not equality",
            r["cpu"]["mode"],
            r["cpu"]["host_vendor"],
            r["cpu"]["host_isa"],
            b["cpu"]["mode"],
            b["cpu"]["host_vendor"],
            b["cpu"]["host_isa"]
        ));
    }
    Ok(warnings)
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
    let keys = key_columns(results, baseline);
    let res = read_table(results, &cfg.metrics, &keys)?;
    let base = read_table(baseline, &cfg.metrics, &keys)?;
    let mut warnings = compare_manifests(results, baseline)?;
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
    let without: Vec<&str> = cfg.metrics.iter().filter(|m| !base.intervals.contains(m)).map(String::as_str).collect();
    if !without.is_empty() {
        warnings.push(format!(
            "{} has no interval columns for {} (an older baseline?): those metrics are checked against the \
             tolerance alone; regenerate the baseline with advdet run to make the check noise-aware",
            base.path.display(),
            without.join(", ")
        ));
    }
    let mut regressions = Vec::new();
    let mut within_interval = Vec::new();
    let mut rows_without_interval = 0usize;
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
            let (b, r) = (bvals[m], rvals[m].value);
            let Some(bv) = b.value else { continue };
            let Some(r) = r else {
                regressions.push(Regression {
                    key: key.clone(),
                    metric: m.clone(),
                    baseline: Some(bv),
                    result: None,
                    problem: "undefined in the results".to_string(),
                });
                continue;
            };
            let lower = lower_is_better(m);
            let change = if lower { r - bv } else { bv - r };
            if change <= cfg.tolerance {
                continue;
            }
            let verb = if lower { "rose" } else { "fell" };
            // The side a regression moves to: the baseline's interval edge there, and the result's own opposite edge
            // (its point value where the results have no interval).
            let (edge, near) = if lower { (b.hi, rvals[m].lo.unwrap_or(r)) } else { (b.lo, rvals[m].hi.unwrap_or(r)) };
            let regression = Regression {
                key: key.clone(),
                metric: m.clone(),
                baseline: Some(bv),
                result: Some(r),
                problem: String::new(),
            };
            let interval = format!("[{:.4}, {:.4}]", b.lo.unwrap_or(f64::NAN), b.hi.unwrap_or(f64::NAN));
            match edge {
                Some(edge) if (lower && near <= edge) || (!lower && near >= edge) => within_interval.push(Regression {
                    problem: format!(
                        "{verb} by {change:.4} (> {}) but the intervals overlap (baseline {interval})",
                        cfg.tolerance
                    ),
                    ..regression
                }),
                Some(_) => regressions.push(Regression {
                    problem: format!(
                        "{verb} by {change:.4} (> {}), beyond the baseline's interval {interval}",
                        cfg.tolerance
                    ),
                    ..regression
                }),
                None => {
                    if base.intervals.contains(m) {
                        rows_without_interval += 1;
                    }
                    regressions.push(Regression {
                        problem: format!("{verb} by {change:.4} (> {})", cfg.tolerance),
                        ..regression
                    })
                }
            }
        }
    }
    if rows_without_interval > 0 {
        warnings.push(format!(
            "{rows_without_interval} baseline value(s) with an empty interval (bootstrap = 0?) were checked against \
             the tolerance alone"
        ));
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
    Ok(CheckReport { compared_rows: common, regressions, within_interval, warnings })
}
