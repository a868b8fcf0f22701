//! ROC metrics against scikit-learn's values (tests/fixtures/metrics/cases.json from
//! scripts/reference/gen_metric_vectors.py), their properties, the bootstrap, the scores CSV reader and `advdet roc`.
mod common;

use advdet::metrics::{self, csv, Metrics, METRIC_NAMES};
use advdet::rng::Rng;
use common::{fixtures, run_advdet, TestResult};
use proptest::prelude::*;
use serde_json::Value;
use std::path::Path;

struct Case {
    name: String,
    labels: Vec<bool>,
    scores: Vec<f64>,
    expected: Value,
    roc: Value,
}

fn cases() -> Result<Vec<Case>, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(fixtures().join("metrics").join("cases.json"))?;
    let doc: Value = serde_json::from_str(&text)?;
    let floats = |v: &Value| -> Vec<f64> { v.as_array().into_iter().flatten().filter_map(Value::as_f64).collect() };
    let mut out = Vec::new();
    for c in doc["cases"].as_array().ok_or("no cases")? {
        out.push(Case {
            name: c["name"].as_str().ok_or("case without name")?.to_string(),
            labels: c["labels"].as_array().ok_or("no labels")?.iter().map(|l| l.as_i64() == Some(1)).collect(),
            scores: floats(&c["scores"]),
            expected: c["expected"].clone(),
            roc: c["roc"].clone(),
        });
    }
    Ok(out)
}

/// Gaussian scores, adversarial shifted by `shift`: a detector of middling quality.
fn gaussian(n: usize, shift: f64, seed: u64) -> (Vec<bool>, Vec<f64>) {
    let mut rng = Rng::new(seed);
    let mut unit = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    (0..n)
        .map(|i| {
            let adv = i % 3 == 0;
            let z = (-2.0 * (1.0 - unit()).ln()).sqrt() * (std::f64::consts::TAU * unit()).cos();
            (adv, z + if adv { shift } else { 0.0 })
        })
        .unzip()
}

#[test]
fn metrics_match_scikit_learn() -> TestResult {
    let cases = cases()?;
    assert!(cases.len() >= 8, "{} cases", cases.len());
    for c in &cases {
        let m = metrics::compute(&c.labels, &c.scores)?;
        for name in METRIC_NAMES {
            let want = c.expected[name].as_f64().ok_or(format!("{}: no {name}", c.name))?;
            let got = m.get(name).ok_or(name)?;
            assert!((got - want).abs() <= 1e-9, "{} {name}: advdet {got}, scikit-learn {want}", c.name);
        }
        assert!((metrics::auroc(&c.labels, &c.scores)? - m.auroc).abs() <= 1e-15, "{}: auroc() differs", c.name);
        assert_eq!(metrics::bootstrap(&c.labels, &c.scores, 0, 1)?.point, m, "{}", c.name);
    }
    Ok(())
}

#[test]
fn roc_curve_matches_scikit_learn() -> TestResult {
    for c in cases()? {
        let roc = metrics::roc_curve(&c.labels, &c.scores)?;
        let want =
            |key: &str| -> Vec<f64> { c.roc[key].as_array().into_iter().flatten().filter_map(Value::as_f64).collect() };
        let (fpr, tpr, thr) = (want("fpr"), want("tpr"), want("thresholds_after_inf"));
        assert_eq!(roc.fpr.len(), fpr.len(), "{}: number of ROC points", c.name);
        assert_eq!(roc.thresholds[0], f64::INFINITY);
        assert_eq!(&roc.thresholds[1..], &thr[..], "{}: thresholds", c.name);
        for k in 0..fpr.len() {
            assert!(
                (roc.fpr[k] - fpr[k]).abs() <= 1e-12 && (roc.tpr[k] - tpr[k]).abs() <= 1e-12,
                "{} point {k}",
                c.name
            );
        }
    }
    Ok(())
}

