//! Result tables of a suite run (the full-model vs class-subnetwork detector comparison of Wang, Hu, Su,
//! arXiv 1910.02673), built with polars: results.csv / results.parquet with one row per dataset x model x attack x
//! params x detector x mode x protocol, and the paper-shaped AUROC table (rows: attacks; columns: detector x mode).
use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::metrics::METRIC_NAMES;
use crate::records::{JobRecord, SubnetRecord, SuiteRecord, VersusFull};
use polars::prelude::*;
use std::path::Path;

/// The columns that identify a row (the key `advdet check` matches results and baseline on): `model` names the seed's
/// model (`lenet-s1-e6`), `lambda` the extraction, `subspace_k` the class subsets of the `subspace` route (both
/// `OPTIONAL_KEYS`: results written before suites had lambda or k lists lack them, and the check then matches without).
pub const KEY_COLUMNS: [&str; 9] =
    ["dataset", "model", "lambda", "subspace_k", "attack", "params", "detector", "mode", "protocol"];
/// The key columns that older results files may lack.
pub const OPTIONAL_KEYS: [&str; 2] = ["lambda", "subspace_k"];

fn polars_err(path: &Path, e: PolarsError) -> Error {
    Error::format(path, format!("polars: {e}"))
}

/// The results as a polars DataFrame, rows in job order, then detector, mode and protocol as recorded.
pub fn results_frame(suite: &SuiteRecord, jobs: &[JobRecord]) -> Result<DataFrame> {
    let rows: Vec<(&JobRecord, &crate::records::RowRecord)> =
        jobs.iter().flat_map(|j| j.rows.iter().map(move |r| (j, r))).collect();
    let text = |f: &dyn Fn(&JobRecord, &crate::records::RowRecord) -> String| -> Vec<String> {
        rows.iter().map(|(j, r)| f(j, r)).collect()
    };
    let mut cols = vec![
        Column::new("dataset".into(), text(&|_, _| suite.dataset.clone())),
        Column::new(
            "model".into(),
            text(&|j, _| j.variant.as_ref().map_or_else(|| suite.model.clone(), |v| v.model.clone())),
        ),
        // the variant: the model's training seed, the extraction's lambda (text, as written: a key column), the
        // subspace route's k (text, empty without that route: a key column) and the mean fraction of units the
        // extraction's class subnetworks keep
        Column::new(
            "seed".into(),
            rows.iter().map(|(j, _)| j.variant.as_ref().and_then(|v| v.seed)).collect::<Vec<_>>(),
        ),
        Column::new(
            "lambda".into(),
            text(&|j, _| j.variant.as_ref().map_or(String::new(), |v| format!("{}", v.lambda))),
        ),
        Column::new(
            "subspace_k".into(),
            text(&|j, _| j.variant.as_ref().and_then(|v| v.subspace_k).map_or(String::new(), |k| k.to_string())),
        ),
        Column::new(
            "kept_fraction".into(),
            rows.iter().map(|(j, _)| j.variant.as_ref().map(|v| v.kept_fraction)).collect::<Vec<_>>(),
        ),
        Column::new("attack".into(), text(&|j, _| j.attack.clone())),
        Column::new("params".into(), text(&|j, _| j.params.clone())),
        // what an adaptive job attacked (empty for the other attacks)
        Column::new(
            "target_detector".into(),
            text(&|j, _| j.target.as_ref().map_or(String::new(), |t| t.detector.clone())),
        ),
        Column::new("target_mode".into(), text(&|j, _| j.target.as_ref().map_or(String::new(), |t| t.mode.clone()))),
        Column::new("detector".into(), text(&|_, r| r.detector.clone())),
        Column::new("mode".into(), text(&|_, r| r.mode.clone())),
        Column::new("protocol".into(), text(&|_, r| r.protocol.clone())),
        // a supervised detector's training attack (empty for the oblivious detectors)
        Column::new("trained_on".into(), text(&|_, r| r.trained_on.clone().unwrap_or_default())),
        Column::new("clean_accuracy".into(), rows.iter().map(|(j, _)| j.clean_accuracy).collect::<Vec<f64>>()),
        Column::new(
            "attack_success_rate".into(),
            rows.iter().map(|(j, _)| j.attack_success_rate).collect::<Vec<f64>>(),
        ),
        Column::new("mean_linf".into(), rows.iter().map(|(j, _)| j.mean_linf).collect::<Vec<f64>>()),
        Column::new("mean_l2".into(), rows.iter().map(|(j, _)| j.mean_l2).collect::<Vec<f64>>()),
        Column::new("n_pos".into(), rows.iter().map(|(_, r)| r.n_pos as u64).collect::<Vec<u64>>()),
        Column::new("n_neg".into(), rows.iter().map(|(_, r)| r.n_neg as u64).collect::<Vec<u64>>()),
    ];
    for m in METRIC_NAMES {
        let get = |f: fn(&crate::records::MetricValue) -> Option<f64>| -> Vec<Option<f64>> {
            rows.iter().map(|(_, r)| r.metric(m).and_then(f)).collect()
        };
        cols.push(Column::new(m.into(), get(|v| v.point)));
        cols.push(Column::new(format!("{m}_lo").into(), get(|v| v.lo)));
        cols.push(Column::new(format!("{m}_hi").into(), get(|v| v.hi)));
    }
    for name in [crate::metrics::HELDOUT_TPR, crate::metrics::HELDOUT_FPR, crate::metrics::EVASION] {
        let values: Vec<Option<f64>> = rows.iter().map(|(_, r)| r.metric(name).and_then(|v| v.point)).collect();
        cols.push(Column::new(name.into(), values));
    }
    // each route against the full model: paired differences, DeLong's p, and Holm's adjustment over the whole table
    let vf = |f: fn(&VersusFull) -> f64| -> Vec<Option<f64>> {
        rows.iter().map(|(_, r)| r.versus_full.as_ref().map(f)).collect()
    };
    let holm: Vec<Option<f64>> = holm_once_per_test(&rows);
    cols.push(Column::new(
        "delta_against".into(),
        rows.iter().map(|(_, r)| r.versus_full.map_or(String::new(), |v| v.against.to_string())).collect::<Vec<_>>(),
    ));
    cols.push(Column::new("delta_auroc".into(), vf(|v| v.delta_auroc)));
    cols.push(Column::new("delta_auroc_lo".into(), vf(|v| v.delta_auroc_lo)));
    cols.push(Column::new("delta_auroc_hi".into(), vf(|v| v.delta_auroc_hi)));
    cols.push(Column::new("delta_auroc_p".into(), vf(|v| v.delta_auroc_p)));
    cols.push(Column::new(
        "delta_auroc_se".into(),
        rows.iter().map(|(_, r)| r.versus_full.and_then(|v| v.delta_auroc_se)).collect::<Vec<_>>(),
    ));
    cols.push(Column::new("delta_auroc_p_holm".into(), holm));
    cols.push(Column::new("delta_tpr_at_fpr_5".into(), vf(|v| v.delta_tpr_at_fpr_5)));
    cols.push(Column::new("delta_tpr_at_fpr_5_lo".into(), vf(|v| v.delta_tpr_at_fpr_5_lo)));
    cols.push(Column::new("delta_tpr_at_fpr_5_hi".into(), vf(|v| v.delta_tpr_at_fpr_5_hi)));
    DataFrame::new(rows.len(), cols).map_err(|e| polars_err(Path::new("results"), e))
}

