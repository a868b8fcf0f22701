//! The paired comparison of two score vectors on the same images (full model vs class subnetwork, Wang et al., arXiv
//! 1910.02673): DeLong's test, one paired resample and Holm's adjustment against NumPy's values from the definitions
//! (tests/fixtures/metrics/paired.json from scripts/reference/gen_paired_vectors.py), the bootstrap's properties, and
//! `advdet roc --paired`.
mod common;

use advdet::metrics::{self, paired::resample_deltas};
use common::{fixtures, run_advdet, TestResult};
use serde_json::Value;

struct Case {
    name: String,
    labels: Vec<bool>,
    a: Vec<f64>,
    b: Vec<f64>,
    doc: Value,
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().into_iter().flatten().filter_map(Value::as_f64).collect()
}

fn reference() -> Result<(Vec<Case>, Value), Box<dyn std::error::Error>> {
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(fixtures().join("metrics").join("paired.json"))?)?;
    let mut cases = Vec::new();
    for c in doc["cases"].as_array().ok_or("no cases")? {
        cases.push(Case {
            name: c["name"].as_str().ok_or("name")?.to_string(),
            labels: c["labels"].as_array().ok_or("labels")?.iter().map(|l| l.as_i64() == Some(1)).collect(),
            a: floats(&c["a"]),
            b: floats(&c["b"]),
            doc: c.clone(),
        });
    }
    Ok((cases, doc["holm"].clone()))
}

fn near(got: f64, want: Option<f64>, tol: f64) -> bool {
    want.is_some_and(|w| (got - w).abs() <= tol * (1.0 + w.abs()))
}

#[test]
fn delong_matches_the_definition_on_tied_scores() -> TestResult {
    let (cases, _) = reference()?;
    assert_eq!(cases.len(), 3);
    for c in &cases {
        let got = metrics::delong(&c.labels, &c.a, &c.b)?;
        let want = &c.doc["delong"];
        for (name, v) in [
            ("auroc_a", got.auroc_a),
            ("auroc_b", got.auroc_b),
            ("delta", got.delta),
            ("variance", got.variance),
            ("z", got.z),
            ("p", got.p),
        ] {
            assert!(near(v, want[name].as_f64(), 1e-9), "{} {name}: {v} vs {}", c.name, want[name]);
        }
        // the AUROCs are the metrics' own
        assert!((got.auroc_a - metrics::auroc(&c.labels, &c.a)?).abs() < 1e-12);
    }
    Ok(())
}

#[test]
fn one_paired_resample_matches_the_weighted_definition() -> TestResult {
    let (cases, _) = reference()?;
    for c in &cases {
        for r in c.doc["resamples"].as_array().ok_or("resamples")? {
            let counts = |k: &str| -> Vec<u32> { floats(&r[k]).iter().map(|&v| v as u32).collect() };
            let (da, dt) = resample_deltas(&c.labels, &c.a, &c.b, &counts("pos_counts"), &counts("neg_counts"))?;
            assert!(near(da, r["delta_auroc"].as_f64(), 1e-12), "{}: {da} vs {}", c.name, r["delta_auroc"]);
            assert!(
                near(dt, r["delta_tpr_at_fpr_5"].as_f64(), 1e-12),
                "{}: {dt} vs {}",
                c.name,
                r["delta_tpr_at_fpr_5"]
            );
        }
    }
    Ok(())
}

#[test]
fn holm_matches_the_reference() -> TestResult {
    let (_, holm) = reference()?;
    let got = metrics::holm(&floats(&holm["p"]));
    let want = floats(&holm["adjusted"]);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-15, "{got:?} vs {want:?}");
    }
    Ok(())
}