#[test]
fn perfect_and_constant_scorers() -> TestResult {
    let labels: Vec<bool> = (0..500).map(|i| i % 4 == 0).collect();
    let perfect: Vec<f64> =
        labels.iter().enumerate().map(|(i, &l)| if l { 2.0 + i as f64 } else { -(i as f64) }).collect();
    let m = metrics::compute(&labels, &perfect)?;
    assert_eq!(m, Metrics::from_values([1.0, 1.0, 1.0, 1.0, 0.0, 1.0]));
    let m = metrics::compute(&labels, &vec![0.25; labels.len()])?;
    assert_eq!((m.auroc, m.tpr_at_fpr_5, m.fpr_at_tpr_95, m.detection_accuracy), (0.5, 0.0, 1.0, 0.5));
    assert_eq!((m.ap_adv, m.ap_clean), (0.25, 0.75), "AP of a constant scorer is the class prevalence");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn auroc_properties(pairs in prop::collection::vec((any::<bool>(), -20i32..20), 2..400)) {
        let mut labels: Vec<bool> = pairs.iter().map(|p| p.0).collect();
        labels[0] = true;
        labels[1] = false;
        let scores: Vec<f64> = pairs.iter().map(|p| f64::from(p.1) / 4.0).collect();
        let negated: Vec<f64> = scores.iter().map(|s| -s).collect();
        let a = metrics::auroc(&labels, &scores)?;
        prop_assert!((a + metrics::auroc(&labels, &negated)? - 1.0).abs() < 1e-12);
        // a strictly increasing transform keeps every threshold, hence every metric
        let squashed: Vec<f64> = scores.iter().map(|s| (s / 3.0).tanh() * 7.0 + 1.0).collect();
        let (m, t) = (metrics::compute(&labels, &scores)?, metrics::compute(&labels, &squashed)?);
        prop_assert!(m.values().iter().zip(t.values()).all(|(x, y)| (x - y).abs() < 1e-12));
        prop_assert!((m.auroc - a).abs() < 1e-15);
        prop_assert!(m.values().iter().all(|v| (0.0..=1.0).contains(v)) && m.detection_accuracy >= 0.5);
        // swapping the classes and negating the scores swaps the two average precisions
        let swapped: Vec<bool> = labels.iter().map(|l| !l).collect();
        let s = metrics::compute(&swapped, &negated)?;
        prop_assert!((s.ap_adv - m.ap_clean).abs() < 1e-12 && (s.ap_clean - m.ap_adv).abs() < 1e-12);
    }
}

#[test]
fn bootstrap_interval_is_deterministic_and_contains_the_point() -> TestResult {
    let (labels, scores) = gaussian(2000, 1.0, 3);
    let a = metrics::bootstrap(&labels, &scores, 300, 42)?;
    assert_eq!(a.point, metrics::compute(&labels, &scores)?);
    for name in METRIC_NAMES {
        let (lo, p, hi) = (a.lo.get(name).ok_or(name)?, a.point.get(name).ok_or(name)?, a.hi.get(name).ok_or(name)?);
        assert!(lo <= p && p <= hi && lo < hi, "{name}: {lo} <= {p} <= {hi}");
    }
    // about +-0.02 for the auroc of 2000 scores: wide enough to be a resample, narrow enough to be the right one
    assert!(a.hi.auroc - a.lo.auroc > 0.01 && a.hi.auroc - a.lo.auroc < 0.06, "{a:?}");
    assert_eq!(metrics::bootstrap(&labels, &scores, 300, 42)?, a);
    assert_ne!(metrics::bootstrap(&labels, &scores, 300, 43)?.lo, a.lo);
    let single = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    assert_eq!(single.install(|| metrics::bootstrap(&labels, &scores, 300, 42))?, a, "depends on the thread count");
    let none = metrics::bootstrap(&labels, &scores, 0, 42)?;
    assert_eq!((none.lo, none.hi), (none.point, none.point));
    Ok(())
}