/// What a row's paired test compares, so that one test is counted once in the Holm family: a `[subspace] k` list
/// repeats every route but `subspace` on each k with the same scores, so the subset size is part of a test's identity
/// only where the row's route or the adaptive attack's route is `subspace`.
fn test_identity(j: &JobRecord, r: &crate::records::RowRecord) -> String {
    let target = j.target.as_ref().map_or(("", ""), |t| (t.detector.as_str(), t.mode.as_str()));
    let k_matters = r.mode == "subspace" || target.1 == "subspace";
    let v = j.variant.as_ref();
    format!(
        "{:?}|{:?}|{:?}|{}|{}|{}|{}|{}|{}|{}|{}",
        v.map(|v| &v.model),
        v.map(|v| v.lambda.to_string()),
        v.and_then(|v| v.subspace_k).filter(|_| k_matters),
        j.attack,
        j.params,
        target.0,
        target.1,
        r.detector,
        r.mode,
        r.protocol,
        r.trained_on.as_deref().unwrap_or("")
    )
}

/// Holm's adjustment of the rows' DeLong p-values over the whole table, each distinct test (`test_identity`) once in
/// the family: the rows that repeat a test get its adjusted p.
fn holm_once_per_test(rows: &[(&JobRecord, &crate::records::RowRecord)]) -> Vec<Option<f64>> {
    let mut tests: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut p: Vec<f64> = Vec::new();
    let mut which: Vec<Option<usize>> = Vec::with_capacity(rows.len());
    for (j, r) in rows {
        let Some(v) = r.versus_full else {
            which.push(None);
            continue;
        };
        let id = test_identity(j, r);
        let t = *tests.entry(id).or_insert_with(|| {
            p.push(v.delta_auroc_p);
            p.len() - 1
        });
        which.push(Some(t));
    }
    let adjusted = crate::metrics::holm(&p);
    which.iter().map(|t| t.map(|t| adjusted[t]).filter(|v| !v.is_nan())).collect()
}

