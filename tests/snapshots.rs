//! Snapshots of the rendered report (table.md, table.tex, the skeleton of index.html, the manifest's keys) from
//! records built here, so that any change to what a reader sees is a reviewed diff of tests/snapshots/*.snap
//! (`cargo insta review`, or `INSTA_UPDATE=always cargo test --test snapshots` and a look at `git diff`).
mod common;

use advdet::records::{Curve, JobRecord, MetricValue, RowRecord, SubnetRecord, SuiteRecord, VariantRecord, VersusFull};
use advdet::routes::RouteKind;
use common::TestResult;

fn metric(name: &str, point: f64) -> MetricValue {
    MetricValue { name: name.into(), point: Some(point), lo: Some(point - 0.03125), hi: Some(point + 0.03125) }
}

fn row(detector: &str, mode: &str, protocol: &str, auroc: f64) -> RowRecord {
    let mut metrics: Vec<MetricValue> =
        advdet::metrics::METRIC_NAMES.iter().map(|m| metric(m, if *m == "auroc" { auroc } else { 0.5 })).collect();
    if detector == "kl" && protocol == "all" {
        metrics[0] = MetricValue { name: metrics[0].name.clone(), point: None, lo: None, hi: None };
    }
    RowRecord {
        detector: detector.into(),
        mode: mode.into(),
        protocol: protocol.into(),
        n_pos: 40,
        n_neg: 60,
        metrics,
        roc: Some(Curve { fpr: vec![0.0, 0.25, 1.0], tpr: vec![0.0, 0.75, 1.0] }),
        versus_full: None,
        trained_on: None,
        evaded: None,
    }
}

/// The subnet row's paired difference from the full row: DeLong p `p`.
fn versus(p: f64) -> Option<VersusFull> {
    Some(VersusFull {
        against: RouteKind::Full,
        delta_auroc: 0.0625,
        delta_auroc_lo: 0.03125,
        delta_auroc_hi: 0.09375,
        delta_auroc_p: p,
        delta_auroc_se: Some(0.015625),
        delta_tpr_at_fpr_5: 0.125,
        delta_tpr_at_fpr_5_lo: -0.0625,
        delta_tpr_at_fpr_5_hi: 0.25,
    })
}

fn job(index: usize, attack: &str, params: &str, shift: f64) -> JobRecord {
    let mut rows = Vec::new();
    for protocol in ["successful", "all"] {
        rows.push(row("msp", "full", protocol, 0.75 + shift));
        // Holm over the table's eight tests: 8 x 0.001 marks job 0's subnet better; job 1's and the control's reach 1
        rows.push(RowRecord {
            versus_full: versus(if shift == 0.0 { 0.001 } else { 0.5 }),
            ..row("msp", "subnet", protocol, 0.8125 + shift)
        });
        rows.push(row("kl", "subnet", protocol, 0.625 - shift));
        // a control beside the subnetwork, with no evidence of a difference from the full model
        rows.push(RowRecord { versus_full: versus(0.75), ..row("msp", "random-mask", protocol, 0.75 + shift) });
        // a supervised detector trained on job 0's attack: (seen) on its row, unseen on job 1's
        rows.push(RowRecord {
            trained_on: Some("fgsm eps=0.1".into()),
            ..row("lid-sup", "full", protocol, 0.9 - shift)
        });
    }
    JobRecord {
        index,
        attack: attack.into(),
        params: params.into(),
        clean_accuracy: 0.984375,
        attack_success_rate: 0.5 + shift,
        mean_linf: 0.1 + shift,
        mean_l2: 2.5,
        rows,
        variant: Some(VariantRecord {
            seed: Some(0),
            lambda: 0.01,
            subspace_k: None,
            model: "lenet-s0-e6".into(),
            model_accuracy: 0.99,
            kept_fraction: 0.35,
        }),
        target: None,
    }
}