#[test]
fn bad_input_is_an_error() {
    let msg = |r: advdet::Result<Metrics>| r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg(metrics::compute(&[], &[])).contains("no scores"));
    assert!(msg(metrics::compute(&[true, true], &[0.1, 0.2])).contains("no clean"));
    assert!(msg(metrics::compute(&[false, false], &[0.1, 0.2])).contains("no adversarial"));
    assert!(msg(metrics::compute(&[true, false, true], &[0.1, f64::NAN, 0.3])).contains("scores[1]"));
    assert!(msg(metrics::compute(&[true, false], &[0.1, f64::INFINITY])).contains("finite"));
    assert!(msg(metrics::compute(&[true, false], &[0.1])).contains("one score per label"));
    assert!(metrics::roc_curve(&[true], &[0.0]).is_err() && metrics::bootstrap(&[false], &[0.0], 10, 0).is_err());
}

#[test]
fn csv_reader_finds_columns_and_names_bad_lines() -> TestResult {
    let path = Path::new("scores.csv");
    let ok = csv::parse_scores(
        path,
        "\u{feff}id,Score, label ,extra\r\n7,0.5,1,x\r\n\n8,-2e-3,0,y\n9,\"1.5\",\"1.0\",z".as_bytes(),
    )?;
    assert_eq!(ok.labels, vec![true, false, true]);
    assert_eq!(ok.scores, vec![0.5, -2e-3, 1.5]);
    let bad = [
        ("", "empty file"),
        ("label,score\n", "no data rows"),
        ("label,value\n1,0.5\n", "line 1: no column `score`"),
        ("label,score,label\n1,0.5,1\n", "appears 2 times"),
        ("label,score\n1,0.5\n2,0.5\n", "line 3: label `2`"),
        ("label,score\n1,0.5\n0,NaN\n", "line 3: score `NaN` is not finite"),
        ("label,score\n1,0.5\n0,-inf\n", "line 3: score `-inf` is not finite"),
        ("label,score\n1,0.5\n\n0,abc\n", "line 4: score `abc` is not a number"),
        ("label,score\n1\n", "line 2: 1 field(s)"),
        ("label,score\n1,0.5\n1,0.7\n", "all 2 rows have label 1"),
        ("score,label\n0.5,0\n", "all 1 rows have label 0"),
    ];
    for (text, want) in bad {
        let err = csv::parse_scores(path, text.as_bytes()).err().ok_or(format!("accepted {text:?}"))?.to_string();
        assert!(err.starts_with("scores.csv: ") && err.contains(want), "{text:?}: {err}");
    }
    // a file large enough to be parsed in several chunks keeps its line numbers
    let mut big: String = "score,label\n".to_string() + &"0.25,0\n0.75,1\n".repeat(200_000);
    let parsed = csv::parse_scores(path, big.as_bytes())?;
    assert_eq!((parsed.labels.len(), parsed.labels[399_999], parsed.scores[399_998]), (400_000, true, 0.25));
    big.truncate(big.len() - "0.75,1\n".len());
    big.push_str("x,1\n");
    let err = csv::parse_scores(path, big.as_bytes()).err().ok_or("accepted a bad last line")?.to_string();
    assert!(err.contains("line 400001: score `x`"), "{err}");
    let missing = csv::read_scores(Path::new("/nonexistent/scores.csv")).err().ok_or("read a missing file")?;
    assert!(missing.to_string().contains("/nonexistent/scores.csv"), "{missing}");
    Ok(())
}

fn write_csv(path: &Path, labels: &[bool], scores: &[f64]) -> std::io::Result<()> {
    let rows: String = labels.iter().zip(scores).map(|(&l, s)| format!("{},{s}\n", u8::from(l))).collect();
    std::fs::write(path, format!("label,score\n{rows}"))
}

/// Equal up to the last bit serde_json's float parser may lose.
fn close(a: Option<f64>, b: Option<f64>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if (a - b).abs() <= 1e-15)
}

