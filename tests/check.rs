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
    rewrite(&smoke(), &higher, |h, row| {
        let i = col(h, "auroc");
        if let Ok(v) = row[i].parse::<f64>() {
            row[i] = format!("{:.6}", v + 0.05);
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
        let i = col(h, "fpr_at_tpr_95");
        if let Ok(v) = row[i].parse::<f64>() {
            row[i] = format!("{:.6}", v - 0.1);
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
    std::fs::write(&renamed, text.replacen("detector,", "detektor,", 1))?;
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
