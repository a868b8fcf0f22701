//! `advdet roc`: the detection metrics of any detector's scores (a CSV of label,score), with bootstrap intervals and
//! a ROC plot, as used for the full-model vs. subnetwork comparison of Wang, Hu, Su (arXiv 1910.02673).
use advdet::metrics::{self, csv, METRIC_NAMES};
use advdet::report::plot;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct RocArgs {
    /// CSV with a header and the columns label (1 = adversarial, 0 = clean) and score (higher = more suspicious)
    #[arg(long, required_unless_present = "paired", conflicts_with = "paired")]
    pub scores: Option<PathBuf>,
    /// CSV with a header and the columns label, score_a and score_b (two detectors, or one detector in two modes, on
    /// the same images): prints both AUROCs, delta_auroc = b - a with a paired bootstrap interval (--bootstrap, default
    /// 1000 here), and DeLong's z and two-sided p
    #[arg(long, conflicts_with_all = ["plot", "timing"])]
    pub paired: Option<PathBuf>,
    /// Print one JSON object with the metrics (and `<metric>_ci: [lo, hi]` with --bootstrap)
    #[arg(long)]
    pub json: bool,
    /// Also draw the ROC curve into this file (.svg or .png)
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Number of bootstrap resamples for 95% intervals (0: none; default 0, with --paired 1000)
    #[arg(long)]
    pub bootstrap: Option<usize>,
    /// Seed of the bootstrap resamples
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the time spent reading, computing and plotting to stderr, and the time of the AUROC alone (computed once
    /// more for that)
    #[arg(long)]
    pub timing: bool,
}

pub fn run(a: RocArgs) -> Result<i32> {
    if let Some(path) = &a.paired {
        return paired(path, a.bootstrap.unwrap_or(1000), a.seed, a.json);
    }
    let Some(scores) = a.scores.clone() else {
        return Err(advdet::Error::config("--scores", "", "give --scores FILE.csv or --paired FILE.csv").into());
    };
    let bootstrap = a.bootstrap.unwrap_or(0);
    if let Some(path) = &a.plot {
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        if !matches!(ext.as_deref(), Some("svg" | "png")) {
            return Err(advdet::Error::config("--plot", path.display(), "the extension must be .svg or .png").into());
        }
    }
    let start = Instant::now();
    let data = csv::read_scores(&scores)?;
    let read_s = start.elapsed().as_secs_f64();
    let n_adv = data.labels.iter().filter(|&&l| l).count();
    let ci = metrics::bootstrap(&data.labels, &data.scores, bootstrap, a.seed)?;
    let metrics_s = start.elapsed().as_secs_f64() - read_s;
    if let Some(path) = &a.plot {
        let roc = metrics::roc_curve(&data.labels, &data.scores)?;
        let name =
            format!("{} (AUROC {:.4})", scores.file_stem().unwrap_or_default().to_string_lossy(), ci.point.auroc);
        plot::roc_plot(
            path,
            &format!("ROC: {} adversarial, {} clean", n_adv, data.labels.len() - n_adv),
            &[(name, roc)],
        )?;
    }
    if a.json {
        println!("{}", to_json(&ci, bootstrap > 0));
    } else {
        println!("{}: {} adversarial, {} clean", scores.display(), n_adv, data.labels.len() - n_adv);
        for (k, name) in METRIC_NAMES.iter().enumerate() {
            let value = ci.point.values()[k];
            if bootstrap > 0 {
                let (lo, hi) = (ci.lo.values()[k], ci.hi.values()[k]);
                println!("{name:<20} {value:.6}  [{lo:.6}, {hi:.6}]");
            } else {
                println!("{name:<20} {value:.6}");
            }
        }
        if bootstrap > 0 {
            println!("95% percentile bootstrap intervals over {bootstrap} resamples (seed {})", a.seed);
        }
        if let Some(path) = &a.plot {
            println!("wrote {}", path.display());
        }
    }
    if a.timing {
        let total = start.elapsed().as_secs_f64();
        let auroc_start = Instant::now();
        metrics::auroc(&data.labels, &data.scores)?;
        let auroc_s = auroc_start.elapsed().as_secs_f64();
        eprintln!(
            "read {:.1} ms, metrics {:.1} ms, total {:.1} ms; auroc alone {:.1} ms",
            read_s * 1e3,
            metrics_s * 1e3,
            total * 1e3,
            auroc_s * 1e3
        );
    }
    Ok(0)
}

/// One JSON object: the six metrics in the order of METRIC_NAMES, then `<metric>_ci` pairs when bootstrapped.
fn to_json(ci: &metrics::WithCi, with_ci: bool) -> String {
    let num = |v: f64| serde_json::Value::from(v).to_string();
    let mut fields: Vec<String> =
        METRIC_NAMES.iter().zip(ci.point.values()).map(|(n, v)| format!("\"{n}\":{}", num(v))).collect();
    if with_ci {
        for (k, name) in METRIC_NAMES.iter().enumerate() {
            fields.push(format!("\"{name}_ci\":[{},{}]", num(ci.lo.values()[k]), num(ci.hi.values()[k])));
        }
    }
    format!("{{{}}}", fields.join(","))
}

/// `--paired`: both AUROCs, their difference with its paired bootstrap interval, and DeLong's test.
fn paired(path: &std::path::Path, bootstrap: usize, seed: u64, json: bool) -> Result<i32> {
    let d = csv::read_paired(path)?;
    let p = metrics::paired(&d.labels, &d.a, &d.b, bootstrap, seed)?;
    let t = &p.delong;
    if json {
        let num = |v: f64| serde_json::Value::from(v).to_string();
        // an infinite z (a difference with zero variance) is null, as JSON has no infinity
        let z = num(t.z);
        println!(
            "{{\"auroc_a\":{},\"auroc_b\":{},\"delta_auroc\":{},\"delta_auroc_ci\":[{},{}],\"delong_z\":{z},\"delong_p\":{}}}",
            num(t.auroc_a),
            num(t.auroc_b),
            num(t.delta),
            num(p.delta_auroc_lo),
            num(p.delta_auroc_hi),
            num(t.p)
        );
        return Ok(0);
    }
    let n_adv = d.labels.iter().filter(|&&l| l).count();
    println!("{}: {} adversarial, {} clean, two scores per image", path.display(), n_adv, d.labels.len() - n_adv);
    println!("auroc_a              {:.6}", t.auroc_a);
    println!("auroc_b              {:.6}", t.auroc_b);
    println!("delta_auroc (b - a)  {:.6}  [{:.6}, {:.6}]", t.delta, p.delta_auroc_lo, p.delta_auroc_hi);
    println!("DeLong               z {:.4}, two-sided p {:.3e}", t.z, t.p);
    if bootstrap > 0 {
        println!("95% paired, stratified percentile bootstrap interval over {bootstrap} resamples (seed {seed})");
    }
    Ok(0)
}