/// Writes `results.csv` (floats with 6 decimals, so equal runs give equal bytes) and `results.parquet`, atomically.
pub fn write_results(dir: &Path, df: &DataFrame) -> Result<()> {
    let csv = dir.join("results.csv");
    write_atomic(&csv, |tmp| {
        let mut f = std::fs::File::create(tmp).map_err(|e| Error::io(tmp, e))?;
        CsvWriter::new(&mut f)
            .include_header(true)
            .with_float_precision(Some(6))
            .finish(&mut df.clone())
            .map_err(|e| polars_err(&csv, e))
    })?;
    let pq = dir.join("results.parquet");
    write_atomic(&pq, |tmp| {
        let f = std::fs::File::create(tmp).map_err(|e| Error::io(tmp, e))?;
        ParquetWriter::new(f).finish(&mut df.clone()).map(|_| ()).map_err(|e| polars_err(&pq, e))
    })
}

/// One cell: AUROC with its interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub auroc: Option<f64>,
    pub lo: Option<f64>,
    pub hi: Option<f64>,
    /// The highest point estimate of its row (a description, not a test).
    pub best: bool,
    /// A route other than the full model against the full model, by its Holm-adjusted DeLong test.
    pub versus_full: Verdict,
    /// A supervised detector's cell in the row of the attack it was trained on.
    pub seen: bool,
}

/// What the paired test says about a route against the full model (`None` on full-model cells and untested ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    None,
    Better,
    Worse,
    NoEvidence,
}

/// The family-wise level of the verdicts (Holm-adjusted p below it).
pub const VERDICT_LEVEL: f64 = 0.05;

/// A p-value as the tables print it: four decimals, or two significant digits below 1e-4.
pub fn p_text(p: f64) -> String {
    if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

impl Verdict {
    /// The verdict of a difference `delta` with Holm-adjusted p `p_holm` (either missing: not tested).
    pub fn of(delta: Option<f64>, p_holm: Option<f64>) -> Verdict {
        match (delta, p_holm) {
            (Some(d), Some(p)) if p < VERDICT_LEVEL && d > 0.0 => Verdict::Better,
            (Some(d), Some(p)) if p < VERDICT_LEVEL && d < 0.0 => Verdict::Worse,
            (Some(_), Some(_)) => Verdict::NoEvidence,
            _ => Verdict::None,
        }
    }

    /// The mark after a cell: an arrow for a significant difference from the full model, nothing otherwise.
    pub fn mark(self, up: &str, down: &str) -> String {
        match self {
            Verdict::Better => format!(" {up}"),
            Verdict::Worse => format!(" {down}"),
            Verdict::None | Verdict::NoEvidence => String::new(),
        }
    }
}

/// The detector families in the order the paper table groups its columns (`DetectorKind::family`).
pub const FAMILIES: [&str; 6] = ["confidence", "two-network", "feature", "squeezing", "path", "supervised"];

/// The paper's table: rows are attacks, columns detector x mode, AUROC with CI, the best of each row marked.
#[derive(Debug, Clone, PartialEq)]
pub struct PaperTable {
    pub protocol: String,
    pub bootstrap: usize,
    /// `(detector, mode)` per column.
    pub columns: Vec<(String, String)>,
    /// `(attack label, attack success rate, cells)` per row.
    pub rows: Vec<(String, f64, Vec<Cell>)>,
}

pub(crate) fn str_col<'a>(df: &'a DataFrame, name: &str) -> Result<Vec<&'a str>> {
    let err = |e| polars_err(Path::new("results"), e);
    Ok(df.column(name).map_err(err)?.str().map_err(err)?.iter().map(|v| v.unwrap_or("")).collect())
}