#[test]
fn roc_command_prints_json_and_plots() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (labels, scores) = gaussian(1500, 1.5, 9);
    let file = dir.path().join("det.csv");
    write_csv(&file, &labels, &scores)?;
    let want = metrics::bootstrap(&labels, &scores, 100, 5)?;
    let (code, out, err) = run_advdet(&["roc", "--scores", file.to_str().ok_or("path")?, "--json"]);
    assert_eq!(code, 0, "{err}");
    let obj: serde_json::Map<String, Value> = serde_json::from_str(out.trim())?;
    let (mut keys, mut names) = (obj.keys().map(String::as_str).collect::<Vec<_>>(), METRIC_NAMES.to_vec());
    keys.sort();
    names.sort();
    assert_eq!(keys, names);
    assert!(out.trim().starts_with("{\"auroc\":"), "keys in the order of METRIC_NAMES: {out}");
    for name in METRIC_NAMES {
        assert!(close(obj[name].as_f64(), want.point.get(name)), "{name}");
    }
    let (svg, png) = (dir.path().join("roc.svg"), dir.path().join("out").join("roc.png"));
    for (plot, bootstrap) in [(&svg, "100"), (&png, "0")] {
        let args = ["roc", "--scores", file.to_str().ok_or("path")?, "--json", "--bootstrap", bootstrap, "--seed", "5"];
        let (code, out, err) = run_advdet(&[&args[..], &["--plot", plot.to_str().ok_or("path")?]].concat());
        assert_eq!(code, 0, "{err}");
        let obj: serde_json::Map<String, Value> = serde_json::from_str(out.trim())?;
        assert_eq!(obj.len(), if bootstrap == "0" { 6 } else { 12 }, "{out}");
        if bootstrap != "0" {
            for name in METRIC_NAMES {
                let ci = obj[&format!("{name}_ci")].as_array().ok_or(name)?;
                assert!(close(ci[0].as_f64(), want.lo.get(name)) && close(ci[1].as_f64(), want.hi.get(name)), "{name}");
            }
        }
    }
    let svg_text = std::fs::read_to_string(&svg)?;
    assert!(svg_text.starts_with("<svg") && svg_text.contains("AUROC") && svg_text.contains("polyline"), "svg");
    let png_bytes = std::fs::read(&png)?;
    assert!(
        png_bytes.starts_with(b"\x89PNG\r\n\x1a\n") && png_bytes.len() > 10_000,
        "png of {} bytes",
        png_bytes.len()
    );
    assert_eq!(std::fs::read_dir(dir.path().join("out"))?.count(), 1, "a temporary file was left behind");
    Ok(())
}

#[test]
fn roc_command_rejects_bad_files() -> TestResult {
    let dir = tempfile::tempdir()?;
    let cases = [
        ("one_class.csv", "label,score\n1,0.2\n1,0.3\n", "all 2 rows have label 1"),
        ("nan.csv", "label,score\n1,0.2\n0,nan\n", "line 3"),
        ("inf.csv", "label,score\n0,0.2\n1,inf\n", "line 3"),
        ("no_score.csv", "label,prob\n0,0.2\n1,0.3\n", "no column `score`"),
        ("label.csv", "label,score\n0,0.2\n-1,0.3\n", "line 3: label `-1`"),
        ("empty.csv", "", "empty file"),
    ];
    for (name, text, want) in cases {
        let file = dir.path().join(name);
        std::fs::write(&file, text)?;
        let (code, out, err) = run_advdet(&["roc", "--scores", file.to_str().ok_or("path")?, "--json"]);
        assert_eq!(code, 2, "{name}: {out} {err}");
        assert!(err.contains(name) && err.contains(want), "{name}: {err}");
        assert!(out.is_empty(), "{name}: printed {out}");
    }
    let (code, _, err) = run_advdet(&["roc", "--scores", "/nonexistent/s.csv"]);
    assert!(code == 2 && err.contains("/nonexistent/s.csv"), "{err}");
    let good = dir.path().join("good.csv");
    std::fs::write(&good, "label,score\n0,0.2\n1,0.3\n")?;
    let (code, _, err) = run_advdet(&["roc", "--scores", good.to_str().ok_or("path")?, "--plot", "roc.pdf"]);
    assert!(code == 2 && err.contains("roc.pdf") && err.contains(".svg or .png"), "{err}");
    Ok(())
}