#[test]
fn the_paired_bootstrap_is_paired_seeded_and_symmetric() -> TestResult {
    let (cases, _) = reference()?;
    let c = &cases[2];
    let p = metrics::paired(&c.labels, &c.a, &c.b, 400, 3)?;
    assert_eq!(p, metrics::paired(&c.labels, &c.a, &c.b, 400, 3)?, "same seed, same bytes");
    assert!(p.delta_auroc_lo <= p.delong.delta && p.delong.delta <= p.delta_auroc_hi, "{p:?}");
    // swapping the two negates every difference and keeps the test
    let q = metrics::paired(&c.labels, &c.b, &c.a, 400, 3)?;
    // (the interval's ends up to the rounding of the quantile positions (n - 1) q and (n - 1) (1 - q))
    assert_eq!(q.delong.delta, -p.delong.delta);
    assert!((q.delta_auroc_lo + p.delta_auroc_hi).abs() < 1e-12 && (q.delta_auroc_hi + p.delta_auroc_lo).abs() < 1e-12);
    assert!((q.delong.p - p.delong.p).abs() < 1e-15);
    // a score against a monotone transform of itself: no difference on any resample, nothing to test
    let t: Vec<f64> = c.a.iter().map(|v| 3.0 * v.exp()).collect();
    let same = metrics::paired(&c.labels, &c.a, &t, 200, 1)?;
    assert_eq!((same.delong.delta, same.delong.z, same.delong.p), (0.0, 0.0, 1.0));
    assert_eq!((same.delta_auroc_lo, same.delta_auroc_hi, same.delta_tpr_at_fpr_5_hi), (0.0, 0.0, 0.0));
    // pairing: the paired interval is narrower than the one from two independent intervals of correlated scores
    let (ia, ib) = (metrics::bootstrap(&c.labels, &c.a, 400, 3)?, metrics::bootstrap(&c.labels, &c.b, 400, 3)?);
    let unpaired = (ib.hi.auroc - ia.lo.auroc) - (ib.lo.auroc - ia.hi.auroc);
    assert!(p.delta_auroc_hi - p.delta_auroc_lo < unpaired / 2.0, "{p:?} vs unpaired width {unpaired}");
    Ok(())
}

#[test]
fn one_reference_serves_many_comparisons_with_the_bytes_of_each_alone() -> TestResult {
    // the full route's side of the paired comparisons is computed once per detector and protocol, then compared with
    // each of its other routes: every comparison, in any order, equals its own `paired` call
    let (cases, _) = reference()?;
    let c = &cases[2];
    let r = metrics::Reference::new(&c.labels, &c.a, 300, 5)?;
    let t: Vec<f64> = c.b.iter().zip(&c.a).map(|(b, a)| 0.5 * b - a).collect();
    for b in [&c.b, &t, &c.b, &c.a] {
        assert_eq!(r.against(&c.labels, b)?, metrics::paired(&c.labels, &c.a, b, 300, 5)?);
    }
    let flipped: Vec<bool> = c.labels.iter().map(|l| !l).collect();
    let e = r.against(&flipped, &c.b).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("reference's images"), "{e}");
    Ok(())
}

#[test]
fn delong_rejects_what_is_not_a_pair() {
    let labels = [true, false, true];
    let e = metrics::delong(&labels, &[0.1, 0.2, 0.3], &[0.1, 0.2]).err().map(|e| e.to_string());
    assert!(e.is_some_and(|e| e.contains("3 and 2 values")));
    let e = metrics::delong(&labels, &[0.1, f64::NAN, 0.3], &[0.1, 0.2, 0.3]).err().map(|e| e.to_string());
    assert!(e.is_some_and(|e| e.contains("finite")));
    let e = metrics::delong(&[true, true], &[0.1, 0.2], &[0.1, 0.2]).err().map(|e| e.to_string());
    assert!(e.is_some_and(|e| e.contains("both classes")));
}