pub(crate) fn f64_col(df: &DataFrame, name: &str) -> Result<Vec<Option<f64>>> {
    let err = |e| polars_err(Path::new("results"), e);
    Ok(df.column(name).map_err(err)?.f64().map_err(err)?.iter().collect())
}

/// The columns that name a row: attack, params, detector, mode, protocol.
pub(crate) fn row_keys(df: &DataFrame) -> Result<[Vec<&str>; 5]> {
    Ok([
        str_col(df, "attack")?,
        str_col(df, "params")?,
        str_col(df, "detector")?,
        str_col(df, "mode")?,
        str_col(df, "protocol")?,
    ])
}

impl PaperTable {
    /// Builds the table from the results frame for one protocol; columns follow the first appearance of each
    /// (detector, mode), rows the first appearance of each (attack, params).
    /// The table of `protocol`: a row per attack, a column per (detector, mode), the columns grouped by detector
    /// family in `FAMILIES` order.
    pub fn from_frame(df: &DataFrame, protocol: &str, bootstrap: usize) -> Result<PaperTable> {
        let [attack, params, det, mode, prot] = row_keys(df)?;
        let (asr, au, lo, hi) = (
            f64_col(df, "attack_success_rate")?,
            f64_col(df, "auroc")?,
            f64_col(df, "auroc_lo")?,
            f64_col(df, "auroc_hi")?,
        );
        let (delta, p_holm) = (f64_col(df, "delta_auroc")?, f64_col(df, "delta_auroc_p_holm")?);
        // results written before supervised detectors have no trained_on column: nothing was seen
        let trained: Vec<String> = match df.column("trained_on") {
            Ok(_) => str_col(df, "trained_on")?.iter().map(|s| s.to_string()).collect(),
            Err(_) => vec![String::new(); df.height()],
        };
        let mut columns: Vec<(String, String)> = Vec::new();
        let mut rows: Vec<(String, f64, Vec<Cell>)> = Vec::new();
        let mut cells: Vec<(usize, usize, Cell)> = Vec::new();
        for i in (0..df.height()).filter(|&i| prot[i] == protocol) {
            let col = (det[i].to_string(), mode[i].to_string());
            let c = columns.iter().position(|x| *x == col).unwrap_or_else(|| {
                columns.push(col);
                columns.len() - 1
            });
            let label =
                if params[i].is_empty() { attack[i].to_string() } else { format!("{} {}", attack[i], params[i]) };
            let r = rows.iter().position(|x| x.0 == label).unwrap_or_else(|| {
                rows.push((label, asr[i].unwrap_or(f64::NAN), Vec::new()));
                rows.len() - 1
            });
            let versus_full = Verdict::of(delta[i], p_holm[i]);
            let seen = !trained[i].is_empty() && trained[i] == rows[r].0;
            cells.push((r, c, Cell { auroc: au[i], lo: lo[i], hi: hi[i], best: false, versus_full, seen }));
        }
        // columns grouped by detector family (`FAMILIES`), in order of appearance
        // within a family
        let family = |name: &str| {
            let f = name.parse::<crate::detectors::DetectorKind>().map(|k| k.family()).unwrap_or("");
            FAMILIES.iter().position(|x| *x == f).unwrap_or(FAMILIES.len())
        };
        let mut order: Vec<usize> = (0..columns.len()).collect();
        order.sort_by_key(|&c| family(&columns[c].0));
        let mut at = vec![0; columns.len()];
        for (new, &old) in order.iter().enumerate() {
            at[old] = new;
        }
        let columns: Vec<(String, String)> = order.iter().map(|&c| columns[c].clone()).collect();
        let empty = Cell { auroc: None, lo: None, hi: None, best: false, versus_full: Verdict::None, seen: false };
        for row in rows.iter_mut() {
            row.2 = vec![empty.clone(); columns.len()];
        }
        for (r, c, cell) in cells {
            rows[r].2[at[c]] = cell;
        }
        for row in rows.iter_mut() {
            let best = row.2.iter().filter_map(|c| c.auroc).fold(f64::NEG_INFINITY, f64::max);
            for c in row.2.iter_mut() {
                c.best = c.auroc.is_some_and(|a| (a - best).abs() < 5e-4);
            }
        }
        Ok(PaperTable { protocol: protocol.to_string(), bootstrap, columns, rows })
    }

