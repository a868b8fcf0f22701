//! `advdet check` against baselines (the regression guard of the Wang et al., arXiv 1910.02673 detection rates):
//! exit 0 on the results themselves, 1 when auroc fell by more than the tolerance or a row is missing, 2 on a file
//! without the metric columns or a baseline with different keys. The results are the committed smoke baseline, a real
//! run of attacks/smoke.toml.
mod common;

use advdet::check::{check, CheckConfig};
use common::{run_advdet, TestResult};
use std::path::{Path, PathBuf};

fn smoke() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("reports").join("baselines").join("smoke.csv")
}

/// Rewrites a CSV: `edit(header, row)` gets every data row with the header's column names.
fn rewrite(src: &Path, dst: &Path, edit: impl Fn(&[String], &mut Vec<String>)) -> std::io::Result<()> {
    let text = std::fs::read_to_string(src)?;
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap_or("").split(',').map(str::to_string).collect();
    let mut out = header.join(",") + "\n";
    for line in lines {
        let mut row: Vec<String> = line.split(',').map(str::to_string).collect();
        edit(&header, &mut row);
        out += &(row.join(",") + "\n");
    }
    std::fs::write(dst, out)
}

fn col(header: &[String], name: &str) -> usize {
    header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name}"))
}

fn check_cli(results: &Path, baseline: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["check", results.to_str().unwrap_or(""), "--baseline", baseline.to_str().unwrap_or("")];
    args.extend_from_slice(extra);
    run_advdet(&args)
}

#[test]
fn results_pass_against_themselves() -> TestResult {
    let (code, stdout, stderr) = check_cli(&smoke(), &smoke(), &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("no regression"), "{stdout}");
    let all = advdet::metrics::METRIC_NAMES.join(",");
    let (code, _, stderr) = check_cli(&smoke(), &smoke(), &["--metric", &all, "--tolerance", "0"]);
    assert_eq!(code, 0, "{stderr}");
    Ok(())
}

#[test]
fn a_baseline_005_higher_is_a_regression() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let higher = tmp.path().join("higher.csv");
    // The whole baseline 0.05 higher, interval included: every result lies below the baseline's interval.
    rewrite(&smoke(), &higher, |h, row| {
        for c in ["auroc", "auroc_lo", "auroc_hi"] {
            let i = col(h, c);
            if let Ok(v) = row[i].parse::<f64>() {
                row[i] = format!("{:.6}", v + 0.05);
            }
        }
    })?;
    let (code, stdout, _) = check_cli(&smoke(), &higher, &[]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("fell by 0.0500"), "{stdout}");
    let (code, stdout, _) = check_cli(&smoke(), &higher, &["--tolerance", "0.06"]);
    assert_eq!(code, 0, "a 0.05 fall is within a 0.06 tolerance: {stdout}");

    let report = check(&smoke(), &higher, &CheckConfig::default())?;
    let rows = std::fs::read_to_string(smoke())?.lines().count() - 1;
    let defined = report.regressions.iter().filter(|r| r.metric == "auroc").count();
    assert!(defined > 0 && defined <= rows);
    assert_eq!(report.compared_rows, rows);
    Ok(())
}

#[test]
fn lower_is_better_metrics_regress_upwards() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let lower = tmp.path().join("lower.csv");
    rewrite(&smoke(), &lower, |h, row| {
        for c in ["fpr_at_tpr_95", "fpr_at_tpr_95_lo", "fpr_at_tpr_95_hi"] {
            let i = col(h, c);
            if let Ok(v) = row[i].parse::<f64>() {
                row[i] = format!("{:.6}", v - 0.1);
            }
        }
    })?;
    let cfg = CheckConfig { tolerance: 0.02, metrics: vec!["fpr_at_tpr_95".into()] };
    assert!(!check(&smoke(), &lower, &cfg)?.passed());
    assert!(check(&lower, &smoke(), &cfg)?.passed(), "a lower FPR is an improvement");
    Ok(())
}

