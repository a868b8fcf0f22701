//! `advdet check RESULTS --baseline FILE`: exit 0 when no metric fell by more than the tolerance and below the
//! baseline's interval, 1 when one did or a row is missing on either side, 2 on an error.
use advdet::check::{check, CheckConfig};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct CheckArgs {
    /// results.csv of a run (or its report folder)
    pub results: PathBuf,
    /// The committed baseline CSV (e.g. reports/baselines/smoke.csv)
    #[arg(long)]
    pub baseline: PathBuf,
    /// Largest allowed fall of a metric
    #[arg(long, default_value_t = 0.02)]
    pub tolerance: f64,
    /// Metrics to compare, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "auroc")]
    pub metric: Vec<String>,
}

pub fn run(a: CheckArgs) -> Result<i32> {
    let results = if a.results.is_dir() { a.results.join("results.csv") } else { a.results };
    let cfg = CheckConfig { tolerance: a.tolerance, metrics: a.metric };
    let report = check(&results, &a.baseline, &cfg)?;
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if !report.within_interval.is_empty() {
        println!(
            "{} change(s) beyond the tolerance but inside the baseline's 95% interval (noise, not failed):\n{}",
            report.within_interval.len(),
            report.within_interval_table()
        );
    }
    if report.passed() {
        println!(
            "ok: {} rows compared on {} (tolerance {}), no regression against {}",
            report.compared_rows,
            cfg.metrics.join(", "),
            cfg.tolerance,
            a.baseline.display()
        );
        return Ok(0);
    }
    println!(
        "{} regression(s) of {} against {} (tolerance {}):\n{}",
        report.regressions.len(),
        results.display(),
        a.baseline.display(),
        cfg.tolerance,
        report.table()
    );
    Ok(1)
}