    fn cell_text(c: &Cell, bold: (&str, &str), arrows: (&str, &str)) -> String {
        match c.auroc {
            None => "n/a".into(),
            Some(a) => {
                let point = if c.best { format!("{}{a:.3}{}", bold.0, bold.1) } else { format!("{a:.3}") };
                let mark = c.versus_full.mark(arrows.0, arrows.1) + if c.seen { " (seen)" } else { "" };
                match (c.lo, c.hi) {
                    (Some(l), Some(h)) => format!("{point} [{l:.3}, {h:.3}]{mark}"),
                    _ => format!("{point}{mark}"),
                }
            }
        }
    }

    pub fn caption(&self) -> String {
        let ci = if self.bootstrap > 0 {
            format!("[95% bootstrap CI, {} resamples]", self.bootstrap)
        } else {
            "(no bootstrap)".into()
        };
        let has = |d: &str| self.columns.iter().any(|(c, _)| c == d);
        let mut baselines = String::new();
        if has("mahalanobis") {
            baselines +=
                " mahalanobis: Lee et al.'s class-conditional Gaussians on the penultimate layer only, without \
                          their input preprocessing and their layer ensemble (both tuned on adversarial examples).";
        }
        if has("kdbu") {
            baselines += " kdbu: Feinman et al.'s kernel density and Bayesian uncertainty, unsupervised (their \
                          logistic regression on adversarial examples left out).";
        }
        let supervised = self
            .columns
            .iter()
            .any(|(d, _)| d.parse::<crate::detectors::DetectorKind>().is_ok_and(|k| k.family() == "supervised"));
        let fitted = match supervised {
            false => "The detectors are oblivious to the attacks: none was fitted on adversarial examples.",
            true => {
                "The supervised detectors were fitted on one training attack's adversarial versions of held-out \
                 training images: (seen) marks that attack's row, every other row is an attack they have not seen; \
                 the other detectors are oblivious to the attacks."
            }
        };
        let prot = match self.protocol.as_str() {
            "successful" => "positives are the successful adversarial versions of the correctly classified clean test images",
            _ => "positives are the adversarial versions (successful or not) of the correctly classified clean test images",
        };
        format!(
            "AUROC {ci}, higher is better; bold: the highest point estimate of the row (a description, not a test). \
             An arrow after a route's cell: higher (up) or lower (down) than the same detector on the full model (for \
             KL and disagreement, which have no full-model cell: than on the subnet), by DeLong's paired test with \
             Holm's adjustment over the whole table at {VERDICT_LEVEL}; no arrow, no such evidence (delta_auroc, \
             delta_against and the paired interval are in results.csv). Negatives are the correctly classified clean test images; \
             {prot}. ASR: attack success rate. Columns are grouped by detector family (confidence, two-network, \
             feature, squeezing, path, supervised; see the README's \"Detectors\"). {fitted}{baselines}"
        )
    }

    /// GitHub-flavoured markdown.
    pub fn markdown(&self) -> String {
        let mut s = format!("{}\n\n| attack | ASR |", self.caption());
        for (d, m) in &self.columns {
            s += &format!(" {d} ({m}) |");
        }
        s += "\n|---|---:|";
        s += &"---:|".repeat(self.columns.len());
        s += "\n";
        for (label, asr, cells) in &self.rows {
            s += &format!("| {label} | {asr:.3} |");
            for c in cells {
                s += &format!(" {} |", Self::cell_text(c, ("**", "**"), ("↑", "↓")));
            }
            s += "\n";
        }
        s
    }