#[test]
fn a_missing_baseline_row_exits_1() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let text = std::fs::read_to_string(smoke())?;
    let fewer: Vec<&str> = text.lines().take(text.lines().count() - 1).collect();
    let path = tmp.path().join("fewer.csv");
    std::fs::write(&path, fewer.join("\n") + "\n")?;
    let (code, stdout, _) = check_cli(&smoke(), &path, &[]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("has no baseline row"), "{stdout}");
    let (code, stdout, _) = check_cli(&path, &smoke(), &[]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("missing from the results"), "{stdout}");
    Ok(())
}

#[test]
fn bad_files_exit_2_naming_the_problem() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let no_metrics = tmp.path().join("no-metrics.csv");
    let text = std::fs::read_to_string(smoke())?;
    let cut: Vec<String> = text.lines().map(|l| l.split(',').take(13).collect::<Vec<_>>().join(",")).collect();
    std::fs::write(&no_metrics, cut.join("\n") + "\n")?;
    let (code, _, stderr) = check_cli(&no_metrics, &smoke(), &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no-metrics.csv") && stderr.contains("missing column(s) auroc"), "{stderr}");

    let other_keys = tmp.path().join("other-keys.csv");
    rewrite(&smoke(), &other_keys, |h, row| row[col(h, "model")] = "resnet20-s9-e1".into())?;
    let (code, _, stderr) = check_cli(&smoke(), &other_keys, &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("other-keys.csv") && stderr.contains("different keys"), "{stderr}");

    let renamed = tmp.path().join("renamed.csv");
    std::fs::write(&renamed, text.replacen(",detector,", ",detektor,", 1))?;
    let (code, _, stderr) = check_cli(&smoke(), &renamed, &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("renamed.csv") && stderr.contains("line 1") && stderr.contains("detector"), "{stderr}");

    let garbage = tmp.path().join("garbage.csv");
    rewrite(&smoke(), &garbage, |h, row| row[col(h, "auroc")] = "high".into())?;
    let (code, _, stderr) = check_cli(&garbage, &smoke(), &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("line 2") && stderr.contains("`high`"), "{stderr}");

    let (code, _, stderr) = check_cli(&smoke(), &smoke(), &["--metric", "aurock"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("aurock"), "{stderr}");
    let (code, _, stderr) = check_cli(&tmp.path().join("absent.csv"), &smoke(), &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("absent.csv"), "{stderr}");
    Ok(())
}

/// A hand-made results table: `(detector, auroc, auroc_lo, auroc_hi)` per row; the interval columns are left out
/// when `intervals` is false (a baseline written before they existed).
fn table(dir: &Path, name: &str, rows: &[(&str, f64, f64, f64)], intervals: bool) -> std::io::Result<PathBuf> {
    let mut text = String::from("dataset,model,attack,params,detector,mode,protocol,auroc");
    text += if intervals { ",auroc_lo,auroc_hi\n" } else { "\n" };
    for (det, v, lo, hi) in rows {
        text += &format!("mnist,lenet-s0-e6,fgsm,eps=0.1,{det},full,successful,{v}");
        text += &if intervals { format!(",{lo},{hi}\n") } else { "\n".to_string() };
    }
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

#[test]
fn a_fall_beyond_the_tolerance_fails_only_outside_the_baselines_interval() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let base = table(tmp.path(), "base.csv", &[("msp", 0.90, 0.85, 0.94), ("kl", 0.80, 0.78, 0.82)], true)?;
    // msp fell by 0.04 (> 0.02) but its interval overlaps [0.85, 0.94]: noise, passes and is listed.
    let inside = table(tmp.path(), "inside.csv", &[("msp", 0.86, 0.81, 0.90), ("kl", 0.80, 0.78, 0.82)], true)?;
    let report = check(&inside, &base, &CheckConfig::default())?;
    assert!(report.passed(), "{}", report.table());
    assert_eq!(report.within_interval.len(), 1);
    assert!(report.within_interval[0].key.contains("detector=msp"));
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let (code, stdout, _) = check_cli(&inside, &base, &[]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("the intervals overlap (baseline [0.8500, 0.9400])"), "{stdout}");

    // The value below the baseline's interval, the intervals still overlapping: noise too.
    let below = table(tmp.path(), "below.csv", &[("msp", 0.90, 0.86, 0.94), ("kl", 0.77, 0.74, 0.79)], true)?;
    assert!(check(&below, &base, &CheckConfig::default())?.passed());

    // kl fell by 0.06 (> 0.02), its interval [0.70, 0.77] wholly below [0.78, 0.82]: a regression.
    let outside = table(tmp.path(), "outside.csv", &[("msp", 0.90, 0.86, 0.94), ("kl", 0.74, 0.70, 0.77)], true)?;
    let report = check(&outside, &base, &CheckConfig::default())?;
    assert_eq!(report.regressions.len(), 1, "{}", report.table());
    assert_eq!(report.regressions[0].metric, "auroc");
    assert!(report.regressions[0].key.contains("detector=kl"));
    assert!(report.regressions[0].problem.contains("beyond the baseline's interval"), "{}", report.table());
    let (code, stdout, _) = check_cli(&outside, &base, &[]);
    assert_eq!(code, 1, "{stdout}");

    // Results without interval columns: their value against the baseline's interval.
    let bare = table(tmp.path(), "bare.csv", &[("msp", 0.90, 0.0, 0.0), ("kl", 0.77, 0.0, 0.0)], false)?;
    assert_eq!(check(&bare, &base, &CheckConfig::default())?.regressions.len(), 1);

    // Disjoint intervals but a fall within the tolerance: not a regression either (both conditions must hold).
    let wide = CheckConfig { tolerance: 0.07, ..CheckConfig::default() };
    assert!(check(&outside, &base, &wide)?.passed());
    Ok(())
}

#[test]
fn an_old_baseline_without_intervals_falls_back_to_the_tolerance_with_a_warning() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let base = table(tmp.path(), "old.csv", &[("msp", 0.90, 0.0, 1.0), ("kl", 0.80, 0.0, 1.0)], false)?;
    let res = table(tmp.path(), "res.csv", &[("msp", 0.86, 0.85, 0.94), ("kl", 0.80, 0.78, 0.82)], true)?;
    let report = check(&res, &base, &CheckConfig::default())?;
    assert_eq!(report.regressions.len(), 1, "a 0.04 fall with no interval to absorb it: {}", report.table());
    assert!(report.warnings.iter().any(|w| w.contains("no interval columns for auroc")), "{:?}", report.warnings);
    let (code, stdout, stderr) = check_cli(&res, &base, &[]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stderr.contains("warning:") && stderr.contains("tolerance alone"), "{stderr}");
    Ok(())
}