fn records() -> (SuiteRecord, Vec<JobRecord>) {
    let subnet = SubnetRecord {
        layers: vec!["conv1".into(), "fc1".into()],
        kept: vec![vec![0.5, 0.25], vec![0.75, 0.125]],
        kept_fraction: vec![0.3, 0.4],
        own_class_accuracy: vec![0.99, 0.98],
        full_model_accuracy: vec![0.995, 0.985],
        similarity: vec![vec![1.0, 0.5], vec![0.5, 1.0]],
    };
    let suite = SuiteRecord {
        suite: "snap".into(),
        suite_hash: "0".repeat(64),
        dataset: "mnist".into(),
        model: "lenet".into(),
        model_accuracy: 0.99,
        seed: 7,
        test_images: 100,
        fit_images: 50,
        bootstrap: 200,
        jobs: 2,
        detectors: vec!["msp".into(), "kl".into()],
        modes: vec!["full".into(), "subnet".into()],
        protocols: vec!["successful".into(), "all".into()],
        subnet,
        csg: None,
        paths: vec![advdet::records::PathSimilarity {
            route: "cdrp".into(),
            images: 1000,
            open_share: 0.25,
            similarity: vec![vec![1.0, 0.5], vec![0.5, 1.0]],
        }],
    };
    (suite, vec![job(0, "fgsm", "eps=0.1", 0.0), job(1, "pgd-linf", "eps=0.3 steps=40", 0.0625)])
}

/// The lines of an HTML page that open or close an element, text and attributes kept, inline SVG and style left out.
fn skeleton(html: &str) -> String {
    html.lines()
        .map(str::trim)
        .filter(|l| l.starts_with('<') && !l.starts_with("<path") && !l.starts_with("<svg"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn rendered_tables_and_index_match_their_snapshots() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (suite, jobs) = records();
    advdet::report::render::render(dir.path(), &suite, &jobs, None, true)?;
    insta::assert_snapshot!("table_md", std::fs::read_to_string(dir.path().join("table.md"))?);
    insta::assert_snapshot!("table_tex", std::fs::read_to_string(dir.path().join("table.tex"))?);
    insta::assert_snapshot!("index_html_skeleton", skeleton(&std::fs::read_to_string(dir.path().join("index.html"))?));
    insta::assert_snapshot!("results_csv_header", {
        let csv = std::fs::read_to_string(dir.path().join("results.csv"))?;
        csv.lines().next().unwrap_or_default().replace(',', "\n")
    });
    // the forest plot: one row per subnet difference of the first protocol, labelled attack | detector
    let forest = std::fs::read_to_string(dir.path().join("forest.svg"))?;
    for label in ["fgsm eps=0.1 | msp", "pgd-linf eps=0.3 steps=40 | msp"] {
        assert!(forest.contains(label), "{label} missing from forest.svg");
    }
    assert!(std::fs::read(dir.path().join("forest.png"))?.starts_with(b"\x89PNG"));
    Ok(())
}

/// A suite of two seeds x two lambdas, with the second-model control of the two-network score kl: the seeds' pooled
/// table, the two-network table and the extraction sweep.
#[test]
fn variants_pool_the_seeds_and_sweep_the_lambdas() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut suite, base) = records();
    suite.protocols = vec!["successful".into()];
    let mut jobs = Vec::new();
    for (v, (seed, lambda, kept)) in
        [(0, 0.01, 0.35), (1, 0.01, 0.25), (0, 0.05, 0.125), (1, 0.05, 0.0625)].into_iter().enumerate()
    {
        for (j, b) in base.iter().enumerate() {
            let shift = 0.015625 * seed as f64 + if lambda == 0.05 { 0.03125 } else { 0.0 };
            let mut rows: Vec<RowRecord> = b.rows.iter().filter(|r| r.protocol == "successful").cloned().collect();
            for r in rows.iter_mut() {
                if let Some(vf) = r.versus_full.as_mut() {
                    vf.delta_auroc += shift;
                }
            }
            // kl on the second model, against its subnet row
            rows.push(RowRecord {
                versus_full: versus(0.002).map(|vf| VersusFull {
                    against: RouteKind::Subnet,
                    delta_auroc: -0.0625,
                    ..vf
                }),
                ..row("kl", "second-model", "successful", 0.5625)
            });
            jobs.push(JobRecord {
                index: v * base.len() + j,
                rows,
                variant: Some(VariantRecord {
                    seed: Some(seed),
                    lambda,
                    subspace_k: None,
                    model: format!("lenet-s{seed}-e6"),
                    model_accuracy: 0.99,
                    kept_fraction: kept,
                }),
                ..b.clone()
            });
        }
    }
    suite.jobs = jobs.len();
    advdet::report::render::render(dir.path(), &suite, &jobs, None, true)?;
    insta::assert_snapshot!("table_md_variants", std::fs::read_to_string(dir.path().join("table.md"))?);
    for name in ["000-fgsm_eps_0.1", "001-pgd-linf_eps_0.3_steps_40"] {
        let svg = std::fs::read_to_string(dir.path().join("sweep").join(format!("{name}.svg")))?;
        assert!(svg.contains("msp"), "{name}: no msp series");
        assert!(std::fs::read(dir.path().join("sweep").join(format!("{name}.png")))?.starts_with(b"\x89PNG"));
    }
    Ok(())
}