#[test]
fn roc_paired_prints_the_comparison() -> TestResult {
    let (cases, _) = reference()?;
    let c = &cases[0];
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("pair.csv");
    let mut text = String::from("score_b,label,score_a\n");
    for ((l, a), b) in c.labels.iter().zip(&c.a).zip(&c.b) {
        text += &format!("{b},{},{a}\n", *l as u8);
    }
    std::fs::write(&file, text)?;
    let (code, out, err) =
        run_advdet(&["roc", "--paired", file.to_str().ok_or("path")?, "--json", "--bootstrap", "300"]);
    assert_eq!(code, 0, "{err}");
    let obj: serde_json::Map<String, Value> = serde_json::from_str(out.trim())?;
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    let mut want_keys = ["auroc_a", "auroc_b", "delta_auroc", "delta_auroc_ci", "delong_z", "delong_p"];
    want_keys.sort();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(sorted, want_keys);
    let want = metrics::paired(&c.labels, &c.a, &c.b, 300, 0)?;
    // serde_json's parser may lose the last bit
    assert!(near(want.delong.p, obj["delong_p"].as_f64(), 1e-15));
    assert!(near(want.delong.delta, obj["delta_auroc"].as_f64(), 1e-15));
    let ci = floats(&obj["delta_auroc_ci"]);
    assert!(near(want.delta_auroc_lo, ci.first().copied(), 1e-15));
    assert!(near(want.delta_auroc_hi, ci.get(1).copied(), 1e-15));
    assert!(near(want.delong.p, c.doc["delong"]["p"].as_f64(), 1e-9));
    let (code, out, err) = run_advdet(&["roc", "--paired", file.to_str().ok_or("path")?]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("delta_auroc (b - a)") && out.contains("DeLong"), "{out}");
    Ok(())
}

#[test]
fn roc_paired_rejects_bad_files() -> TestResult {
    let dir = tempfile::tempdir()?;
    let cases = [
        ("no_b.csv", "label,score_a\n0,0.2\n1,0.3\n", "no column `score_b`"),
        ("one_class.csv", "label,score_a,score_b\n1,0.2,0.1\n1,0.3,0.2\n", "both classes"),
        ("nan.csv", "label,score_a,score_b\n0,0.2,0.1\n1,0.3,nan\n", "line 3: score_b `nan` is not finite"),
        ("inf.csv", "label,score_a,score_b\n0,inf,0.1\n1,0.3,0.2\n", "line 2: score_a `inf` is not finite"),
        ("short.csv", "label,score_a,score_b\n0,0.2,0.1\n1,0.3\n", "line 3: 2 field(s)"),
        ("empty.csv", "", "empty file"),
    ];
    for (name, text, want) in cases {
        let file = dir.path().join(name);
        std::fs::write(&file, text)?;
        let (code, out, err) = run_advdet(&["roc", "--paired", file.to_str().ok_or("path")?, "--json"]);
        assert_eq!(code, 2, "{name}: {out} {err}");
        assert!(err.contains(name) && err.contains(want), "{name}: {err}");
        assert!(out.is_empty(), "{name}: printed {out}");
    }
    let (code, _, err) = run_advdet(&["roc"]);
    assert_eq!(code, 2, "{err}");
    Ok(())
}