#[test]
fn broken_interval_columns_exit_2() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let res = table(tmp.path(), "res.csv", &[("msp", 0.90, 0.85, 0.94)], true)?;
    let half = tmp.path().join("half.csv");
    std::fs::write(
        &half,
        "dataset,model,attack,params,detector,mode,protocol,auroc,auroc_lo\n\
         mnist,lenet-s0-e6,fgsm,eps=0.1,msp,full,successful,0.9,0.85\n",
    )?;
    let (code, _, stderr) = check_cli(&res, &half, &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("half.csv") && stderr.contains("auroc_hi missing"), "{stderr}");
    let inverted = table(tmp.path(), "inverted.csv", &[("msp", 0.90, 0.94, 0.85)], true)?;
    let (code, _, stderr) = check_cli(&res, &inverted, &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("inverted.csv") && stderr.contains("runs backwards"), "{stderr}");
    Ok(())
}

#[test]
fn a_baseline_of_another_suite_exits_2() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (rdir, bdir) = (tmp.path().join("run"), tmp.path().join("baselines"));
    std::fs::create_dir_all(&rdir)?;
    std::fs::create_dir_all(&bdir)?;
    let res = table(&rdir, "results.csv", &[("msp", 0.90, 0.85, 0.94)], true)?;
    let base = table(&bdir, "smoke.csv", &[("msp", 0.90, 0.85, 0.94)], true)?;
    let manifest = |suite: &str, mode: &str| {
        format!(
            r#"{{"suite": "{suite}", "cpu": {{"mode": "{mode}", "pinned": {{}}, "host_isa": "avx2", "host_vendor": "x"}}}}"#
        )
    };
    std::fs::write(rdir.join("manifest.json"), manifest("smoke", "native"))?;
    std::fs::write(bdir.join("smoke.manifest.json"), manifest("mnist", "reproducible"))?;
    let (code, _, stderr) = check_cli(&res, &base, &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("smoke.csv") && stderr.contains("baseline of suite \"mnist\""), "{stderr}");

    // Same suite, other CPU mode: checked, with a warning that equality is not to be expected.
    std::fs::write(bdir.join("smoke.manifest.json"), manifest("smoke", "reproducible"))?;
    let (code, stdout, stderr) = check_cli(&res, &base, &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stderr.contains("CPU mode \"native\"") && stderr.contains("expect noise"), "{stderr}");
    Ok(())
}