/// One model, one lambda and two subspace sizes (40 listed first): the subset sweep puts each k's subspace row against
/// the full model in order of k, the report's other tables read the first k only, and Holm's family holds each test
/// once.
#[test]
fn the_subset_sweep_compares_each_k_with_the_full_model() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut suite, base) = records();
    suite.protocols = vec!["successful".into()];
    let mut jobs = Vec::new();
    for (v, k) in [40usize, 20].into_iter().enumerate() {
        for (j, b) in base.iter().enumerate() {
            let mut rows: Vec<RowRecord> = b.rows.iter().filter(|r| r.protocol == "successful").cloned().collect();
            // the subspace route: k 20 lowers msp (significant), k 40 raises it (not)
            let (delta, p) = if k == 20 { (-0.125, 0.001) } else { (0.03125, 0.5) };
            rows.push(RowRecord {
                versus_full: versus(p).map(|vf| VersusFull {
                    delta_auroc: delta,
                    delta_auroc_lo: delta - 0.03125,
                    delta_auroc_hi: delta + 0.03125,
                    ..vf
                }),
                ..row("msp", "subspace", "successful", 0.75 + delta)
            });
            jobs.push(JobRecord {
                index: v * base.len() + j,
                rows,
                variant: Some(VariantRecord {
                    seed: Some(0),
                    lambda: 0.01,
                    subspace_k: Some(k),
                    model: "lenet-s0-e6".into(),
                    model_accuracy: 0.99,
                    kept_fraction: 0.35,
                }),
                ..b.clone()
            });
        }
    }
    suite.jobs = jobs.len();
    advdet::report::render::render(dir.path(), &suite, &jobs, None, true)?;
    let table = std::fs::read_to_string(dir.path().join("table.md"))?;
    insta::assert_snapshot!("table_md_subset_sweep", table);
    let csv = std::fs::read_to_string(dir.path().join("results.csv"))?;
    let header: Vec<&str> = csv.lines().next().unwrap_or_default().split(',').collect();
    let col = header.iter().position(|h| *h == "subspace_k").ok_or("no subspace_k column")?;
    let ks: Vec<&str> = csv.lines().skip(1).map(|l| l.split(',').nth(col).unwrap_or_default()).collect();
    assert_eq!(ks.iter().filter(|k| **k == "20").count(), ks.len() / 2, "{csv}");
    assert_eq!(ks.iter().filter(|k| **k == "40").count(), ks.len() / 2, "{csv}");
    // Holm counts each test once: the full and subnet rows repeat at both ks with the same scores
    let cells: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    let at = |name: &str| header.iter().position(|h| *h == name).ok_or(format!("no column {name}"));
    let (params, det, mode, p, holm) =
        (at("params")?, at("detector")?, at("mode")?, at("delta_auroc_p")?, at("delta_auroc_p_holm")?);
    let mut tests: Vec<(String, f64)> = Vec::new();
    for r in cells.iter().skip(1).filter(|r| !r[p].is_empty()) {
        let k = if r[mode] == "subspace" { r[col] } else { "" };
        let id = format!("{} {} {} {k}", r[params], r[det], r[mode]);
        if !tests.iter().any(|(t, _)| *t == id) {
            tests.push((id, r[p].parse()?));
        }
    }
    let adjusted = advdet::metrics::holm(&tests.iter().map(|t| t.1).collect::<Vec<_>>());
    for r in cells.iter().skip(1).filter(|r| !r[p].is_empty()) {
        let k = if r[mode] == "subspace" { r[col] } else { "" };
        let i =
            tests.iter().position(|(t, _)| *t == format!("{} {} {} {k}", r[params], r[det], r[mode])).ok_or("test")?;
        assert_eq!(r[holm], format!("{:.6}", adjusted[i]), "{r:?}");
    }
    assert!(tests.len() < cells.iter().skip(1).filter(|r| !r[p].is_empty()).count(), "rows repeat tests");
    // the k sweep's plots, per attack after their own prefix
    for name in ["k-000-fgsm_eps_0.1", "k-001-pgd-linf_eps_0.3_steps_40"] {
        let svg = std::fs::read_to_string(dir.path().join("sweep").join(format!("{name}.svg")))?;
        assert!(svg.contains("subspace - full vs k") && svg.contains("msp"), "{name}");
    }
    let html = std::fs::read_to_string(dir.path().join("index.html"))?;
    assert!(html.contains("<h2>Subset sweep</h2>") && !html.contains("Extraction sweep"), "one sweep only");
    Ok(())
}