    /// A LaTeX table (booktabs), detectors as column groups with full/subnet under each.
    pub fn latex(&self) -> String {
        let esc =
            |t: &str| t.replace('\\', "\\textbackslash{}").replace('_', "\\_").replace('%', "\\%").replace('&', "\\&");
        let mut groups: Vec<(String, usize)> = Vec::new();
        for (d, _) in &self.columns {
            match groups.last_mut() {
                Some((g, n)) if g == d => *n += 1,
                _ => groups.push((d.clone(), 1)),
            }
        }
        let mut s = String::from("\\begin{table}[t]\n\\centering\n\\small\n");
        s += &format!("\\begin{{tabular}}{{lr{}}}\n\\toprule\n", "c".repeat(self.columns.len()));
        s += " & ";
        for (g, n) in &groups {
            s += &format!(" & \\multicolumn{{{n}}}{{c}}{{{}}}", esc(g));
        }
        s += " \\\\\nattack & ASR";
        for (_, m) in &self.columns {
            s += &format!(" & {}", esc(m));
        }
        s += " \\\\\n\\midrule\n";
        for (label, asr, cells) in &self.rows {
            s += &format!("{} & {asr:.3}", esc(label));
            for c in cells {
                s += &format!(" & {}", Self::cell_text(c, ("\\textbf{", "}"), ("$\\uparrow$", "$\\downarrow$")));
            }
            s += " \\\\\n";
        }
        s += &format!("\\bottomrule\n\\end{{tabular}}\n\\caption{{{}}}\n\\end{{table}}\n", esc(&self.caption()));
        s
    }
}

/// The sparsity table of the subnetworks: per class, the share of each layer's units kept, overall, and the
/// subnetwork's accuracy on its own class next to the full model's.
/// A CSG model's gate summary and per-class accuracy of its three paths (markdown).
pub fn csg_markdown(rec: &crate::records::CsgRecord) -> String {
    let channels = rec.gates.len();
    let classes = rec.gates.first().map_or(0, Vec::len);
    let mut s = format!(
        "Class-specific gates (CSG-CNN): {channels} channels x {classes} classes. Mean over live channels of the \
         largest class's share of the channel's gates: {:.3} (1: one class per channel; {:.3}: shared evenly); mean \
         row entropy {:.3} nats (0: one class; ln {classes} = {:.3}: even); {} dead channels; {:.3} of the gates \
         above 0.5 (what csg-binary keeps).\n\nClean accuracy per class on the whole test split: full path, gated \
         path with the true label's gates (the training-time path, an oracle), and gated path with the full path's \
         predicted class's gates (the csg route).\n\n| class | full | gated (label) | gated (predicted) |\n|---:|---:|---:|---:|\n",
        rec.mean_max_share,
        1.0 / classes.max(1) as f64,
        rec.mean_entropy,
        (classes.max(1) as f64).ln(),
        rec.dead_channels,
        rec.kept_fraction,
    );
    for c in 0..rec.full_accuracy.len() {
        let get = |v: &[f64]| v.get(c).map_or("n/a".to_string(), |x| format!("{x:.4}"));
        s += &format!(
            "| {c} | {} | {} | {} |\n",
            get(&rec.full_accuracy),
            get(&rec.label_gated_accuracy),
            get(&rec.predicted_gated_accuracy)
        );
    }
    s
}

pub fn sparsity_markdown(rec: &SubnetRecord) -> String {
    let mut s = String::from("| class |");
    for l in &rec.layers {
        s += &format!(" {l} |");
    }
    s += " all | subnet acc | full acc |\n|---:|";
    s += &"---:|".repeat(rec.layers.len() + 3);
    s += "\n";
    for (c, kept) in rec.kept.iter().enumerate() {
        s += &format!("| {c} |");
        for k in kept {
            s += &format!(" {k:.3} |");
        }
        let get = |v: &[f64]| v.get(c).map_or("n/a".to_string(), |x| format!("{x:.3}"));
        s += &format!(
            " {} | {} | {} |\n",
            get(&rec.kept_fraction),
            get(&rec.own_class_accuracy),
            get(&rec.full_model_accuracy)
        );
    }
    s
}