/// `subspace_k` is a key column where both files have it (a k sweep's rows differ only by it) and is left out of the
/// match where one lacks it (baselines written before k lists).
#[test]
fn subspace_k_keys_rows_only_when_both_files_have_it() -> TestResult {
    let tmp = tempfile::tempdir()?;
    // `k(i)`: the k of data row i (1-based); `None`: no subspace_k column at all
    let with_k = |k: Option<&dyn Fn(usize) -> &'static str>, name: &str| -> std::io::Result<PathBuf> {
        let text = std::fs::read_to_string(smoke())?;
        let at = text.lines().next().unwrap_or("").split(',').position(|c| c == "subspace_k").unwrap_or(usize::MAX);
        let mut out = String::new();
        for (i, line) in text.lines().enumerate() {
            let mut cells: Vec<&str> = line.split(',').collect();
            match k {
                Some(k) if i > 0 => cells[at] = k(i),
                Some(_) => {}
                None => {
                    cells.remove(at);
                }
            }
            out += &(cells.join(",") + "\n");
        }
        let path = tmp.path().join(name);
        std::fs::write(&path, out)?;
        Ok(path)
    };
    let k20 = with_k(Some(&|_| "20"), "k20.csv")?;
    let one_40 = with_k(Some(&|i| if i == 1 { "40" } else { "20" }), "one-40.csv")?;
    let no_column = with_k(None, "no-k.csv")?;
    // against a baseline without the column: matched without it
    let (code, stdout, stderr) = check_cli(&k20, &no_column, &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(check_cli(&k20, &k20, &[]).0, 0);
    // both with it: a row of another k is another row
    let (code, stdout, _) = check_cli(&one_40, &k20, &[]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("has no baseline row") && stdout.contains("subspace_k=40"), "{stdout}");
    // results without the column against a baseline with it: matched without it too
    let (code, stdout, stderr) = check_cli(&no_column, &k20, &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    // a k sweep against a baseline without the column: its rows share keys, and the error says why
    let k40 = std::fs::read_to_string(with_k(Some(&|_| "40"), "k40.csv")?)?;
    let swept = tmp.path().join("swept.csv");
    std::fs::write(
        &swept,
        std::fs::read_to_string(&k20)? + &k40.lines().skip(1).collect::<Vec<_>>().join("\n") + "\n",
    )?;
    let (code, stdout, stderr) = check_cli(&swept, &no_column, &[]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("duplicate row key") && stderr.contains("no subspace_k column"), "{stderr}");
    Ok(())
}