/// The keys of a JSON value, recursively, one `path: type` per line (the values change from run to run).
fn key_lines(v: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) if m.is_empty() => out.push(format!("{path}: {{}}")),
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                key_lines(x, &format!("{path}.{k}"), out);
            }
        }
        serde_json::Value::Array(a) => match a.first() {
            Some(x) => key_lines(x, &format!("{path}[]"), out),
            None => out.push(format!("{path}: []")),
        },
        serde_json::Value::String(_) => out.push(format!("{path}: string")),
        serde_json::Value::Number(_) => out.push(format!("{path}: number")),
        serde_json::Value::Bool(_) => out.push(format!("{path}: bool")),
        serde_json::Value::Null => out.push(format!("{path}: null")),
    }
}

#[test]
fn manifest_keys_match_their_snapshot() -> TestResult {
    use std::collections::BTreeMap;
    let manifest = advdet::report::manifest::Manifest {
        advdet_version: "0".into(),
        git_commit: "0".into(),
        libtorch_version: "0".into(),
        device: "cpu".into(),
        // the kernel variables a process was started with vary by machine
        cpu: advdet::cpu::CpuNumerics { environment: BTreeMap::new(), ..advdet::cpu::current() },
        suite: "snap".into(),
        suite_file: "attacks/snap.toml".into(),
        shards: vec!["0/1".into()],
        seeds: BTreeMap::from([("suite".to_string(), 7)]),
        inputs: BTreeMap::from([("suite_file".to_string(), "0".repeat(64))]),
        stages: vec![advdet::report::manifest::StageTime {
            stage: "data".into(),
            computed: 1,
            cached: 0,
            seconds: 0.5,
        }],
        jobs: vec![advdet::report::manifest::JobTime {
            index: 0,
            attack: "fgsm".into(),
            params: "eps=0.1".into(),
            computed: true,
            attack_seconds: 0.25,
            scores_seconds: 0.125,
            metrics_seconds: 0.0625,
        }],
        scores_bound_seconds: Some(0.05),
        scoring_calls: BTreeMap::from([("forwards".to_string(), 6), ("backwards".to_string(), 0)]),
        scoring: vec![advdet::report::manifest::ScoreTime {
            detector: "msp".into(),
            route: "full".into(),
            seconds: 0.01,
        }],
        route_passes: BTreeMap::from([("full".to_string(), 0.02)]),
        wall_seconds: 1.0,
        detectors_oblivious_to_attacks: true,
        train_attack: None,
        protocol: advdet::report::manifest::PROTOCOL_NOTE.into(),
    };
    let mut lines = Vec::new();
    key_lines(&serde_json::to_value(&manifest)?, "", &mut lines);
    insta::assert_snapshot!("manifest_keys", lines.join("\n"));
    Ok(())
}

