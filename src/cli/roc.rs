//! `advdet roc`: the detection metrics of any detector's scores (a CSV of label,score), with bootstrap intervals and
//! a ROC plot, as used for the full-model vs. subnetwork comparison of Wang, Su, Zhang, Hu (arXiv 1910.02673).
use advdet::metrics::{self, csv, METRIC_NAMES};
use advdet::report::plot;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct RocArgs {
    /// CSV with a header and the columns label (1 = adversarial, 0 = clean) and score (higher = more suspicious)
    #[arg(long)]
    pub scores: PathBuf,
    /// Print one JSON object with the metrics (and `<metric>_ci: [lo, hi]` with --bootstrap)
    #[arg(long)]
    pub json: bool,
    /// Also draw the ROC curve into this file (.svg or .png)
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Number of bootstrap resamples for 95% intervals (0: none)
    #[arg(long, default_value_t = 0)]
    pub bootstrap: usize,
    /// Seed of the bootstrap resamples
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the time spent reading, computing and plotting to stderr, and the time of the AUROC alone (computed once
    /// more for that)
    #[arg(long)]
    pub timing: bool,
}

pub fn run(a: RocArgs) -> Result<i32> {
    if let Some(path) = &a.plot {
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        if !matches!(ext.as_deref(), Some("svg" | "png")) {
            return Err(advdet::Error::config("--plot", path.display(), "the extension must be .svg or .png").into());
        }
    }
    let start = Instant::now();
    let data = csv::read_scores(&a.scores)?;
    let read_s = start.elapsed().as_secs_f64();
    let n_adv = data.labels.iter().filter(|&&l| l).count();
    let ci = metrics::bootstrap(&data.labels, &data.scores, a.bootstrap, a.seed)?;
    let metrics_s = start.elapsed().as_secs_f64() - read_s;
    if let Some(path) = &a.plot {
        let roc = metrics::roc_curve(&data.labels, &data.scores)?;
        let name =
            format!("{} (AUROC {:.4})", a.scores.file_stem().unwrap_or_default().to_string_lossy(), ci.point.auroc);
        plot::roc_plot(
            path,
            &format!("ROC: {} adversarial, {} clean", n_adv, data.labels.len() - n_adv),
            &[(name, roc)],
        )?;
    }
    if a.json {
        println!("{}", to_json(&ci, a.bootstrap > 0));
    } else {
        println!("{}: {} adversarial, {} clean", a.scores.display(), n_adv, data.labels.len() - n_adv);
        for (k, name) in METRIC_NAMES.iter().enumerate() {
            let value = ci.point.values()[k];
            if a.bootstrap > 0 {
                let (lo, hi) = (ci.lo.values()[k], ci.hi.values()[k]);
                println!("{name:<20} {value:.6}  [{lo:.6}, {hi:.6}]");
            } else {
                println!("{name:<20} {value:.6}");
            }
        }
        if a.bootstrap > 0 {
            println!("95% percentile bootstrap intervals over {} resamples (seed {})", a.bootstrap, a.seed);
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