#[test]
fn the_heldout_threshold_is_the_fit_scores_95th_percentile_and_counts_both_classes_above_it() -> TestResult {
    use advdet::eval::{heldout_thresholds, metric_rows, MetricSpec, Protocol, Thresholds};
    use advdet::routes::RouteKind;
    // fit scores 0..99: the 95% quantile (linear interpolation) is 94.05
    let fit: Vec<f64> = (0..100).map(f64::from).collect();
    let t = heldout_thresholds(&[vec![fit, Vec::new()]]);
    assert!((t[0][0] - 94.05).abs() < 1e-12 && t[0][1].is_nan());
    // 4 images, all correctly classified, all attacked successfully: clean scores 90, 95, 99, 10; adversarial 96,
    // 50, 97, 94.05 (not above). 2 of 4 adversarial and 2 of 4 clean lie above the threshold.
    let clean = vec![vec![vec![90.0, 95.0, 99.0, 10.0]]];
    let adv = vec![vec![vec![96.0, 50.0, 97.0, 94.05]]];
    let (labels, pred_clean, pred_adv) = ([0, 1, 2, 3], [0, 1, 2, 3], [1, 2, 3, 0]);
    let spec = MetricSpec { protocols: vec![Protocol::Successful], bootstrap: 0, seed: 0 };
    let heldout = [vec![94.05]];
    let rows = metric_rows(
        &["msp"],
        &[vec![RouteKind::Full]],
        &clean,
        &adv,
        &labels,
        &pred_clean,
        &pred_adv,
        &spec,
        Some(Thresholds { heldout: &heldout, evasion: &[vec![96.5]] }),
    )?;
    let get = |m: &str| rows[0].metric(m).and_then(|v| v.point);
    assert_eq!(get(metrics::HELDOUT_TPR), Some(0.5));
    assert_eq!(get(metrics::HELDOUT_FPR), Some(0.5));
    // evasion at its own threshold 96.5: of the 4 clean-correct images, 3 are misclassified and score at most 96.5
    assert_eq!(get(metrics::EVASION), Some(0.75));
    // image by image: 96 and 50 evade, 97 is caught, 94.05 evades
    let flags = rows[0].evaded.as_ref().and_then(|b| b.flags());
    assert_eq!(flags, Some(vec![true, true, false, true]));
    let without =
        metric_rows(&["msp"], &[vec![RouteKind::Full]], &clean, &adv, &labels, &pred_clean, &pred_adv, &spec, None)?;
    assert!(without[0].metric(metrics::HELDOUT_TPR).is_none() && without[0].metric(metrics::EVASION).is_none());
    assert!(without[0].evaded.is_none(), "no operating threshold, no flags");
    Ok(())
}

/// Paired rates (the adaptive attack's evasion on two routes over the same images): McNemar's exact p, the Wilson
/// limits and Newcombe's square-and-add interval against statsmodels (tests/fixtures/metrics/paired_rates.json from
/// scripts/reference/gen_paired_rates_vectors.py), the images in a shuffled order.
#[test]
fn paired_rates_match_statsmodels() -> TestResult {
    use advdet::metrics::proportions::{paired_rates, wilson};
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("metrics").join("paired_rates.json"))?)?;
    let cases = doc.as_array().ok_or("no cases")?;
    assert_eq!(cases.len(), 8);
    for c in cases {
        let t: Vec<usize> =
            c["table"].as_array().ok_or("table")?.iter().filter_map(|v| v.as_u64()).map(|v| v as usize).collect();
        let (both, only_a, only_b, neither) = (t[0], t[1], t[2], t[3]);
        let mut pairs: Vec<(bool, bool)> = [
            vec![(true, true); both],
            vec![(true, false); only_a],
            vec![(false, true); only_b],
            vec![(false, false); neither],
        ]
        .concat();
        // the order of the images does not matter
        let mut rng = advdet::rng::Rng::new(7);
        for i in (1..pairs.len()).rev() {
            pairs.swap(i, rng.below(i + 1));
        }
        let (a, b): (Vec<bool>, Vec<bool>) = pairs.into_iter().unzip();
        let r = paired_rates(&a, &b)?;
        assert_eq!((r.both, r.only_a, r.only_b, r.n), (both, only_a, only_b, both + only_a + only_b + neither));
        let n = r.n;
        for (x, key) in [(both + only_a, "wilson_a"), (both + only_b, "wilson_b")] {
            let (lo, hi) = wilson(x, n);
            assert!(near(lo, c[key][0].as_f64(), 1e-12) && near(hi, c[key][1].as_f64(), 1e-12), "{t:?} {key}");
        }
        assert!(near(r.delta, c["delta"].as_f64(), 1e-12), "{t:?} delta {}", r.delta);
        assert!(near(r.lo, c["lo"].as_f64(), 1e-12) && near(r.hi, c["hi"].as_f64(), 1e-12), "{t:?} {} {}", r.lo, r.hi);
        assert!(near(r.p, c["p"].as_f64(), 1e-9), "{t:?} p {} vs {}", r.p, c["p"]);
        assert!(r.lo <= r.delta && r.delta <= r.hi, "{t:?}");
    }
    Ok(())
}