/// The adaptive suite's evasion table: per budget and setting, the oblivious PGD's evasion -> the adaptive attack's,
/// per attacked detector and mode, each mode's paired difference from full with its Holm-adjusted McNemar p, and the
/// curves' CSV.
#[test]
fn the_evasion_table_pairs_each_adaptive_job_with_the_oblivious_attack_of_its_budget() -> TestResult {
    use advdet::records::TargetRecord;
    let with_evasion = |mut r: RowRecord, e: f64| {
        r.metrics.push(metric(advdet::metrics::EVASION, e));
        r
    };
    let mut oblivious = job(0, "pgd-linf", "eps=0.3 steps=40", 0.0);
    oblivious.rows = vec![
        with_evasion(row("msp", "full", "successful", 0.67), 0.93),
        with_evasion(row("msp", "subnet", "successful", 0.75), 0.6875),
    ];
    // 32 clean-correct images: the attack on full gets images 0..8 past msp, the attack on subnet images 4..24
    let evaded = |range: std::ops::Range<usize>| {
        advdet::records::Bits::from_flags(&(0..32).map(|i| range.contains(&i)).collect::<Vec<_>>())
    };
    let adaptive = |index, mode: &str, e: f64, extra: &str| {
        let mut j = job(index, "adaptive", &format!("detector=msp eps=0.3 mode={mode}{extra}"), 0.0);
        j.rows = vec![
            with_evasion(row("msp", "full", "successful", 0.9375), if mode == "full" { e } else { 0.5 }),
            with_evasion(row("msp", "subnet", "successful", 0.875), if mode == "subnet" { e } else { 0.5 }),
        ];
        let attacked = if mode == "full" { 0 } else { 1 };
        j.rows[attacked].evaded = Some(if mode == "full" { evaded(0..8) } else { evaded(4..24) });
        j.target = Some(TargetRecord {
            detector: "msp".into(),
            mode: mode.into(),
            steer: "wrong".into(),
            threshold: 0.25,
            scale: 0.125,
            curve: vec![[2.0, 0.0, 0.0], [1.0, 0.5, 0.75]],
        });
        j
    };
    let jobs = vec![
        oblivious,
        adaptive(1, "full", 0.25, ""),
        adaptive(2, "subnet", 0.625, ""),
        // the same budget at twice the steps: a table of its own
        adaptive(3, "full", 0.25, " steps=400"),
        adaptive(4, "subnet", 0.625, " steps=400"),
    ];
    let md = advdet::report::evasion::evasion_markdown(&jobs, "successful").ok_or("no table")?;
    insta::assert_snapshot!("evasion_table_md", md);
    assert_eq!(md.matches("### linf eps 0.3").count(), 2, "{md}");
    assert!(md.contains("most likely wrong class, steps=400"), "{md}");
    // subnet - full: 20 of 32 against 8 of 32, 16 discordant images (4 under full only, 16 under subnet only)
    let r = advdet::metrics::proportions::paired_rates(
        &evaded(0..8).flags().ok_or("bits")?,
        &evaded(4..24).flags().ok_or("bits")?,
    )?;
    assert_eq!((r.only_a, r.only_b, r.delta), (4, 16, 0.375));
    let holm = (2.0 * r.p).min(1.0);
    let p = if holm < 1e-4 { format!("{holm:.1e}") } else { format!("{holm:.4}") };
    let cell = format!("{:+.3} [{:+.3}, {:+.3}], p {p}, more", r.delta, r.lo, r.hi);
    assert_eq!(md.matches(&cell).count(), 2, "Holm over both tables' tests: {cell}\n{md}");
    let csv = advdet::report::evasion::curves_csv(&jobs).ok_or("no curves")?;
    assert_eq!(csv.lines().count(), 1 + 4 * 2, "{csv}");
    // one plot per budget, a line per attacked detector and mode through the best-so-far evasion
    let groups = advdet::report::evasion::curve_groups(&jobs[..3]);
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].0, "adaptive linf eps 0.3 (steer wrong)");
    let lines: Vec<(&str, &[f64])> = groups[0].1.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
    assert_eq!(lines, [("msp (full)", &[0.0, 0.75][..]), ("msp (subnet)", &[0.0, 0.75][..])]);
    let dir = tempfile::tempdir()?;
    advdet::report::plot::curve_plot(&dir.path().join("c.svg"), &groups[0].0, &groups[0].1)?;
    let svg = std::fs::read_to_string(dir.path().join("c.svg"))?;
    assert!(svg.contains("msp (subnet)") && svg.contains("<polyline"), "a legend entry and a line per series");
    let bad = [("x".to_string(), vec![0.5, f64::NAN])];
    assert!(advdet::report::plot::curve_plot(&dir.path().join("d.svg"), "t", &bad).is_err());
    assert!(!dir.path().join("d.svg").exists(), "nothing half-written");
    assert!(advdet::report::evasion::evasion_markdown(&jobs[..1], "successful").is_none(), "no adaptive job, no table");
    Ok(())
}

/// The paper table groups its columns by detector family, in order of appearance within each; and a CSG model's
/// record renders its gate heatmap and its per-class accuracy table.
#[test]
fn paper_columns_group_by_family_and_csg_records_render() -> TestResult {
    let (mut suite, mut jobs) = records();
    jobs.truncate(1);
    jobs[0].rows = ["kl/subnet", "squeeze/full", "msp/full", "mahalanobis/full", "energy/subnet", "react/full"]
        .iter()
        .map(|c| {
            let (d, m) = c.split_once('/').unwrap_or_default();
            row(d, m, "successful", 0.75)
        })
        .collect();
    let df = advdet::report::tables::results_frame(&suite, &jobs)?;
    let t = advdet::report::tables::PaperTable::from_frame(&df, "successful", 0)?;
    let cols: Vec<String> = t.columns.iter().map(|(d, m)| format!("{d}/{m}")).collect();
    assert_eq!(
        cols,
        ["msp/full", "energy/subnet", "kl/subnet", "mahalanobis/full", "react/full", "squeeze/full"],
        "confidence, two-network, feature, squeezing"
    );
    suite.csg = Some(advdet::records::CsgRecord {
        gates: vec![vec![1.0, 0.0, 0.5], vec![0.0, 0.0, 0.0]],
        mean_max_share: 2.0 / 3.0,
        mean_entropy: 0.6365,
        dead_channels: 1,
        kept_fraction: 1.0 / 6.0,
        full_accuracy: vec![0.99, 0.98, 0.97],
        label_gated_accuracy: vec![1.0, 1.0, 0.5],
        predicted_gated_accuracy: vec![0.99, 0.97, 0.96],
    });
    let dir = tempfile::tempdir()?;
    advdet::report::render::render(dir.path(), &suite, &jobs, None, true)?;
    let md = std::fs::read_to_string(dir.path().join("csg/csg.md"))?;
    for part in ["2 channels x 3 classes", "0.667", "1 dead channels", "| 2 | 0.9700 | 0.5000 | 0.9600 |"] {
        assert!(md.contains(part), "`{part}` not in {md}");
    }
    assert!(std::fs::read_to_string(dir.path().join("csg/gates.svg"))?.contains("Class-specific gates"));
    let html = std::fs::read_to_string(dir.path().join("index.html"))?;
    assert!(html.contains("csg/gates.svg") && html.contains("csg/csg.md"));
    // rendered again without it: the folder's csg files go
    suite.csg = None;
    advdet::report::render::render(dir.path(), &suite, &jobs, None, true)?;
    assert!(!dir.path().join("csg/csg.md").exists() && !dir.path().join("csg/gates.svg").exists());
    Ok(())
}
